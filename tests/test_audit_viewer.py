"""examples/audit_viewer.py reads a real control plane's log, shows its timeline and catches tampering; and the
narrated walkthrough (examples/demo_walkthrough.py) runs end to end.

The viewer and the walkthrough run as subprocesses, the way a reader runs them; `acp events verify --json` runs
in-process, as in test_cli.py, to check that both tell the same story about a log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from agent_control_plane import ControlPlaneFacade, IdentityContext, ModelId, OrgId, TokenUsage
from agent_control_plane.cli import app
from conftest import POLICY, Backend

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
VIEWER = EXAMPLES / "audit_viewer.py"
WALKTHROUGH = EXAMPLES / "demo_walkthrough.py"


def run_script(script: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # Wide enough that no summary folds; none of the developer's ACP_* settings may leak in.
    env = {key: value for key, value in os.environ.items() if not key.startswith("ACP_")} | {"COLUMNS": "250"}
    return subprocess.run(
        [sys.executable, str(script), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def view(backend: Backend, table_prefix: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_script(VIEWER, "--database-url", backend.url, "--table-prefix", table_prefix, *args, cwd=cwd)


def acp_verify_json(backend: Backend, table_prefix: str, *target: str) -> list[dict[str, Any]]:
    argv = ["--database-url", backend.url, "--table-prefix", table_prefix, "events", "verify", *target, "--json"]
    result = CliRunner(env={"ACP_SCHEMA": None}).invoke(app, argv)
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def timeline_rows(out: str) -> dict[int, tuple[str, str, str]]:
    """The viewer's timeline as {seq: (kind, summary, chain mark)}, a folded summary joined back into one line."""
    rows: dict[int, tuple[str, str, str]] = {}
    last = None
    for line in out.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if len(cells) != 5:
            continue
        if cells[0].isdigit():
            last = int(cells[0])
            rows[last] = (cells[2], cells[3], cells[4])
        elif last is not None and not cells[0]:
            kind, summary, mark = rows[last]
            rows[last] = (kind, f"{summary} {cells[3]}", mark)
    return rows


def record_a_session(cp: ControlPlaneFacade) -> str:
    """A session with every kind of entry an auditor looks for; the comments give each event's seq."""
    sid = cp.open_session("nightly-cleanup", agent_id="ops-bot", max_cost=Decimal("5"), max_action_count=20)  # 1
    read = cp.propose(sid, "read_logs", resource="repo/app", cost=Decimal("0.25"), agent_id="ops-bot")  # 2
    cp.settle(read.proposal_id, actual_cost=Decimal("0.20"), result={"lines": 3})  # 3
    assert not cp.propose(sid, "delete_repo", resource="repo/app", cost=Decimal("0.10")).allowed  # 4
    assert not cp.propose(sid, "rewrite_history", resource="repo/app").allowed  # 5
    ask = cp.propose(sid, "send_report", resource="mail/team", cost=Decimal("0.05"))  # 6
    assert ask.ticket_id is not None
    cp.approve(ask.ticket_id, approver="alice", comment="looks fine")  # 7
    granted = cp.resume(ask.ticket_id)  # 8
    cp.settle(granted.proposal_id, actual_cost=Decimal("0.05"), outcome="failed", result={"smtp": 451})  # 9
    usage = TokenUsage(ModelId("claude-haiku-4-5"), input_tokens=1200, output_tokens=300, estimated_cost_usd="0.0042")
    with cp.token_budget_tracker() as tracker:
        tracker.record_usage(sid, IdentityContext(org_id=OrgId("tenant-acme")), usage)  # 10
    cp.kill_session(sid, reason="runaway loop", by="carol")  # 11
    assert not cp.propose(sid, "read_logs", resource="repo/app").allowed  # 12
    cp.close_session(sid, reason="shift over")  # 13
    return sid


