"""Token governance values: what a model call used, the budgets that bound it, and their state.

Counts are whole numbers and money is an exact `Decimal` (a float such as 0.0042 goes through `str`, so it stays
0.0042). Every value is checked when it is built and refused whole, with an error naming the field.
"""

from __future__ import annotations

import hashlib
import json
import zoneinfo
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from agent_control_plane.errors import InvalidInputError
from agent_control_plane.types.identity import IdentityContext, ModelId, to_identity
from agent_control_plane.types.values import tidy, to_money, to_name

MAX_TOKENS = 10**15
"""The largest token count the ledger accepts in one number (far above any real bill, far below BIGINT)."""


def to_tokens(value: object, what: str, *, allow_none: bool = False) -> int | None:
    """A whole, non-negative token count."""
    if value is None:
        if allow_none:
            return None
        raise InvalidInputError(f"{what} is required (a whole number of tokens, 0 or more)")
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{what} must be a whole number of tokens, got {value!r}")
    if value < 0:
        raise InvalidInputError(f"{what} must not be negative, got {value}")
    if value > MAX_TOKENS:
        raise InvalidInputError(f"{what} is larger than the ledger keeps ({MAX_TOKENS}), got {value}")
    return value


def to_timezone(value: object) -> str:
    """An IANA time zone name (e.g. 'UTC', 'Europe/Berlin') that this machine's zone database knows."""
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"timezone must be an IANA zone name such as 'UTC' or 'Europe/Berlin', got {value!r}")
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidInputError(
            f"unknown time zone {value!r} (expected an IANA name such as 'Europe/Berlin')"
        ) from None
    return value


class BudgetPeriod(StrEnum):
    """The window a budget counts in. Windows are calendar windows in the budget's time zone (UTC by default):
    a day from midnight, a week from Monday midnight, a month from the 1st; `unlimited` never rolls over."""

    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    UNLIMITED = "unlimited"


def to_period(value: object) -> BudgetPeriod:
    try:
        return BudgetPeriod(str(value))
    except ValueError:
        raise InvalidInputError(f"period {value!r} is not one of {', '.join(p.value for p in BudgetPeriod)}") from None


class ModelTier(StrEnum):
    """How a model is governed: `standard` models for everybody by default, `premium` ones for identities granted
    them, `restricted` ones only for identities granted them explicitly."""

    STANDARD = "standard"
    PREMIUM = "premium"
    RESTRICTED = "restricted"


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """What one model call used, as the provider billed it.

    `total_tokens` defaults to input + output and must equal it when given. `estimated_cost_usd` may be a
    Decimal, int, str or float (a float is read through `str`, so 0.0042 stays 0.0042).
    """

    model_id: ModelId
    input_tokens: int
    output_tokens: int
    total_tokens: int | None = None
    estimated_cost_usd: Decimal | float | int | str = Decimal(0)

    def __post_init__(self) -> None:
        to_name(self.model_id, "model_id")
        tokens_in = to_tokens(self.input_tokens, "input_tokens")
        tokens_out = to_tokens(self.output_tokens, "output_tokens")
        assert tokens_in is not None and tokens_out is not None
        total = to_tokens(self.total_tokens, "total_tokens", allow_none=True)
        if total is None:
            object.__setattr__(self, "total_tokens", tokens_in + tokens_out)
        elif total != tokens_in + tokens_out:
            raise InvalidInputError(
                f"total_tokens {total} is not input_tokens + output_tokens ({tokens_in} + {tokens_out} = "
                f"{tokens_in + tokens_out}); pass the provider's counts unchanged, or leave total_tokens out"
            )
        object.__setattr__(self, "estimated_cost_usd", to_money(self.estimated_cost_usd, "estimated_cost_usd"))

    @property
    def tokens(self) -> int:
        """The total token count (always set after construction)."""
        assert self.total_tokens is not None
        return self.total_tokens

    @property
    def cost(self) -> Decimal:
        """The cost as an exact Decimal (always one after construction)."""
        assert isinstance(self.estimated_cost_usd, Decimal)
        return self.estimated_cost_usd


