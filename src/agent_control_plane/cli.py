"""`acp`: the command line over `ControlPlaneFacade` for schema, sessions, event logs and kill switches.

A thin adapter: every command is one or two facade calls plus formatting. The control plane is built only when
a command needs the database, and closed when the command ends. Exit codes: 0 success, 1 a verified event log
is broken, 2 bad input or an error from the control plane (printed as `error: …`, never as a traceback).
"""

from __future__ import annotations

import importlib
from dataclasses import asdict
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from agent_control_plane import (
    ControlPlaneError,
    EventKind,
    KillScope,
    KillSwitchInfo,
    SessionInfo,
    SessionStatus,
    VerifyReport,
)
from agent_control_plane._cli_base import (
    Settings,
    add_row,
    detail_table,
    echo_json,
    fail,
    format_amount,
    format_limit,
    format_when,
    get_console,
    get_plane,
    json_text,
    make_table,
    missing_sqlite_file,
    parse_duration,
)
from agent_control_plane.cli_budgets import budgets_app, usage
from agent_control_plane.cli_policy import policy_app
from agent_control_plane.cli_tickets import tickets_app
from agent_control_plane.integrations._mcp_command import mcp_proxy

SUMMARY_WIDTH = 80

# The payload keys worth a glance in a replay table; the full payload is in `--json`.
_BUDGET_KEYS = ("period", "max_tokens", "max_cost_usd", "identity", "allowed_models", "timezone")
_SUMMARY_KEYS: dict[str, tuple[str, ...]] = {
    EventKind.SESSION_OPENED: ("name", "agent_id", "max_cost", "max_action_count"),
    EventKind.SESSION_STATUS_CHANGED: ("from", "to", "reason"),
    EventKind.PROPOSAL_DECIDED: ("action", "resource", "tier", "code", "cost"),
    EventKind.PROPOSAL_SETTLED: ("action", "outcome", "reserved_cost", "actual_cost"),
    EventKind.KILL_ENGAGED: ("scope", "target", "by", "reason"),
    EventKind.KILL_RELEASED: ("scope", "target", "by", "reason"),
    EventKind.TOKEN_USAGE_RECORDED: ("model_id", "total_tokens", "cost_usd", "over_budget", "identity"),
    EventKind.MODEL_ACCESS_DENIED: ("model_id", "identity", "tier", "reason"),
    EventKind.TOKEN_BUDGET_CREATED: _BUDGET_KEYS,
    EventKind.TOKEN_BUDGET_UPDATED: _BUDGET_KEYS,
    EventKind.TOKEN_BUDGET_DELETED: _BUDGET_KEYS,
}


