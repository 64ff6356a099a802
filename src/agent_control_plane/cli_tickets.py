"""`acp tickets …`: the human side of approvals: see what waits for a decision, why, and approve or deny it."""

from __future__ import annotations

import getpass
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Annotated, Any

import typer
from rich.table import Table

from agent_control_plane._cli_base import (
    add_row,
    detail_table,
    echo_json,
    fail,
    format_amount,
    format_when,
    get_console,
    get_plane,
    json_text,
    make_table,
    parse_duration,
)
from agent_control_plane.clock import SystemClock
from agent_control_plane.facade import ControlPlaneFacade
from agent_control_plane.types.events import EventKind
from agent_control_plane.types.tickets import GrantScope, Ticket, TicketStatus

tickets_app = typer.Typer(
    no_args_is_help=True,
    help=(
        "Decide the calls waiting for a human: list approval tickets, show the exact call and why the policy "
        "wants a human for it, approve it (once, or for the rest of the session) or deny it, and apply time-outs."
    ),
)

TicketArgument = Annotated[str, typer.Argument(metavar="TICKET", help="The ticket id (see `acp tickets list`).")]
By = Annotated[
    str | None,
    typer.Option("--by", help="Who decides; recorded in the log (default: your login name). Not the asking agent."),
]


def _who(by: str | None) -> str:
    if by is not None:
        return by
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        fail("cannot tell who you are from the operating system: say who decides with --by NAME")


def _or_dash(value: str | None) -> str:
    return "-" if value is None else value


def _when(value: datetime | None) -> str:
    return "-" if value is None else format_when(value)


def _call(ticket: Ticket) -> str:
    return ticket.action if ticket.resource is None else f"{ticket.action} on {ticket.resource}"


def _decided(verb: str, ticket: Ticket, detail: str = "") -> None:
    get_console().print(
        f"{verb} ticket {ticket.ticket_id} ({_call(ticket)}) by {ticket.decided_by}{detail}",
        markup=False,
        soft_wrap=True,
    )


# list -------------------------------------------------------------------------------------------------------
@tickets_app.command("list")
def tickets_list(
    ctx: typer.Context,
    pending: Annotated[bool, typer.Option("--pending", help="Only tickets still waiting for a decision.")] = False,
    status: Annotated[TicketStatus | None, typer.Option(help="Only tickets with this status.")] = None,
    session: Annotated[str | None, typer.Option("--session", help="Only tickets of this session.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many tickets.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array instead of a table.")] = False,
) -> None:
    """List approval tickets, oldest first: the call each covers, its status, deadline and who decided."""
    if pending and status is not None:
        raise typer.BadParameter("give --pending or --status, not both", param_hint="'--pending' / '--status'")
    wanted = TicketStatus.PENDING if pending else status
    found = get_plane(ctx).list_tickets(status=wanted, session_id=session, limit=limit)
    if as_json:
        echo_json([asdict(ticket) for ticket in found])
        return
    if not found:
        get_console().print("no tickets" if wanted is None else f"no {wanted.value} tickets", markup=False)
        return
    table = make_table("id", "session", "agent", "action", "resource", "cost", "status", "deadline (UTC)", "decided by")
    for ticket in found:
        add_row(
            table,
            ticket.ticket_id,
            ticket.session_id,
            _or_dash(ticket.agent_id),
            ticket.action,
            _or_dash(ticket.resource),
            format_amount(ticket.cost),
            ticket.status.value,
            _when(ticket.deadline),
            _or_dash(ticket.decided_by),
        )
    get_console().print(table)


# show -------------------------------------------------------------------------------------------------------
def _decision_trace(plane: ControlPlaneFacade, ticket: Ticket) -> list[dict[str, Any]] | None:
    """The policy steps recorded when the ticket's proposal was decided (None if the log has no such decision)."""
    for frame in plane.replay(ticket.session_id):
        if frame.kind == EventKind.PROPOSAL_DECIDED and frame.payload.get("proposal_id") == ticket.proposal_id:
            trace: list[dict[str, Any]] = frame.payload.get("trace", [])
            return trace
    return None


def _ticket_detail(ticket: Ticket) -> Table:
    fields = [
        ("id", ticket.ticket_id),
        ("status", ticket.status.value),
        ("action", ticket.action),
        ("args", json_text(ticket.args)),
        ("resource", _or_dash(ticket.resource)),
        ("cost", format_amount(ticket.cost)),
        ("agent", _or_dash(ticket.agent_id)),
        ("session", ticket.session_id),
        ("proposal", ticket.proposal_id),
        ("digest", ticket.digest),
        ("needs a human", ticket.reason),
        ("approver group", _or_dash(ticket.approver_group)),
        ("created (UTC)", format_when(ticket.created_at)),
        ("deadline (UTC)", _when(ticket.deadline)),
        ("decided by", _or_dash(ticket.decided_by)),
        ("decided (UTC)", _when(ticket.decided_at)),
        ("comment", _or_dash(ticket.comment)),
        ("consumed by", _or_dash(ticket.consumed_by)),
    ]
    return detail_table(fields)


