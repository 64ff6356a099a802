"""Test cases kept beside a policy: proposals and the decision each must get, checked like unit tests.

For `policy.yaml` the cases live in `policy.tests.yaml` (or `.tests.yml`, `.tests.json`), a list such as::

    - name: dropping a table is blocked
      proposal: {action: run_sql, args: {query: "DROP TABLE users"}}
      expect: {tier: blocked, rule: no-drop-table}
    - name: prod deploys are steered to staging
      proposal: {action: deploy, resource: prod/web, agent: ops-bot, cost: 0.5,
                 session: {action_count: 3, spent_cost: 1.25}, time: "2026-11-27T15:00:00Z"}
      expect: {tier: steer, alternatives: [deploy_staging]}

A proposal holds the facts a condition can read (see conditions.py); whatever it leaves out takes the same default
as in `Facts`. `expect` needs `tier`; `rule`, `step` and `alternatives` are checked only when given, and
`rule: null` means "decided by the default tier". Costs are read as `Decimal(str(value))`, so 0.1 stays 0.1.
Deciding is pure: the only I/O here is reading the files.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from agent_control_plane.errors import PolicyError
from agent_control_plane.policy.choice import TierChoice
from agent_control_plane.policy.conditions import Facts
from agent_control_plane.policy.engine import PolicyEngine
from agent_control_plane.policy.evaluators import EvaluatorRegistry
from agent_control_plane.policy.model import PolicySource, nearest_line, read_yaml
from agent_control_plane.types.decisions import ActionTier, TraceStep

CASES_SUFFIXES = (".tests.yaml", ".tests.yml", ".tests.json")

Step = Literal["rule", "actions", "default", "evaluator", "registration", "capability", "assignment", "risk"]
"""The parts of a policy that can decide (`TierChoice.step`)."""


def _money(value: Any) -> Any:
    # Through str, so a YAML float such as 0.1 becomes Decimal("0.1"), not its binary approximation.
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValueError(f"a cost is a number such as 0.25, not {value!r}")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"a cost is a number such as 0.25, not {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"a cost is a finite number of at least 0, not {value!r}")
    return amount


Money = Annotated[Decimal, BeforeValidator(_money)]


class SessionSoFar(BaseModel):
    """What the proposing session has done before this proposal."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action_count: int = Field(0, ge=0, description="Proposals the session has already made.")
    spent_cost: Money = Field(Decimal(0), description="Cost the session has already spent.")


class CaseProposal(BaseModel):
    """The proposal of one test case: the facts a policy decides on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: str = Field(min_length=1, description="The action name.")
    args: dict[str, Any] = Field(default_factory=dict, description="The action's arguments.")
    resource: str | None = None
    agent: str | None = None
    cost: Money = Decimal(0)
    risk: str | None = None
    mode: str = "live"
    org: str | None = None
    team: str | None = None
    user: str | None = None
    session: SessionSoFar = Field(default_factory=SessionSoFar)
    time: datetime = Field(
        datetime(1970, 1, 1, tzinfo=UTC), description="When the proposal is made, with a UTC offset (e.g. ...Z)."
    )

    @field_validator("time")
    @classmethod
    def _has_offset(cls, value: datetime) -> datetime:
        # A naive time would be read in the machine's local zone, so the same case could pass here and fail in CI.
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"time {value.isoformat()} needs a UTC offset, e.g. 2026-11-27T15:00:00Z")
        return value

    def facts(self) -> Facts:
        return Facts(
            action=self.action,
            args=self.args,
            resource=self.resource,
            agent=self.agent,
            cost=self.cost,
            risk=self.risk,
            mode=self.mode,
            org=self.org,
            team=self.team,
            user=self.user,
            session_action_count=self.session.action_count,
            session_spent_cost=self.session.spent_cost,
            now=self.time,
        )


class Expectation(BaseModel):
    """The decision a case must get. Only `tier` is required; the other keys are checked when present."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tier: ActionTier = Field(description="The tier the policy must choose.")
    rule: str | None = Field(
        None, description="The entry that decides: a rule name, an actions pattern, an evaluator, or null (default)."
    )
    step: Step | None = Field(None, description="Which part of the policy decides (rule, actions, default, …).")
    alternatives: list[str] | None = Field(None, description="The steering alternatives offered, in order.")

    def given(self) -> dict[str, Any]:
        """The expected values the author wrote, as JSON-ready values."""
        return self.model_dump(mode="json", include=self.model_fields_set)


