"""Demo accounts for ``./cems demo``: one per role, a plant account per demo entity and a reviewer per region,
so that regional isolation shows (two municipalities in one province, a second province). Passwords are random
each run and printed once; the accounts file is the demo's own and is made anew."""

from __future__ import annotations

import secrets
from pathlib import Path

from .auth import Auth
from .policy import User
from .store import Store

__all__ = ["demo_accounts"]


def demo_accounts(path: Path, entities: list[dict]) -> list[tuple[User, str]]:
    """(account, password) for the entities (rows of ``Archive.entities()``), written to a fresh ``path``."""
    for p in (path, path.with_name(path.name + "-journal")):
        p.unlink(missing_ok=True)
    store = Store(path)
    users = [User(f"plant-{e['entity_id'].removeprefix('demo-')}", "plant", e["entity_id"]) for e in entities]
    munis = sorted({(e["province"], e["municipality"]) for e in entities if e["municipality"]})
    users += [User(f"muni-{m}", "municipal", province=p, municipality=m) for p, m in munis]
    users += [User(f"prov-{p}", "provincial", province=p) for p in sorted({p for p, _ in munis})]
    users += [User("national", "national"), User("admin", "admin")]
    out = []
    for u in users:
        password = secrets.token_urlsafe(12)
        store.add_user(u, Auth.hash_password(password))
        out.append((u, password))
    store.close()
    return out

