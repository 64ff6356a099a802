"""`acp`: the command line over `ControlPlaneFacade` for schema, sessions, event logs and kill switches.

A thin adapter: every command is one or two facade calls plus formatting. The control plane is built only when
a command needs the database, and closed when the command ends. Exit codes: 0 success, 1 a verified event log
is broken, 2 bad input or an error from the control plane (printed as `error: …`, never as a traceback).
"""

from __future__ import annotations

import importlib
import json
import os
import re
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from agent_control_plane import (
    ControlPlaneError,
    ControlPlaneFacade,
    EventKind,
    InvalidInputError,
    KillScope,
    KillSwitchInfo,
    SessionInfo,
    SessionStatus,
    VerifyReport,
)
from agent_control_plane.cli_policy import policy_app

NO_LIMIT = "∞"
PIPED_WIDTH = 200
SUMMARY_WIDTH = 80

# The payload keys worth a glance in a replay table; the full payload is in `--json`.
_SUMMARY_KEYS: dict[str, tuple[str, ...]] = {
    EventKind.SESSION_OPENED: ("name", "agent_id", "max_cost", "max_action_count"),
    EventKind.SESSION_STATUS_CHANGED: ("from", "to", "reason"),
    EventKind.PROPOSAL_DECIDED: ("action", "resource", "tier", "code", "cost"),
    EventKind.PROPOSAL_SETTLED: ("action", "outcome", "reserved_cost", "actual_cost"),
    EventKind.KILL_ENGAGED: ("scope", "target", "by", "reason"),
    EventKind.KILL_RELEASED: ("scope", "target", "by", "reason"),
}


class _RootGroup(TyperGroup):
    """The `acp` group: a `ControlPlaneError` from any command becomes `error: …` and exit code 2."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except ControlPlaneError as exc:
            _fail(str(exc))


app = typer.Typer(
    name="acp",
    cls=_RootGroup,
    no_args_is_help=True,
    # Locals of a crashing frame can hold the database URL and its password.
    pretty_exceptions_show_locals=False,
    help=(
        "Govern AI agents from the shell: set up the control plane's database, inspect sessions and their "
        "event logs, verify the logs' hash chains, and engage or release kill switches."
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


SessionArgument = Annotated[str, typer.Argument(metavar="SESSION", help="The session id.")]
AgentArgument = Annotated[str, typer.Argument(metavar="AGENT", help="The agent id.")]


@dataclass
class _Settings:
    database_url: str
    table_prefix: str
    schema: str | None
    plane: ControlPlaneFacade | None = None


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
    ctx.obj = _Settings(database_url, table_prefix, schema)


def _plane(ctx: typer.Context) -> ControlPlaneFacade:
    """The control plane for this invocation, built on first use and closed when the command ends."""
    settings = ctx.find_object(_Settings)
    assert settings is not None, "the root callback sets it"
    if settings.plane is None:
        try:
            plane = ControlPlaneFacade.from_database_url(
                settings.database_url, table_prefix=settings.table_prefix, schema=settings.schema
            )
        except ValueError as exc:  # an invalid --table-prefix or --schema
            raise typer.BadParameter(str(exc)) from None
        settings.plane = ctx.find_root().with_resource(plane)
    return settings.plane


# output -----------------------------------------------------------------------------------------------------
def _console() -> Console:
    # Built per use, so output goes to the sys.stdout of the moment (which tests replace).
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # Piped into grep or a file: Rich's 80-column guess would wrap every table row.
        console.width = PIPED_WIDTH
    return console


def _fail(message: str) -> NoReturn:
    Console(stderr=True, highlight=False).print(f"error: {message}", style="red", markup=False, soft_wrap=True)
    raise typer.Exit(2)


def _amount(value: Decimal) -> str:
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _limit(value: Decimal | int | None) -> str:
    if value is None:
        return NO_LIMIT
    return _amount(value) if isinstance(value, Decimal) else str(value)


def _when(value: datetime, *, precise: bool = False) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if precise else value.strftime("%Y-%m-%d %H:%M:%S")


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return _amount(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _json(value: object) -> str:
    return json.dumps(value, default=_json_default, ensure_ascii=False)


def _echo_json(value: object) -> None:
    typer.echo(_json(value))


def _table(*columns: str) -> Table:
    table = Table(header_style="bold")
    for column in columns:
        # Ids are what users copy into the next command: never wrap them; fold, never cut, everything else.
        table.add_column(column, no_wrap=column == "id", overflow="fold")
    return table


def _row(table: Table, *cells: str | None) -> None:
    # Text, not markup: names, reasons and payloads come from users and agents.
    table.add_row(*(Text("" if cell is None else cell) for cell in cells))


def _summary(kind: str, payload: dict[str, Any]) -> str:
    parts = []
    for key in _SUMMARY_KEYS.get(kind, tuple(payload)):
        value = payload.get(key)
        if value is None:
            continue
        parts.append(f"{key}={value if isinstance(value, str) else _json(value)}")
    text = " ".join(parts)
    return text if len(text) <= SUMMARY_WIDTH else text[: SUMMARY_WIDTH - 1] + "…"


# db ---------------------------------------------------------------------------------------------------------
@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Create the control plane's tables, or upgrade them to this version's schema (safe to run again)."""
    revision = _plane(ctx).setup()
    _console().print(f"schema is at revision {revision}", markup=False)