@dataclass(frozen=True, slots=True)
class TokenBudgetConfig:
    """A persistent cap on the tokens and cost of the identities `identity` covers, per `period`.

    `identity` by subset: `IdentityContext(org_id=OrgId("acme"))` counts every call of every team and user of
    org acme. `max_tokens` / `max_cost_usd` of None mean no cap on that measure; `allowed_models` (model ids or
    globs such as 'claude-haiku-*'), when given, is the only models these identities may use. A budget is known
    by its identity and period: setting one for the same pair again updates it.
    """

    identity: IdentityContext
    period: BudgetPeriod | str = BudgetPeriod.DAILY
    max_tokens: int | None = None
    max_cost_usd: Decimal | float | int | str | None = None
    allowed_models: tuple[str, ...] | list[str] | None = None
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        object.__setattr__(self, "identity", to_identity(self.identity, "TokenBudgetConfig.identity"))
        object.__setattr__(self, "period", to_period(self.period))
        to_tokens(self.max_tokens, "max_tokens", allow_none=True)
        object.__setattr__(self, "max_cost_usd", to_money(self.max_cost_usd, "max_cost_usd", allow_none=True))
        if self.allowed_models is not None:
            if isinstance(self.allowed_models, str) or not isinstance(self.allowed_models, list | tuple):
                raise InvalidInputError("allowed_models must be a list of model ids or globs (or None for any)")
            models = tuple(to_name(model, "allowed_models entry") for model in self.allowed_models)
            object.__setattr__(self, "allowed_models", models)
        object.__setattr__(self, "timezone", to_timezone(self.timezone))

    @property
    def budget_period(self) -> BudgetPeriod:
        assert isinstance(self.period, BudgetPeriod)
        return self.period

    @property
    def max_cost(self) -> Decimal | None:
        assert self.max_cost_usd is None or isinstance(self.max_cost_usd, Decimal)
        return self.max_cost_usd

    @property
    def models(self) -> tuple[str, ...] | None:
        assert self.allowed_models is None or isinstance(self.allowed_models, tuple)
        return self.allowed_models

    @property
    def budget_id(self) -> str:
        """A stable id derived from identity and period, the same in every process and after every restart."""
        i = self.identity
        key = json.dumps([i.org_id, i.team_id, i.user_id, self.budget_period.value])
        return "tb_" + hashlib.sha256(key.encode()).hexdigest()[:20]

    def describe(self) -> str:
        limits = [
            f"{self.max_tokens} tokens" if self.max_tokens is not None else None,
            f"${tidy(self.max_cost)}" if self.max_cost is not None else None,
        ]
        capped = " and ".join(limit for limit in limits if limit) or "no cap"
        return f"{self.budget_period.value} budget of {self.identity.describe()} ({capped})"


@dataclass(frozen=True, slots=True)
class TokenBudgetState:
    """One budget in its current window: what was used and is reserved, and what remains (None: no cap)."""

    budget_id: str
    config: TokenBudgetConfig
    window_start: datetime
    window_end: datetime | None
    """When the window rolls over (None for `unlimited`)."""
    tokens_used: int
    cost_used_usd: Decimal
    tokens_reserved: int
    cost_reserved_usd: Decimal
    remaining_tokens: int | None
    remaining_cost_usd: Decimal | None

    @property
    def exhausted(self) -> bool:
        """No room left on a capped measure: a check is refused until the window rolls over."""
        return self.remaining_tokens == 0 or self.remaining_cost_usd == Decimal(0)

    @property
    def over(self) -> bool:
        """Use went past a cap (possible: usage is recorded as billed, even beyond the budget)."""
        c = self.config
        return (c.max_tokens is not None and self.tokens_used > c.max_tokens) or (
            c.max_cost is not None and self.cost_used_usd > c.max_cost
        )


@dataclass(frozen=True, slots=True)
class ModelAccessResult:
    """Whether `identity` may call `model_id`, and if not, why."""

    allowed: bool
    model_id: str
    tier: ModelTier | None
    reason: str


@dataclass(frozen=True, slots=True)
class BudgetCheckResult:
    """The answer of `check_budget`: whether the estimated call fits every budget that covers the identity.

    `states` holds each covering budget with its remaining room after this check (its reservation included);
    `reservation_id` is set when the check reserved the estimate (pass it to `record_usage` or release it).
    """

    allowed: bool
    reason: str
    states: tuple[TokenBudgetState, ...]
    model_access: ModelAccessResult | None = None
    reservation_id: str | None = None

    @property
    def remaining(self) -> dict[str, tuple[int | None, Decimal | None]]:
        """Budget id → (remaining tokens, remaining cost), None meaning no cap."""
        return {s.budget_id: (s.remaining_tokens, s.remaining_cost_usd) for s in self.states}


@dataclass(frozen=True, slots=True)
class ModelUsage:
    """One model's share of a usage summary."""

    model_id: str
    calls: int
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cost_usd: Decimal


@dataclass(frozen=True, slots=True)
class UsageSummary:
    """What the identities `identity` covers used in one window, from the ledger, with a per-model breakdown."""

    identity: IdentityContext
    period: BudgetPeriod
    window_start: datetime | None
    window_end: datetime | None
    calls: int
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cost_usd: Decimal
    by_model: dict[str, ModelUsage] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """The ledger row `record_usage` wrote, with the budgets covering it as they are after it."""

    usage_id: str
    session_id: str | None
    identity: IdentityContext
    usage: TokenUsage
    states: tuple[TokenBudgetState, ...]

    @property
    def over_budget(self) -> tuple[TokenBudgetState, ...]:
        return tuple(state for state in self.states if state.over)
