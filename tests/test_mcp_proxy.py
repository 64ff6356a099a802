"""`acp mcp-proxy`: a real MCP client talks to the proxy process, which fronts a small upstream MCP server of ours.

The upstream (examples/mcp_demo_server.py, the demo's too) appends every call it runs to a record file, so a test
can prove that a call the control plane refused never reached it. The control plane's side is read from the
database.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import IO, Any

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp import Client, ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from agent_control_plane import ControlPlaneFacade, SessionStatus, TicketStatus
from agent_control_plane.integrations._mcp_policy import BlockedTools
from agent_control_plane.integrations._mcp_results import DECISION_META_KEY
from conftest import Backend

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
UPSTREAM = EXAMPLES / "mcp_demo_server.py"
ACP = str(Path(sys.executable).with_name("acp"))

POLICY = {
    "default_tier": "always_approve",
    "actions": {"read_*": "unrestricted", "delete_*": "blocked", "deploy*": "auto_approve"},
    "rules": [
        {
            "name": "staging-first",
            "when": {"all": [{"field": "action", "eq": "deploy"}, {"field": "resource", "glob": "prod/*"}]},
            "tier": "steer",
            "guidance": "deploy to staging and run the smoke tests first",
            "alternatives": ["deploy_staging"],
        },
        {"name": "no-mallory", "when": {"field": "user", "eq": "mallory"}, "tier": "blocked", "reason": "not mallory"},
    ],
}


README = "README.md: a small project that deploys a web service"


class Proxy:
    """Everything one test's proxy needs: files in tmp_path, the database, and what the upstream received."""

    def __init__(self, tmp_path: Path, backend: Backend, table_prefix: str) -> None:
        self.tmp_path = tmp_path
        self.backend = backend
        self.table_prefix = table_prefix
        self.record = tmp_path / "upstream-calls.jsonl"
        self.record.touch()
        self.policy = tmp_path / "policy.json"
        self.policy.write_text(json.dumps(POLICY), encoding="utf-8")
        self.log = tmp_path / "proxy.log"

    def args(self, *extra: str, upstream: str | None = None) -> list[str]:
        where = ["--upstream-url", upstream] if upstream else ["--upstream-command", shlex.join(self.upstream_argv())]
        return [
            "mcp-proxy",
            *where,
            *("--policy", str(self.policy), "--database-url", self.backend.url, "--table-prefix", self.table_prefix),
            *("--agent", "coder", "--resource-arg", "target"),
            *extra,
        ]

    def upstream_argv(self, *extra: str) -> list[str]:
        return [sys.executable, str(UPSTREAM), "--record", str(self.record), *extra]

    def upstream_calls(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.record.read_text(encoding="utf-8").splitlines()]

    @asynccontextmanager
    async def connect(self, *extra: str) -> AsyncIterator[ClientSession]:
        """A client connection to a proxy process of its own over stdio (`acp mcp-proxy …`), as an MCP host makes."""
        params = StdioServerParameters(command=ACP, args=self.args(*extra))
        with self.log.open("a", encoding="utf-8") as errlog:
            async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
                await session.initialize()
                yield session

    @contextmanager
    def plane(self) -> Iterator[ControlPlaneFacade]:
        with ControlPlaneFacade.from_database_url(self.backend.url, table_prefix=self.table_prefix) as cp:
            yield cp


@pytest.fixture
def proxy(tmp_path: Path, backend: Backend, table_prefix: str) -> Iterator[Proxy]:
    setup = Proxy(tmp_path, backend, table_prefix)
    yield setup
    if setup.log.exists():  # shown with the captured output when a test fails
        print(f"--- proxy stderr ---\n{setup.log.read_text(encoding='utf-8')}")


def text_of(result: types.CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))


def decision_of(result: types.CallToolResult) -> dict[str, Any]:
    assert result.meta is not None
    summary: dict[str, Any] = result.meta[DECISION_META_KEY]
    return summary


async def decide(proxy: Proxy, verdict: str, ticket: str, *extra: str) -> str:
    """A human decides the ticket from another process: `acp tickets approve|deny TICKET --by alice …`."""
    where = ["--database-url", proxy.backend.url, "--table-prefix", proxy.table_prefix]
    done = await anyio.run_process([ACP, *where, "tickets", verdict, ticket, "--by", "alice", *extra])
    return done.stdout.decode()