@db_app.command("current")
def db_current(ctx: typer.Context) -> None:
    """Show the schema revision the database is at."""
    revision = _plane(ctx).schema_revision()
    if revision is None:
        _console().print("no control plane schema yet (run `acp db upgrade`)", markup=False)
    else:
        _console().print(revision, markup=False)


# sessions ---------------------------------------------------------------------------------------------------
@sessions_app.command("list")
def sessions_list(
    ctx: typer.Context,
    status: Annotated[SessionStatus | None, typer.Option(help="Only sessions with this status.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many sessions.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array instead of a table.")] = False,
) -> None:
    """List sessions, oldest first, with their budget use and event count."""
    found = _plane(ctx).list_sessions(status=status, limit=limit)
    if as_json:
        _echo_json([asdict(info) for info in found])
        return
    if not found:
        _console().print("no sessions" if status is None else f"no {status.value} sessions")
        return
    table = _table("id", "name", "agent", "status", "spent / max cost", "actions / max", "events", "created (UTC)")
    for info in found:
        budget = info.budget
        _row(
            table,
            info.session_id,
            info.name,
            info.agent_id,
            info.status.value,
            f"{_amount(budget['spent_cost'])} / {_limit(budget['max_cost'])}",
            f"{budget['action_count']} / {_limit(budget['max_action_count'])}",
            str(info.event_count),
            _when(info.created_at),
        )
    _console().print(table)


@sessions_app.command("show")
def sessions_show(
    ctx: typer.Context,
    session: SessionArgument,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object instead of a table.")] = False,
) -> None:
    """Show one session: status, policy, the whole budget (spent, reserved, remaining) and event count."""
    info = _plane(ctx).get_session(session)
    if as_json:
        _echo_json(asdict(info))
        return
    _console().print(_session_detail(info))


