"""Quickstart (async): the same governed flow with AsyncControlPlaneFacade on aiosqlite.

Run it with `make quickstart`, or `python quickstart.py` from this folder. It starts from a fresh
`quickstart_async.db` each time (set ACP_ASYNC_DATABASE_URL, e.g. postgresql+asyncpg://…, to use another).
"""

from __future__ import annotations

import asyncio
import os
from decimal import Decimal
from pathlib import Path

from agent_control_plane import AsyncControlPlaneFacade

HERE = Path(__file__).parent


async def main() -> None:
    url = os.environ.get("ACP_ASYNC_DATABASE_URL")
    if url is None:
        for leftover in HERE.glob("quickstart_async.db*"):
            leftover.unlink()
        url = f"sqlite+aiosqlite:///{HERE / 'quickstart_async.db'}"

    async with AsyncControlPlaneFacade.from_database_url(url, policy=HERE / "policy.yaml") as cp:
        await cp.setup()
        sid = await cp.open_session("research", agent_id="reader", max_cost=Decimal("0.30"))

        # Three agents' worth of reads at once: the budget admits exactly as many as fit.
        decisions = await asyncio.gather(
            *(cp.propose(sid, action="read_page", args={"page": n}, cost=Decimal("0.10")) for n in range(5))
        )
        allowed = [d for d in decisions if d.allowed]
        print(f"{len(allowed)} of {len(decisions)} reads allowed by a 0.30 budget at 0.10 each")
        for d in decisions:
            if not d.allowed:
                print(f"  {d.reason}")
        for d in allowed:
            await cp.settle(d.proposal_id, actual_cost=Decimal("0.10"), result={"bytes": 1024})

        await cp.emit(sid, "progress", {"pages": len(allowed)}, state_bearing=False)
        await cp.flush_events()
        await cp.close_session(sid)

        report = await cp.verify(sid)
        events = await cp.replay(sid)
        print(f"log: {len(events)} events; hash chain intact: {report.ok}")
        assert len(allowed) == 3 and report.ok


if __name__ == "__main__":
    asyncio.run(main())
