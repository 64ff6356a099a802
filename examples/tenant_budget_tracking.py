"""Tenant budget tracking (async): two tenants' daily token budgets, an exhaustion, a restart and a new day.

Run it from the repository root with `python examples/tenant_budget_tracking.py`, or `cd examples && python
tenant_budget_tracking.py`. No API key and no network: a small scripted "LLM" returning fixed token counts stands
in for the provider, and a `ManualClock` stands in for the day, so crossing midnight takes no time. It starts from
a fresh `tenant_budget_tracking.db` next to this file each time (set ACP_DATABASE_URL to use another database; it
must be empty, since the demo's numbers start from an empty ledger).

What it shows, with the host's side of each call (the pre-call check, the call, the post-call record):

1. daily budgets for two tenants, and one for a user inside tenant-acme, set by `ControlPlaneSetup`;
2. calls for both tenants; the user budget refusing a call the tenant budget would still allow;
3. tenant-acme going over its $0.05: the call that took it over is in the ledger (its provider bill is real), so
   the ledger's total is the sum of every call made, and the next pre-call check is refused;
4. a restart: the control plane is closed and built again on the same database, and every total is still there;
5. midnight: the daily windows roll over and tenant-acme may call again, while the ledger keeps every call.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from agent_control_plane import (
    AsyncControlPlaneFacade,
    BudgetPeriod,
    ControlPlaneSetup,
    IdentityContext,
    ManualClock,
    ModelId,
    OrgId,
    TokenBudgetConfig,
    TokenBudgetExhaustedError,
    TokenBudgetState,
    TokenUsage,
    UserId,
)

HERE = Path(__file__).resolve().parent
DATABASE = HERE / "tenant_budget_tracking.db"

HAIKU = ModelId("claude-haiku-4-5")
SONNET = ModelId("claude-sonnet-4-5")
PRICES = {HAIKU: (Decimal(1), Decimal(5)), SONNET: (Decimal(3), Decimal(15))}
"""USD per million input and output tokens."""

ACME = IdentityContext(org_id=OrgId("tenant-acme"))
GLOBEX = IdentityContext(org_id=OrgId("tenant-globex"))
ALICE = IdentityContext(org_id=OrgId("tenant-acme"), user_id=UserId("alice"))
BOB = IdentityContext(org_id=OrgId("tenant-acme"), user_id=UserId("bob"))
CAROL = IdentityContext(org_id=OrgId("tenant-globex"), user_id=UserId("carol"))

BUDGETS = [
    TokenBudgetConfig(ACME, BudgetPeriod.DAILY, max_tokens=20_000, max_cost_usd="0.05"),
    TokenBudgetConfig(ALICE, BudgetPeriod.DAILY, max_tokens=8_000),
    TokenBudgetConfig(GLOBEX, BudgetPeriod.DAILY, max_tokens=10_000),
]


def price(model: ModelId, input_tokens: int, output_tokens: int) -> Decimal:
    per_in, per_out = PRICES[model]
    return (per_in * input_tokens + per_out * output_tokens) / 1_000_000


@dataclass(frozen=True)
class Request:
    """One prompt a tenant's user sends: the host's estimate before the call, the provider's bill after it."""

    who: IdentityContext
    task: str
    model: ModelId
    estimated_tokens: int
    input_tokens: int
    output_tokens: int

    @property
    def estimated_cost(self) -> Decimal:
        """The host's guess before the call: a quarter of the estimated tokens will be output."""
        output = self.estimated_tokens // 4
        return price(self.model, self.estimated_tokens - output, output)


class ScriptedLLM:
    """Stands in for the provider: each request returns the token counts it was scripted with, priced per model."""

    def __init__(self) -> None:
        self.calls = 0

    async def complete(self, request: Request) -> TokenUsage:
        self.calls += 1
        await asyncio.sleep(0)  # where a real client would await the provider
        return TokenUsage(
            model_id=request.model,
            input_tokens=request.input_tokens,
            output_tokens=request.output_tokens,
            estimated_cost_usd=price(request.model, request.input_tokens, request.output_tokens),
        )


@dataclass
class Ledger:
    """What the host itself saw billed, to check the control plane's ledger against."""

    tokens: int = 0
    cost: Decimal = Decimal(0)
    calls: int = 0

    def add(self, usage: TokenUsage) -> None:
        self.tokens += usage.tokens
        self.cost += usage.cost
        self.calls += 1


