"""Quickstart (sync): a governed cleanup session on embedded SQLite.

Run it with `make quickstart`, or `python quickstart_sync.py` from this folder. It starts from a fresh
`quickstart.db` each time (set ACP_DATABASE_URL to use another database).
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

from agent_control_plane import ControlPlaneFacade

HERE = Path(__file__).parent
DATABASE = HERE / "quickstart.db"


def main() -> None:
    url = os.environ.get("ACP_DATABASE_URL")
    if url is None:
        for leftover in HERE.glob("quickstart.db*"):
            leftover.unlink()
        url = f"sqlite:///{DATABASE}"

    with ControlPlaneFacade.from_database_url(url, policy=HERE / "policy.yaml") as cp:
        cp.setup()  # creates or upgrades the schema; safe to call every start
        sid = cp.open_session("nightly-cleanup", agent_id="ops-bot", max_cost=Decimal("1.00"), max_action_count=10)
        print(f"session {sid}")

        plan = [
            ("read_branches", {"repo": "app"}, Decimal("0.05")),
            ("delete_branch", {"name": "tmp/x"}, Decimal("0.25")),
            ("delete_repo", {"name": "app"}, Decimal("0.10")),
            ("deploy_prod", {"ref": "main"}, Decimal("0.50")),
            ("delete_branch", {"name": "tmp/y"}, Decimal("0.80")),
        ]
        for action, args, cost in plan:
            d = cp.propose(sid, action=action, args=args, resource="repo/app", cost=cost, agent_id="ops-bot")
            verdict = "ALLOW" if d.allowed else "DENY "
            print(f"  {verdict} {action:<14} [{d.tier.value}] {d.reason}")
            if d.allowed:
                # ...the host executes the side effect here, then reports what it really cost.
                cp.settle(d.proposal_id, actual_cost=cost * Decimal("0.8"), result={"ok": True})

        budget = cp.get_remaining_budget(sid)
        print(f"budget: spent {budget['spent_cost']} of {budget['max_cost']}, {budget['remaining_count']} actions left")

        cp.kill_system(reason="incident 42", by="alice")
        d = cp.propose(sid, action="read_branches", cost=Decimal("0.01"))
        print(f"  during the kill: {d.reason}")
        cp.release_kill("system", reason="incident 42 resolved", by="alice")

        cp.emit(sid, "checkpoint", {"branches_deleted": 1}, state_bearing=True)
        cp.close_session(sid)

        events = cp.replay(sid)
        print(f"log: {len(events)} events, seq {events[0].seq}..{events[-1].seq}")
        for event in events:
            print(f"  {event.seq:>2} {event.kind}")
        report = cp.verify(sid)
        print(f"hash chain intact: {report.ok} ({report.events_checked} events checked)")
        assert report.ok


if __name__ == "__main__":
    main()
