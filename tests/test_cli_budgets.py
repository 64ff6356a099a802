"""`acp budgets` and `acp usage`: token budgets and model usage from the shell, on real SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner, Result

from agent_control_plane import (
    BudgetPeriod,
    ControlPlaneFacade,
    IdentityContext,
    ModelId,
    OrgId,
    TeamId,
    TokenBudgetConfig,
    TokenUsage,
    UserId,
)
from agent_control_plane.cli import app
from conftest import Backend

# Unset so neither the developer's terminal width nor their schema changes what the tests see.
runner = CliRunner(env={"COLUMNS": None, "ACP_SCHEMA": None})

ACME = IdentityContext(org_id=OrgId("acme"))
ALICE = IdentityContext(user_id=UserId("alice"), org_id=OrgId("acme"), team_id=TeamId("web"))
BOB = IdentityContext(user_id=UserId("bob"), org_id=OrgId("acme"), team_id=TeamId("data"))
EVE = IdentityContext(user_id=UserId("eve"), org_id=OrgId("globex"))


def acp(backend: Backend, table_prefix: str, *args: str) -> Result:
    """Run `acp` against the test database, as a user would with --database-url and --table-prefix."""
    return runner.invoke(app, ["--database-url", backend.url, "--table-prefix", table_prefix, *args])


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout


def error(result: Result) -> str:
    """The `error: …` line a refused command prints (exit code 2, no traceback)."""
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return result.stderr


def usage_error(result: Result) -> str:
    """A usage error's message as one line: Rich wraps it in a box at the terminal's width."""
    assert result.exit_code == 2, result.output
    return " ".join(result.stderr.replace("│", " ").split())


def row_of(output: str, *cells: str) -> str:
    """The one table line holding every cell."""
    rows = [line for line in output.splitlines() if all(cell in line for cell in cells)]
    assert len(rows) == 1, (cells, output)
    return rows[0]


def cells(row: str) -> list[str]:
    """A table line's cells, stripped."""
    return [cell.strip() for cell in row.strip().strip("│").split("│")]


@pytest.fixture
def plane(backend: Backend, table_prefix: str) -> Iterator[ControlPlaneFacade]:
    """The host's control plane, on the system clock like the CLI's (so both see the same windows)."""
    with ControlPlaneFacade.from_database_url(backend.url, table_prefix=table_prefix) as cp:
        cp.setup()
        yield cp


def _record(
    cp: ControlPlaneFacade,
    identity: IdentityContext,
    model: str,
    tokens_in: int,
    tokens_out: int,
    cost: str,
    session_id: str | None = None,
) -> None:
    usage = TokenUsage(
        model_id=ModelId(model), input_tokens=tokens_in, output_tokens=tokens_out, estimated_cost_usd=cost
    )
    with cp.token_budget_tracker() as tracker:
        tracker.record_usage(session_id, identity, usage)


def test_every_budget_command_explains_itself() -> None:
    expectations = {
        (): "token budgets",
        ("budgets",): "per day, week, month",
        ("budgets", "list"): "reserved",
        ("budgets", "set"): "--allow-model",
        ("budgets", "delete"): "ledger keeps",
        ("usage",): "per model",
    }
    for command, phrase in expectations.items():
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0, (command, result.output)
        assert phrase in " ".join(result.stdout.replace("│", " ").split()), (command, result.stdout)
    options = " ".join(runner.invoke(app, ["budgets", "set", "--help"]).stdout.split())
    for option in ("--org", "--team", "--user", "--everyone", "--period", "--max-tokens", "--max-cost", "--timezone"):
        assert option in options, option