TODAY = [
    Request(ALICE, "summarize ticket #4411", HAIKU, 4_000, 3_200, 800),
    Request(CAROL, "classify 40 emails", HAIKU, 5_000, 4_000, 1_000),
    Request(BOB, "draft release notes", SONNET, 4_000, 2_500, 1_200),
    Request(CAROL, "translate the FAQ", HAIKU, 3_000, 2_400, 600),
    Request(ALICE, "answer a customer", HAIKU, 3_500, 2_600, 900),
    Request(ALICE, "summarize ticket #4415", HAIKU, 1_500, 1_200, 300),
    Request(CAROL, "tag 12 invoices", HAIKU, 1_500, 1_200, 300),
    Request(BOB, "rewrite the release notes", SONNET, 1_000, 3_000, 1_000),
]
"""The day's traffic. Bob's second request is estimated at 1000 tokens but bills 4000: that one goes over."""

COLUMNS = f"  {'time':<5}  {'who':<26} {'task':<26} {'model':<18} {'tokens':>6} {'cost $':>8}  outcome"


def who(identity: IdentityContext) -> str:
    return f"{identity.org_id}/{identity.user_id}" if identity.user_id else str(identity.org_id)


def row(clock: ManualClock, request: Request, usage: TokenUsage | None, outcome: str) -> str:
    tokens = "-" if usage is None else str(usage.tokens)
    cost = "-" if usage is None else f"{usage.cost:.4f}"
    return (
        f"  {clock.now():%H:%M}  {who(request.who):<26} {request.task:<26} {request.model:<18} "
        f"{tokens:>6} {cost:>8}  {outcome}"
    )


def show_states(title: str, states: list[TokenBudgetState]) -> None:
    print(f"\n{title}")
    print(f"  {'budget':<44} {'window':<10} {'tokens used':>17} {'cost used':>19}  state")
    for s in sorted(states, key=lambda s: s.config.describe()):
        c = s.config
        tokens = f"{s.tokens_used}" + ("" if c.max_tokens is None else f" / {c.max_tokens}")
        cost = f"${s.cost_used_usd:.4f}" + ("" if c.max_cost is None else f" / ${c.max_cost}")
        state = "OVER" if s.over else "exhausted" if s.exhausted else "ok"
        label = f"{c.budget_period.value} {c.identity.describe()}"
        print(f"  {label:<44} {s.window_start:%Y-%m-%d} {tokens:>17} {cost:>19}  {state}")


async def make_call(
    cp: AsyncControlPlaneFacade, clock: ManualClock, llm: ScriptedLLM, request: Request, ledger: dict[str, Ledger]
) -> None:
    """One governed model call: the pre-call check, the call, the post-call record; prints its row of the table."""
    clock.advance(timedelta(minutes=7))
    # Each step has a short transaction of its own: nothing holds the database while the provider answers.
    async with cp.token_budget_tracker() as tracker:
        check = await tracker.check_budget(
            request.who,
            estimated_tokens=request.estimated_tokens,
            estimated_cost_usd=request.estimated_cost,
            model_id=request.model,
        )
    if not check.allowed:
        print(row(clock, request, None, "REFUSED before the call: no call made"))
        print(f"  {'':5}  why: {check.reason.removeprefix('denied: ')}")
        return
    usage = await llm.complete(request)
    ledger[str(request.who.org_id)].add(usage)
    try:
        async with cp.token_budget_tracker() as tracker:
            await tracker.record_usage(None, request.who, usage)
    except TokenBudgetExhaustedError as exc:
        # The error left the tracker's block, so the block committed the ledger row: the provider billed this call.
        over = ", ".join(s.config.describe() for s in exc.over)
        print(row(clock, request, usage, f"recorded, then OVER BUDGET: {over}"))
        return
    print(row(clock, request, usage, "ok"))


async def summary_line(cp: AsyncControlPlaneFacade, identity: IdentityContext, period: BudgetPeriod) -> str:
    """One identity's use in the current `period` window, read from the ledger (not from the budgets' totals)."""
    async with cp.token_budget_tracker() as tracker:
        s = await tracker.usage_summary(identity, period)
    window = "all time" if s.window_start is None else f"{s.window_start:%Y-%m-%d}"
    models = ", ".join(f"{m.model_id} x{m.calls}" for m in s.by_model.values()) or "no calls"
    calls = f"{s.calls} call" + ("" if s.calls == 1 else "s")
    totals = f"{calls:>8} {s.total_tokens:>6} tokens ${s.cost_usd:.4f}"
    return f"{identity.describe():<18} {window:<10} {totals}  ({models})"