class _RootGroup(TyperGroup):
    """The `acp` group: a `ControlPlaneError` from any command becomes `error: …` and exit code 2."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except ControlPlaneError as exc:
            fail(str(exc))


app = typer.Typer(
    name="acp",
    cls=_RootGroup,
    no_args_is_help=True,
    # Locals of a crashing frame can hold the database URL and its password.
    pretty_exceptions_show_locals=False,
    help=(
        "Govern AI agents from the shell: set up the control plane's database, inspect sessions and their "
        "event logs, verify the logs' hash chains, engage or release kill switches, check policies, decide "
        "approval tickets, "
        "and set token budgets and see the model usage they count."
    ),
    epilog="Exit codes: 0 success, 1 an event log failed verification, 2 bad input or a control plane error.",
)
db_app = typer.Typer(no_args_is_help=True, help="Create, upgrade and inspect the control plane's database schema.")
sessions_app = typer.Typer(no_args_is_help=True, help="Inspect sessions: their status, budget and event count.")
events_app = typer.Typer(
    no_args_is_help=True,
    help="Read a session's event log and verify that nobody edited, deleted or moved an event.",
)
kill_app = typer.Typer(
    no_args_is_help=True,
    help=(
        "Engage, release and list kill switches. An engaged switch denies every new proposal it covers, in "
        "every process sharing the database, until it is released."
    ),
)
app.add_typer(db_app, name="db")
app.add_typer(sessions_app, name="sessions")
app.add_typer(events_app, name="events")
app.add_typer(kill_app, name="kill")
app.add_typer(policy_app, name="policy")
app.add_typer(tickets_app, name="tickets")
app.add_typer(budgets_app, name="budgets")
app.command("usage")(usage)
app.command("mcp-proxy")(mcp_proxy)


SessionArgument = Annotated[str, typer.Argument(metavar="SESSION", help="The session id.")]
AgentArgument = Annotated[str, typer.Argument(metavar="AGENT", help="The agent id.")]


@app.callback()
def _root(
    ctx: typer.Context,
    database_url: Annotated[
        str,
        typer.Option("--database-url", envvar="ACP_DATABASE_URL", help="sqlite:///path.db or postgresql://…"),
    ] = "sqlite:///./acp.db",
    table_prefix: Annotated[
        str,
        typer.Option("--table-prefix", envvar="ACP_TABLE_PREFIX", help="Prefix of the control plane's tables."),
    ] = "acp_",
    schema: Annotated[
        str | None, typer.Option("--schema", envvar="ACP_SCHEMA", help="Database schema holding the tables.")
    ] = None,
) -> None:
    ctx.obj = Settings(database_url, table_prefix, schema)


def _summary(kind: str, payload: dict[str, Any]) -> str:
    parts = []
    for key in _SUMMARY_KEYS.get(kind, tuple(payload)):
        value = payload.get(key)
        if value is None or value == []:
            continue
        parts.append(f"{key}={value if isinstance(value, str) else json_text(value)}")
    text = " ".join(parts)
    return text if len(text) <= SUMMARY_WIDTH else text[: SUMMARY_WIDTH - 1] + "…"


# db ---------------------------------------------------------------------------------------------------------
@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Create the control plane's tables, or upgrade them to this version's schema (safe to run again)."""
    revision = get_plane(ctx, creates=True).setup()
    get_console().print(f"schema is at revision {revision}", markup=False)


@db_app.command("current")
def db_current(ctx: typer.Context) -> None:
    """Show the schema revision the database is at."""
    settings = ctx.find_object(Settings)
    assert settings is not None, "the root callback sets it"
    missing = missing_sqlite_file(settings.database_url)
    if missing is not None:  # said without opening it, which would create the file
        get_console().print(f"no database at {missing} yet (run `acp db upgrade` to create it)", markup=False)
        return
    revision = get_plane(ctx).schema_revision()
    if revision is None:
        get_console().print("no control plane schema yet (run `acp db upgrade`)", markup=False)
    else:
        get_console().print(revision, markup=False)


# sessions ---------------------------------------------------------------------------------------------------
@sessions_app.command("list")
def sessions_list(
    ctx: typer.Context,
    status: Annotated[SessionStatus | None, typer.Option(help="Only sessions with this status.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many sessions.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array instead of a table.")] = False,
) -> None:
    """List sessions, oldest first, with their budget use and event count."""
    found = get_plane(ctx).list_sessions(status=status, limit=limit)
    if as_json:
        echo_json([asdict(info) for info in found])
        return
    if not found:
        get_console().print("no sessions" if status is None else f"no {status.value} sessions")
        return
    table = make_table("id", "name", "agent", "status", "spent / max cost", "actions / max", "events", "created (UTC)")
    for info in found:
        budget = info.budget
        add_row(
            table,
            info.session_id,
            info.name,
            info.agent_id,
            info.status.value,
            f"{format_amount(budget['spent_cost'])} / {format_limit(budget['max_cost'])}",
            f"{budget['action_count']} / {format_limit(budget['max_action_count'])}",
            str(info.event_count),
            format_when(info.created_at),
        )
    get_console().print(table)


@sessions_app.command("show")
def sessions_show(
    ctx: typer.Context,
    session: SessionArgument,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object instead of a table.")] = False,
) -> None:
    """Show one session: status, policy, the whole budget (spent, reserved, remaining) and event count."""
    info = get_plane(ctx).get_session(session)
    if as_json:
        echo_json(asdict(info))
        return
    get_console().print(_session_detail(info))