def test_set_creates_then_updates_then_leaves_a_budget_and_logs_each_change(
    plane: ControlPlaneFacade, backend: Backend, table_prefix: str
) -> None:
    assert "no token budgets" in ok(acp(backend, table_prefix, "budgets", "list"))
    budget = ["budgets", "set", "--org", "acme", "--period", "daily", "--timezone", "Europe/Berlin"]

    created = ok(acp(backend, table_prefix, *budget, "--max-tokens", "2000", "--max-cost", "5"))
    assert "created: daily budget of org acme (2000 tokens and $5)" in created
    assert "Europe/Berlin" in row_of(created, "time zone")
    assert "2000" in row_of(created, "tokens left")

    updated = ok(
        acp(
            backend, table_prefix, *budget, "--max-tokens", "3000", "--max-cost", "5.00",
            "--allow-model", "claude-haiku-*", "--allow-model", "gpt-4o-mini",
        )
    )  # fmt: skip
    assert "updated (max tokens 2000 → 3000, models any → claude-haiku-*, gpt-4o-mini)" in updated
    assert "(3000 tokens and $5)" in updated

    again = ok(
        acp(
            backend, table_prefix, *budget, "--max-tokens", "3000", "--max-cost", "5",
            "--allow-model", "claude-haiku-*", "--allow-model", "gpt-4o-mini",
        )
    )  # fmt: skip
    assert again.startswith("unchanged: daily budget of org acme")

    events = plane.replay("control")
    assert [event.kind for event in events] == ["token_budget.created", "token_budget.updated"]
    assert events[0].payload["identity"] == {"org_id": "acme", "team_id": None, "user_id": None}
    assert events[0].payload["max_tokens"] == 2000
    assert events[1].payload["allowed_models"] == ["claude-haiku-*", "gpt-4o-mini"]
    replayed = ok(acp(backend, table_prefix, "events", "replay", "control"))
    assert "period=daily max_tokens=2000 max_cost_usd=5" in row_of(replayed, "token_budget.created")

    (state,) = plane.list_token_budgets()
    assert state.config.max_tokens == 3000
    assert state.config.max_cost == Decimal(5)
    assert state.config.models == ("claude-haiku-*", "gpt-4o-mini")
    assert state.config.timezone == "Europe/Berlin"


def test_set_without_options_for_a_cap_removes_that_cap(
    plane: ControlPlaneFacade, backend: Backend, table_prefix: str
) -> None:
    plane.set_token_budget(TokenBudgetConfig(ACME, "weekly", max_tokens=100, max_cost_usd="1", allowed_models=["m"]))

    out = ok(acp(backend, table_prefix, "budgets", "set", "--org", "acme", "--period", "weekly", "--max-cost", "2"))

    assert "updated (max tokens 100 → ∞, max cost 1 → 2, models m → any)" in out
    (state,) = plane.list_token_budgets()
    assert (state.config.max_tokens, state.config.max_cost, state.config.models) == (None, Decimal(2), None)


def test_list_shows_what_an_org_budget_counts_for_every_team_and_user_of_the_org(
    plane: ControlPlaneFacade, backend: Backend, table_prefix: str
) -> None:
    plane.set_token_budget(TokenBudgetConfig(ACME, "unlimited", max_tokens=1000, max_cost_usd="1"))
    plane.set_token_budget(TokenBudgetConfig(ALICE, "daily", max_cost_usd="0.5", allowed_models=["m*"]))
    _record(plane, ALICE, "m1", 100, 50, "0.01")
    _record(plane, BOB, "m2", 200, 0, "0.02")
    _record(plane, EVE, "m1", 400, 0, "0.5")

    table = ok(acp(backend, table_prefix, "budgets", "list"))
    org_row = row_of(table, "acme", "unlimited")
    for cell in ("*", "UTC", "1000", "350 / 0 / 650", "0.03 / 0 / 0.97", "never", "any"):
        assert cell in org_row, (cell, org_row)
    alice_row = row_of(table, "alice", "daily")
    for cell in ("web", "∞", "0.5", "150 / 0 / ∞", "0.01 / 0 / 0.49", "m*"):
        assert cell in alice_row, (cell, alice_row)

    listed = {
        b["config"]["identity"]["user_id"]: b
        for b in json.loads(ok(acp(backend, table_prefix, "budgets", "list", "--json")))
    }
    assert set(listed) == {None, "alice"}
    org = listed[None]
    assert org["config"]["identity"] == {"org_id": "acme", "team_id": None, "user_id": None}
    assert org["config"]["period"] == "unlimited"
    assert (org["tokens_used"], org["cost_used_usd"], org["remaining_tokens"], org["remaining_cost_usd"]) == (
        350, "0.03", 650, "0.97",
    )  # fmt: skip
    assert org["window_end"] is None
    assert org["exhausted"] is False
    alice = listed["alice"]
    assert alice["config"]["allowed_models"] == ["m*"]
    assert alice["config"]["max_tokens"] is None
    assert alice["remaining_tokens"] is None
    start, end = datetime.fromisoformat(alice["window_start"]), datetime.fromisoformat(alice["window_end"])
    assert end - start == timedelta(days=1)
    assert start <= datetime.now(tz=start.tzinfo) < end