async def main() -> None:
    url = os.environ.get("ACP_DATABASE_URL")
    where = "the database at ACP_DATABASE_URL"
    if url is None:
        for leftover in HERE.glob("tenant_budget_tracking.db*"):
            leftover.unlink()
        url, where = f"sqlite:///{DATABASE}", f"{DATABASE.name} (fresh)"
    clock = ManualClock(datetime(2026, 3, 2, 21, 0, tzinfo=UTC))
    llm = ScriptedLLM()
    ledger = {str(ACME.org_id): Ledger(), str(GLOBEX.org_id): Ledger()}

    setup = ControlPlaneSetup(url, token_budget_configs=BUDGETS, clock=clock)
    cp = setup.build_async()
    try:
        async with cp.token_budget_tracker() as tracker:
            earlier = await tracker.usage_summary(IdentityContext(), BudgetPeriod.UNLIMITED)
        if earlier.calls:
            raise SystemExit(f"{where} already holds {earlier.calls} recorded calls; point it at an empty database")

        print(f"database {where}\nclock    {clock.now():%Y-%m-%d %H:%M} UTC (a ManualClock)\n\nbudgets")
        for config in BUDGETS:
            print(f"  {config.describe()}")

        print(f"\n1. the evening's calls\n{COLUMNS}")
        for request in TODAY:
            await make_call(cp, clock, llm, request, ledger)

        refused = Request(BOB, "one more summary", HAIKU, 200, 150, 50)
        async with cp.token_budget_tracker() as tracker:
            check = await tracker.check_budget(
                refused.who, estimated_tokens=refused.estimated_tokens, estimated_cost_usd=refused.estimated_cost
            )
        print(f"\n2. tenant-acme is over its budget: the next pre-call check for {who(BOB)}")
        print(f"  allowed={check.allowed}: {check.reason}")
        assert not check.allowed

        print("\n3. the ledger equals the provider's bill, the over-budget call included")
        for identity in (ACME, GLOBEX):
            mine = ledger[str(identity.org_id)]
            async with cp.token_budget_tracker() as tracker:
                s = await tracker.usage_summary(identity)
            same = s.total_tokens == mine.tokens and s.cost_usd == mine.cost and s.calls == mine.calls
            print(f"  {await summary_line(cp, identity, BudgetPeriod.DAILY)}")
            print(
                f"  {'':18} the host saw {mine.calls} calls billed, {mine.tokens} tokens ${mine.cost:.4f}: "
                f"{'same' if same else 'DIFFERENT'}"
            )
            assert same
        before = await cp.list_token_budgets()
        show_states("budgets before the restart", before)

        print("\n4. restart: close the control plane, build it again from the same database")
        await setup.aclose()
        # Building applies BUDGETS again (each is set to match); that changes no window's totals.
        setup = ControlPlaneSetup(url, token_budget_configs=BUDGETS, clock=clock)
        cp = setup.build_async()
        after = await cp.list_token_budgets()
        show_states("budgets after the restart", after)
        kept = [(s.budget_id, s.tokens_used, s.cost_used_usd) for s in after] == [
            (s.budget_id, s.tokens_used, s.cost_used_usd) for s in before
        ]
        print(f"  totals picked up where they left off: {kept}")
        assert kept
        async with cp.token_budget_tracker() as tracker:
            check = await tracker.check_budget(BOB, estimated_tokens=200, estimated_cost_usd=refused.estimated_cost)
        print(f"  {who(BOB)} is still refused: allowed={check.allowed}")
        assert not check.allowed

        midnight = clock.now().replace(hour=0, minute=0) + timedelta(days=1)
        clock.set(midnight + timedelta(minutes=5))
        print(f"\n5. the clock moves past midnight: {clock.now():%Y-%m-%d %H:%M} UTC")
        show_states("budgets in the new day", await cp.list_token_budgets())
        print(f"\n{COLUMNS}")
        for request in (refused, *TODAY[:3]):
            await make_call(cp, clock, llm, request, ledger)
        print("\nusage from the ledger: today's window, and all time")
        for identity in (ACME, GLOBEX):
            print(f"  {await summary_line(cp, identity, BudgetPeriod.DAILY)}")
            print(f"  {await summary_line(cp, identity, BudgetPeriod.UNLIMITED)}")
        async with cp.token_budget_tracker() as tracker:
            lifetime = await tracker.usage_summary(IdentityContext(), BudgetPeriod.UNLIMITED)
        print(f"\n{llm.calls} calls made in all; the ledger holds {lifetime.calls}: {lifetime.calls == llm.calls}")
        assert lifetime.calls == llm.calls
    finally:
        await setup.aclose()


if __name__ == "__main__":
    asyncio.run(main())
