"""The `acp` command line, run in-process against real SQLite and PostgreSQL databases."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner, Result

from agent_control_plane import ControlPlaneFacade, DecisionCode
from agent_control_plane.cli import app, main
from conftest import Backend

# Unset so neither the developer's terminal width nor their schema changes what the tests see.
runner = CliRunner(env={"COLUMNS": None, "ACP_SCHEMA": None})


def acp(backend: Backend, table_prefix: str, *args: str) -> Result:
    """Run `acp` against the test database, as a user would with --database-url and --table-prefix."""
    return runner.invoke(app, ["--database-url", backend.url, "--table-prefix", table_prefix, *args])


def _session_with_work(cp: ControlPlaneFacade) -> str:
    """A session whose log holds 4 events: opened, read allowed, read settled, delete denied."""
    sid = cp.open_session("nightly-cleanup", agent_id="ops-bot", max_cost=Decimal("10"), max_action_count=5)
    decision = cp.propose(sid, "read_branch", args={"name": "tmp/x"}, cost=Decimal("0.25"))
    assert decision.allowed
    cp.settle(decision.proposal_id, actual_cost=Decimal("0.2"))
    assert not cp.propose(sid, "delete_branch", args={"name": "tmp/x"}).allowed
    return sid


def test_every_command_explains_itself_without_touching_a_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    expectations = {
        (): "kill switches",
        ("db",): "schema",
        ("db", "upgrade"): "upgrade",
        ("db", "current"): "revision",
        ("sessions",): "budget",
        ("sessions", "list"): "oldest first",
        ("sessions", "show"): "reserved",
        ("events",): "verify",
        ("events", "replay"): "--after-seq",
        ("events", "verify"): "--all",
        ("kill",): "released",
        ("kill", "system"): "every session",
        ("kill", "session"): "one session",
        ("kill", "agent"): "one agent",
        ("kill", "release"): "--reason",
        ("kill", "list"): "--all",
    }
    for command, phrase in expectations.items():
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0, (command, result.output)
        assert phrase in result.stdout, (command, result.stdout)
    assert list(tmp_path.iterdir()) == []


def test_db_upgrade_is_idempotent_and_current_reports_the_revision(backend: Backend, table_prefix: str) -> None:
    before = acp(backend, table_prefix, "db", "current")
    assert before.exit_code == 0, before.output
    assert "acp db upgrade" in before.stdout

    first = acp(backend, table_prefix, "db", "upgrade")
    second = acp(backend, table_prefix, "db", "upgrade")
    assert first.exit_code == second.exit_code == 0, first.output + second.output
    assert first.stdout == second.stdout
    assert "schema is at revision" in first.stdout

    revision = first.stdout.split()[-1]
    current = acp(backend, table_prefix, "db", "current")
    assert current.exit_code == 0
    assert current.stdout.strip() == revision


def test_sessions_list_and_show_report_budget_use(cp: ControlPlaneFacade, backend: Backend, table_prefix: str) -> None:
    sid = _session_with_work(cp)

    table = acp(backend, table_prefix, "sessions", "list")
    assert table.exit_code == 0, table.output
    row = next(line for line in table.stdout.splitlines() if sid in line)
    for cell in ("nightly-cleanup", "ops-bot", "active", "0.2 / 10", "1 / 5"):
        assert cell in row, (cell, row)

    listed = json.loads(acp(backend, table_prefix, "sessions", "list", "--json").stdout)
    assert [s["session_id"] for s in listed] == [sid]
    assert listed[0]["budget"]["spent_cost"] == "0.2"
    assert listed[0]["event_count"] == 4
    datetime.fromisoformat(listed[0]["created_at"])

    assert json.loads(acp(backend, table_prefix, "sessions", "list", "--status", "completed", "--json").stdout) == []

    shown = json.loads(acp(backend, table_prefix, "sessions", "show", sid, "--json").stdout)
    assert shown["budget"] == {
        "max_cost": "10",
        "spent_cost": "0.2",
        "reserved_cost": "0",
        "remaining_cost": "9.8",
        "max_action_count": 5,
        "action_count": 1,
        "remaining_count": 4,
    }
    detail = acp(backend, table_prefix, "sessions", "show", sid)
    assert detail.exit_code == 0
    assert "9.8" in detail.stdout
    assert shown["policy_hash"] in detail.stdout


def test_events_replay_prints_json_lines_with_every_field(
    cp: ControlPlaneFacade, backend: Backend, table_prefix: str
) -> None:
    sid = _session_with_work(cp)

    result = acp(backend, table_prefix, "events", "replay", sid, "--json")
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["seq"] for e in events] == [1, 2, 3, 4]
    assert [e["kind"] for e in events] == [
        "session.opened",
        "proposal.decided",
        "proposal.settled",
        "proposal.decided",
    ]
    assert set(events[0]) == {"session_id", "seq", "kind", "payload", "recorded_at", "prev_hash", "hash"}
    assert events[1]["payload"]["args"] == {"name": "tmp/x"}
    assert events[1]["prev_hash"] == events[0]["hash"]
    assert datetime.fromisoformat(events[0]["recorded_at"]).tzinfo is not None

    page = acp(backend, table_prefix, "events", "replay", sid, "--after-seq", "1", "--limit", "2", "--json")
    assert [json.loads(line)["seq"] for line in page.stdout.splitlines()] == [2, 3]

    table = acp(backend, table_prefix, "events", "replay", sid, "--limit", "2")
    assert table.exit_code == 0
    assert "action=read_branch" in table.stdout
    assert "delete_branch" not in table.stdout
    assert "--after-seq 2" in table.stdout


def test_verify_passes_then_names_the_seq_edited_behind_its_back(
    cp: ControlPlaneFacade, backend: Backend, table_prefix: str
) -> None:
    sid = _session_with_work(cp)
    other = cp.open_session("untouched")

    intact = acp(backend, table_prefix, "events", "verify", sid)
    assert intact.exit_code == 0, intact.output
    assert intact.stdout.startswith("OK")
    assert acp(backend, table_prefix, "events", "verify", "--all").exit_code == 0

    engine = create_engine(backend.url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(f"UPDATE {table_prefix}events SET payload = :p WHERE session_id = :s AND seq = 2"),
                {"p": '{"action":"read_branch","cost":"0"}', "s": sid},
            )
    finally:
        engine.dispose()

    broken = acp(backend, table_prefix, "events", "verify", sid)
    assert broken.exit_code == 1, broken.output
    assert broken.stdout.startswith(f"BROKEN  {sid} at seq 2: ")

    everything = acp(backend, table_prefix, "events", "verify", "--all")
    assert everything.exit_code == 1
    assert f"OK      {other}" in everything.stdout
    assert "1 broken" in everything.stdout

    reports = json.loads(acp(backend, table_prefix, "events", "verify", "--all", "--json").stdout)
    by_stream = {r["session_id"]: r for r in reports}
    assert by_stream[sid]["ok"] is False
    assert by_stream[sid]["first_bad_seq"] == 2
    assert by_stream[other]["ok"] is True


def test_verify_needs_exactly_one_of_a_session_or_all(
    cp: ControlPlaneFacade, backend: Backend, table_prefix: str
) -> None:
    sid = cp.open_session("one")
    for args in ([], [sid, "--all"]):
        result = acp(backend, table_prefix, "events", "verify", *args)
        assert result.exit_code == 2
        assert "give exactly one of a SESSION id or" in result.stderr


def test_kill_system_denies_proposals_until_released(
    cp: ControlPlaneFacade, backend: Backend, table_prefix: str
) -> None:
    sid = cp.open_session("worker")

    engaged = acp(backend, table_prefix, "kill", "system", "--reason", "incident 42", "--by", "alice")
    assert engaged.exit_code == 0, engaged.output
    assert "engaged by alice" in engaged.stdout

    denied = cp.propose(sid, "read_logs")
    assert not denied.allowed
    assert denied.code is DecisionCode.KILLED
    assert "incident 42" in denied.reason
    assert "alice" in denied.reason

    listed = json.loads(acp(backend, table_prefix, "kill", "list", "--json").stdout)
    assert [(k["scope"], k["reason"], k["engaged_by"]) for k in listed] == [("system", "incident 42", "alice")]
    assert "incident 42" in acp(backend, table_prefix, "kill", "list").stdout

    released = acp(backend, table_prefix, "kill", "release", "system", "--reason", "fixed", "--by", "bob")
    assert released.exit_code == 0, released.output
    assert cp.propose(sid, "read_logs").allowed

    assert "no kill switch is engaged" in acp(backend, table_prefix, "kill", "list").stdout
    history = acp(backend, table_prefix, "kill", "list", "--all")
    assert "by bob: fixed" in history.stdout


def test_session_and_agent_kill_switches_stop_only_what_they_name(
    cp: ControlPlaneFacade, backend: Backend, table_prefix: str
) -> None:
    stopped, running = cp.open_session("stopped"), cp.open_session("running")

    assert acp(backend, table_prefix, "kill", "session", stopped, "--reason", "loops").exit_code == 0
    assert acp(backend, table_prefix, "kill", "agent", "rogue-bot", "--reason", "spends").exit_code == 0
    assert not cp.propose(stopped, "read_x").allowed
    assert cp.propose(running, "read_x").allowed
    assert not cp.propose(running, "read_x", agent_id="rogue-bot").allowed

    assert acp(backend, table_prefix, "kill", "release", "session", stopped, "--reason", "ok").exit_code == 0
    assert acp(backend, table_prefix, "kill", "release", "agent", "rogue-bot", "--reason", "ok").exit_code == 0
    assert cp.propose(stopped, "read_x", agent_id="rogue-bot").allowed


def test_unknown_ids_and_missing_switches_exit_2_with_a_clear_message(
    cp: ControlPlaneFacade, backend: Backend, table_prefix: str
) -> None:
    for command in (
        ["sessions", "show", "no-such-session"],
        ["events", "replay", "no-such-session"],
        ["events", "verify", "no-such-session"],
        ["kill", "session", "no-such-session", "--reason", "x"],
    ):
        result = acp(backend, table_prefix, *command)
        assert result.exit_code == 2, (command, result.output)
        assert result.stderr.startswith("error: "), result.stderr
        assert "'no-such-session'" in result.stderr
        assert "Traceback" not in result.output

    release = acp(backend, table_prefix, "kill", "release", "system", "--reason", "nothing to release")
    assert release.exit_code == 2
    assert "no engaged kill switch for system" in release.stderr

    targetless = acp(backend, table_prefix, "kill", "release", "agent", "--reason", "which one?")
    assert targetless.exit_code == 2
    assert "needs the agent id" in targetless.stderr


def test_a_database_without_the_schema_says_to_run_db_upgrade(backend: Backend, table_prefix: str) -> None:
    result = acp(backend, table_prefix, "sessions", "list")
    assert result.exit_code == 2
    assert "acp db upgrade" in result.stderr
    assert "Traceback" not in result.output


def test_a_wrong_table_prefix_names_the_database_and_prefix_to_check(cp: ControlPlaneFacade, backend: Backend) -> None:
    result = acp(backend, "wrong_", "sessions", "list")
    assert result.exit_code == 2
    database = make_url(backend.url).render_as_string(hide_password=True)
    assert f"database {database}; table prefix 'wrong_'" in result.stderr
    assert "If this is the right database and table prefix, run cp.setup() or `acp db upgrade`" in result.stderr
    assert "otherwise check the database URL, table prefix and schema (--database-url, --table-prefix" in result.stderr


def test_db_upgrade_of_a_schema_newer_than_the_package_is_an_error_not_a_traceback(
    cp: ControlPlaneFacade, backend: Backend, table_prefix: str
) -> None:
    with cp.engine.begin() as conn:
        conn.execute(text(f"UPDATE {cp.registry.version_table} SET version_num = 'ffffffffffff'"))
    result = acp(backend, table_prefix, "db", "upgrade")
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert result.stderr.startswith("error: cannot upgrade the schema: the database is at revision 'ffffffffffff'")
    assert "which this version of agent-control-plane does not know" in result.stderr
    assert f"table prefix {table_prefix!r}" in result.stderr and "Upgrade the package" in result.stderr
    assert acp(backend, table_prefix, "db", "current").stdout.strip() == "ffffffffffff"


def test_acp_takes_an_asyncio_driver_url(backend: Backend, table_prefix: str) -> None:
    upgraded = acp(Backend(backend.name, backend.async_url), table_prefix, "db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    assert "schema is at revision" in upgraded.stdout
    with ControlPlaneFacade.from_database_url(backend.url, table_prefix=table_prefix) as plane:
        sid = plane.open_session("seen through asyncpg / aiosqlite URLs")
    listed = acp(Backend(backend.name, backend.async_url), table_prefix, "sessions", "list", "--json")
    assert listed.exit_code == 0, listed.output
    assert [s["session_id"] for s in json.loads(listed.stdout)] == [sid]


def test_a_mistyped_sqlite_path_is_refused_without_creating_a_file_there(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'typo.db'}"
    for command in (["sessions", "list"], ["events", "verify", "--all"], ["tickets", "list"], ["kill", "list"]):
        result = runner.invoke(app, ["--database-url", url, *command])
        assert result.exit_code == 2, (command, result.output)
        assert f"there is no SQLite database at {tmp_path / 'typo.db'}" in result.stderr
        assert "acp db upgrade" in result.stderr
    current = runner.invoke(app, ["--database-url", url, "db", "current"])
    assert current.exit_code == 0 and "no database at" in current.stdout
    assert list(tmp_path.iterdir()) == []
    created = runner.invoke(app, ["--database-url", url, "db", "upgrade"])
    assert created.exit_code == 0, created.output
    listed = runner.invoke(app, ["--database-url", url, "sessions", "list"])
    assert listed.exit_code == 0 and "no sessions" in listed.stdout


def test_an_invalid_table_prefix_is_refused_before_connecting(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["--database-url", f"sqlite:///{tmp_path / 'x.db'}", "--table-prefix", "Bad-", "sessions", "list"],
    )
    assert result.exit_code == 2
    assert "table_prefix 'Bad-'" in result.stderr
    assert not (tmp_path / "x.db").exists()


def test_global_options_come_from_the_environment(cp: ControlPlaneFacade, backend: Backend, table_prefix: str) -> None:
    sid = cp.open_session("from env")
    result = runner.invoke(
        app,
        ["sessions", "list", "--json"],
        env={"ACP_DATABASE_URL": backend.url, "ACP_TABLE_PREFIX": table_prefix},
    )
    assert result.exit_code == 0, result.output
    assert [s["session_id"] for s in json.loads(result.stdout)] == [sid]


def test_schema_option_keeps_tables_in_their_own_postgres_schema(postgres_database: str, table_prefix: str) -> None:
    backend = Backend("postgres", postgres_database)
    schema = f"s{uuid.uuid4().hex[:10]}"
    assert acp(backend, table_prefix, "--schema", schema, "db", "upgrade").exit_code == 0
    with ControlPlaneFacade.from_database_url(backend.url, table_prefix=table_prefix, schema=schema) as plane:
        sid = plane.open_session("schema-bound")
    inside = acp(backend, table_prefix, "--schema", schema, "sessions", "list", "--json")
    assert [s["session_id"] for s in json.loads(inside.stdout)] == [sid]
    outside = acp(backend, table_prefix, "sessions", "list")
    assert outside.exit_code == 2


def test_console_script_entry_point_exits_with_the_command_status(
    cp: ControlPlaneFacade, backend: Backend, table_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--database-url", backend.url, "--table-prefix", table_prefix, "sessions", "show", "missing"])
    assert exited.value.code == 2
    assert capsys.readouterr().err.startswith("error: unknown session id 'missing'")