def kinds(cp: ControlPlaneFacade, session_id: str) -> list[str]:
    return [frame.kind for frame in cp.replay(session_id)]


def payloads(cp: ControlPlaneFacade, session_id: str, kind: str) -> list[dict[str, Any]]:
    return [frame.payload for frame in cp.replay(session_id) if frame.kind == kind]


def test_tools_are_listed_and_allowed_calls_are_forwarded_and_settled_with_their_outcome(proxy: Proxy) -> None:
    async def run() -> tuple[types.CallToolResult, types.CallToolResult, list[str]]:
        async with proxy.connect() as session:
            listed = [tool.name for tool in (await session.list_tools()).tools]
            read = await session.call_tool("read_file", {"path": "README.md"})
            failed = await session.call_tool("read_file", {"path": "missing.txt"})
            return read, failed, listed

    read, failed, listed = anyio.run(run)
    assert listed == ["read_file", "delete_repo", "deploy", "deploy_staging", "launch"]
    assert not read.is_error and text_of(read) == README
    assert read.structured_content == {"result": README}
    assert failed.is_error and "no such file: missing.txt" in text_of(failed)
    assert [call["args"]["path"] for call in proxy.upstream_calls()] == ["README.md", "missing.txt"]

    session_id = decision_of(read)["session_id"]
    with proxy.plane() as cp:
        settled = {p["proposal_id"]: p for p in payloads(cp, session_id, "proposal.settled")}
        assert settled[decision_of(read)["proposal_id"]]["outcome"] == "succeeded"
        assert settled[decision_of(read)["proposal_id"]]["result"] == {"output": README}
        assert settled[decision_of(failed)["proposal_id"]]["outcome"] == "failed"
        assert "no such file: missing.txt" in settled[decision_of(failed)["proposal_id"]]["result"]["error"]
        assert kinds(cp, session_id) == [
            "session.opened",
            "mcp_client_connected",
            *["proposal.decided", "proposal.settled"] * 2,
            "session.status_changed",  # the client disconnected: the session is closed
        ]
        info = cp.get_session(session_id)
        assert info.status is SessionStatus.COMPLETED and info.agent_id == "coder"
        assert cp.verify(session_id).ok


def test_denied_and_steered_calls_are_tool_errors_that_never_reach_the_upstream(proxy: Proxy) -> None:
    async def run() -> tuple[types.CallToolResult, types.CallToolResult]:
        async with proxy.connect() as session:
            denied = await session.call_tool("delete_repo", {"name": "app"})
            steered = await session.call_tool("deploy", {"target": "prod/web"})
            return denied, steered

    denied, steered = anyio.run(run)
    assert denied.is_error
    assert text_of(denied) == (
        "The tool call 'delete_repo' was denied (policy_blocked): "
        "denied: action 'delete_repo' is blocked by policy pattern 'delete_*'"
    )
    assert decision_of(denied)["code"] == "policy_blocked"
    assert steered.is_error
    assert text_of(steered).startswith("The tool call 'deploy' was not run: steered: rule 'staging-first'")
    assert "steer; deploy to staging and run the smoke tests first." in text_of(steered)
    assert text_of(steered).endswith("Consider instead: deploy_staging.")
    assert decision_of(steered)["alternatives"] == ["deploy_staging"]
    assert proxy.upstream_calls() == []  # neither call reached the upstream
    with proxy.plane() as cp:
        decided = payloads(cp, decision_of(denied)["session_id"], "proposal.decided")
        assert [(p["action"], p["resource"], p["code"]) for p in decided] == [
            ("delete_repo", None, "policy_blocked"),
            ("deploy", "prod/web", "steered"),  # --resource-arg target
        ]
        assert payloads(cp, decision_of(denied)["session_id"], "proposal.settled") == []