def _session_detail(info: SessionInfo) -> Table:
    budget = info.budget
    fields = [
        ("id", info.session_id),
        ("name", info.name),
        ("agent", info.agent_id or "-"),
        ("status", info.status.value),
        ("policy hash", info.policy_hash),
        ("cost spent", format_amount(budget["spent_cost"])),
        ("cost reserved", format_amount(budget["reserved_cost"])),
        ("cost max", format_limit(budget["max_cost"])),
        ("cost remaining", format_limit(budget["remaining_cost"])),
        ("actions used", str(budget["action_count"])),
        ("actions max", format_limit(budget["max_action_count"])),
        ("actions remaining", format_limit(budget["remaining_count"])),
        ("events", str(info.event_count)),
        ("created (UTC)", format_when(info.created_at)),
        ("updated (UTC)", format_when(info.updated_at)),
    ]
    return detail_table(fields)


# events -----------------------------------------------------------------------------------------------------
@events_app.command("replay")
def events_replay(
    ctx: typer.Context,
    session: SessionArgument,
    after_seq: Annotated[int, typer.Option(min=0, help="Start after this seq (0: from the first event).")] = 0,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many events.")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per event (JSON Lines) with every field.")
    ] = False,
) -> None:
    """Print a session's events in order: seq, time, kind and a short summary of each payload."""
    frames = get_plane(ctx).replay(session, after_seq=after_seq, limit=limit)
    if as_json:
        for frame in frames:
            echo_json(asdict(frame))
        return
    console = get_console()
    if not frames:
        console.print(f"no events after seq {after_seq}")
        return
    table = make_table("seq", "time (UTC)", "kind", "summary")
    for frame in frames:
        add_row(
            table,
            str(frame.seq),
            format_when(frame.recorded_at, precise=True),
            frame.kind,
            _summary(frame.kind, frame.payload),
        )
    console.print(table)
    if limit is not None and len(frames) == limit:
        console.print(f"more may follow: --after-seq {frames[-1].seq}", style="dim", markup=False)


@events_app.command("verify")
def events_verify(
    ctx: typer.Context,
    session: Annotated[str | None, typer.Argument(metavar="SESSION", help="The session id (or use --all).")] = None,
    every: Annotated[bool, typer.Option("--all", help="Verify every session's log and the control stream.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array of reports.")] = False,
) -> None:
    """Recompute hash chains; report each log OK, or BROKEN at its first bad seq (exit code 1 if any is)."""
    if (session is None) == (not every):
        raise typer.BadParameter("give exactly one of a SESSION id or --all", param_hint="'SESSION' / '--all'")
    plane = get_plane(ctx)
    reports = plane.verify_all() if session is None else [plane.verify(session)]
    broken = [report for report in reports if not report.ok]
    if as_json:
        echo_json([asdict(report) for report in reports])
    else:
        console = get_console()
        for report in reports:
            console.print(_verdict(report), soft_wrap=True)
        if every:
            console.print(f"{len(reports)} logs verified, {len(broken)} broken", markup=False)
    if broken:
        raise typer.Exit(1)


def _verdict(report: VerifyReport) -> Text:
    if report.ok:
        return Text.assemble(("OK", "bold green"), f"      {report.session_id} ({report.events_checked} events)")
    return Text.assemble(
        ("BROKEN", "bold red"),
        f"  {report.session_id} at seq {report.first_bad_seq}: {report.problem} "
        f"({report.events_checked} events before it are intact)",
    )


# kill switches ----------------------------------------------------------------------------------------------
Reason = Annotated[str, typer.Option("--reason", help="Why; recorded in the log for whoever reads it later.")]
By = Annotated[str | None, typer.Option("--by", help="Who is doing this (default: your login name).")]


def _switch(info: KillSwitchInfo) -> str:
    return info.scope.value if info.target is None else f"{info.scope.value} {info.target}"


def _engaged(info: KillSwitchInfo) -> None:
    console = get_console()
    console.print(info.describe(), style="bold red", markup=False, soft_wrap=True)
    console.print(f"release with: acp kill release {_switch(info)} --reason …", style="dim", markup=False)


@kill_app.command("system")
def kill_system(ctx: typer.Context, reason: Reason, by: By = None) -> None:
    """Deny every proposal in every session until released."""
    _engaged(get_plane(ctx).kill_system(reason=reason, by=by))