def test_everyone_budget_needs_everyone_and_covers_every_call(
    plane: ControlPlaneFacade, backend: Backend, table_prefix: str
) -> None:
    nobody = acp(backend, table_prefix, "budgets", "set", "--period", "monthly", "--max-tokens", "10")
    assert "say whom the budget covers with --org, --team and/or --user" in error(nobody)
    assert "--everyone" in nobody.stderr
    both = acp(backend, table_prefix, "budgets", "set", "--everyone", "--org", "acme", "--period", "monthly")
    assert "--everyone covers all identities" in error(both)
    assert plane.list_token_budgets() == []

    created = ok(
        acp(backend, table_prefix, "budgets", "set", "--everyone", "--period", "unlimited", "--max-tokens", "10")
    )
    assert "created: unlimited budget of everyone (10 tokens)" in created
    _record(plane, EVE, "m1", 4, 2, "0")
    assert cells(row_of(ok(acp(backend, table_prefix, "budgets", "list")), "unlimited"))[:5] == [
        "*", "*", "*", "unlimited", "UTC",
    ]  # fmt: skip
    (state,) = plane.list_token_budgets()
    assert state.tokens_used == 6

    assert "error: " in error(acp(backend, table_prefix, "budgets", "delete", "--period", "unlimited"))
    assert "deleted: unlimited budget of everyone" in ok(
        acp(backend, table_prefix, "budgets", "delete", "--everyone", "--period", "unlimited")
    )


def test_delete_removes_only_the_named_budget_and_logs_it(
    plane: ControlPlaneFacade, backend: Backend, table_prefix: str
) -> None:
    plane.set_token_budget(TokenBudgetConfig(ACME, "daily", max_tokens=100))
    plane.set_token_budget(TokenBudgetConfig(ALICE, "daily", max_tokens=10))

    out = ok(acp(backend, table_prefix, "budgets", "delete", "--org", "acme", "--period", "daily"))

    assert "deleted: daily budget of org acme (100 tokens)" in out
    assert [state.config.identity for state in plane.list_token_budgets()] == [ALICE]
    deleted = plane.replay("control")[-1]
    assert deleted.kind == "token_budget.deleted"
    assert deleted.payload["identity"] == {"org_id": "acme", "team_id": None, "user_id": None}

    missing = acp(backend, table_prefix, "budgets", "delete", "--org", "acme", "--period", "daily")
    assert "no daily token budget for org acme" in error(missing)
    other_period = acp(backend, table_prefix, "budgets", "delete", "--org", "acme", "--team", "web", "--user", "alice",
                       "--period", "weekly")  # fmt: skip
    assert "no weekly token budget for org acme / team web / user alice" in error(other_period)


