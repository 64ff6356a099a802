"""Condition trees and evaluators: who decided each refund and email, and the trace of how.

Run it from the repository root with `python examples/condition_tree_evaluator_demo.py`, or `cd examples && python
condition_tree_evaluator_demo.py`. Offline; it starts from a fresh `condition_tree_evaluator_demo.db` next to this
file each time (set ACP_DATABASE_URL to use another database).

The policy composes `all` / `any` / `not` over a proposal's args, resource and cost (refunds over 500 need a human
unless the customer is verified and the order is our own), and adds two evaluators: the built-in `regex` type, and
a custom `refund-cap` type registered on this control plane's own `EvaluatorRegistry`.
"""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

from agent_control_plane import (
    ActionTier,
    ControlPlaneFacade,
    Decision,
    EvaluatorRegistry,
    EvaluatorSpec,
    Facts,
    PolicyEngine,
    TraceStep,
    Verdict,
)

HERE = Path(__file__).resolve().parent
DATABASE = HERE / "condition_tree_evaluator_demo.db"

POLICY: dict[str, Any] = {
    "default_tier": "always_approve",
    "actions": {"refund": "auto_approve", "send_email": "unrestricted"},
    "rules": [
        {
            "name": "large-refund-check",
            "when": {
                "all": [
                    {"field": "action", "eq": "refund"},
                    {"field": "cost", "gt": 500},  # the refund's amount is what it costs the session's budget
                    {
                        "any": [
                            {"not": {"field": "args.customer.verified", "eq": True}},
                            {"field": "resource", "glob": "orders/marketplace/*"},
                        ]
                    },
                ]
            },
            "tier": "always_approve",
            "reason": "refunds over 500 need a human unless the customer is verified and the order is our own",
        }
    ],
    "evaluators": [
        {"name": "no-secrets", "type": "regex", "field": "args.body", "pattern": r"(?i)\b(password|api[ _-]?key)\b"},
        {"name": "refund-cap", "type": "refund-cap", "config": {"caps": {"EUR": 2000, "USD": 2500}}},
    ],
}


class RefundCap:
    """A plug-in evaluator: blocks refunds above a per-currency cap read from the policy's `config`."""

    def __init__(self, spec: EvaluatorSpec) -> None:
        self.name = spec.name
        self.caps = {currency: Decimal(str(cap)) for currency, cap in spec.config["caps"].items()}

    def evaluate(self, facts: Facts) -> Verdict:
        currency = facts.args.get("currency")
        if facts.action != "refund" or currency is None:
            return Verdict(self.name)
        cap = self.caps.get(currency)
        if cap is None:
            return Verdict(self.name, ActionTier.BLOCKED, f"no refund cap configured for {currency} (fail closed)")
        if facts.cost > cap:
            return Verdict(self.name, ActionTier.BLOCKED, f"refund of {facts.cost} {currency} is over the {cap} cap")
        return Verdict(self.name)


def show_trace(trace: tuple[TraceStep, ...]) -> str:
    return " | ".join(f"{s.step} {s.name}: {'MATCH' if s.matched else 'no'}" for s in trace)


def refund(amount: str, verified: bool, order: str, currency: str = "EUR") -> tuple[str, dict[str, Any], str, Decimal]:
    return "refund", {"currency": currency, "customer": {"verified": verified}}, order, Decimal(amount)


PROPOSALS = [
    refund("120", verified=False, order="orders/shop/1001"),
    refund("800", verified=False, order="orders/shop/1002"),
    refund("800", verified=True, order="orders/shop/1003"),
    refund("800", verified=True, order="orders/marketplace/77"),
    refund("2400", verified=True, order="orders/shop/1004"),
    ("send_email", {"to": "ann@example.com", "body": "refund sent"}, "mail/ann", Decimal(0)),
    ("send_email", {"to": "ann@example.com", "body": "password: hunter2"}, "mail/ann", Decimal(0)),
]


def main() -> None:
    url = os.environ.get("ACP_DATABASE_URL")
    if url is None:
        for leftover in HERE.glob("condition_tree_evaluator_demo.db*"):
            leftover.unlink()
        url = f"sqlite:///{DATABASE}"

    registry = EvaluatorRegistry(discover=False)  # this control plane's own; no other one sees refund-cap
    registry.register("refund-cap", RefundCap)

    decisions: list[Decision] = []
    with ControlPlaneFacade.from_database_url(url, policy=POLICY, evaluators=registry) as cp:
        cp.setup()
        sid = cp.open_session("support desk", agent_id="support-bot", max_cost=Decimal("10000"))
        print(f"#  {'action':<11} {'cost':>5}  {'resource':<21} {'tier':<15} {'allowed':<8} decided by")
        for number, (action, args, resource, cost) in enumerate(PROPOSALS, start=1):
            d = cp.propose(sid, action, args=args, resource=resource, cost=cost)
            decisions.append(d)
            allowed = "yes" if d.allowed else "no"
            print(f"{number}  {action:<11} {cost:>5}  {resource:<21} {d.tier.value:<15} {allowed:<8} {d.rule}")
            print(f"   args   {json.dumps(args, separators=(',', ':'))}\n   why    {d.reason}")
            print(f"   trace  {show_trace(d.trace)}")
            if d.allowed:
                cp.settle(d.proposal_id, actual_cost=cost)

    # The same engine, used directly: pure, no database, no session. Handy in tests and in `acp policy explain`.
    engine = PolicyEngine(POLICY, registry=registry)
    facts = Facts(
        "refund", {"currency": "GBP", "customer": {"verified": True}}, resource="orders/shop/9", cost=Decimal(90)
    )
    choice = engine.decide(facts)
    print(f"\nPolicyEngine.decide(refund 90 GBP): {choice.tier.value}, by {choice.step} {choice.rule!r}")
    print(f"   {choice.describe(facts.action)}\n   trace  {show_trace(choice.trace)}")

    assert [(d.tier, d.allowed, d.rule) for d in decisions] == [
        (ActionTier.AUTO_APPROVE, True, "refund"),  # small: the actions map decides
        (ActionTier.ALWAYS_APPROVE, False, "large-refund-check"),  # over 500, customer not verified
        (ActionTier.AUTO_APPROVE, True, "refund"),  # over 500, verified, our own order
        (ActionTier.ALWAYS_APPROVE, False, "large-refund-check"),  # over 500, a marketplace order
        (ActionTier.BLOCKED, False, "refund-cap"),  # the plug-in's cap
        (ActionTier.UNRESTRICTED, True, "send_email"),
        (ActionTier.BLOCKED, False, "no-secrets"),  # the built-in regex evaluator
    ], decisions
    assert (choice.tier, choice.rule, choice.step) == (ActionTier.BLOCKED, "refund-cap", "evaluator")


if __name__ == "__main__":
    main()