def test_a_call_needing_approval_returns_its_ticket_and_runs_once_when_made_again_after_approval(
    proxy: Proxy,
) -> None:
    async def run() -> list[types.CallToolResult]:
        async with proxy.connect() as session:
            first = await session.call_tool("launch", {"rocket": "r1"})
            again = await session.call_tool("launch", {"rocket": "r1"})  # still pending: the same ticket
            ticket = decision_of(first)["ticket_id"]
            assert f"approved ticket {ticket}" in await decide(proxy, "approve", ticket)
            approved = await session.call_tool("launch", {"rocket": "r1"})
            other = await session.call_tool("launch", {"rocket": "r2"})  # another call: another ticket
            once_more = await session.call_tool("launch", {"rocket": "r1"})  # the approval was used up
            return [first, again, approved, other, once_more]

    first, again, approved, other, once_more = anyio.run(run)
    ticket = decision_of(first)["ticket_id"]
    assert first.is_error and f"needs a human's approval and has not run yet (ticket {ticket})" in text_of(first)
    assert "call the tool again with exactly the same arguments" in text_of(first)
    assert decision_of(again)["ticket_id"] == ticket
    assert not approved.is_error and text_of(approved) == "rocket r1 launched"
    assert other.is_error and decision_of(other)["ticket_id"] not in (None, ticket)
    assert once_more.is_error and decision_of(once_more)["kind"] == "pending"
    assert proxy.upstream_calls() == [{"tool": "launch", "args": {"rocket": "r1"}}]
    with proxy.plane() as cp:
        assert cp.get_ticket(ticket).consumed_by == decision_of(approved)["proposal_id"]
        assert cp.verify(decision_of(first)["session_id"]).ok


def _pending_ticket(proxy: Proxy) -> str:
    with proxy.plane() as cp:
        for _ in range(400):
            tickets = cp.list_tickets(status="pending")
            if tickets:
                return tickets[0].ticket_id
            time.sleep(0.05)
    raise AssertionError("no ticket was requested")


def test_with_an_approval_timeout_the_call_waits_for_a_human_deciding_in_another_process(proxy: Proxy) -> None:
    async def call_and_decide(
        session: ClientSession, rocket: str, verdict: str, *extra: str
    ) -> tuple[types.CallToolResult, str]:
        results: list[types.CallToolResult] = []

        async def call() -> None:
            results.append(await session.call_tool("launch", {"rocket": rocket}))

        async with anyio.create_task_group() as group:
            group.start_soon(call)
            ticket = await anyio.to_thread.run_sync(_pending_ticket, proxy)
            assert {"tool": "launch", "args": {"rocket": rocket}} not in proxy.upstream_calls()  # still waiting
            await decide(proxy, verdict, ticket, *extra)
        return results[0], ticket

    async def run() -> list[tuple[types.CallToolResult, str]]:
        async with proxy.connect("--approval-timeout", "60") as session:
            approved = await call_and_decide(session, "r9", "approve")
            denied = await call_and_decide(session, "r10", "deny", "--reason", "no launch window today")
            return [approved, denied]

    (approved, approved_ticket), (denied, denied_ticket) = anyio.run(run)
    assert not approved.is_error and text_of(approved) == "rocket r9 launched"
    assert decision_of(approved)["kind"] == "allow"
    assert denied.is_error and decision_of(denied)["code"] == "approval_denied"
    assert "no launch window today" in text_of(denied)
    assert proxy.upstream_calls() == [{"tool": "launch", "args": {"rocket": "r9"}}]
    with proxy.plane() as cp:
        assert cp.get_ticket(approved_ticket).consumed_by == decision_of(approved)["proposal_id"]
        assert cp.get_ticket(denied_ticket).status is TicketStatus.DENIED
        [settled] = payloads(cp, decision_of(approved)["session_id"], "proposal.settled")
        assert settled["outcome"] == "succeeded"


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_each_client_connection_is_a_session_of_its_own_closed_when_it_disconnects(proxy: Proxy) -> None:
    async def run() -> list[str]:
        sessions = []
        async with proxy.connect() as first, proxy.connect() as second:
            for session in (first, second):
                read = await session.call_tool("read_file", {"path": "a"})
                sessions.append(decision_of(read)["session_id"])
        # The SDK's high-level client in its default mode probes the 2026 protocol first, then falls back.
        params = StdioServerParameters(command=ACP, args=proxy.args())
        with proxy.log.open("a", encoding="utf-8") as errlog:
            async with Client(stdio_client(params, errlog=errlog)) as client:
                assert client.protocol_version == "2025-11-25"
                sessions.append(decision_of(await client.call_tool("read_file", {"path": "b"}))["session_id"])
        return sessions

    sessions = anyio.run(run)
    assert len(set(sessions)) == 3
    with proxy.plane() as cp:
        for session_id in sessions:
            assert cp.get_session(session_id).status is SessionStatus.COMPLETED
            assert kinds(cp, session_id)[-1] == "session.status_changed"
            [connected] = payloads(cp, session_id, "mcp_client_connected")
            assert connected["transport"] == "stdio" and connected["upstream"] == "project-tools"


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_hide_blocked_lists_only_the_tools_the_policy_does_not_always_block(proxy: Proxy) -> None:
    async def run() -> tuple[list[str], types.CallToolResult]:
        async with proxy.connect("--hide-blocked") as session:
            listed = [tool.name for tool in (await session.list_tools()).tools]
            return listed, await session.call_tool("delete_repo", {"name": "app"})

    listed, hidden_call = anyio.run(run)
    assert listed == ["read_file", "deploy", "deploy_staging", "launch"]
    assert hidden_call.is_error and decision_of(hidden_call)["code"] == "policy_blocked"  # hidden is still governed
    assert proxy.upstream_calls() == []


