"""`acp budgets …` and `acp usage`: cap the tokens and cost of an org, team or user, and see what they used.

A budget is known by whom it covers (org, team, user; by subset, so an org's budget counts every team and user of
the org) and its period. Window times are printed in UTC, like every other `acp` time; `--json` has them in ISO-8601.
"""

from __future__ import annotations

from dataclasses import asdict
from decimal import Decimal
from typing import Annotated, Any

import typer
from rich.table import Table

from agent_control_plane._cli_base import (
    add_row,
    detail_table,
    echo_json,
    fail,
    format_amount,
    format_limit,
    format_when,
    get_console,
    get_plane,
    make_table,
)
from agent_control_plane.types.identity import IdentityContext, OrgId, TeamId, UserId
from agent_control_plane.types.tokens import (
    BudgetPeriod,
    TokenBudgetConfig,
    TokenBudgetState,
    UsageSummary,
)
from agent_control_plane.types.values import to_money

ANY_PART = "*"
ANY_MODEL = "any"

budgets_app = typer.Typer(
    no_args_is_help=True,
    help=(
        "Cap the tokens and cost that an org, team or user may spend on model calls per day, week, month or ever, "
        "and limit the models they may use. Budgets are read on every call, so a change applies at once in every "
        "process sharing the database."
    ),
)

Org = Annotated[
    str | None,
    typer.Option("--org", help="The org (tenant) id. Alone, it covers every team and user of the org."),
]
Team = Annotated[str | None, typer.Option("--team", help="The team id (with --org: that team of that org).")]
User = Annotated[str | None, typer.Option("--user", help="The user id (with --org / --team: that user of them).")]
Everyone = Annotated[
    bool,
    typer.Option("--everyone", help="The budget covering all identities: every call counts (no --org/--team/--user)."),
]
Period = Annotated[
    BudgetPeriod,
    typer.Option(
        "--period",
        help="The window the budget counts in: a calendar day, week (from Monday) or month in its time zone, or "
        "unlimited (never resets).",
    ),
]


def _identity(org: str | None, team: str | None, user: str | None) -> IdentityContext:
    return IdentityContext(
        user_id=None if user is None else UserId(user),
        org_id=None if org is None else OrgId(org),
        team_id=None if team is None else TeamId(team),
    )


def _covered(org: str | None, team: str | None, user: str | None, everyone: bool) -> IdentityContext:
    """Whom a budget covers; naming nobody is refused unless asked for with --everyone (it caps every call)."""
    named = org is not None or team is not None or user is not None
    if named and everyone:
        fail("--everyone covers all identities: give it without --org, --team and --user")
    if not named and not everyone:
        fail(
            "say whom the budget covers with --org, --team and/or --user "
            "(or --everyone for the budget covering all identities)"
        )
    return _identity(org, team, user)


def _part(value: str | None) -> str:
    return ANY_PART if value is None else value


def _models(config: TokenBudgetConfig) -> str:
    return ANY_MODEL if config.models is None else ", ".join(config.models)


def _resets(state: TokenBudgetState) -> str:
    return "never" if state.window_end is None else format_when(state.window_end)


def _budget_json(state: TokenBudgetState) -> dict[str, Any]:
    return {**asdict(state), "exhausted": state.exhausted, "over": state.over}


# list -------------------------------------------------------------------------------------------------------
@budgets_app.command("list")
def budgets_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array instead of a table.")] = False,
) -> None:
    """List every token budget with its caps and what its current window used, reserved and has left.

    Also when the window resets (UTC) and the models it allows. `*` in org, team or user means any; ∞ means no cap.
    """
    found = get_plane(ctx).list_token_budgets()
    if as_json:
        echo_json([_budget_json(state) for state in found])
        return
    if not found:
        get_console().print("no token budgets (add one with `acp budgets set`)", markup=False)
        return
    table = make_table(
        "org",
        "team",
        "user",
        "period",
        "time zone",
        "max tokens",
        "max cost",
        "tokens used / reserved / left",
        "cost used / reserved / left",
        "resets (UTC)",
        "models",
    )
    for state in found:
        config, identity = state.config, state.config.identity
        add_row(
            table,
            _part(identity.org_id),
            _part(identity.team_id),
            _part(identity.user_id),
            config.budget_period.value,
            config.timezone,
            format_limit(config.max_tokens),
            format_limit(config.max_cost),
            f"{state.tokens_used} / {state.tokens_reserved} / {format_limit(state.remaining_tokens)}",
            f"{format_amount(state.cost_used_usd)} / {format_amount(state.cost_reserved_usd)} / "
            f"{format_limit(state.remaining_cost_usd)}",
            _resets(state),
            _models(config),
        )
    get_console().print(table)