class Case(BaseModel):
    """One test case: a named proposal and the decision it must get."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, description="Printed with PASS or FAIL; unique within the file.")
    proposal: CaseProposal
    expect: Expectation


_CASES = TypeAdapter(list[Case])
_OWNERS: dict[tuple[str, ...], type[BaseModel]] = {
    (): Case,
    ("proposal",): CaseProposal,
    ("proposal", "session"): SessionSoFar,
    ("expect",): Expectation,
}


@dataclass(frozen=True, slots=True)
class CaseResult:
    """How one case went: what was expected, what the policy decided, and every way they differ."""

    case: Case
    actual: dict[str, Any]
    mismatches: tuple[str, ...]
    choice: TierChoice

    @property
    def name(self) -> str:
        return self.case.name

    @property
    def passed(self) -> bool:
        return not self.mismatches

    @property
    def trace(self) -> tuple[TraceStep, ...]:
        return self.choice.trace

    def summary(self) -> str:
        """`PASS name`, or `FAIL name: expected …, got … (decided by …)`."""
        if self.passed:
            return f"PASS {self.name}"
        return f"FAIL {self.name}: {'; '.join(self.mismatches)} (decided by {decided_by(self.choice)})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "expected": self.case.expect.given(),
            "actual": self.actual,
            "mismatches": list(self.mismatches),
            "reason": self.choice.describe(self.case.proposal.action),
            "trace": [step.as_dict() for step in self.trace],
        }


def decided_by(choice: TierChoice) -> str:
    """The policy entry behind a decision, in words: `rule 'x'`, `actions entry 'read_*'`, `default_tier`, …"""
    if choice.step == "default" or choice.rule is None:
        return "default_tier"
    entry = {"rule": "rule", "actions": "actions entry", "evaluator": "evaluator"}.get(choice.step, choice.step)
    return f"{entry} {choice.rule!r}"


def default_cases_path(policy_path: Path) -> Path:
    """The cases file beside `policy_path` (`policy.yaml` → `policy.tests.yaml`, `.tests.yml` or `.tests.json`)."""
    candidates = [policy_path.with_name(policy_path.stem + suffix) for suffix in CASES_SUFFIXES]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(candidate) for candidate in candidates)
    raise PolicyError(f"no test cases for {str(policy_path)!r}: none of {tried} exists; write one or pass --cases")


def load_cases(path: Path) -> list[Case]:
    """Read and validate a cases file. Raises `PolicyError` listing every problem with its line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"cannot read test cases {str(path)!r}: {exc.strerror or exc}") from None
    return parse_cases_text(text, origin=str(path))


def parse_cases_text(text: str, *, origin: str = "test cases") -> list[Case]:
    """Parse YAML (or JSON) test cases and validate them whole, naming the line of each problem."""
    data, lines = read_yaml(text, origin=origin)
    shape = "a list of cases, each with name, proposal and expect"
    if not isinstance(data, list):
        raise PolicyError(f"{origin}: test cases must be {shape}")
    if not data:
        raise PolicyError(f"{origin}: no test cases; write {shape}")
    problems = [(nearest_line(lines, loc), loc, message) for loc, message in _duplicate_names(data)]
    try:
        cases = _CASES.validate_python(data)
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(str(part) for part in error["loc"])
            problems.append((nearest_line(lines, loc), loc, _explain(error, loc)))
        cases = []
    if problems:
        problems.sort(key=lambda problem: (problem[0] or 0, problem[1]))
        listed = [f"{f'line {line}: ' if line else ''}{'.'.join(loc)}: {message}" for line, loc, message in problems]
        raise PolicyError(f"{origin}: invalid test cases ({len(listed)} problem(s))", listed)
    return cases


def _duplicate_names(data: list[Any]) -> list[tuple[tuple[str, ...], str]]:
    first: dict[str, int] = {}
    found: list[tuple[tuple[str, ...], str]] = []
    for position, item in enumerate(data):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str):
            continue
        if name in first:
            found.append(((str(position), "name"), f"{name!r} already names case {first[name] + 1}; names must differ"))
        first.setdefault(name, position)
    return found


def _explain(error: Any, loc: tuple[str, ...]) -> str:
    if error["type"] == "enum":
        allowed = ", ".join(tier.value for tier in ActionTier)
        return f"unknown tier {error['input']!r} (expected one of {allowed})"
    if error["type"] == "extra_forbidden":
        owner = _OWNERS.get(loc[1:-1], Case)
        return f"unknown key (expected one of {', '.join(owner.model_fields)})"
    if error["type"] == "model_type" and len(loc) == 1:
        return "a case is a mapping with name, proposal and expect"
    return str(error["msg"]).removeprefix("Value error, ")


def run_case(engine: PolicyEngine, case: Case) -> CaseResult:
    """Decide the case's proposal and compare the decision with what the case expects."""
    choice = engine.decide(case.proposal.facts())
    actual: dict[str, Any] = {
        "tier": choice.tier.value,
        "rule": choice.rule,
        "step": choice.step,
        "alternatives": list(choice.steering.alternatives) if choice.steering else [],
    }
    mismatches = []
    for key, wanted in case.expect.given().items():
        if wanted != actual[key]:
            mismatches.append(f"expected {key} {_shown(key, wanted)}, got {_shown(key, actual[key])}")
    return CaseResult(case, actual, tuple(mismatches), choice)


def _shown(key: str, value: Any) -> str:
    if key == "rule":
        return "null" if value is None else repr(value)
    if key == "alternatives":
        return f"[{', '.join(value)}]"
    return str(value)


def run_cases(
    policy: PolicySource, cases: list[Case], *, registry: EvaluatorRegistry | None = None
) -> list[CaseResult]:
    """Every case's result under `policy`, in file order."""
    engine = PolicyEngine(policy, registry=registry)
    return [run_case(engine, case) for case in cases]