@tickets_app.command("show")
def tickets_show(
    ctx: typer.Context,
    ticket_id: TicketArgument,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object (the ticket and its trace).")] = False,
) -> None:
    """Show one ticket: the exact call and its digest, why it needs a human, its status and the decision trace."""
    plane = get_plane(ctx)
    ticket = plane.get_ticket(ticket_id)
    trace = _decision_trace(plane, ticket)
    if as_json:
        echo_json({**asdict(ticket), "trace": trace})
        return
    console = get_console()
    console.print(_ticket_detail(ticket))
    if trace is None:
        console.print(f"no decision for proposal {ticket.proposal_id} in the session's log", markup=False)
        return
    table = make_table("step", "entry", "applied", "tier")
    table.title, table.title_justify = "decision trace", "left"
    for step in trace:
        add_row(table, step.get("step"), step.get("name"), "yes" if step.get("matched") else "no", step.get("tier"))
    console.print(table)


# approve and deny -------------------------------------------------------------------------------------------
def _duration(text: str) -> timedelta:
    """`30m`, `2h`, `1d`: how long a session grant lasts."""
    duration = parse_duration(text)
    if duration is None:
        raise typer.BadParameter(f"{text!r}: expected a duration such as 30m, 2h or 1d", param_hint="'--expires-in'")
    return duration


@tickets_app.command("approve")
def tickets_approve(
    ctx: typer.Context,
    ticket_id: TicketArgument,
    by: By = None,
    comment: Annotated[str | None, typer.Option("--comment", help="A note recorded with the approval.")] = None,
    for_session: Annotated[
        bool,
        typer.Option(
            "--for-session",
            help="Also grant this action for the rest of the session (narrow it with the options below).",
        ),
    ] = False,
    resource: Annotated[
        str | None,
        typer.Option("--resource", help="With --for-session: only on this resource (exact name or glob, staging/*)."),
    ] = None,
    max_uses: Annotated[
        int | None,
        typer.Option("--max-uses", min=1, help="With --for-session: at most this many further calls."),
    ] = None,
    expires_in: Annotated[
        str | None,
        typer.Option("--expires-in", help="With --for-session: the grant ends after this long (30m, 2h, 1d)."),
    ] = None,
) -> None:
    """Approve the ticket's exact call, once; with --for-session, grant its action for the rest of the session.

    The agent that asked runs the call when it resumes the ticket. The approver cannot be that agent.
    """
    if not for_session and (resource is not None or max_uses is not None or expires_in is not None):
        raise typer.BadParameter(
            "these options narrow a session grant, so they need --for-session",
            param_hint="'--resource' / '--max-uses' / '--expires-in'",
        )
    plane, approver = get_plane(ctx), _who(by)
    if not for_session:
        _decided("approved", plane.approve(ticket_id, approver=approver, comment=comment))
        return
    expires_at = None if expires_in is None else SystemClock().now() + _duration(expires_in)
    scope = GrantScope(resource=resource, max_uses=max_uses, expires_at=expires_at)
    ticket = plane.approve_for_session(ticket_id, approver=approver, scope=scope, comment=comment)
    limits = [
        f"on {resource}" if resource is not None else "on any resource",
        f"at most {max_uses} more {'call' if max_uses == 1 else 'calls'}" if max_uses is not None else "no use limit",
        f"until {format_when(expires_at)} UTC" if expires_at is not None else "until the session ends",
    ]
    grant = f", and granted {ticket.action} for the rest of session {ticket.session_id}: {', '.join(limits)}"
    _decided("approved", ticket, grant)


@tickets_app.command("deny")
def tickets_deny(
    ctx: typer.Context,
    ticket_id: TicketArgument,
    reason: Annotated[str, typer.Option("--reason", help="Why; returned to the agent that asked and logged.")],
    by: By = None,
) -> None:
    """Deny the ticket's call; the agent that asked gets the reason when it resumes the ticket."""
    _decided("denied", get_plane(ctx).deny(ticket_id, approver=_who(by), reason=reason), f": {reason}")


# expire -----------------------------------------------------------------------------------------------------
@tickets_app.command("expire")
def tickets_expire(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object: ticket id → outcome.")] = False,
) -> None:
    """Apply the policy's approval time-out now: escalate or expire every overdue pending ticket.

    Listing or showing tickets does not apply time-outs (an overdue ticket shows as pending); approving, denying,
    resuming or waiting on one applies its own, and `acp recover` applies them all too. Run this from cron.
    """
    plane = get_plane(ctx)
    outcomes = plane.expire_tickets()
    if as_json:
        echo_json(outcomes)
        return
    console = get_console()
    if not outcomes:
        console.print("no ticket is overdue")
        return
    table = make_table("id", "outcome", "session", "call", "approver group", "deadline (UTC)")
    for ticket_id, outcome in outcomes.items():
        ticket = plane.get_ticket(ticket_id)
        escalated = outcome == "escalated"
        add_row(
            table,
            ticket_id,
            outcome,
            ticket.session_id,
            _call(ticket),
            _or_dash(ticket.approver_group),
            _when(ticket.deadline) if escalated else "-",
        )
    console.print(table)
    escalated_count = sum(outcome == "escalated" for outcome in outcomes.values())
    console.print(f"{escalated_count} escalated, {len(outcomes) - escalated_count} expired", markup=False)