def test_usage_breaks_calls_down_per_model_with_a_total(
    plane: ControlPlaneFacade, backend: Backend, table_prefix: str
) -> None:
    plane.set_token_budget(TokenBudgetConfig(ACME, "daily", max_tokens=1000, max_cost_usd="1"))
    _record(plane, ALICE, "claude-haiku", 100, 50, "0.01")
    _record(plane, ALICE, "claude-haiku", 10, 5, "0.0042")
    _record(plane, BOB, "gpt-mini", 200, 20, "0.02")
    _record(plane, EVE, "gpt-mini", 9000, 0, "9")

    out = ok(acp(backend, table_prefix, "usage", "--org", "acme"))
    assert out.startswith("usage of org acme, daily window ")
    assert "UTC (time zone UTC)" in out.splitlines()[0]
    for model, expected in {
        "claude-haiku": ("2", "110", "55", "165", "0.0142"),
        "gpt-mini": ("1", "200", "20", "220", "0.02"),
        "total": ("3", "310", "75", "385", "0.0342"),
    }.items():
        line = row_of(out, f"│ {model} ")
        assert cells(line)[1:] == list(expected), line
    assert cells(row_of(out, "│ org acme "))[:4] == ["org acme", "daily", "385 / 1000", "0.0342 / 1"]

    summary = json.loads(ok(acp(backend, table_prefix, "usage", "--org", "acme", "--json")))
    assert summary["identity"] == {"org_id": "acme", "team_id": None, "user_id": None}
    assert summary["period"] == "daily"
    assert (summary["calls"], summary["input_tokens"], summary["output_tokens"], summary["total_tokens"]) == (
        3, 310, 75, 385,
    )  # fmt: skip
    assert summary["cost_usd"] == "0.0342"
    assert summary["by_model"]["claude-haiku"] == {
        "model_id": "claude-haiku", "calls": 2, "input_tokens": 110, "output_tokens": 55, "total_tokens": 165,
        "cost_usd": "0.0142",
    }  # fmt: skip
    assert set(summary["by_model"]) == {"claude-haiku", "gpt-mini"}
    assert [(b["config"]["period"], b["tokens_used"], b["remaining_tokens"]) for b in summary["budgets"]] == [
        ("daily", 385, 615)
    ]

    alice = json.loads(ok(acp(backend, table_prefix, "usage", "--org", "acme", "--user", "alice", "--json")))
    assert (alice["calls"], alice["total_tokens"], list(alice["by_model"])) == (2, 165, ["claude-haiku"])
    team = json.loads(ok(acp(backend, table_prefix, "usage", "--team", "data", "--json")))
    assert (team["calls"], team["total_tokens"], team["budgets"]) == (1, 220, [])
    everybody = json.loads(ok(acp(backend, table_prefix, "usage", "--period", "unlimited", "--json")))
    assert (everybody["calls"], everybody["cost_usd"], everybody["window_start"]) == (4, "9.0342", None)


def test_usage_window_follows_period_and_time_zone(
    plane: ControlPlaneFacade, backend: Backend, table_prefix: str
) -> None:
    weekly = json.loads(
        ok(acp(backend, table_prefix, "usage", "--org", "acme", "--period", "weekly", "--timezone", "Europe/Berlin",
               "--json"))
    )  # fmt: skip
    start, end = datetime.fromisoformat(weekly["window_start"]), datetime.fromisoformat(weekly["window_end"])
    local = start.astimezone(ZoneInfo("Europe/Berlin"))
    assert (local.weekday(), local.hour, local.minute) == (0, 0, 0)
    assert timedelta(days=7) - timedelta(hours=1) <= end - start <= timedelta(days=7) + timedelta(hours=1)
    assert weekly["calls"] == 0

    empty = ok(
        acp(backend, table_prefix, "usage", "--org", "acme", "--period", "weekly", "--timezone", "Europe/Berlin")
    )
    assert "(time zone Europe/Berlin)" in empty
    assert "no model calls recorded in this window" in empty
    assert "no token budget covers org acme" in empty
    assert ok(acp(backend, table_prefix, "usage", "--period", "unlimited")).startswith("usage of everyone, all time")


