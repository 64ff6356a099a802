"""The policy file: its pydantic model, and loading it from YAML, JSON, a dict or a `Policy`.

The smallest valid policy::

    default_tier: always_approve        # unknown actions need a human (the fail-closed default)
    actions:
      "read_*": unrestricted            # glob patterns on the action name; the most specific match wins
      "delete_*": blocked

Rules add conditions on everything else about a proposal; the first rule whose `when` holds decides, before
`actions` and `default_tier` are consulted::

    rules:
      - name: no-drop-table
        when: {all: [{field: action, eq: run_sql}, {field: args.query, matches: "(?i)drop\\s+table"}]}
        tier: blocked
        reason: dropping tables is never allowed
      - name: staging-first
        when: {field: resource, glob: "prod/*"}
        tier: steer
        guidance: deploy to staging and run the smoke tests first
        alternatives: [deploy_staging]
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agent_control_plane.errors import PolicyError
from agent_control_plane.policy.conditions import Condition
from agent_control_plane.policy.evaluators import EvaluatorSpec
from agent_control_plane.types.decisions import ActionTier, RiskLevel


class Rule(BaseModel):
    """A condition and the tier it leads to. Rules are tried in file order; the first whose `when` holds decides."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = Field(None, description="Shown in reasons and traces; defaults to 'rule N' (1-based).")
    when: Condition = Field(description="The condition tree that makes this rule apply.")
    tier: ActionTier = Field(description="The tier of a proposal this rule applies to.")
    reason: str | None = Field(None, description="Why, in words the agent and the operator will read.")
    guidance: str | None = Field(None, description="steer rules only: what the agent should do instead.")
    alternatives: list[str] = Field(
        default_factory=list, description="steer rules only: actions the agent may propose instead."
    )

    @model_validator(mode="after")
    def _steering_only_on_steer(self) -> Rule:
        if self.tier is ActionTier.STEER and not self.guidance:
            raise ValueError("a steer rule needs guidance: tell the agent what to do instead")
        if self.tier is not ActionTier.STEER and (self.guidance or self.alternatives):
            raise ValueError(f"guidance and alternatives belong to steer rules, not to a {self.tier.value} rule")
        return self