def test_blocked_tools_are_only_those_no_rule_or_agent_assignment_can_unblock() -> None:
    base = {"default_tier": "always_approve", "actions": {"delete_*": "blocked", "read_*": "unrestricted"}}
    assert "delete_repo" in BlockedTools(base) and "read_file" not in BlockedTools(base)
    assert "launch" in BlockedTools({**base, "default_tier": "blocked"})
    pinned = {"name": "r", "when": {"field": "action", "eq": "delete_tmp"}, "tier": "auto_approve"}
    assert "delete_repo" in BlockedTools({**base, "rules": [pinned]})
    assert "delete_tmp" not in BlockedTools({**base, "rules": [pinned]})
    anywhere = {"name": "r", "when": {"field": "resource", "glob": "tmp/*"}, "tier": "auto_approve"}
    assert "delete_repo" not in BlockedTools({**base, "rules": [anywhere]})  # a rule may let some calls through
    assigned = {"agents": {"registry": {"janitor": {"actions": {"delete_*": "auto_approve"}}}}}
    assert "delete_repo" not in BlockedTools({**base, **assigned})


def _line_with(path: Path, pattern: str, process: subprocess.Popen[bytes], timeout: float = 20) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(pattern, path.read_text(encoding="utf-8"))
        if found:
            return found
        assert process.poll() is None, path.read_text(encoding="utf-8")
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} never appeared in {path}:\n{path.read_text(encoding='utf-8')}")