def test_a_new_budget_counts_the_usage_already_recorded_in_its_window(
    plane: ControlPlaneFacade, backend: Backend, table_prefix: str
) -> None:
    _record(plane, ALICE, "m1", 100, 50, "0.25")
    _record(plane, EVE, "m1", 1, 1, "1")

    out = ok(acp(backend, table_prefix, "budgets", "set", "--org", "acme", "--period", "unlimited", "--max-cost", "1"))

    assert row_of(out, "tokens used").split() == ["tokens", "used", "150"]
    assert row_of(out, "cost left").split() == ["cost", "left", "0.75"]


def test_token_events_get_a_summary_in_the_replay(
    plane: ControlPlaneFacade, backend: Backend, table_prefix: str
) -> None:
    sid = plane.open_session("chat")
    _record(plane, ALICE, "claude-haiku", 100, 50, "0.01", session_id=sid)
    plane.set_token_budget(TokenBudgetConfig(ACME, "daily", allowed_models=["claude-*"]))
    with plane.token_budget_tracker() as tracker:
        assert not tracker.check_model_access(ALICE, "gpt-5").allowed

    session_log = ok(acp(backend, table_prefix, "events", "replay", sid))
    control = ok(acp(backend, table_prefix, "events", "replay", "control"))

    assert "model_id=claude-haiku total_tokens=150 cost_usd=0.01" in row_of(session_log, "token_usage.recorded")
    assert 'model_id=gpt-5 identity={"org_id": "acme"' in row_of(control, "model_access.denied")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-cost", "abc"], "--max-cost is not a number: 'abc'"),
        (["--max-cost", "-1"], "--max-cost must not be negative"),
        (["--max-cost", "0.0000000001"], "--max-cost has more than 9 decimal places"),
        (["--max-cost", "NaN"], "--max-cost must be a finite number"),
        (["--timezone", "Mars/Olympus"], "unknown time zone 'Mars/Olympus'"),
        (["--allow-model", " spaced "], "allowed_models entry must be non-empty without leading or trailing spaces"),
    ],
)
def test_set_refuses_bad_values_before_writing(
    plane: ControlPlaneFacade, backend: Backend, table_prefix: str, args: list[str], message: str
) -> None:
    result = acp(backend, table_prefix, "budgets", "set", "--org", "acme", "--period", "daily", *args)
    assert message in error(result)
    assert plane.list_token_budgets() == []
    assert plane.replay("control") == []


def test_unknown_periods_and_negative_caps_are_usage_errors(backend: Backend, table_prefix: str) -> None:
    for command in (
        ["budgets", "set", "--org", "acme", "--period", "hourly"],
        ["budgets", "delete", "--org", "acme", "--period", "hourly"],
        ["usage", "--org", "acme", "--period", "hourly"],
    ):
        message = usage_error(acp(backend, table_prefix, *command))
        assert "Invalid value for '--period'" in message, (command, message)
        assert "'hourly' is not one of 'daily', 'weekly', 'monthly', 'unlimited'" in message, (command, message)
    negative = acp(backend, table_prefix, "budgets", "set", "--org", "acme", "--period", "daily", "--max-tokens", "-5")
    assert "Invalid value for '--max-tokens'" in usage_error(negative)
    missing = acp(backend, table_prefix, "budgets", "set", "--org", "acme")
    assert "Missing option '--period'" in usage_error(missing)


def test_period_names_match_the_library(plane: ControlPlaneFacade, backend: Backend, table_prefix: str) -> None:
    for period in BudgetPeriod:
        ok(acp(backend, table_prefix, "budgets", "set", "--org", "acme", "--period", period.value, "--max-tokens", "1"))
    assert sorted(state.config.budget_period.value for state in plane.list_token_budgets()) == sorted(BudgetPeriod)
