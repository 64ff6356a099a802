"""Narrated walkthrough: an agent file is typed live, run under the control plane, and its log read back.

Run it from anywhere with `python examples/demo_walkthrough.py` (`--fast` drops every delay, as the tests do);
`make demo-asciicast-agent` records it with asciinema. It works in a fresh temporary folder (or `--dir PATH`,
which keeps the files), so it never touches your own acp.db:

1. it types `agent.py`, a 25-line agent with an inline policy, character by character;
2. runs it with this same Python: one action is allowed and settled, one blocked, one steered elsewhere;
3. reads what was kept with the real CLI (`acp sessions list`, `acp events replay`, `acp events verify --all`);
4. and shows the session's timeline with examples/audit_viewer.py, every event's hash checked.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

HERE = Path(__file__).resolve().parent
VIEWER = HERE / "audit_viewer.py"
DATABASE_URL = "sqlite:///agent.db"  # relative: every step runs inside the demo folder

AGENT = '''"""A tiny agent under the control plane: it proposes each action first, and runs only what is allowed."""
import os
from decimal import Decimal

from agent_control_plane import ControlPlaneFacade

POLICY = {
    "actions": {"read_*": "unrestricted", "drop_*": "blocked", "deploy": "auto_approve"},
    "rules": [{"name": "staging-first", "when": {"field": "resource", "glob": "prod/*"}, "tier": "steer",
               "guidance": "deploy to staging and run the smoke tests first", "alternatives": ["deploy_staging"]}],
}
PLAN = [("read_logs", "ci/web"), ("drop_table", "db/users"), ("deploy", "prod/web")]

cp = ControlPlaneFacade.from_database_url(os.environ["ACP_DATABASE_URL"], policy=POLICY)
cp.setup()  # creates the tables on first use
sid = cp.open_session("release v2", agent_id="demo-bot", max_cost=Decimal("1.00"))
print("session", sid)
for action, resource in PLAN:
    d = cp.propose(sid, action, resource=resource, cost=Decimal("0.10"), agent_id="demo-bot")
    print(f"{action:<10} on {resource:<8} -> {d.tier.value:<12} {d.reason}")
    if d.allowed:  # the real tool would run here; then the host reports what it cost
        cp.settle(d.proposal_id, actual_cost=Decimal("0.08"), result={"lines": 120})
    elif d.steering is not None:
        print(f"{'':24}the agent may re-plan with: {', '.join(d.steering.alternatives)}")
cp.close_session(sid, reason="release planned")
cp.close()
'''
SESSION_LINE = re.compile(r"^session (\S+)$", re.MULTILINE)


class Walkthrough:
    """Prints narration, types text like a person would, and runs each command for real in the demo folder."""

    def __init__(self, folder: Path, *, char_delay: float, pause: float) -> None:
        self.folder = folder
        self.char_delay = char_delay
        self.pause = pause
        self.console = Console(highlight=False)
        self.env = {key: value for key, value in os.environ.items() if key not in ("ACP_TABLE_PREFIX", "ACP_SCHEMA")}
        self.env["ACP_DATABASE_URL"] = DATABASE_URL

    def say(self, text: str) -> None:
        self.console.print()
        self.console.print(f"# {text}", style="bold cyan", markup=False, soft_wrap=True)
        time.sleep(self.pause)

    def type(self, text: str) -> None:
        for char in text:
            sys.stdout.write(char)
            sys.stdout.flush()
            if self.char_delay and not char.isspace():
                time.sleep(self.char_delay)

    def prompt(self, shown: str) -> None:
        self.console.print("$ ", style="bold green", end="")
        self.type(shown + "\n")
        time.sleep(self.pause / 3)

    def run(self, shown: str, argv: list[str], *, capture: bool = False) -> str:
        """Show `shown` at the prompt, then run `argv`; its output goes straight to the terminal (and its colours)."""
        self.prompt(shown)
        sys.stdout.flush()
        done = subprocess.run(
            argv, cwd=self.folder, env=self.env, capture_output=capture, text=True, timeout=120, check=False
        )
        if capture:
            sys.stdout.write(done.stdout)
            sys.stderr.write(done.stderr)
            sys.stdout.flush()
        if done.returncode != 0:
            raise SystemExit(f"`{shown}` exited with {done.returncode}; the walkthrough stops here")
        time.sleep(self.pause)
        return done.stdout or ""


def acp_command() -> list[str]:
    """The `acp` script installed beside this Python, or the same entry point run through it."""
    script = Path(sys.executable).with_name("acp")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from agent_control_plane.cli import main; main()"]


def walk(demo: Walkthrough) -> None:
    acp = acp_command()
    demo.say("Before every side effect, an agent asks the control plane; it decides, and logs why.")
    demo.prompt(f"cd {demo.folder}")
    demo.prompt(f"export ACP_DATABASE_URL={DATABASE_URL}")

    demo.say("Here is an agent: a plan of three actions, and an inline policy that governs them.")
    demo.prompt("cat > agent.py <<'EOF'")
    demo.type(AGENT)
    demo.type("EOF\n")
    (demo.folder / "agent.py").write_text(AGENT, encoding="utf-8")

    demo.say("Run it: read_logs is allowed and settled, drop_table blocked, deploy to prod steered.")
    out = demo.run("python agent.py", [sys.executable, "agent.py"], capture=True)
    found = SESSION_LINE.search(out)
    if found is None:
        raise SystemExit("agent.py did not print its session id")
    session = found.group(1)

    demo.say("Each session keeps a hash-chained log in the database. The acp CLI reads it back:")
    demo.run("acp sessions list", [*acp, "sessions", "list"])
    demo.run(f"acp events replay {session}", [*acp, "events", "replay", session])

    demo.say("verify recomputes each chain: an edited, deleted or moved event would show as BROKEN.")
    demo.run("acp events verify --all", [*acp, "events", "verify", "--all"])

    demo.say("The audit viewer: the same log as a timeline, what each event says, and its chain mark.")
    demo.run(f"python {VIEWER} {session}", [sys.executable, str(VIEWER), session])
    demo.say("That's the loop: propose, decide, act only if allowed, settle, keep a log nobody can edit.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="demo_walkthrough.py",
        description="A narrated terminal walkthrough: type an agent, run it under the control plane, then read "
        "its log back with the acp CLI and the audit viewer. Made to be recorded with asciinema.",
    )
    parser.add_argument("--fast", action="store_true", help="no typing or pauses (for tests and quick looks)")
    parser.add_argument(
        "--char-delay", type=float, default=0.015, metavar="SECONDS", help="typing speed (default 0.015 s a character)"
    )
    parser.add_argument("--dir", type=Path, metavar="PATH", help="work (and keep the files) here, not in a temp folder")
    args = parser.parse_args(argv)
    char_delay, pause = (0.0, 0.0) if args.fast else (max(args.char_delay, 0.0), 1.2)

    if args.dir is None:
        with tempfile.TemporaryDirectory(prefix="acp-demo-") as folder:
            walk(Walkthrough(Path(folder), char_delay=char_delay, pause=pause))
        return 0
    args.dir.mkdir(parents=True, exist_ok=True)
    for leftover in args.dir.glob("agent.db*"):  # start from a fresh database every time
        leftover.unlink()
    walk(Walkthrough(args.dir.resolve(), char_delay=char_delay, pause=pause))
    return 0


if __name__ == "__main__":
    sys.exit(main())