@contextmanager
def running(argv: list[str], log: IO[str]) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def test_over_streamable_http_each_connection_acts_for_the_identity_its_trusted_headers_name(proxy: Proxy) -> None:
    upstream_log, proxy_log = proxy.tmp_path / "upstream.log", proxy.log
    with (
        upstream_log.open("w") as up_err,
        proxy_log.open("w") as proxy_err,
        running(proxy.upstream_argv("--http"), up_err) as upstream,
    ):
        upstream_url = _line_with(upstream_log, r"listening on (\S+)", upstream)[1]
        argv = [ACP, *proxy.args("--transport", "streamable-http", "--port", "0", upstream=upstream_url)]
        argv += ["--trust-identity-headers", "--org", "acme"]
        with running(argv, proxy_err) as server:
            url = _line_with(proxy_log, r"listening on (\S+)", server)[1]

            async def call_as(headers: dict[str, str]) -> types.CallToolResult:
                async with (
                    httpx2.AsyncClient(headers=headers) as http,
                    Client(streamable_http_client(url, http_client=http)) as client,
                ):
                    return await client.call_tool("read_file", {"path": "notes.txt"})

            async def run() -> list[types.CallToolResult]:
                bob = await call_as({"X-ACP-User": "bob", "X-ACP-Agent": "bob-bot"})
                mallory = await call_as({"X-ACP-User": "mallory", "X-ACP-Team": "red"})
                return [bob, mallory]

            bob, mallory = anyio.run(run)
            assert not bob.is_error and text_of(bob) == "notes.txt: ship on Friday"
            assert mallory.is_error and "not mallory" in text_of(mallory)  # the rule saw the header's user
            assert proxy.upstream_calls() == [{"tool": "read_file", "args": {"path": "notes.txt"}}]
            with proxy.plane() as cp:
                connected = {}
                for result in (bob, mallory):
                    session_id = decision_of(result)["session_id"]
                    [connected[session_id]] = payloads(cp, session_id, "mcp_client_connected")
                    for _ in range(200):  # the session closes as the client's DELETE ends its connection
                        if cp.get_session(session_id).status is SessionStatus.COMPLETED:
                            break
                        time.sleep(0.05)
                    assert cp.get_session(session_id).status is SessionStatus.COMPLETED
    bob_session, mallory_session = connected.values()
    assert bob_session["transport"] == "streamable-http" and bob_session["identity_from"] == "headers"
    assert bob_session["agent_id"] == "bob-bot"
    assert bob_session["identity"] == {"org_id": "acme", "team_id": None, "user_id": "bob"}
    assert mallory_session["agent_id"] == "coder"  # no agent header: the configured agent
    assert mallory_session["identity"] == {"org_id": "acme", "team_id": "red", "user_id": "mallory"}


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_command_says_clearly_when_the_upstream_cannot_start_or_the_options_conflict(proxy: Proxy) -> None:
    def acp(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [ACP, *args],
            stdin=subprocess.DEVNULL,
            env={**os.environ, "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    missing = acp(
        "mcp-proxy", "--database-url", proxy.backend.url, "--upstream-command", "/nonexistent/mcp-server --flag"
    )
    assert missing.returncode == 2 and missing.stdout == ""
    assert "error: the upstream MCP server '/nonexistent/mcp-server --flag' could not be started" in missing.stderr
    assert "Traceback" not in missing.stderr
    both = acp("mcp-proxy", "--upstream-command", "x", "--upstream-url", "http://127.0.0.1:9/mcp")
    assert both.returncode == 2 and "give exactly one of them" in both.stderr
    headers = acp("mcp-proxy", "--upstream-url", "http://127.0.0.1:9/mcp", "--trust-identity-headers")
    assert headers.returncode == 2 and "stdio has no headers" in headers.stderr


def test_without_the_mcp_extra_the_module_and_the_command_say_how_to_install_it(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "sys.modules['mcp'] = None  # as if the package were not installed\n"
        "try:\n"
        "    import agent_control_plane.integrations.mcp\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
        "from agent_control_plane.cli import main\n"
        "main(['mcp-proxy', '--upstream-url', 'http://127.0.0.1:9/mcp'])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout == "the MCP proxy needs the `mcp` package: pip install 'agent-control-plane[mcp]'\n"
    assert done.returncode == 2, done.stderr
    assert "error: the MCP proxy needs the `mcp` package: pip install 'agent-control-plane[mcp]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_mcp_tool_gateway_example_shows_what_the_model_sees_and_the_session_log(tmp_path: Path) -> None:
    copy = tmp_path / "examples"
    copy.mkdir()
    for name in ("mcp_tool_gateway.py", "mcp_demo_server.py", "mcp_gateway_policy.yaml"):
        shutil.copy(EXAMPLES / name, copy / name)
    env = {key: value for key, value in os.environ.items() if key != "ACP_DATABASE_URL"}
    outputs = []
    for _ in range(2):  # the second run finds the first run's database and starts afresh
        done = subprocess.run(
            [sys.executable, str(copy / "mcp_tool_gateway.py")],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
        outputs.append(done.stdout)
    out = outputs[-1]
    assert (copy / "mcp_tool_gateway.db").exists()
    assert 'read_file {"path": "README.md"}\n  ->  ok: README.md: a small project' in out
    assert "  ->  isError: The tool call 'delete_repo' was denied (policy_blocked)" in out
    assert "production deploys go through staging" in out and "Consider instead: deploy_staging." in out
    assert 'deploy_staging (the model follows the guidance) {"service": "web"}\n  ->  ok: web is on staging' in out
    assert "  ->  isError: The tool call 'launch' needs a human's approval and has not run yet (ticket" in out
    assert 'launch (again, after approval) {"rocket": "r1"}\n  ->  ok: rocket r1 launched' in out
    assert "upstream received: read_file, deploy_staging, launch" in out  # never delete_repo nor deploy
    assert "'MCP demo-model via project-tools' for agent release-bot" in out
    assert "13 session.status_changed active -> completed (the MCP client disconnected)" in out
    assert "verify: ok=True (13 events checked)" in out
    assert re.sub(r"[0-9a-f-]{36}", "<id>", outputs[0]) == re.sub(r"[0-9a-f-]{36}", "<id>", out)