# set --------------------------------------------------------------------------------------------------------
def _changes(before: TokenBudgetConfig, after: TokenBudgetConfig) -> list[str]:
    """What an update changes, as `max tokens 1000 → 2000`."""
    fields = [
        ("max tokens", format_limit(before.max_tokens), format_limit(after.max_tokens)),
        ("max cost", format_limit(before.max_cost), format_limit(after.max_cost)),
        ("models", _models(before), _models(after)),
        ("time zone", before.timezone, after.timezone),
    ]
    return [f"{name} {old} → {new}" for name, old, new in fields if old != new]


def _budget_detail(state: TokenBudgetState) -> Table:
    config = state.config
    window = f"{format_when(state.window_start)} → {_resets(state)}"
    if state.window_end is None:
        window = "all time (never resets)"
    fields = [
        ("budget", state.budget_id),
        ("covers", config.identity.describe()),
        ("period", config.budget_period.value),
        ("time zone", config.timezone),
        ("max tokens", format_limit(config.max_tokens)),
        ("max cost", format_limit(config.max_cost)),
        ("models", _models(config)),
        ("window (UTC)", window),
        ("tokens used", str(state.tokens_used)),
        ("tokens reserved", str(state.tokens_reserved)),
        ("tokens left", format_limit(state.remaining_tokens)),
        ("cost used", format_amount(state.cost_used_usd)),
        ("cost reserved", format_amount(state.cost_reserved_usd)),
        ("cost left", format_limit(state.remaining_cost_usd)),
    ]
    return detail_table(fields)


@budgets_app.command("set")
def budgets_set(
    ctx: typer.Context,
    *,
    org: Org = None,
    team: Team = None,
    user: User = None,
    everyone: Everyone = False,
    period: Period,
    max_tokens: Annotated[
        int | None,
        typer.Option("--max-tokens", min=0, help="At most this many tokens per window (default: no cap)."),
    ] = None,
    max_cost: Annotated[
        str | None,
        typer.Option("--max-cost", help="At most this cost in USD per window, e.g. 5 or 0.25 (default: no cap)."),
    ] = None,
    allow_models: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-model",
            metavar="MODEL",
            help="The only models these identities may call: a model id or a glob such as 'claude-haiku-*'. "
            "Repeat for several (default: any model).",
        ),
    ] = None,
    timezone: Annotated[
        str,
        typer.Option("--timezone", help="The IANA time zone whose midnights start the windows, e.g. Europe/Berlin."),
    ] = "UTC",
) -> None:
    """Create the token budget of an identity and period, or update it, and print its current window.

    The budget becomes exactly what the options say: a cap left out is no cap, no --allow-model allows any model.

    A new budget's window counts the usage already recorded in it. Logged on the control stream.
    """
    identity = _covered(org, team, user, everyone)
    cost = to_money(max_cost, "--max-cost", allow_none=True)
    config = TokenBudgetConfig(
        identity,
        period,
        max_tokens=max_tokens,
        # As written back (5.00 and 5E+0 as 5), so the messages show what `acp budgets list` will.
        max_cost_usd=None if cost is None else Decimal(format_amount(cost)),
        allowed_models=allow_models,
        timezone=timezone,
    )
    plane = get_plane(ctx)
    before = next((s.config for s in plane.list_token_budgets() if s.budget_id == config.budget_id), None)
    # create/update rather than set: if another process changed the budget meanwhile, this refuses instead of
    # reporting the wrong one.
    if before is None:
        state, verb = plane.create_token_budget(config), "created"
    else:
        state, changed = plane.update_token_budget(config), _changes(before, config)
        verb = f"updated ({', '.join(changed)})" if changed else "unchanged"
    console = get_console()
    console.print(f"{verb}: {config.describe()}", markup=False, soft_wrap=True)
    console.print(_budget_detail(state))


