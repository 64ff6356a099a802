"""Who is acting: the tenant (org), team and user a call is made for, and the model it uses.

The host authenticates its callers (or the gateway does) and hands the control plane an `IdentityContext`; the
control plane never authenticates anybody itself. Ids are plain strings, typed with `NewType` so that an org id
is not passed where a user id belongs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NewType

from agent_control_plane.errors import InvalidInputError
from agent_control_plane.types.values import to_name

OrgId = NewType("OrgId", str)
TeamId = NewType("TeamId", str)
UserId = NewType("UserId", str)
ModelId = NewType("ModelId", str)


@dataclass(frozen=True, slots=True)
class IdentityContext:
    """The org, team and user on whose behalf a call is made; any of them may be absent.

    As the identity of a call, it names who is acting. As the identity of a budget or a model grant, it names
    whom that covers, by subset: an org-only identity covers every team and user of the org, an empty one covers
    everybody.
    """

    user_id: UserId | None = None
    org_id: OrgId | None = None
    team_id: TeamId | None = None

    def __post_init__(self) -> None:
        for name in ("user_id", "org_id", "team_id"):
            value = getattr(self, name)
            if value is not None:
                to_name(value, name)

    def covers(self, other: IdentityContext) -> bool:
        """Whether every part this identity names is the same in `other` (subset semantics)."""
        return (
            (self.org_id is None or self.org_id == other.org_id)
            and (self.team_id is None or self.team_id == other.team_id)
            and (self.user_id is None or self.user_id == other.user_id)
        )

    def describe(self) -> str:
        """`org tenant-acme / user u1`, or `everyone` for the empty identity."""
        parts = [
            f"{label} {value}"
            for label, value in (("org", self.org_id), ("team", self.team_id), ("user", self.user_id))
            if value is not None
        ]
        return " / ".join(parts) or "everyone"

    def as_dict(self) -> dict[str, str | None]:
        return {"org_id": self.org_id, "team_id": self.team_id, "user_id": self.user_id}


ANYONE = IdentityContext()
"""The identity that covers everybody (a budget or grant for the whole installation)."""


def to_identity(value: object, what: str = "identity") -> IdentityContext:
    """`value` as an `IdentityContext` (None means nobody in particular: the empty identity)."""
    if value is None:
        return ANYONE
    if not isinstance(value, IdentityContext):
        raise InvalidInputError(
            f"{what} must be an IdentityContext (e.g. IdentityContext(org_id=OrgId('acme'))), "
            f"got {type(value).__name__}"
        )
    return value


def identity_of(row: Mapping[Any, Any]) -> IdentityContext:
    """The identity stored on a row with `org_id` / `team_id` / `user_id` columns."""
    return IdentityContext(
        user_id=None if row["user_id"] is None else UserId(row["user_id"]),
        org_id=None if row["org_id"] is None else OrgId(row["org_id"]),
        team_id=None if row["team_id"] is None else TeamId(row["team_id"]),
    )
