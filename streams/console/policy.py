"""Who sees what: the one place regional isolation is decided, for the pages and the API alike.

A plant sees its own entity; a municipal reviewer the entities of its municipality (province and municipality
codes both match, GB/T 2260, as the site file gives them and the archive's ``entities`` rows carry them); a
provincial reviewer those of its province; national reviewers and administrators all of them. Everything outside
a user's scope is answered as if it did not exist (404, never 403: no existence leak), and lists and counts are
built only from what :func:`visible` keeps.
"""

from __future__ import annotations

from dataclasses import dataclass

from .review import REVIEWER_ROLES, ROLES

__all__ = ["User", "sees", "visible"]


@dataclass(frozen=True)
class User:
    username: str
    role: str  # one of review.ROLES
    entity_id: str = ""  # plant accounts
    province: str = ""  # municipal and provincial reviewers
    municipality: str = ""  # municipal reviewers

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, got {self.role!r}")
        need = {"plant": ("entity_id",), "municipal": ("province", "municipality"), "provincial": ("province",)}
        for name in need.get(self.role, ()):
            if not getattr(self, name):
                raise ValueError(f"a {self.role} account needs its {name.replace('_', ' ')}")

    @property
    def reviewer(self) -> bool:
        return self.role in REVIEWER_ROLES

    @property
    def scope(self) -> str:
        """The region or entity the account covers, for display."""
        return {"plant": self.entity_id, "municipal": f"{self.province}/{self.municipality}",
                "provincial": self.province}.get(self.role, "national")


def sees(user: User, entity: dict) -> bool:
    """Whether ``user`` may see ``entity`` (a row of :meth:`streams.archive.store.Archive.entities`)."""
    if user.role == "plant":
        return entity["entity_id"] == user.entity_id
    if user.role == "municipal":
        return entity["province"] == user.province and entity["municipality"] == user.municipality
    if user.role == "provincial":
        return entity["province"] == user.province
    return user.role in ("national", "admin")


def visible(user: User, entities: list[dict]) -> list[dict]:
    return [e for e in entities if sees(user, e)]