# delete -----------------------------------------------------------------------------------------------------
@budgets_app.command("delete")
def budgets_delete(
    ctx: typer.Context,
    *,
    org: Org = None,
    team: Team = None,
    user: User = None,
    everyone: Everyone = False,
    period: Period,
) -> None:
    """Delete the token budget of exactly this identity and period; the usage ledger keeps every recorded call.

    Budgets of wider identities that cover this one stay. Logged on the control stream.
    """
    config = get_plane(ctx).delete_token_budget(_covered(org, team, user, everyone), period)
    get_console().print(f"deleted: {config.describe()}", markup=False, soft_wrap=True)


# usage ------------------------------------------------------------------------------------------------------
def _usage_json(summary: UsageSummary, budgets: tuple[TokenBudgetState, ...]) -> dict[str, Any]:
    return {**asdict(summary), "budgets": [_budget_json(state) for state in budgets]}


def _usage_heading(summary: UsageSummary, timezone: str) -> str:
    who = summary.identity.describe()
    if summary.window_start is None or summary.window_end is None:
        return f"usage of {who}, all time"
    return (
        f"usage of {who}, {summary.period.value} window {format_when(summary.window_start)} → "
        f"{format_when(summary.window_end)} UTC (time zone {timezone})"
    )


def _usage_table(summary: UsageSummary) -> Table:
    table = make_table("model", "calls", "input tokens", "output tokens", "total tokens", "cost")
    for model in summary.by_model.values():
        add_row(
            table,
            model.model_id,
            str(model.calls),
            str(model.input_tokens),
            str(model.output_tokens),
            str(model.total_tokens),
            format_amount(model.cost_usd),
        )
    table.add_section()
    add_row(
        table,
        "total",
        str(summary.calls),
        str(summary.input_tokens),
        str(summary.output_tokens),
        str(summary.total_tokens),
        format_amount(summary.cost_usd),
    )
    return table


def _covering_table(summary: UsageSummary, budgets: tuple[TokenBudgetState, ...]) -> Table:
    table = make_table("covers", "period", "tokens used / max", "cost used / max", "resets (UTC)")
    table.title, table.title_justify = f"budgets covering {summary.identity.describe()}", "left"
    for state in budgets:
        config = state.config
        add_row(
            table,
            config.identity.describe(),
            config.budget_period.value,
            f"{state.tokens_used} / {format_limit(config.max_tokens)}",
            f"{format_amount(state.cost_used_usd)} / {format_limit(config.max_cost)}",
            _resets(state),
        )
    return table


def usage(
    ctx: typer.Context,
    org: Annotated[str | None, typer.Option("--org", help="Only calls of this org (tenant).")] = None,
    team: Annotated[str | None, typer.Option("--team", help="Only calls of this team.")] = None,
    user: Annotated[str | None, typer.Option("--user", help="Only calls of this user.")] = None,
    period: Annotated[
        BudgetPeriod,
        typer.Option("--period", help="The current calendar day, week (from Monday) or month, or unlimited: all time."),
    ] = BudgetPeriod.DAILY,
    timezone: Annotated[
        str, typer.Option("--timezone", help="The IANA time zone whose midnights start the window, e.g. Europe/Berlin.")
    ] = "UTC",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON object: the totals, per model, and the covering budgets.")
    ] = False,
) -> None:
    """Show what the model calls of an org, team or user used in the current window, per model, and their budgets.

    Read from the usage ledger; without --org, --team or --user, everybody's calls are counted.
    """
    identity = _identity(org, team, user)
    with get_plane(ctx).token_budget_tracker() as tracker:
        summary = tracker.usage_summary(identity, period, timezone=timezone)
        budgets = tracker.get_budget_states(identity)
    if as_json:
        echo_json(_usage_json(summary, budgets))
        return
    console = get_console()
    console.print(_usage_heading(summary, timezone), markup=False, soft_wrap=True)
    if summary.by_model:
        console.print(_usage_table(summary))
    else:
        console.print("no model calls recorded in this window", markup=False)
    if budgets:
        console.print(_covering_table(summary, budgets))
    else:
        console.print(f"no token budget covers {identity.describe()}", markup=False)
