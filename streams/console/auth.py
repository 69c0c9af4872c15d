"""Passwords, sessions, CSRF tokens and login rate limits of the console.

* **Passwords**: argon2id through ``argon2-cffi`` (its defaults: RFC 9106's second recommended profile, 64 MiB,
  3 passes), rehashed on login when the parameters change. A login for an unknown or disabled account still
  verifies against a dummy hash, so the answer takes as long either way.
* **Sessions**: a random 256-bit token in a cookie (``HttpOnly``, ``SameSite=Strict``, ``Secure`` unless the
  console is told it runs on plain http over loopback), stored server-side as its sha256; it ends after
  :attr:`Limits.session_idle_s` without use or :attr:`Limits.session_max_s` after login, at logout, and when the
  account is disabled.
* **CSRF**: every state change needs ``HMAC-SHA256(secret, session token)`` in the ``X-CSRF-Token`` header or the
  ``csrf`` form field (a synchronizer token that a page of another origin cannot read), and an ``Origin`` header,
  when sent, equal to the console's own. API clients with a bearer token carry no ambient credential and need none.
* **Rate limits**: failed logins are counted per account and per client address in a sliding window; past the
  limit further attempts are refused (429) until the window has moved on, whether the password is right or not.
* **Secret**: ``CEMS_CONSOLE_SECRET`` from the environment, else a random key generated once into a file created
  with mode 0600 beside the store. It is never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from .policy import User
from .store import Store

__all__ = ["Auth", "Limits", "RateLimiter", "load_secret", "token_hash"]

MIN_PASSWORD = 12
_hasher = PasswordHasher()
_DUMMY = _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class Limits:
    session_idle_s: float = 30 * 60
    session_max_s: float = 8 * 3600
    login_window_s: float = 15 * 60
    login_failures_per_account: int = 5
    login_failures_per_address: int = 20


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def load_secret(directory: Path) -> bytes:
    """The key CSRF tokens are derived from: ``CEMS_CONSOLE_SECRET``, or ``console.key`` (0600) made once."""
    env = os.environ.get("CEMS_CONSOLE_SECRET")
    if env:
        if len(env) < 32:
            raise ValueError("CEMS_CONSOLE_SECRET must be at least 32 characters")
        return env.encode()
    path = directory / "console.key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            raise ValueError(f"{path}: readable by others; chmod 600 it") from None
        return path.read_bytes()
    with os.fdopen(fd, "wb") as f:
        key = secrets.token_bytes(32)
        f.write(key)
    return key


class RateLimiter:
    """Failures per key in a sliding window of ``window_s`` seconds."""

    def __init__(self, limit: int, window_s: float, clock=time.monotonic) -> None:
        self.limit, self.window_s, self.clock = limit, window_s, clock
        self.failures: dict[str, deque] = defaultdict(deque)

    def blocked(self, key: str) -> bool:
        q, now = self.failures[key], self.clock()
        while q and q[0] <= now - self.window_s:
            q.popleft()
        if not q:
            self.failures.pop(key, None)
        return len(q) >= self.limit

    def fail(self, key: str) -> None:
        self.failures[key].append(self.clock())

    def reset(self, key: str) -> None:
        self.failures.pop(key, None)


class LoginRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Auth:
    def __init__(self, store: Store, secret: bytes, limits: Limits = Limits(), clock=time.time) -> None:
        self.store, self.secret, self.limits, self.clock = store, secret, limits, clock
        self.per_account = RateLimiter(limits.login_failures_per_account, limits.login_window_s)
        self.per_address = RateLimiter(limits.login_failures_per_address, limits.login_window_s)

    @staticmethod
    def hash_password(password: str) -> str:
        if len(password) < MIN_PASSWORD:
            raise ValueError(f"a password needs at least {MIN_PASSWORD} characters")
        return _hasher.hash(password)

    def login(self, username: str, password: str, address: str) -> tuple[User, str]:
        """(user, session token) or :class:`LoginRefused` (401 wrong, 429 too many attempts)."""
        if self.per_address.blocked(address) or self.per_account.blocked(username):
            raise LoginRefused(429, "too many failed logins; try again later")
        found = self.store.user(username)
        stored = found[1] if found is not None and not found[2] else _DUMMY
        try:
            _hasher.verify(stored, password)
            ok = found is not None and not found[2]
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            ok = False
        if found is None or not ok:  # ok implies found: the test names it for the type checker
            self.per_account.fail(username)
            self.per_address.fail(address)
            raise LoginRefused(401, "wrong user name or password")
        self.per_account.reset(username)
        if _hasher.check_needs_rehash(stored):
            self.store.set_password_hash(username, _hasher.hash(password))
        token = secrets.token_urlsafe(32)
        self.store.add_session(token_hash(token), username, self.clock())
        return found[0], token

    def session_user(self, token: str | None) -> User | None:
        """The user of a live session (its idle clock restarted), or None."""
        if not token:
            return None
        now = self.clock()
        self.store.drop_expired(now - self.limits.session_max_s, now - self.limits.session_idle_s)
        row = self.store.session(token_hash(token))
        if row is None:
            return None
        found = self.store.user(row[0])
        if found is None or found[2]:
            return None
        self.store.touch_session(token_hash(token), now)
        return found[0]

    def bearer_user(self, token: str) -> User | None:
        username = self.store.token_user(token_hash(token))
        found = None if username is None else self.store.user(username)
        return None if found is None or found[2] else found[0]

    def new_api_token(self, username: str, label: str) -> str:
        if self.store.user(username) is None:
            from .store import AccountError

            raise AccountError(f"no user {username!r}")
        token = secrets.token_urlsafe(32)
        self.store.add_token(token_hash(token), username, label)
        return token

    def logout(self, token: str) -> None:
        self.store.drop_session(token_hash(token))

    def csrf(self, session_token: str) -> str:
        return hmac.new(self.secret, b"csrf:" + session_token.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session_token: str, sent: str | None) -> bool:
        if not sent:
            return False
        return hmac.compare_digest(self.csrf(session_token), sent)