def test_viewer_shows_decisions_settlements_approvals_and_kills_and_an_intact_chain(
    cp: ControlPlaneFacade, backend: Backend, table_prefix: str, tmp_path: Path
) -> None:
    sid = record_a_session(cp)

    shown = view(backend, table_prefix, sid, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "nightly-cleanup" in shown.stdout and "ops-bot" in shown.stdout
    assert cp.get_session(sid).policy_hash in shown.stdout
    rows = timeline_rows(shown.stdout)
    assert sorted(rows) == list(range(1, 14))
    assert {mark for _, _, mark in rows.values()} == {"✓"}
    assert rows[2][1].startswith("ALLOW read_logs on repo/app · unrestricted/allowed · cost 0.25 · ")
    assert rows[3][1] == "read_logs succeeded: cost 0.2 (reserved 0.25)"
    assert rows[4][1].startswith("DENY delete_repo on repo/app · blocked/policy_blocked · cost 0.1 · denied: ")
    assert rows[5][1].startswith("STEER rewrite_history on repo/app · steer/steered")
    assert rows[6][1].startswith("ASK send_report on mail/team · always_approve/approval_required")
    ticket = cp.replay(sid)[5].payload["ticket_id"]
    assert rows[7] == ("approval.granted", f"ticket {ticket[:8]} approved by alice: looks fine", "✓")
    assert "approved by alice" in rows[8][1] and rows[8][1].startswith("ALLOW send_report")
    assert rows[9][1] == "send_report failed: cost 0.05 (reserved 0.05)"
    assert rows[10] == (
        "token_usage.recorded",
        "claude-haiku-4-5: 1500 tokens (1200 in, 300 out), $0.0042 for org tenant-acme",
        "✓",
    )
    assert rows[11] == ("kill.engaged", f"kill switch (session {sid[:8]}) engaged by carol: runaway loop", "✓")
    assert rows[12][1].startswith("DENY read_logs on repo/app · unrestricted/killed")
    assert rows[13][1] == "active → completed: shift over"
    assert "chain OK: 13 events verified" in shown.stdout

    as_json = view(backend, table_prefix, sid, "--json", cwd=tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    body = json.loads(as_json.stdout)
    assert [body["verify"]] == acp_verify_json(backend, table_prefix, sid)
    assert [(e["seq"], e["kind"], e["hash"]) for e in body["events"]] == [
        (e.seq, e.kind, e.hash) for e in cp.replay(sid)
    ]
    assert {e["chain"] for e in body["events"]} == {"ok"}
    assert body["events"][1]["summary"] == rows[2][1]
    assert body["session"]["budget"]["spent_cost"] == "0.25"


def test_viewer_says_broken_at_the_edited_seq_and_exits_1(
    cp: ControlPlaneFacade, backend: Backend, table_prefix: str, tmp_path: Path
) -> None:
    sid = record_a_session(cp)
    other = cp.open_session("untouched")
    # Someone lowers the recorded cost of seq 3 behind the control plane's back.
    engine = create_engine(backend.url)
    try:
        with engine.begin() as conn:
            where = f"FROM {table_prefix}events WHERE session_id = :s AND seq = 3"
            payload = json.loads(conn.execute(text(f"SELECT payload {where}"), {"s": sid}).scalar_one())
            forged = json.dumps({**payload, "actual_cost": "0.01"}, sort_keys=True, separators=(",", ":"))
            conn.execute(
                text(f"UPDATE {table_prefix}events SET payload = :p WHERE session_id = :s AND seq = 3"),
                {"p": forged, "s": sid},
            )
    finally:
        engine.dispose()

    shown = view(backend, table_prefix, sid, cwd=tmp_path)
    assert shown.returncode == 1, shown.stderr
    rows = timeline_rows(shown.stdout)
    assert rows[3] == ("proposal.settled", "read_logs succeeded: cost 0.01 (reserved 0.25)", "✗")
    assert [rows[seq][2] for seq in (1, 2, 4, 13)] == ["✓", "✓", "·", "·"]
    assert "chain BROKEN at seq 3: the event's content does not match its hash (the row was edited)" in shown.stdout

    listed = view(backend, table_prefix, cwd=tmp_path)
    assert listed.returncode == 1
    table = [[cell.strip() for cell in line.split("│")[1:-1]] for line in listed.stdout.splitlines() if "│" in line]
    assert [sid, "nightly-cleanup", "ops-bot", "completed", "13", "BROKEN at seq 3"] in table
    assert [other, "untouched", "-", "active", "1", "OK"] in table
    assert ["control", "(control stream)", "-", "-", "1", "OK"] in table  # where the kill switch was logged too

    as_json = view(backend, table_prefix, sid, "--json", cwd=tmp_path)
    assert as_json.returncode == 1
    body = json.loads(as_json.stdout)
    assert [body["verify"]] == acp_verify_json(backend, table_prefix, sid)
    assert body["verify"]["first_bad_seq"] == 3
    assert [e["chain"] for e in body["events"]][:4] == ["ok", "ok", "broken", "unchecked"]


def test_viewer_shows_a_deleted_event_as_missing_where_it_was(tmp_path: Path) -> None:
    database = Backend("sqlite", f"sqlite:///{tmp_path / 'audit.db'}")
    with ControlPlaneFacade.from_database_url(database.url, policy=POLICY) as cp:
        cp.setup()
        sid = record_a_session(cp)
    engine = create_engine(database.url)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM acp_events WHERE session_id = :s AND seq = 4"), {"s": sid})
    engine.dispose()

    shown = view(database, "acp_", sid, cwd=tmp_path)
    assert shown.returncode == 1
    rows = timeline_rows(shown.stdout)
    assert rows[4] == ("(missing)", "seq 4 is missing (the next stored event is seq 5)", "✗")
    assert rows[3][2] == "✓" and rows[5][2] == "·"
    assert "chain BROKEN at seq 4" in shown.stdout


def test_unknown_session_exits_2_with_a_clear_message(
    cp: ControlPlaneFacade, backend: Backend, table_prefix: str, tmp_path: Path
) -> None:
    cp.open_session("another one")
    shown = view(backend, table_prefix, "no-such-session", cwd=tmp_path)
    assert shown.returncode == 2
    assert (
        shown.stderr.strip()
        == "error: no session 'no-such-session' in this database (run without SESSION to list them)"
    )
    assert "Traceback" not in shown.stderr


def test_missing_unmigrated_or_unreachable_databases_exit_2_and_nothing_is_created(tmp_path: Path) -> None:
    missing = view(Backend("sqlite", f"sqlite:///{tmp_path / 'nothing.db'}"), "acp_", cwd=tmp_path)
    assert missing.returncode == 2
    assert f"error: no SQLite database at {tmp_path / 'nothing.db'}" in missing.stderr
    assert not (tmp_path / "nothing.db").exists()

    (tmp_path / "empty.db").touch()
    empty = view(Backend("sqlite", f"sqlite:///{tmp_path / 'empty.db'}"), "acp_", "some-session", cwd=tmp_path)
    assert empty.returncode == 2
    assert "holds no control plane tables with the prefix 'acp_'" in empty.stderr

    refused = view(Backend("postgres", "postgresql://acp:secret@127.0.0.1:1/acp"), "acp_", cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: cannot read postgresql://acp:***@127.0.0.1:1/acp: ")
    assert "secret" not in refused.stderr and "Traceback" not in refused.stderr


def test_walkthrough_types_runs_and_reads_back_the_agent(tmp_path: Path) -> None:
    done = run_script(WALKTHROUGH, "--fast", cwd=tmp_path)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    out = done.stdout
    assert "cat > agent.py <<'EOF'" in out and "cp.propose(sid, action" in out  # the agent, typed out
    # The agent's own decisions...
    assert "read_logs  on ci/web   -> unrestricted" in out
    assert "drop_table on db/users -> blocked      denied: action 'drop_table' is blocked" in out
    assert "deploy     on prod/web -> steer        steered: rule 'staging-first'" in out
    # ...as the CLI replays and verifies them...
    replay = out.split("$ acp events replay ", 1)[1].split("$ acp events verify --all", 1)[0]
    kinds = [row.split("│")[3].strip() for row in replay.splitlines() if row.startswith("│ ")]
    assert kinds == [
        "session.opened",
        "proposal.decided",
        "proposal.settled",
        *["proposal.decided"] * 2,
        "session.status_changed",
    ]
    assert "2 logs verified, 0 broken" in out
    # ...and as the audit viewer shows them.
    assert "STEER deploy on prod/web · steer/steered" in out
    assert "chain OK: 6 events verified" in out
    assert list(tmp_path.iterdir()) == []  # it worked in a folder of its own
