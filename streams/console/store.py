"""Accounts, sessions and API tokens of the console: one SQLite file beside the archive (``console.sqlite``).

Passwords are stored only as argon2id hashes (:mod:`streams.console.auth`); sessions and API tokens only as the
sha256 of the random token the client holds, so a copy of this file lets no one log in or replay a session.
Review actions are not here: they go to the archive's hash chain.
"""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path

from .policy import User

__all__ = ["AccountError", "Store"]

USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{1,63}")


class AccountError(ValueError):
    """A bad account request (unknown user, bad name, duplicate): the message says what."""


class Store:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.executescript("""
            CREATE TABLE IF NOT EXISTS users (username TEXT PRIMARY KEY, password_hash TEXT NOT NULL,
                role TEXT NOT NULL, entity_id TEXT NOT NULL, province TEXT NOT NULL, municipality TEXT NOT NULL,
                disabled INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL);
            CREATE TABLE IF NOT EXISTS sessions (id_hash TEXT PRIMARY KEY, username TEXT NOT NULL,
                created_at REAL NOT NULL, last_seen REAL NOT NULL);
            CREATE TABLE IF NOT EXISTS api_tokens (token_hash TEXT PRIMARY KEY, username TEXT NOT NULL,
                label TEXT NOT NULL, created_at REAL NOT NULL);""")

    def close(self) -> None:
        self.db.close()

    # -- accounts -------------------------------------------------------------------------------------

    def add_user(self, user: User, password_hash: str) -> None:
        if not USERNAME.fullmatch(user.username):
            raise AccountError(f"user name {user.username!r}: 2-64 of a-z 0-9 . _ -, starting with a letter or digit")
        try:
            self.db.execute("INSERT INTO users VALUES (?,?,?,?,?,?,0,?)", (
                user.username, password_hash, user.role, user.entity_id, user.province, user.municipality,
                time.time()))
        except sqlite3.IntegrityError:
            raise AccountError(f"user {user.username!r} exists already") from None

    def user(self, username: str) -> tuple[User, str, bool] | None:
        """(user, password hash, disabled), or None."""
        row = self.db.execute("SELECT username, role, entity_id, province, municipality, password_hash, disabled "
                              "FROM users WHERE username=?", (username,)).fetchone()
        return None if row is None else (User(*row[:5]), row[5], bool(row[6]))

    def users(self) -> list[tuple[User, bool]]:
        rows = self.db.execute("SELECT username, role, entity_id, province, municipality, disabled FROM users "
                               "ORDER BY username").fetchall()
        return [(User(*r[:5]), bool(r[5])) for r in rows]

    def set_disabled(self, username: str, disabled: bool = True) -> None:
        if self.db.execute("UPDATE users SET disabled=? WHERE username=?", (int(disabled), username)).rowcount != 1:
            raise AccountError(f"no user {username!r}")
        if disabled:  # a disabled account is logged out everywhere at once
            self.db.execute("DELETE FROM sessions WHERE username=?", (username,))
            self.db.execute("DELETE FROM api_tokens WHERE username=?", (username,))

    def set_password_hash(self, username: str, password_hash: str) -> None:
        cur = self.db.execute("UPDATE users SET password_hash=? WHERE username=?", (password_hash, username))
        if cur.rowcount != 1:
            raise AccountError(f"no user {username!r}")

    # -- sessions and tokens (hashes only) ------------------------------------------------------------

    def add_session(self, id_hash: str, username: str, now: float) -> None:
        self.db.execute("INSERT INTO sessions VALUES (?,?,?,?)", (id_hash, username, now, now))

    def session(self, id_hash: str) -> tuple[str, float, float] | None:
        """(username, created_at, last_seen) or None."""
        return self.db.execute("SELECT username, created_at, last_seen FROM sessions WHERE id_hash=?",
                               (id_hash,)).fetchone()

    def touch_session(self, id_hash: str, now: float) -> None:
        self.db.execute("UPDATE sessions SET last_seen=? WHERE id_hash=?", (now, id_hash))

    def drop_session(self, id_hash: str) -> None:
        self.db.execute("DELETE FROM sessions WHERE id_hash=?", (id_hash,))

    def drop_expired(self, created_before: float, idle_before: float) -> None:
        self.db.execute("DELETE FROM sessions WHERE created_at < ? OR last_seen < ?", (created_before, idle_before))

    def add_token(self, token_hash: str, username: str, label: str) -> None:
        self.db.execute("INSERT INTO api_tokens VALUES (?,?,?,?)", (token_hash, username, label, time.time()))

    def token_user(self, token_hash: str) -> str | None:
        row = self.db.execute("SELECT username FROM api_tokens WHERE token_hash=?", (token_hash,)).fetchone()
        return None if row is None else row[0]