class RiskRule(BaseModel):
    """A condition and the risk level of the proposals it holds for."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    when: Condition = Field(description="The condition tree that gives this risk level.")
    level: RiskLevel = Field(description="low, medium or high.")


class RiskSettings(BaseModel):
    """How risky a proposal is: the first risk rule that holds, else the default (a classifier may raise it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    default: RiskLevel = Field(RiskLevel.LOW, description="The risk of proposals no risk rule matches.")
    rules: list[RiskRule] = Field(default_factory=list, description="Tried in order; the first that holds decides.")


class AutoApproveSettings(BaseModel):
    """Limits on auto_approve: above `max_risk`, or live when `live` is false, a human decides instead."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_risk: RiskLevel = Field(RiskLevel.HIGH, description="The highest risk that may still be auto-approved.")
    live: bool = Field(True, description="false: auto-approve only dry runs; live proposals need a human.")


class AgentSpec(BaseModel):
    """A registered agent: what it may propose, on what, and tiers assigned to it explicitly."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    capabilities: list[str] = Field(["*"], description="Action glob patterns this agent may propose at all.")
    scopes: list[str] = Field(["*"], description="Resource glob patterns this agent may act on.")
    actions: dict[str, ActionTier] = Field(
        default_factory=dict,
        description="Explicit assignments: action pattern → tier for this agent, decided before any rule.",
    )


class AgentSettings(BaseModel):
    """The agents the policy knows, and whether unknown agents may act at all."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    require_registration: bool = Field(False, description="true: proposals from unregistered agents are denied.")
    registry: dict[str, AgentSpec] = Field(default_factory=dict, description="Agent id → its capabilities.")


class ApprovalSettings(BaseModel):
    """How long a ticket waits for a human, and what happens when nobody answers in time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    timeout_seconds: float = Field(3600, gt=0, description="Seconds a ticket waits for a decision.")
    on_timeout: Literal["deny", "escalate"] = Field(
        "deny", description="deny: the ticket expires; escalate: it goes to `escalate_to` with a new deadline."
    )
    escalate_to: str | None = Field(None, description="The approver group an overdue ticket is escalated to.")
    escalation_timeout_seconds: float = Field(
        3600, gt=0, description="Seconds the escalated ticket waits before it expires."
    )

    @model_validator(mode="after")
    def _escalation_has_a_target(self) -> ApprovalSettings:
        if self.on_timeout == "escalate" and not self.escalate_to:
            raise ValueError("on_timeout: escalate needs escalate_to (the approver group to escalate to)")
        return self


class ConcurrencySettings(BaseModel):
    """At most N actions in flight (allowed, not yet settled) per session, per agent and per resource."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    per_session: int | None = Field(None, ge=1, description="In-flight actions one session may have (null: no limit).")
    per_agent: int | None = Field(None, ge=1, description="In-flight actions one agent may have across sessions.")
    per_resource: int | None = Field(None, ge=1, description="In-flight actions on one resource across sessions.")
    lease_seconds: float = Field(
        300,
        gt=0,
        description="A lease not released by settle expires this long after it was taken or last renewed by a "
        "heartbeat, so a dead holder never blocks.",
    )

    @property
    def limited(self) -> bool:
        return any(limit is not None for limit in (self.per_session, self.per_agent, self.per_resource))


class RecoverySettings(BaseModel):
    """What crash recovery does with actions that were allowed but never settled."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    interrupted_after_seconds: float = Field(
        900,
        gt=0,
        description="An allowed action not settled, and not heard from by a heartbeat, for this long is taken as "
        "interrupted.",
    )
    charge_interrupted: bool = Field(
        False,
        description="false: an interrupted action's reservation is released; true: it is charged, since the action "
        "may have run before its worker died.",
    )


class Policy(BaseModel):
    """A governance policy. Immutable; a session keeps the snapshot it was opened with."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    default_tier: ActionTier = Field(
        ActionTier.ALWAYS_APPROVE,
        description="Tier for actions no pattern matches. Defaults to always_approve, so unknown actions fail closed.",
    )
    actions: dict[str, ActionTier] = Field(
        default_factory=dict,
        description="Action-name glob pattern (*, ?, [abc]) → tier. An exact name beats any glob; among globs the "
        "one with more literal characters wins.",
    )
    rules: list[Rule] = Field(
        default_factory=list,
        description="Conditional rules, tried in order before `actions`; the first whose condition holds decides.",
    )
    risk: RiskSettings = Field(default_factory=RiskSettings, description="How the risk level is set.")
    auto_approve: AutoApproveSettings = Field(
        default_factory=AutoApproveSettings, description="Limits on what auto_approve may let through."
    )
    agents: AgentSettings = Field(default_factory=AgentSettings, description="Registered agents and routing.")
    approvals: ApprovalSettings = Field(
        default_factory=ApprovalSettings, description="Approval tickets: how long they wait, and what then."
    )
    concurrency: ConcurrencySettings = Field(
        default_factory=ConcurrencySettings, description="Leases that bound how many actions run at once."
    )
    recovery: RecoverySettings = Field(
        default_factory=RecoverySettings, description="What crash recovery does with actions never settled."
    )
    evaluators: list[EvaluatorSpec] = Field(
        default_factory=list,
        description="Checks that may object to any proposal (regex, list, or registered types); the most severe "
        "of their objections and the rule's tier wins.",
    )

    @field_validator("actions")
    @classmethod
    def _patterns_are_names(cls, value: dict[str, ActionTier]) -> dict[str, ActionTier]:
        for pattern in value:
            if not pattern or pattern.strip() != pattern:
                raise ValueError(f"action pattern {pattern!r} must be non-empty without surrounding spaces")
        return value

    def canonical(self) -> str:
        """Canonical JSON of this policy; its sha256 is the snapshot's identity."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def digest(self) -> str:
        return hashlib.sha256(self.canonical().encode()).hexdigest()