def _session_detail(info: SessionInfo) -> Table:
    budget = info.budget
    table = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    table.add_column(style="bold")
    table.add_column()
    fields = [
        ("id", info.session_id),
        ("name", info.name),
        ("agent", info.agent_id or "-"),
        ("status", info.status.value),
        ("policy hash", info.policy_hash),
        ("cost spent", _amount(budget["spent_cost"])),
        ("cost reserved", _amount(budget["reserved_cost"])),
        ("cost max", _limit(budget["max_cost"])),
        ("cost remaining", _limit(budget["remaining_cost"])),
        ("actions used", str(budget["action_count"])),
        ("actions max", _limit(budget["max_action_count"])),
        ("actions remaining", _limit(budget["remaining_count"])),
        ("events", str(info.event_count)),
        ("created (UTC)", _when(info.created_at)),
        ("updated (UTC)", _when(info.updated_at)),
    ]
    for name, value in fields:
        _row(table, name, value)
    return table


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
    frames = _plane(ctx).replay(session, after_seq=after_seq, limit=limit)
    if as_json:
        for frame in frames:
            _echo_json(asdict(frame))
        return
    console = _console()
    if not frames:
        console.print(f"no events after seq {after_seq}")
        return
    table = _table("seq", "time (UTC)", "kind", "summary")
    for frame in frames:
        _row(
            table,
            str(frame.seq),
            _when(frame.recorded_at, precise=True),
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
    plane = _plane(ctx)
    reports = plane.verify_all() if session is None else [plane.verify(session)]
    broken = [report for report in reports if not report.ok]
    if as_json:
        _echo_json([asdict(report) for report in reports])
    else:
        console = _console()
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
    console = _console()
    console.print(info.describe(), style="bold red", markup=False, soft_wrap=True)
    console.print(f"release with: acp kill release {_switch(info)} --reason …", style="dim", markup=False)


@kill_app.command("system")
def kill_system(ctx: typer.Context, reason: Reason, by: By = None) -> None:
    """Deny every proposal in every session until released."""
    _engaged(_plane(ctx).kill_system(reason=reason, by=by))


@kill_app.command("session")
def kill_session(
    ctx: typer.Context,
    session: SessionArgument,
    reason: Reason,
    by: By = None,
) -> None:
    """Deny every proposal of one session until released."""
    _engaged(_plane(ctx).kill_session(session, reason=reason, by=by))


@kill_app.command("agent")
def kill_agent(
    ctx: typer.Context,
    agent: AgentArgument,
    reason: Reason,
    by: By = None,
) -> None:
    """Deny every proposal made by one agent, in any session, until released."""
    _engaged(_plane(ctx).kill_agent(agent, reason=reason, by=by))


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
    info = _plane(ctx).release_kill(scope, target, reason=reason, by=by)
    _console().print(
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
    kills = _plane(ctx).list_kills(engaged_only=not include_released)
    if as_json:
        _echo_json([asdict(info) for info in kills])
        return
    if not kills:
        _console().print("no kill switches" if include_released else "no kill switch is engaged")
        return
    columns = ["switch", "reason", "engaged by", "engaged (UTC)"]
    table = _table(*columns, "released") if include_released else _table(*columns)
    for info in kills:
        cells = [_switch(info), info.reason, info.engaged_by, _when(info.engaged_at)]
        if include_released:
            released = "no (engaged)"
            if info.released_at is not None:
                released = f"{_when(info.released_at)} by {info.released_by}: {info.release_reason}"
            cells.append(released)
        _row(table, *cells)
    _console().print(table)


# policy whatif ----------------------------------------------------------------------------------------------
_AGE = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def _since(text: str) -> datetime | timedelta:
    """`7d`, `12h`, `30m` (an age) or an ISO-8601 time with a zone (`2026-11-01T00:00:00Z`)."""
    age = _AGE.match(text)
    if age:
        return timedelta(**{_UNITS[age.group(2)]: int(age.group(1))})
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInputError(f"--since {text!r}: expected an age such as 7d, 12h, 30m or an ISO-8601 time") from None
    if when.tzinfo is None:
        raise InvalidInputError(f"--since {text!r}: give the time zone, e.g. {text}Z")
    return when


@policy_app.command("whatif")
def whatif(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(metavar="NEW_FILE", help="The policy you are about to ship.")],
    session: Annotated[str | None, typer.Option("--session", help="Only this session's proposals.")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only proposals since then: an age (7d, 12h) or an ISO time.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=0, help="List at most this many changed decisions.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Decide the recorded proposals again under NEW_FILE and show every decision that would change.

    Reads the event log of the database (--database-url) and writes nothing. Counts changes by tier transition
    and lists them, so a policy change can be checked against real traffic before it ships.
    """
    report = _plane(ctx).what_if(file, session_id=session, since=None if since is None else _since(since))
    changes = [
        {
            "session_id": c.proposal.session_id,
            "seq": c.proposal.seq,
            "recorded_at": c.proposal.recorded_at.isoformat(),
            "action": c.proposal.facts.action,
            "old": {"tier": c.proposal.tier.value, "rule": c.proposal.rule},
            "new": {"tier": c.tier.value, "rule": c.rule, "reason": c.reason},
        }
        for c in report.changes
    ]
    transitions = {f"{old.value} -> {new.value}": n for (old, new), n in sorted(report.transitions.items())}
    if as_json:
        typer.echo(
            json.dumps({"evaluated": report.evaluated, "transitions": transitions, "changes": changes}, indent=2)
        )
        return
    console = _console()
    console.print(
        f"{report.evaluated} recorded proposals decided again under {file}: {len(report.changes)} would change",
        markup=False,
    )
    if transitions:
        table = _table("tier transition", "proposals")
        for transition, count in transitions.items():
            _row(table, transition, str(count))
        console.print(table)
    if report.changes:
        table = _table("session", "seq", "action", "was", "would be")
        for change in report.changes[:limit]:
            was = f"{change.proposal.tier.value} ({change.proposal.rule or 'default'})"
            now = f"{change.tier.value} ({change.rule or 'default'})"
            _row(table, change.proposal.session_id, str(change.proposal.seq), change.proposal.facts.action, was, now)
        console.print(table)
        if len(changes) > limit:
            console.print(f"… and {len(changes) - limit} more (raise --limit or use --json)", markup=False)


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
        _fail("the benchmark is not part of this installation of agent-control-plane")
    raise typer.Exit(int(module.main(list(ctx.args))))


def main(argv: list[str] | None = None) -> None:
    """Run `acp` (the console script's entry point)."""
    app(args=argv, prog_name="acp")
