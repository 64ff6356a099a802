"""`acp policy …`: check a policy file and see how it decides, without a database."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from agent_control_plane._cli_base import add_row, get_console, get_plane, make_table, parse_duration
from agent_control_plane.clock import SystemClock
from agent_control_plane.errors import InvalidInputError, PolicyError
from agent_control_plane.policy.conditions import Facts
from agent_control_plane.policy.engine import PolicyEngine
from agent_control_plane.policy.lint import lint, policy_json_schema
from agent_control_plane.policy.model import line_index, load_policy, nearest_line
from agent_control_plane.policy.testing import default_cases_path, load_cases, run_cases
from agent_control_plane.types.values import to_money

policy_app = typer.Typer(
    no_args_is_help=True,
    help="Write policies like code: validate, explain and test a policy file (no database needed), print its JSON "
    "Schema, and replay recorded proposals under a new policy before shipping it (whatif, which reads --database-url).",
)

PolicyFile = Annotated[Path, typer.Argument(metavar="FILE", help="The policy file (YAML or JSON).")]


@policy_app.command("validate")
def validate(
    file: PolicyFile,
    known_actions: Annotated[
        str | None,
        typer.Option(
            "--known-actions",
            help="The actions your agents propose (comma-separated, or @FILE with one per line): action patterns "
            "matching none of them are reported.",
        ),
    ] = None,
) -> None:
    """Check FILE against the schema and for dead rules; list every problem with its line. Exit 1 if any."""
    console = Console(highlight=False)
    known = None if known_actions is None else _known_actions(known_actions)
    try:
        policy = load_policy(file)
    except PolicyError as exc:
        for problem in exc.errors or [str(exc)]:
            console.print(f"{file}: {problem}", markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    problems = lint(policy, known)
    lines = line_index(yaml.compose(file.read_text(encoding="utf-8"), Loader=yaml.SafeLoader))
    for where, problem in problems:
        line = nearest_line(lines, where)
        console.print(f"{file}: line {line}: {'.'.join(where)}: {problem}", markup=False, soft_wrap=True)
    if problems:
        raise typer.Exit(1)
    console.print(
        f"{file}: valid ({len(policy.rules)} rules, {len(policy.actions)} action patterns, "
        f"default tier {policy.default_tier.value})",
        markup=False,
        soft_wrap=True,
    )


def _known_actions(option: str) -> list[str]:
    if option.startswith("@"):
        try:
            text = Path(option[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidInputError(f"--known-actions: cannot read {option[1:]!r}: {exc.strerror or exc}") from None
        names = [line.strip() for line in text.splitlines()]
    else:
        names = [name.strip() for name in option.split(",")]
    return [name for name in names if name and not name.startswith("#")]


@policy_app.command("schema")
def schema() -> None:
    """Print the policy file's JSON Schema (point your editor's YAML/JSON validation at it)."""
    typer.echo(json.dumps(policy_json_schema(), indent=2, sort_keys=True))


def _amount(text: str, option: str) -> Decimal:
    return to_money(text, option) or Decimal(0)


def _instant(text: str, option: str, expected: str = "an ISO-8601 time such as 2026-11-27T22:30:00Z") -> datetime:
    """An ISO-8601 time with its zone (`2026-11-27T22:30:00Z`)."""
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInputError(f"{option} {text!r}: expected {expected}") from None
    if when.tzinfo is None:
        raise InvalidInputError(f"{option} {text!r}: give the time zone, e.g. {text}Z")
    return when


@policy_app.command("explain")
def explain(
    file: PolicyFile,
    action: Annotated[str, typer.Option("--action", help="The action name to decide.")],
    args: Annotated[str, typer.Option("--args", help="The proposal's arguments as a JSON object.")] = "{}",
    resource: Annotated[str | None, typer.Option("--resource", help="The resource acted on.")] = None,
    agent: Annotated[str | None, typer.Option("--agent", help="The proposing agent's id.")] = None,
    cost: Annotated[str, typer.Option("--cost", help="The proposal's cost.")] = "0",
    at: Annotated[
        str | None, typer.Option("--at", help="When it is proposed, ISO-8601 with a zone (default: now, UTC).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Decide it as a rehearsal (mode dry_run).")] = False,
    session_actions: Annotated[
        int, typer.Option("--session-actions", min=0, help="Actions the session was allowed before this one.")
    ] = 0,
    session_spent: Annotated[
        str, typer.Option("--session-spent", help="Cost the session spent before this one.")
    ] = "0",
    as_json: Annotated[bool, typer.Option("--json", help="Print the decision and its trace as JSON.")] = False,
) -> None:
    """Decide one proposal under FILE and print the tier, the entry that chose it, and every entry consulted."""
    try:
        parsed: Any = json.loads(args)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"--args is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise InvalidInputError('--args must be a JSON object, e.g. \'{"query": "select 1"}\'')
    facts = Facts(
        action,
        parsed,
        resource,
        agent,
        _amount(cost, "--cost"),
        mode="dry_run" if dry_run else "live",
        session_action_count=session_actions,
        session_spent_cost=_amount(session_spent, "--session-spent"),
        now=SystemClock().now() if at is None else _instant(at, "--at"),
    )
    choice = PolicyEngine(file).decide(facts)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "tier": choice.tier.value,
                    "step": choice.step,
                    "rule": choice.rule,
                    "reason": choice.describe(action),
                    "steering": None
                    if choice.steering is None
                    else {"guidance": choice.steering.guidance, "alternatives": list(choice.steering.alternatives)},
                    "trace": [step.as_dict() for step in choice.trace],
                },
                indent=2,
            )
        )
        return
    console = Console(highlight=False)
    console.print(f"{choice.tier.value}: {choice.describe(action)}", markup=False, soft_wrap=True)
    if choice.steering is not None:
        console.print(f"guidance: {choice.steering.guidance}", markup=False, soft_wrap=True)
        if choice.steering.alternatives:
            console.print(f"alternatives: {', '.join(choice.steering.alternatives)}", markup=False)
    table = Table("step", "entry", "applied", "tier", title="trace", title_justify="left")
    for step in choice.trace:
        table.add_row(step.step, step.name, "yes" if step.matched else "no", step.tier.value if step.tier else "")
    console.print(table)


@policy_app.command("test")
def run_tests(
    file: PolicyFile,
    cases: Annotated[
        Path | None,
        typer.Option(
            "--cases",
            help="The test cases file. Default: beside FILE, its stem + .tests.yaml (or .tests.yml, .tests.json).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print every case's result and trace as JSON.")] = False,
) -> None:
    """Decide each test case's proposal under FILE and check the tier (and rule, step, alternatives) it expects.

    Prints PASS or FAIL per case, then "N passed, M failed". Exit 1 if a case failed, 2 if a file is bad.

    A case in the cases file looks like:

    - name: dropping a table is blocked
      proposal: {action: run_sql, args: {query: "DROP TABLE users"}}
      expect: {tier: blocked, rule: no-drop-table}
    """
    policy = load_policy(file)
    cases_path = cases if cases is not None else default_cases_path(file)
    results = run_cases(policy, load_cases(cases_path))
    failed = sum(not result.passed for result in results)
    if as_json:
        summary = {"policy": str(file), "cases": str(cases_path), "passed": len(results) - failed, "failed": failed}
        typer.echo(json.dumps({**summary, "results": [result.as_dict() for result in results]}, indent=2))
    else:
        for result in results:
            typer.echo(result.summary())
        typer.echo(f"{len(results) - failed} passed, {failed} failed")
    if failed:
        raise typer.Exit(1)


# whatif ----------------------------------------------------------------------------------------------
def _since(text: str) -> datetime | timedelta:
    """`7d`, `12h`, `30m` (an age) or an ISO-8601 time with a zone (`2026-11-01T00:00:00Z`)."""
    age = parse_duration(text)
    return age if age is not None else _instant(text, "--since", "an age such as 7d, 12h, 30m or an ISO-8601 time")


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
    report = get_plane(ctx).what_if(file, session_id=session, since=None if since is None else _since(since))
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
    console = get_console()
    console.print(
        f"{report.evaluated} recorded proposals decided again under {file}: {len(report.changes)} would change",
        markup=False,
    )
    if transitions:
        table = make_table("tier transition", "proposals")
        for transition, count in transitions.items():
            add_row(table, transition, str(count))
        console.print(table)
    if report.changes:
        table = make_table("session", "seq", "action", "was", "would be")
        for change in report.changes[:limit]:
            was = f"{change.proposal.tier.value} ({change.proposal.rule or 'default'})"
            now = f"{change.tier.value} ({change.rule or 'default'})"
            add_row(table, change.proposal.session_id, str(change.proposal.seq), change.proposal.facts.action, was, now)
        console.print(table)
        if len(changes) > limit:
            console.print(f"… and {len(changes) - limit} more (raise --limit or use --json)", markup=False)
