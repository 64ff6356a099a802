"""Token governance: model access by tier, budgets with allowed models, reservations, and governed model calls.

Run it from the repository root with `python examples/token_governance_demo.py`, or `cd examples && python
token_governance_demo.py`. No API key and no network: a small scripted "LLM" returning fixed token counts stands
in for the provider. It starts from a fresh `token_governance_demo.db` next to this file each time (set
ACP_DATABASE_URL to use another database). The model policy is `model_policy.yaml`, beside this file.

1. model access: who may call which model, and why not (each refusal is logged as `model_access.denied`);
2. a pre-call check that reserves its estimate (`reserve=True`), then the usage recorded against that
   reservation, and a second reservation released because its call was never made;
3. governed proposals: one `propose(..., identity=, model_id=, estimated_tokens=, cost=)` decides tool policy,
   session budget, model access and token budget at once: one allowed, one refused for its model, one refused
   for its token budget; the allowed one is settled with the provider's `TokenUsage`;
4. the session's event log replayed, and its hash chain verified.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from agent_control_plane import (
    BudgetPeriod,
    ControlPlaneFacade,
    ControlPlaneSetup,
    DecisionCode,
    IdentityContext,
    ManualClock,
    ModelId,
    OrgId,
    TeamId,
    TokenBudgetConfig,
    TokenBudgetState,
    TokenUsage,
    UserId,
)

HERE = Path(__file__).resolve().parent
DATABASE = HERE / "token_governance_demo.db"
MODEL_POLICY = HERE / "model_policy.yaml"

HAIKU = ModelId("claude-haiku-4-5")
SONNET = ModelId("claude-sonnet-4-5")
OPUS = ModelId("claude-opus-4-1")
UNLISTED = ModelId("gpt-4o")
PRICES = {HAIKU: (Decimal(1), Decimal(5)), SONNET: (Decimal(3), Decimal(15)), OPUS: (Decimal(15), Decimal(75))}
"""USD per million input and output tokens."""

ALICE = IdentityContext(org_id=OrgId("tenant-acme"), user_id=UserId("alice"))
CARL = IdentityContext(org_id=OrgId("tenant-acme"), team_id=TeamId("support"), user_id=UserId("carl"))
BOB = IdentityContext(org_id=OrgId("tenant-globex"), user_id=UserId("bob"))

BUDGETS = [
    TokenBudgetConfig(IdentityContext(org_id=OrgId("tenant-acme")), max_tokens=30_000, max_cost_usd="0.50"),
    TokenBudgetConfig(
        IdentityContext(org_id=OrgId("tenant-acme"), team_id=TeamId("support")),
        max_tokens=5_000,
        allowed_models=["claude-haiku-*"],  # the support team stays on the cheap model, whatever acme's grant
    ),
    TokenBudgetConfig(IdentityContext(org_id=OrgId("tenant-globex")), max_tokens=10_000),
]

POLICY: dict[str, Any] = {
    "default_tier": "always_approve",
    "actions": {"draft_reply": "auto_approve", "summarize_thread": "unrestricted"},
}
"""The tool policy: which actions the support bot may take on its own."""


def price(model: ModelId, input_tokens: int, output_tokens: int) -> Decimal:
    per_in, per_out = PRICES[model]
    return (per_in * input_tokens + per_out * output_tokens) / 1_000_000


class ScriptedLLM:
    """Stands in for the provider: each prompt gets the token counts it was scripted with, priced per model."""

    def __init__(self, script: dict[str, tuple[int, int]]) -> None:
        self.script = script

    def complete(self, model: ModelId, prompt: str) -> tuple[str, TokenUsage]:
        tokens_in, tokens_out = self.script[prompt]
        usage = TokenUsage(model, tokens_in, tokens_out, estimated_cost_usd=price(model, tokens_in, tokens_out))
        return f"({model}'s answer to {prompt!r})", usage


def who(identity: IdentityContext) -> str:
    return "/".join(part for part in (identity.org_id, identity.team_id, identity.user_id) if part)


def show_states(states: tuple[TokenBudgetState, ...] | list[TokenBudgetState], indent: str = "    ") -> None:
    for s in sorted(states, key=lambda s: s.config.describe()):
        cap = "" if s.config.max_tokens is None else f" of {s.config.max_tokens}"
        print(
            f"{indent}{s.config.identity.describe():<30} used {s.tokens_used:>5}{cap:<9} "
            f"reserved {s.tokens_reserved:>5}   ${s.cost_used_usd:.4f} used"
        )


def model_access(cp: ControlPlaneFacade, session_id: str) -> None:
    print("1. model access (model_policy.yaml, and the budgets' allowed_models)")
    checks = [(ALICE, SONNET), (ALICE, OPUS), (BOB, SONNET), (BOB, HAIKU), (CARL, SONNET), (CARL, UNLISTED)]
    with cp.token_budget_tracker() as tracker:
        for identity, model in checks:
            access = tracker.check_model_access(identity, model, session_id=session_id)
            verdict = "allowed" if access.allowed else "DENIED "
            tier = access.tier.value if access.tier is not None else "-"
            print(f"  {who(identity):<24} {model:<18} {tier:<10} {verdict}  {access.reason}")


def reservations(cp: ControlPlaneFacade, llm: ScriptedLLM, session_id: str) -> None:
    print("\n2. a pre-call check that reserves its estimate, for", who(CARL))
    prompt = "summarize ticket #5120"
    with cp.token_budget_tracker() as tracker:
        check = tracker.check_budget(
            CARL, estimated_tokens=3_000, estimated_cost_usd="0.006", model_id=HAIKU, reserve=True,
            session_id=session_id,
        )  # fmt: skip
        print(f"  check_budget(3000 tokens, reserve=True): {check.reason}  reservation {check.reservation_id}")
        show_states(tracker.get_budget_states(CARL))
    assert check.allowed and check.reservation_id is not None
    # No transaction is open while the provider works: the reservation holds the room meanwhile.
    _, usage = llm.complete(HAIKU, prompt)
    with cp.token_budget_tracker() as tracker:
        record = tracker.record_usage(session_id, CARL, usage, reservation_id=check.reservation_id)
    print(f"  the call used {usage.tokens} tokens (${usage.cost}); record_usage(reservation_id=…) gives the rest back")
    show_states(record.states)

    with cp.token_budget_tracker() as tracker:
        second = tracker.check_budget(CARL, estimated_tokens=1_500, model_id=HAIKU, reserve=True)
        assert second.reservation_id is not None
        print(f"  check_budget(1500 tokens, reserve=True): {second.reason}; then the user cancels the request")
        show_states(tracker.get_budget_states(CARL))
        released = tracker.release_reservation(second.reservation_id)
        again = tracker.release_reservation(second.reservation_id)
        print(f"  release_reservation: {released}; released again: {again} (a reservation is given back once)")
        show_states(tracker.get_budget_states(CARL))
    assert released and not again


def governed_calls(cp: ControlPlaneFacade, llm: ScriptedLLM, session_id: str) -> None:
    print("\n3. governed proposals: tool policy, session budget, model access and token budget in one decision")
    proposals = [
        ("draft_reply", ALICE, SONNET, 4_000, "0.03", "draft a reply to ticket #4411"),
        ("draft_reply", BOB, SONNET, 2_000, "0.015", "draft a reply to ticket #9002"),
        ("summarize_thread", CARL, HAIKU, 4_000, "0.008", "summarize thread #77"),
    ]
    decided = []
    for action, identity, model, tokens, cost, prompt in proposals:
        d = cp.propose(
            session_id, action, args={"prompt": prompt}, identity=identity, model_id=model, estimated_tokens=tokens,
            cost=cost,
        )  # fmt: skip
        decided.append((d, model, prompt))
        verdict = "ALLOW" if d.allowed else "DENY "
        print(f"  {verdict} {action:<16} {who(identity):<24} {model:<18} {tokens:>5} tokens  code={d.code.value}")
        print(f"        {d.reason}")
    assert [d.code for d, _, _ in decided] == [
        DecisionCode.ALLOWED,
        DecisionCode.MODEL_ACCESS_DENIED,
        DecisionCode.TOKEN_BUDGET_EXCEEDED,
    ]
    d, model, prompt = decided[0]
    assert d.proposal_id is not None
    answer, usage = llm.complete(model, prompt)  # the host makes the call the decision allowed...
    settled = cp.settle(d.proposal_id, actual_cost=usage.cost, result={"answer": answer}, token_usage=usage)
    assert settled.token_usage is not None
    print(
        f"  settle(token_usage={usage.tokens} tokens, ${usage.cost}): {settled.outcome.value}, "
        f"reserved ${settled.reserved_cost}, charged ${settled.actual_cost}"
    )
    show_states(settled.token_usage.states)
    budget = cp.get_remaining_budget(session_id)
    actions = budget["action_count"]
    print(f"  session budget: ${budget['spent_cost']} spent of ${budget['max_cost']:.2f}, {actions} action(s)")


def summary(kind: str, payload: dict[str, Any]) -> str:
    """One line on what an event says."""
    if kind == "session.opened":
        return f"{payload['name']!r} for {payload['agent_id']}, budget {payload['max_cost']}"
    if kind == "model_access.denied":
        tier = payload["tier"] or "not in the model policy"
        return f"{who(IdentityContext(**payload['identity']))} may not use {payload['model_id']} ({tier})"
    if kind == "token_usage.recorded":
        held = "" if payload["reservation_id"] is None else ", against its reservation"
        return f"{payload['model_id']} {payload['total_tokens']} tokens ${payload['cost_usd']}{held}"
    if kind == "proposal.decided":
        return f"{payload['action']} on {payload['model_id']} -> {payload['tier']} ({payload['code']})"
    if kind == "proposal.settled":
        return f"{payload['action']} {payload['outcome']}, cost {payload['actual_cost']}"
    if kind == "session.status_changed":
        return f"{payload['from']} -> {payload['to']} ({payload['reason']})"
    return ""


def main() -> None:
    url = os.environ.get("ACP_DATABASE_URL")
    where = "the database at ACP_DATABASE_URL"
    if url is None:
        for leftover in HERE.glob("token_governance_demo.db*"):
            leftover.unlink()
        url, where = f"sqlite:///{DATABASE}", f"{DATABASE.name} (fresh)"
    llm = ScriptedLLM(
        {
            "summarize ticket #5120": (2_200, 600),
            "draft a reply to ticket #4411": (3_100, 900),
        }
    )
    setup = ControlPlaneSetup(
        url,
        policy=POLICY,
        token_budget_configs=BUDGETS,
        model_policy=MODEL_POLICY,
        clock=ManualClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC)),
    )
    try:
        cp = setup.build()
        with cp.token_budget_tracker() as tracker:
            earlier = tracker.usage_summary(IdentityContext(), BudgetPeriod.UNLIMITED).calls
        if earlier:
            raise SystemExit(f"{where} already holds {earlier} recorded calls; point it at an empty database")
        sid = cp.open_session("support desk", agent_id="support-bot", max_cost="1.00")
        print(f"database     {where}\nmodel policy {MODEL_POLICY.name}\nsession      {sid}\nbudgets")
        for config in BUDGETS:
            models = "" if config.models is None else f", models {', '.join(config.models)}"
            print(f"  {config.describe()}{models}")
        print()

        model_access(cp, sid)
        reservations(cp, llm, sid)
        governed_calls(cp, llm, sid)

        cp.close_session(sid, reason="shift over")
        events = cp.replay(sid)
        print(f"\n4. event log of session {sid} ({len(events)} events)")
        for event in events:
            print(f"  {event.seq:>2} {event.kind:<22} {summary(event.kind, event.payload)}")
        report = cp.verify(sid)
        print(f"verify: ok={report.ok} ({report.events_checked} events checked)")
        print("\ndaily token budgets at the end")
        show_states(cp.list_token_budgets(), indent="  ")
    finally:
        setup.close()

    kinds = [event.kind for event in events]
    assert kinds.count("model_access.denied") == 5, kinds  # four checks, and the proposal refused its model
    assert kinds.count("token_usage.recorded") == 2, kinds
    assert report.ok


if __name__ == "__main__":
    main()