PolicySource = Policy | Mapping[str, Any] | str | Path


def load_policy(source: PolicySource) -> Policy:
    """Read a policy from a `Policy`, a dict, or a YAML/JSON file path. Raises `PolicyError` listing every problem."""
    if isinstance(source, Policy):
        return source
    if isinstance(source, Mapping):
        return _validate(dict(source), origin="policy", lines={})
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"cannot read policy file {str(path)!r}: {exc.strerror or exc}") from None
    return parse_policy_text(text, origin=str(path))


def read_yaml(text: str, *, origin: str) -> tuple[Any, dict[tuple[str, ...], int]]:
    """Parse YAML (JSON is YAML too) into data plus the line of every key path, for errors that point at the file."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise PolicyError(f"{origin}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return data, line_index(node)


def parse_policy_text(text: str, *, origin: str = "policy") -> Policy:
    """Parse YAML (JSON is YAML too) and validate it, naming the line of each problem."""
    data, lines = read_yaml(text, origin=origin)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolicyError(f"{origin}: a policy must be a mapping (keys such as default_tier, actions)")
    return _validate(data, origin=origin, lines=lines)


def _validate(data: dict[str, Any], *, origin: str, lines: dict[tuple[str, ...], int]) -> Policy:
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = tuple(str(part) for part in error["loc"])
            line = nearest_line(lines, loc)
            where = f"line {line}: " if line else ""
            path = ".".join(loc) or "(top level)"
            problems.append(f"{where}{path}: {_explain(error)}")
        raise PolicyError(f"{origin}: invalid policy ({len(problems)} problem(s))", problems) from None


def _owner(path: tuple[str, ...]) -> type[BaseModel] | None:
    """The model whose keys are allowed at `path` of a policy document, when it is one of ours."""
    model: type[BaseModel] = Policy
    parts = list(path)
    while parts:
        name = parts.pop(0)
        field = model.model_fields.get(name)
        if field is None:
            return None
        annotation = field.annotation
        origin = getattr(annotation, "__origin__", None)
        if origin in (list, dict) and parts:
            parts.pop(0)  # the position or key inside the list or mapping
            annotation = annotation.__args__[-1]  # type: ignore[union-attr]
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def _explain(error: Any) -> str:
    if error["type"] == "enum":
        allowed = ", ".join(tier.value for tier in ActionTier)
        return f"unknown tier {error['input']!r} (expected one of {allowed})"
    if error["type"] == "extra_forbidden":
        owner = _owner(tuple(str(part) for part in error["loc"][:-1]))
        if owner is None:
            return "unknown key"
        return f"unknown key (expected one of {', '.join(f.alias or n for n, f in owner.model_fields.items())})"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def line_index(node: yaml.Node | None) -> dict[tuple[str, ...], int]:
    """Map each key path of a YAML document to its 1-based line, so errors can point at the file."""
    index: dict[tuple[str, ...], int] = {}

    def walk(current: yaml.Node, path: tuple[str, ...]) -> None:
        index.setdefault(path, current.start_mark.line + 1)
        if isinstance(current, yaml.MappingNode):
            for key, value in current.value:
                child = (*path, str(key.value))
                index[child] = key.start_mark.line + 1
                walk(value, child)
        elif isinstance(current, yaml.SequenceNode):
            for position, item in enumerate(current.value):
                walk(item, (*path, str(position)))

    if node is not None:
        walk(node, ())
    return index


def nearest_line(lines: dict[tuple[str, ...], int], loc: tuple[str, ...]) -> int | None:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None