@kill_app.command("session")
def kill_session(
    ctx: typer.Context,
    session: SessionArgument,
    reason: Reason,
    by: By = None,
) -> None:
    """Deny every proposal of one session until released."""
    _engaged(get_plane(ctx).kill_session(session, reason=reason, by=by))


@kill_app.command("agent")
def kill_agent(
    ctx: typer.Context,
    agent: AgentArgument,
    reason: Reason,
    by: By = None,
) -> None:
    """Deny every proposal made by one agent, in any session, until released."""
    _engaged(get_plane(ctx).kill_agent(agent, reason=reason, by=by))


@kill_app.command("release")
def kill_release(
    ctx: typer.Context,
    scope: Annotated[KillScope, typer.Argument(help="Which kind of switch.")],
    target: Annotated[str | None, typer.Argument(help="The session or agent id (none for system).")] = None,
    *,
    reason: Reason,
    by: By = None,
) -> None:
    """Release an engaged kill switch so proposals it covered are decided normally again."""
    info = get_plane(ctx).release_kill(scope, target, reason=reason, by=by)
    get_console().print(
        f"released kill switch ({_switch(info)}), engaged by {info.engaged_by} for: {info.reason}",
        markup=False,
        soft_wrap=True,
    )


@kill_app.command("list")
def kill_list(
    ctx: typer.Context,
    include_released: Annotated[bool, typer.Option("--all", help="Include released kill switches.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array instead of a table.")] = False,
) -> None:
    """List engaged kill switches (with --all, released ones too), oldest first."""
    kills = get_plane(ctx).list_kills(engaged_only=not include_released)
    if as_json:
        echo_json([asdict(info) for info in kills])
        return
    if not kills:
        get_console().print("no kill switches" if include_released else "no kill switch is engaged")
        return
    columns = ["switch", "reason", "engaged by", "engaged (UTC)"]
    table = make_table(*columns, "released") if include_released else make_table(*columns)
    for info in kills:
        cells = [_switch(info), info.reason, info.engaged_by, format_when(info.engaged_at)]
        if include_released:
            released = "no (engaged)"
            if info.released_at is not None:
                released = f"{format_when(info.released_at)} by {info.released_by}: {info.release_reason}"
            cells.append(released)
        add_row(table, *cells)
    get_console().print(table)


# recover ----------------------------------------------------------------------------------------------------
@app.command("recover")
def recover(
    ctx: typer.Context,
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            help="Treat actions allowed longer ago than this (e.g. 0s, 10m) as interrupted, instead of each "
            "session policy's recovery.interrupted_after_seconds. Use 0s only when no worker is running.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Crash recovery: settle as interrupted what dead workers left unsettled (never re-running it), release
    their leases, and escalate or expire overdue tickets. Safe to run at every start-up."""
    age = None
    if older_than is not None:
        age = parse_duration(older_than)
        if age is None:
            fail(f"--older-than {older_than!r}: expected a duration such as 0s, 10m or 1h")
    report = get_plane(ctx).recover(older_than=age)
    if as_json:
        echo_json(
            {
                "interrupted": [asdict(s) for s in report.interrupted],
                "tickets": report.tickets,
                "token_reservations": report.token_reservations,
            }
        )
        return
    console = get_console()
    console.print(report.describe(), markup=False)
    if report.interrupted:
        table = make_table("proposal", "session", "reserved", "charged")
        for settled in report.interrupted:
            add_row(
                table,
                settled.proposal_id,
                settled.session_id,
                format_amount(settled.reserved_cost),
                format_amount(settled.actual_cost),
            )
        console.print(table)


# bench ------------------------------------------------------------------------------------------------------
@app.command(
    "bench",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    # `acp bench --help` is the benchmark's own help, so the option passes through.
    add_help_option=False,
)
def bench(ctx: typer.Context) -> None:
    """Measure the control plane's throughput against the raw database driver (see `acp bench --help`)."""
    try:
        module = importlib.import_module("agent_control_plane.bench")
    except ModuleNotFoundError as exc:
        if exc.name != "agent_control_plane.bench":
            raise
        fail("the benchmark is not part of this installation of agent-control-plane")
    raise typer.Exit(int(module.main(list(ctx.args))))


def main(argv: list[str] | None = None) -> None:
    """Run `acp` (the console script's entry point)."""
    app(args=argv, prog_name="acp")
