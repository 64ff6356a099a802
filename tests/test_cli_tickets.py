"""`acp tickets`: a human decides approval tickets from the shell, against real SQLite and PostgreSQL databases."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from typer.testing import CliRunner, Result

from agent_control_plane import ControlPlaneFacade, DecisionCode, ManualClock
from agent_control_plane.cli import app
from agent_control_plane.clock import SystemClock
from conftest import POLICY, Backend

# Unset so neither the developer's terminal width nor their schema changes what the tests see.
runner = CliRunner(env={"COLUMNS": None, "ACP_SCHEMA": None})


def acp(backend: Backend, table_prefix: str, *args: str) -> Result:
    """Run `acp` against the test database, as a user would with --database-url and --table-prefix."""
    return runner.invoke(app, ["--database-url", backend.url, "--table-prefix", table_prefix, *args])


def usage_error(result: Result) -> str:
    """A usage error's message as one line: Rich wraps it in a box at the terminal's width."""
    assert result.exit_code == 2, result.output
    return " ".join(result.stderr.replace("│", " ").split())


@pytest.fixture
def plane(backend: Backend, table_prefix: str) -> Iterator[ControlPlaneFacade]:
    """The agent's control plane (system clock, like the CLI's), with the test policy: `launch` needs a human."""
    with ControlPlaneFacade.from_database_url(backend.url, policy=POLICY, table_prefix=table_prefix) as cp:
        cp.setup()
        yield cp


def _ask(cp: ControlPlaneFacade, sid: str, resource: str = "staging/web") -> str:
    decision = cp.propose(sid, "launch", args={"rocket": "r1"}, resource=resource, cost=Decimal("0.5"))
    assert decision.code is DecisionCode.APPROVAL_REQUIRED and decision.ticket_id is not None
    return decision.ticket_id


def test_every_tickets_command_explains_itself() -> None:
    expectations = {
        ("tickets",): "approve",
        ("tickets", "list"): "--pending",
        ("tickets", "show"): "decision trace",
        ("tickets", "approve"): "--for-session",
        ("tickets", "deny"): "--reason",
        ("tickets", "expire"): "overdue",
    }
    for command, phrase in expectations.items():
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0, (command, result.output)
        assert phrase in result.stdout, (command, result.stdout)


def test_list_shows_the_pending_ticket_and_pending_filters_out_decided_ones(
    plane: ControlPlaneFacade, backend: Backend, table_prefix: str
) -> None:
    sid = plane.open_session("launches", agent_id="bot")
    waiting, decided = _ask(plane, sid), _ask(plane, sid, resource="staging/api")
    plane.deny(decided, approver="alice", reason="not today")

    table = acp(backend, table_prefix, "tickets", "list")
    assert table.exit_code == 0, table.output
    row = next(line for line in table.stdout.splitlines() if waiting in line)
    for cell in (sid, "bot", "launch", "staging/web", "0.5", "pending"):
        assert cell in row, (cell, row)
    assert "alice" in next(line for line in table.stdout.splitlines() if decided in line)

    pending = acp(backend, table_prefix, "tickets", "list", "--pending")
    assert waiting in pending.stdout
    assert decided not in pending.stdout

    listed = json.loads(acp(backend, table_prefix, "tickets", "list", "--status", "denied", "--json").stdout)
    assert [(t["ticket_id"], t["status"], t["decided_by"]) for t in listed] == [(decided, "denied", "alice")]
    assert json.loads(acp(backend, table_prefix, "tickets", "list", "--session", "other", "--json").stdout) == []
    assert "no approved tickets" in acp(backend, table_prefix, "tickets", "list", "--status", "approved").stdout

    both = acp(backend, table_prefix, "tickets", "list", "--pending", "--status", "denied")
    assert "give --pending or --status, not both" in usage_error(both)


def test_show_prints_the_call_its_digest_why_and_the_decision_trace(
    plane: ControlPlaneFacade, backend: Backend, table_prefix: str
) -> None:
    sid = plane.open_session("launches", agent_id="bot")
    ticket = plane.get_ticket(_ask(plane, sid))

    shown = acp(backend, table_prefix, "tickets", "show", ticket.ticket_id)
    assert shown.exit_code == 0, shown.output
    for text in (ticket.digest, '{"rocket": "r1"}', "staging/web", "default tier is always_approve", "decision trace"):
        assert text in shown.stdout, (text, shown.stdout)
    trace_row = next(line for line in shown.stdout.splitlines() if "default_tier" in line)
    assert "yes" in trace_row and "always_approve" in trace_row

    as_json = json.loads(acp(backend, table_prefix, "tickets", "show", ticket.ticket_id, "--json").stdout)
    assert as_json["digest"] == ticket.digest
    assert as_json["args"] == {"rocket": "r1"}
    assert as_json["cost"] == "0.5"
    assert as_json["status"] == "pending"
    assert as_json["trace"] == [{"step": "default", "name": "default_tier", "matched": True, "tier": "always_approve"}]
    datetime.fromisoformat(as_json["deadline"])


def test_approve_lets_the_agent_run_the_call_once(
    plane: ControlPlaneFacade, backend: Backend, table_prefix: str
) -> None:
    sid = plane.open_session("launches", agent_id="bot")
    ticket_id = _ask(plane, sid)

    approved = acp(backend, table_prefix, "tickets", "approve", ticket_id, "--by", "alice", "--comment", "go")
    assert approved.exit_code == 0, approved.output
    assert f"approved ticket {ticket_id}" in approved.stdout
    assert "by alice" in approved.stdout

    decision = plane.resume(ticket_id)
    assert decision.allowed
    assert "approved by alice" in decision.reason
    assert plane.get_ticket(ticket_id).comment == "go"
    assert _ask(plane, sid) != ticket_id  # approval covered that one call only

    again = acp(backend, table_prefix, "tickets", "approve", ticket_id, "--by", "bob")
    assert again.exit_code == 2
    assert again.stderr.startswith("error: ")


def test_approve_defaults_the_approver_to_the_login_name(
    plane: ControlPlaneFacade, backend: Backend, table_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("getpass.getuser", lambda: "carol")
    sid = plane.open_session("launches", agent_id="bot")
    ticket_id = _ask(plane, sid)
    assert acp(backend, table_prefix, "tickets", "approve", ticket_id).exit_code == 0
    assert plane.get_ticket(ticket_id).decided_by == "carol"


def test_approve_for_session_grants_exactly_the_scoped_further_calls(
    plane: ControlPlaneFacade, backend: Backend, table_prefix: str
) -> None:
    sid = plane.open_session("launches", agent_id="bot")
    ticket_id = _ask(plane, sid)

    granted = acp(
        backend,
        table_prefix,
        *("tickets", "approve", ticket_id, "--by", "alice", "--for-session"),
        *("--resource", "staging/*", "--max-uses", "1", "--expires-in", "2h"),
    )
    assert granted.exit_code == 0, granted.output
    assert "at most 1 more call" in granted.stdout

    assert plane.resume(ticket_id).allowed  # the ticket's own call
    assert plane.propose(sid, "launch", resource="prod/web").code is DecisionCode.APPROVAL_REQUIRED
    uses = [plane.propose(sid, "launch", resource=f"staging/{n}") for n in range(2)]
    assert [d.allowed for d in uses] == [True, False]
    assert uses[0].reason.startswith("approved for this session by alice")


def test_a_session_grant_expires_after_expires_in(
    backend: Backend, table_prefix: str, plane: ControlPlaneFacade
) -> None:
    sid = plane.open_session("launches", agent_id="bot")
    ticket_id = _ask(plane, sid)
    assert (
        acp(
            backend,
            table_prefix,
            "tickets",
            "approve",
            ticket_id,
            "--by",
            "alice",
            "--for-session",
            "--expires-in",
            "30m",
        ).exit_code
        == 0
    )
    assert plane.propose(sid, "launch", resource="staging/1").allowed
    later = ManualClock(SystemClock().now() + timedelta(minutes=31))
    with ControlPlaneFacade.from_database_url(backend.url, clock=later, table_prefix=table_prefix) as future:
        assert future.propose(sid, "launch", resource="staging/2").code is DecisionCode.APPROVAL_REQUIRED


def test_scope_options_without_for_session_are_a_usage_error(
    plane: ControlPlaneFacade, backend: Backend, table_prefix: str
) -> None:
    sid = plane.open_session("launches", agent_id="bot")
    ticket_id = _ask(plane, sid)
    for option in (["--resource", "staging/*"], ["--max-uses", "1"], ["--expires-in", "2h"]):
        result = acp(backend, table_prefix, "tickets", "approve", ticket_id, "--by", "alice", *option)
        assert "these options narrow a session grant, so they need --for-session" in usage_error(result), option
    bad = acp(backend, table_prefix, "tickets", "approve", ticket_id, "--for-session", "--expires-in", "soon")
    assert "'soon': expected a duration such as 30m, 2h or 1d" in usage_error(bad)
    assert plane.get_ticket(ticket_id).status == "pending"


def test_deny_reason_reaches_the_agent(plane: ControlPlaneFacade, backend: Backend, table_prefix: str) -> None:
    sid = plane.open_session("launches", agent_id="bot")
    ticket_id = _ask(plane, sid)

    denied = acp(backend, table_prefix, "tickets", "deny", ticket_id, "--reason", "launch freeze", "--by", "alice")
    assert denied.exit_code == 0, denied.output
    assert "launch freeze" in denied.stdout

    decision = plane.resume(ticket_id)
    assert decision.code is DecisionCode.APPROVAL_DENIED
    assert decision.reason == "denied by alice: launch freeze"

    assert acp(backend, table_prefix, "tickets", "deny", ticket_id, "--by", "alice").exit_code == 2  # no --reason


def test_the_asking_agent_cannot_approve_its_own_call(
    plane: ControlPlaneFacade, backend: Backend, table_prefix: str
) -> None:
    sid = plane.open_session("launches", agent_id="bot")
    ticket_id = _ask(plane, sid)
    result = acp(backend, table_prefix, "tickets", "approve", ticket_id, "--by", "bot")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    assert "cannot approve or deny its own call" in result.stderr
    assert "Traceback" not in result.output
    assert plane.get_ticket(ticket_id).status == "pending"


def test_unknown_ticket_ids_exit_2_with_a_clear_message(
    plane: ControlPlaneFacade, backend: Backend, table_prefix: str
) -> None:
    for command in (
        ["show", "no-such-ticket"],
        ["approve", "no-such-ticket", "--by", "alice"],
        ["approve", "no-such-ticket", "--by", "alice", "--for-session"],
        ["deny", "no-such-ticket", "--reason", "x", "--by", "alice"],
    ):
        result = acp(backend, table_prefix, "tickets", *command)
        assert result.exit_code == 2, (command, result.output)
        assert result.stderr.startswith("error: "), result.stderr
        assert "'no-such-ticket'" in result.stderr
        assert "Traceback" not in result.output


def test_expire_escalates_overdue_tickets_then_reports_nothing_overdue(backend: Backend, table_prefix: str) -> None:
    policy = {
        **POLICY,
        "approvals": {
            "timeout_seconds": 600,
            "on_timeout": "escalate",
            "escalate_to": "sre-leads",
            "escalation_timeout_seconds": 300,
        },
    }
    # The agent asked two hours ago; the CLI runs on the system clock, so the ticket is overdue now.
    earlier = ManualClock(SystemClock().now() - timedelta(hours=2))
    with ControlPlaneFacade.from_database_url(
        backend.url, policy=policy, clock=earlier, table_prefix=table_prefix
    ) as cp:
        cp.setup()
        sid = cp.open_session("slow humans", agent_id="bot")
        ticket_id = _ask(cp, sid)

    expired = acp(backend, table_prefix, "tickets", "expire")
    assert expired.exit_code == 0, expired.output
    row = next(line for line in expired.stdout.splitlines() if ticket_id in line)
    assert "escalated" in row and "sre-leads" in row
    assert "1 escalated, 0 expired" in expired.stdout

    assert "no ticket is overdue" in acp(backend, table_prefix, "tickets", "expire").stdout
    assert json.loads(acp(backend, table_prefix, "tickets", "expire", "--json").stdout) == {}
    shown = json.loads(acp(backend, table_prefix, "tickets", "show", ticket_id, "--json").stdout)
    assert (shown["status"], shown["approver_group"]) == ("pending", "sre-leads")
