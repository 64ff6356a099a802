"""Model access: which models an identity may call, by model tier and by its budgets' allowed models.

A model policy maps model ids (or globs) to tiers and grants tiers to identities::

    models:
      "claude-haiku-*": standard
      "claude-sonnet-*": premium
      "claude-opus-*": restricted
    default_tiers: [standard]          # what every identity may use (this is the default)
    unknown_models: deny               # a model the policy does not name is refused (the default: fail closed)
    grants:
      - {org: tenant-acme, tiers: [premium]}
      - {org: tenant-acme, user: alice, tiers: [restricted]}

`ModelGovernor` decides from that and from the `allowed_models` of the budgets covering the identity. It is pure:
the control plane reads the budgets and records denials around it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from agent_control_plane.errors import PolicyError
from agent_control_plane.policy.model import read_yaml
from agent_control_plane.policy.patterns import PatternTable
from agent_control_plane.types.identity import IdentityContext, OrgId, TeamId, UserId
from agent_control_plane.types.tokens import ModelAccessResult, ModelTier, TokenBudgetConfig
from agent_control_plane.types.values import to_name


class ModelGrant(BaseModel):
    """Tiers granted to the identities an (org, team, user) subset covers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    org: str | None = Field(None, description="The org this grant covers (omit: every org).")
    team: str | None = Field(None, description="The team this grant covers (omit: every team).")
    user: str | None = Field(None, description="The user this grant covers (omit: every user).")
    tiers: list[ModelTier] = Field(description="The tiers these identities may use, beyond default_tiers.")

    @field_validator("org", "team", "user")
    @classmethod
    def _an_id(cls, value: str | None, info: ValidationInfo) -> str | None:
        # The same check as IdentityContext's, so a bad id is a problem of the policy, not of `identity()` later.
        return None if value is None else to_name(value, info.field_name or "id")

    def identity(self) -> IdentityContext:
        return IdentityContext(
            user_id=None if self.user is None else UserId(self.user),
            org_id=None if self.org is None else OrgId(self.org),
            team_id=None if self.team is None else TeamId(self.team),
        )


class ModelPolicy(BaseModel):
    """Model tiers and who may use them. Build it from a dict, a YAML/JSON file (`load_model_policy`) or directly."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    models: dict[str, ModelTier] = Field(
        default_factory=dict, description="Model id or glob → tier; an exact id beats a glob, longer globs win."
    )
    default_tiers: list[ModelTier] = Field(
        default_factory=lambda: [ModelTier.STANDARD], description="Tiers every identity may use."
    )
    unknown_models: Literal["deny"] | ModelTier = Field(
        "deny", description="What a model the policy does not name is: refused (deny), or treated as this tier."
    )
    grants: list[ModelGrant] = Field(default_factory=list, description="Further tiers for some identities.")


ModelPolicySource = ModelPolicy | Mapping[str, Any] | str | Path


def load_model_policy(source: ModelPolicySource) -> ModelPolicy:
    """A `ModelPolicy` from itself, a dict, or a YAML/JSON file path. Raises `PolicyError` listing every problem."""
    if isinstance(source, ModelPolicy):
        return source
    origin = "model policy"
    if isinstance(source, Mapping):
        data: Any = dict(source)
    else:
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PolicyError(f"cannot read model policy file {str(path)!r}: {exc.strerror or exc}") from None
        origin = str(path)
        data, _ = read_yaml(text, origin=origin)
        data = {} if data is None else data
    if not isinstance(data, dict):
        raise PolicyError(f"{origin}: a model policy must be a mapping (keys models, default_tiers, grants, …)")
    try:
        return ModelPolicy.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(part) for part in error['loc']) or '(top level)'}: {error['msg']}" for error in exc.errors()
        ]
        raise PolicyError(f"{origin}: invalid model policy ({len(problems)} problem(s))", problems) from None


class ModelGovernor:
    """Decides whether an identity may call a model: the model's tier must be one the identity may use, and every
    budget covering the identity that lists `allowed_models` must list the model.

    Without a model policy, tiers are not checked (only the budgets' `allowed_models` are).
    """

    def __init__(self, policy: ModelPolicySource | None = None) -> None:
        self.policy = None if policy is None else load_model_policy(policy)
        self._tiers: PatternTable[ModelTier] = PatternTable(self.policy.models if self.policy else {})
        self._grants = (
            tuple((grant.identity(), frozenset(grant.tiers)) for grant in self.policy.grants) if self.policy else ()
        )

    def tier_of(self, model_id: str) -> ModelTier | None:
        """The model's tier; None when the policy does not name it (and does not give unknown models a tier)."""
        if self.policy is None:
            return None
        tier = self._tiers.lookup(model_id)
        if tier is None and self.policy.unknown_models != "deny":
            return ModelTier(self.policy.unknown_models)
        return tier

    def tiers_for(self, identity: IdentityContext) -> frozenset[ModelTier]:
        """The tiers `identity` may use: the default tiers and those of every grant covering it."""
        if self.policy is None:
            return frozenset(ModelTier)
        allowed = set(self.policy.default_tiers)
        for covered, tiers in self._grants:
            if covered.covers(identity):
                allowed |= tiers
        return frozenset(allowed)

    def check_access(
        self, identity: IdentityContext, model_id: str, budgets: Iterable[TokenBudgetConfig] = ()
    ) -> ModelAccessResult:
        """Whether `identity` may call `model_id`; `budgets` are the token budgets covering the identity."""
        who = identity.describe()
        tier = self.tier_of(model_id)
        if self.policy is not None:
            if tier is None:
                return ModelAccessResult(
                    False,
                    model_id,
                    None,
                    f"model {model_id!r} is not in the model policy, so nobody may use it "
                    "(add it under `models:` with a tier)",
                )
            allowed = self.tiers_for(identity)
            if tier not in allowed:
                names = ", ".join(sorted(t.value for t in allowed)) or "none"
                return ModelAccessResult(
                    False,
                    model_id,
                    tier,
                    f"model {model_id!r} is {tier.value}; {who} may use {names} models "
                    f"(a grant of {tier.value} in the model policy would allow it)",
                )
        for budget in budgets:
            models = budget.models
            if models is not None and not any(fnmatch.fnmatchcase(model_id, pattern) for pattern in models):
                return ModelAccessResult(
                    False,
                    model_id,
                    tier,
                    f"model {model_id!r} is not among the models the {budget.describe()} allows "
                    f"({', '.join(models) or 'none'})",
                )
        return ModelAccessResult(True, model_id, tier, f"{who} may use model {model_id!r}")
