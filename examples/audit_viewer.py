"""Audit viewer: read any control plane's database and show a session's timeline, with its hash chain checked.

Run it from the repository root:

    python examples/audit_viewer.py                      # the sessions, each with its chain OK or BROKEN
    python examples/audit_viewer.py SESSION              # one session: header, timeline, verdict
    python examples/audit_viewer.py SESSION --json       # the same as one JSON object (events + verify report)

The database is `--database-url`, else ACP_DATABASE_URL, else `sqlite:///./acp.db` (as for `acp`); the tables are
named by `--table-prefix` (ACP_TABLE_PREFIX, default `acp_`) and `--schema`. The viewer only reads: it never
creates or upgrades the schema, and refuses a SQLite path where no database exists rather than create one.

Each event shows its seq, time, kind, a one-line summary and a chain mark: ✓ verified, ✗ the first event that
fails verification (edited, moved, or missing), · not checked (it comes after the break). Exit codes: 0 every log
shown is intact, 1 a log is broken, 2 bad input (unknown session, unreachable or un-migrated database).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from agent_control_plane import (
    ControlPlaneError,
    ControlPlaneFacade,
    EventFrame,
    EventKind,
    EventLogError,
    SchemaNotReadyError,
    SessionInfo,
    SessionNotFoundError,
    StorageError,
    VerifyReport,
)

DEFAULT_URL = "sqlite:///./acp.db"
PIPED_WIDTH = 160
MARKS = {"ok": ("✓", "green"), "broken": ("✗", "bold red"), "unchecked": ("·", "dim")}
VERDICT_STYLES = {"ALLOW": "bold green", "STEER": "bold yellow", "ASK": "bold magenta", "DENY": "bold red"}


class BadInput(Exception):
    """Something the reader must fix (a session id, a URL, a prefix): printed as `error: …`, exit code 2."""


# one line per event -----------------------------------------------------------------------------------------
def _who(identity: dict[str, Any] | None) -> str:
    parts = [f"{key.removesuffix('_id')} {value}" for key, value in (identity or {}).items() if value]
    return " / ".join(parts) or "nobody"


def _short(some_id: str | None) -> str:
    return (some_id or "?")[:8]  # a uuid's first block: enough to tell tickets apart on one screen


def _verdict_word(payload: dict[str, Any]) -> str:
    if payload.get("allowed"):
        return "ALLOW"
    return {"steered": "STEER", "approval_required": "ASK"}.get(payload.get("code", ""), "DENY")


def describe(kind: str, p: dict[str, Any]) -> Text:
    """What an event says, in one line; a decision leads with its verdict, coloured."""
    if kind == EventKind.PROPOSAL_DECIDED:
        word, alternatives = _verdict_word(p), (p.get("steering") or {}).get("alternatives")
        line = f" {p['action']} on {p.get('resource') or '-'} · {p['tier']}/{p['code']} · cost {p['cost']}"
        line += f" · {p['reason']}" + (f" → try {', '.join(alternatives)}" if alternatives else "")
        return Text.assemble((word, VERDICT_STYLES[word]), line)
    if kind == EventKind.PROPOSAL_SETTLED:
        line = f"{p['action']} {p['outcome']}: cost {p['actual_cost']} (reserved {p['reserved_cost']})"
    elif kind == EventKind.SESSION_OPENED:
        limits = f"max cost {p.get('max_cost') or '∞'}, max actions {p.get('max_action_count') or '∞'}"
        line = f"{p['name']!r} opened for agent {p.get('agent_id') or '-'}, {limits}"
    elif kind == EventKind.SESSION_STATUS_CHANGED:
        line = f"{p['from']} → {p['to']}" + (f": {p['reason']}" if p.get("reason") else "")
    elif kind == EventKind.APPROVAL_GRANTED:
        line = f"ticket {_short(p['ticket_id'])} approved by {p['by']}"
        line += f": {p['comment']}" if p.get("comment") else ""
        if grant := p.get("grant"):
            line += f" (for the session: {grant['action']} on {grant.get('resource') or 'any resource'})"
    elif kind == EventKind.APPROVAL_DENIED:
        line = f"ticket {_short(p['ticket_id'])} denied by {p['by']}: {p['reason']}"
    elif kind == EventKind.APPROVAL_ESCALATED:
        line = f"ticket {_short(p['ticket_id'])} escalated to {p['to']}"
    elif kind == EventKind.APPROVAL_EXPIRED:
        line = f"ticket {_short(p['ticket_id'])} expired, nobody decided in time"
    elif kind in (EventKind.KILL_ENGAGED, EventKind.KILL_RELEASED):
        verb = "engaged" if kind == EventKind.KILL_ENGAGED else "released"
        target = p["scope"] if p.get("target") is None else f"{p['scope']} {_short(p['target'])}"
        line = f"kill switch ({target}) {verb} by {p['by']}: {p['reason']}"
    elif kind == EventKind.TOKEN_USAGE_RECORDED:
        line = (
            f"{p['model_id']}: {p['total_tokens']} tokens ({p['input_tokens']} in, {p['output_tokens']} out), "
            f"${p['cost_usd']} for {_who(p.get('identity'))}"
        )
        if p.get("over_budget"):
            line += f"  OVER BUDGET: {', '.join(map(str, p['over_budget']))}"
    elif kind == EventKind.MODEL_ACCESS_DENIED:
        line = f"{_who(p.get('identity'))} may not use {p['model_id']}: {p['reason']}"
    elif kind in (EventKind.TOKEN_BUDGET_CREATED, EventKind.TOKEN_BUDGET_UPDATED, EventKind.TOKEN_BUDGET_DELETED):
        caps = [f"{p['max_tokens']} tokens"] if p.get("max_tokens") else []
        caps += [f"${p['max_cost_usd']}"] if p.get("max_cost_usd") else []
        change = kind.rsplit(".", 1)[1]
        line = f"{p['period']} budget of {_who(p.get('identity'))} {change}: {' and '.join(caps) or 'no cap'}"
    else:  # an event the host emitted: its payload, compactly
        line = json.dumps(p, sort_keys=True, ensure_ascii=False, default=str)
        line = line if len(line) <= 100 else line[:99] + "…"
    return Text(line)


# the chain, event by event ----------------------------------------------------------------------------------
def chain_mark(seq: int, report: VerifyReport) -> str:
    """`verify` stops at the first bad event: what comes before it is verified, what comes after is not."""
    if report.ok or report.first_bad_seq is None or seq < report.first_bad_seq:
        return "ok"
    return "broken" if seq == report.first_bad_seq else "unchecked"


def chain_cell(report: VerifyReport) -> Text:
    return Text("OK", "green") if report.ok else Text(f"BROKEN at seq {report.first_bad_seq}", "bold red")


def verdict(report: VerifyReport) -> Text:
    if report.ok:
        return Text.assemble(("chain OK", "bold green"), f": {report.events_checked} events verified")
    return Text.assemble(
        ("chain BROKEN", "bold red"),
        f" at seq {report.first_bad_seq}: {report.problem} ({report.events_checked} events before it are intact)",
    )


# output -----------------------------------------------------------------------------------------------------
def make_console() -> Console:
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPED_WIDTH  # piped: Rich's 80-column guess would wrap every row
    return console


def to_json(value: object) -> str:
    # Times in ISO 8601 and amounts (Decimal) as their exact digits, the way `acp … --json` writes them.
    return json.dumps(value, default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v), indent=2)


def show_sessions(cp: ControlPlaneFacade, as_json: bool) -> int:
    sessions = cp.list_sessions()
    reports = {report.session_id: report for report in cp.verify_all()}
    streams = [report for sid, report in reports.items() if sid not in {s.session_id for s in sessions}]
    broken = any(not report.ok for report in reports.values())
    if as_json:
        listed = [{**asdict(info), "verify": asdict(reports[info.session_id])} for info in sessions]
        print(to_json({"sessions": listed, "streams_without_session": [asdict(r) for r in streams]}))
        return 1 if broken else 0
    console = make_console()
    if not sessions:
        console.print("no sessions in this database")
    table = Table("id", "name", "agent", "status", "events", "chain", header_style="bold", title_justify="left")
    for info in sessions:
        row = (info.session_id, info.name, info.agent_id or "-", info.status.value, str(info.event_count))
        table.add_row(*map(Text, row), chain_cell(reports[info.session_id]))
    for report in streams:  # the control stream: kill switches and token budget changes, outside any session
        table.add_row(report.session_id, "(control stream)", "-", "-", str(report.events_checked), chain_cell(report))
    if sessions:
        console.print(table)
        console.print(f"show one with: python {sys.argv[0]} SESSION", style="dim", markup=False)
    return 1 if broken else 0


def header(info: SessionInfo | None, session_id: str) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    if info is None:
        grid.add_row("stream", f"{session_id} (no session record: the control stream of kill switches and budgets)")
        return grid
    budget = info.budget
    fields = [
        ("session", f"{info.name} ({info.session_id})"),
        ("agent", info.agent_id or "-"),
        ("status", info.status.value),
        ("policy hash", info.policy_hash),
        ("cost", f"{budget['spent_cost']} spent, {budget['reserved_cost']} reserved, max {budget['max_cost'] or '∞'}"),
        ("actions", f"{budget['action_count']} of {budget['max_action_count'] or '∞'}"),
        ("opened (UTC)", f"{info.created_at:%Y-%m-%d %H:%M:%S}, last change {info.updated_at:%Y-%m-%d %H:%M:%S}"),
    ]
    for name, value in fields:
        grid.add_row(name, Text(value))
    return grid


def timeline(frames: list[EventFrame], report: VerifyReport) -> Table:
    table = Table("seq", "time (UTC)", "kind", "summary", "chain", header_style="bold")
    table.columns[0].justify = "right"
    table.columns[3].overflow = "fold"
    span_days = len({frame.recorded_at.date() for frame in frames}) > 1
    # A deleted or cut-off event has no row to mark: it gets one of its own, where it should have been.
    missing = report.first_bad_seq if report.first_bad_seq not in {frame.seq for frame in frames} else None
    gap = (str(missing), "", Text("(missing)", "bold red"), Text(report.problem or ""), Text("✗", "bold red"))
    for frame in frames:
        if missing is not None and frame.seq > missing:
            table.add_row(*gap)
            missing = None
        when = frame.recorded_at.strftime("%Y-%m-%d %H:%M:%S.%f" if span_days else "%H:%M:%S.%f")[:-3]
        symbol, style = MARKS[chain_mark(frame.seq, report)]
        table.add_row(str(frame.seq), when, Text(frame.kind), describe(frame.kind, frame.payload), Text(symbol, style))
    if missing is not None:
        table.add_row(*gap)
    return table


def show_session(cp: ControlPlaneFacade, session_id: str, as_json: bool) -> int:
    try:
        info: SessionInfo | None = cp.get_session(session_id)
    except SessionNotFoundError:
        info = None  # perhaps a stream without a session record (the control stream); verify tells
    frames: list[EventFrame] = []
    unreadable = None
    try:
        frames = cp.replay(session_id)
    except SessionNotFoundError:
        raise BadInput(f"no session {session_id!r} in this database (run without SESSION to list them)") from None
    except EventLogError as exc:  # e.g. a kind this version cannot read; the verdict still says whether it was forged
        unreadable = str(exc)
    # Verified after the replay, so that every event shown is covered even while the session goes on writing.
    report = cp.verify(session_id)
    if as_json:
        events = [
            {**asdict(f), "summary": describe(f.kind, f.payload).plain, "chain": chain_mark(f.seq, report)}
            for f in frames
        ]
        body = {"session": None if info is None else asdict(info), "events": events, "verify": asdict(report)}
        print(to_json({**body, "unreadable": unreadable}))
    else:
        console = make_console()
        console.print(header(info, session_id))
        if frames:
            console.print(timeline(frames, report))
        if unreadable is not None:
            console.print(f"cannot show the events: {unreadable}", style="red", markup=False)
        console.print(verdict(report))
    if not report.ok:
        return 1
    return 2 if unreadable is not None else 0


# entry point ------------------------------------------------------------------------------------------------
def check_sqlite_file(database_url: str) -> None:
    """Opening a SQLite path that holds no database would create an empty file there: refuse it instead."""
    try:
        url = make_url(database_url)
    except ArgumentError:
        return  # the control plane reports the unparsable URL itself
    path = url.database
    if url.get_backend_name() == "sqlite" and path not in (None, "", ":memory:") and not Path(path).exists():
        raise BadInput(f"no SQLite database at {Path(path).resolve()} (check --database-url or ACP_DATABASE_URL)")


def shown(database_url: str) -> str:
    """The URL as it may be printed: without its password."""
    try:
        return make_url(database_url).render_as_string(hide_password=True)
    except ArgumentError:
        return database_url


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="audit_viewer.py",
        description="Show a session's event log as a timeline and verify its hash chain (read-only). Without "
        "SESSION, list the sessions with their chain status.",
        epilog="Exit codes: 0 intact, 1 a hash chain is broken, 2 bad input or an unreachable/un-migrated database.",
    )
    parser.add_argument("session", nargs="?", metavar="SESSION", help="the session id (omit it to list sessions)")
    env = os.environ.get
    url_help = f"sqlite:///path.db or postgresql://… (default: ACP_DATABASE_URL, else {DEFAULT_URL})"
    parser.add_argument("--database-url", metavar="URL", default=env("ACP_DATABASE_URL", DEFAULT_URL), help=url_help)
    prefix_help = "prefix of the control plane's tables (default: ACP_TABLE_PREFIX, else acp_)"
    parser.add_argument("--table-prefix", metavar="PREFIX", default=env("ACP_TABLE_PREFIX", "acp_"), help=prefix_help)
    parser.add_argument("--schema", metavar="NAME", default=env("ACP_SCHEMA"), help="database schema of the tables")
    parser.add_argument("--json", action="store_true", help="print JSON (events, chain marks and verify report)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        check_sqlite_file(args.database_url)
        plane = ControlPlaneFacade.from_database_url(
            args.database_url, table_prefix=args.table_prefix, schema=args.schema
        )
        with plane as cp:
            if args.session is None:
                return show_sessions(cp, args.json)
            return show_session(cp, args.session, args.json)
    except SchemaNotReadyError:
        message = (
            f"{shown(args.database_url)} holds no control plane tables with the prefix {args.table_prefix!r}: is it "
            "the right database and --table-prefix? (the viewer never creates tables; `acp db upgrade` sets one up)"
        )
    except StorageError as exc:  # unreachable, refused, or not a database at all
        message = f"cannot read {shown(args.database_url)}: {exc}"
    except (BadInput, ControlPlaneError) as exc:
        message = str(exc)
    Console(stderr=True, highlight=False).print(f"error: {message}", style="red", markup=False, soft_wrap=True)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # piped into `head`, which has read all it wanted: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
