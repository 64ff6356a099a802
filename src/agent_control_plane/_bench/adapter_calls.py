"""The calls the adapter-overhead bench times (see `_bench/adapters.py`): for each adapter, the governed call made
through the framework's own entry point, the bare propose + settle it is paired with, and, where the framework's
runtime is timed around the adapter, the same runtime with the tool ungoverned."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from agent_control_plane._bench.action import COST, BenchError
from agent_control_plane.aio import AsyncControlPlaneFacade
from agent_control_plane.facade import ControlPlaneFacade
from agent_control_plane.integrations._gate import ToolGate

TOOL = "bench_tool"
AGENT = "bench-agent"
POLICY: dict[str, Any] = {"default_tier": "always_approve", "actions": {TOOL: "unrestricted"}}
MAX_COST = 10**8

Facade = Literal["sync", "async"]
Timer = Callable[[int], Awaitable[int]]
"""Makes call number n of a variant; returns how long the call took, in ns."""
Variants = dict[str, "Variant"]


def run_tool(n: int) -> str:
    """The tool every variant runs: trivial, so what is timed is the governance and the framework around it."""
    return f"ok {n}"


async def arun_tool(n: int) -> str:
    """`run_tool` as a coroutine, for frameworks that would run a sync tool in a worker thread."""
    return run_tool(n)


def _cost(tool: str, args: Mapping[str, Any]) -> Decimal:
    return COST


# variants ---------------------------------------------------------------------------------------------------
@dataclass(slots=True)
class Variant:
    """One way of making the tool call, timed once per round."""

    name: str
    timer: Timer
    session_id: str | None = None
    """The session its calls are proposed in: None for an ungoverned baseline, and for the MCP proxy until its first
    call says which session the proxy opened."""
    governed: bool = True
    samples: list[int] = field(default_factory=list)
    problem: str | None = None


def _timed_sync(call: Callable[[int], object]) -> Timer:
    # The call blocks the event loop's thread, as a sync host's would block its own: between calls nothing else is
    # in flight (the in-memory MCP servers are idle), so it waits on nothing the loop would have to run.
    async def timer(n: int) -> int:
        started = time.perf_counter_ns()
        call(n)
        return time.perf_counter_ns() - started

    return timer


def _timed(call: Callable[[int], Awaitable[object]]) -> Timer:
    async def timer(n: int) -> int:
        started = time.perf_counter_ns()
        await call(n)
        return time.perf_counter_ns() - started

    return timer


@dataclass(frozen=True, slots=True)
class Plain:
    """A plain propose before the tool and settle after, in one session: the bare call, and governance written by
    hand inside a framework's runtime."""

    plane: AsyncControlPlaneFacade | ControlPlaneFacade
    session_id: str

    def propose(self, args: Mapping[str, Any], key: str | None = None) -> str:
        assert isinstance(self.plane, ControlPlaneFacade)
        decision = self.plane.propose(
            self.session_id, TOOL, args=dict(args), cost=COST, agent_id=AGENT, idempotency_key=key
        )
        expect("a plain propose", decision.allowed, True)
        return decision.proposal_id

    def settle(self, proposal_id: str, output: str) -> None:
        assert isinstance(self.plane, ControlPlaneFacade)
        self.plane.settle(proposal_id, result={"output": output})

    async def apropose(self, args: Mapping[str, Any], key: str | None = None) -> str:
        assert isinstance(self.plane, AsyncControlPlaneFacade)
        decision = await self.plane.propose(
            self.session_id, TOOL, args=dict(args), cost=COST, agent_id=AGENT, idempotency_key=key
        )
        expect("a plain propose", decision.allowed, True)
        return decision.proposal_id

    async def asettle(self, proposal_id: str, output: str) -> None:
        assert isinstance(self.plane, AsyncControlPlaneFacade)
        await self.plane.settle(proposal_id, result={"output": output})


def expect(what: str, got: object, expected: object) -> None:
    if got != expected:
        raise BenchError(f"{what}: expected {expected!r}, got {got!r}")


@dataclass(frozen=True, slots=True)
class Planes:
    """The two facades on one backend's database, and a session (or a gate on one) for each variant."""

    sync: ControlPlaneFacade
    aio: AsyncControlPlaneFacade

    def session(self, name: str) -> str:
        return self.sync.open_session(f"bench adapters: {name}", agent_id=AGENT, max_cost=MAX_COST)

    def gate(self, facade: Facade, name: str) -> ToolGate:
        plane = self.sync if facade == "sync" else self.aio
        return ToolGate(plane, self.session(name), agent_id=AGENT, cost_of=_cost)

    def plain(self, facade: Facade, name: str) -> Plain:
        return Plain(self.sync if facade == "sync" else self.aio, self.session(name))


async def core_calls(stack: AsyncExitStack, planes: Planes) -> Variants:
    """The bare propose + settle on each facade, and ToolGate on each."""
    bare_sync, bare_async = planes.plain("sync", "bare/sync"), planes.plain("async", "bare/async")

    def bare(n: int) -> None:
        bare_sync.settle(bare_sync.propose({"n": n}), run_tool(n))

    async def abare(n: int) -> None:
        await bare_async.asettle(await bare_async.apropose({"n": n}), await arun_tool(n))

    gate, agate = planes.gate("sync", "tool_gate"), planes.gate("async", "tool_gate_async")

    def check(n: int) -> None:
        result = gate.check(TOOL, {"n": n})
        expect("ToolGate.check", result.allowed, True)
        gate.settle(result, output=run_tool(n))

    async def acheck(n: int) -> None:
        result = await agate.acheck(TOOL, {"n": n})
        expect("ToolGate.acheck", result.allowed, True)
        await agate.asettle(result, output=await arun_tool(n))

    return {
        "bare/sync": Variant("bare/sync", _timed_sync(bare), bare_sync.session_id),
        "bare/async": Variant("bare/async", _timed(abare), bare_async.session_id),
        "tool_gate": Variant("tool_gate", _timed_sync(check), gate.session_id),
        "tool_gate_async": Variant("tool_gate_async", _timed(acheck), agate.session_id),
    }


async def mcp_calls(stack: AsyncExitStack, planes: Planes) -> Variants:
    """An MCP client → the governing proxy (or a pass-through server) → an upstream server, all in memory."""
    import mcp_types as types
    from mcp import Client
    from mcp.server import Server
    from mcp.server.context import ServerRequestContext

    from agent_control_plane.integrations._mcp_results import DECISION_META_KEY
    from agent_control_plane.integrations.mcp import GoverningProxy, ProxySettings

    Context = ServerRequestContext[Any, Any]
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    listing = types.ListToolsResult(tools=[types.Tool(name=TOOL, description="A trivial tool.", input_schema=schema)])

    async def list_tools(ctx: Context, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return listing

    async def call_tool(ctx: Context, params: types.CallToolRequestParams) -> types.CallToolResult:
        text = run_tool(int((params.arguments or {})["n"]))
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)])

    upstream_server: Server[Any] = Server("bench-upstream", on_list_tools=list_tools, on_call_tool=call_tool)
    upstream = await stack.enter_async_context(Client(upstream_server, cache=None))

    def text_of(result: types.CallToolResult) -> tuple[bool, str]:
        return result.is_error, "".join(b.text for b in result.content if isinstance(b, types.TextContent))

    async def forward_list(ctx: Context, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return await upstream.list_tools()

    async def forward(ctx: Context, params: types.CallToolRequestParams) -> types.CallToolResult:
        return await upstream.call_tool(params.name, params.arguments or {})

    hand = planes.plain("async", "mcp_proxy/by_hand")

    async def forward_by_hand(ctx: Context, params: types.CallToolRequestParams) -> types.CallToolResult:
        proposal_id = await hand.apropose(params.arguments or {})
        answer = await upstream.call_tool(params.name, params.arguments or {})
        await hand.asettle(proposal_id, text_of(answer)[1])
        return answer

    passthrough: Server[Any] = Server("bench-passthrough", on_list_tools=forward_list, on_call_tool=forward)
    governed_by_hand: Server[Any] = Server("bench-by-hand", on_list_tools=forward_list, on_call_tool=forward_by_hand)
    settings = ProxySettings(agent_id=AGENT, cost_of=_cost)
    proxy = GoverningProxy(planes.aio, upstream, settings, upstream_name="bench-upstream")
    # legacy: the initialize handshake, which the proxy needs (a session lives as long as a connection).
    governed_client = await stack.enter_async_context(Client(proxy.server, mode="legacy", cache=None))
    plain_client = await stack.enter_async_context(Client(passthrough, mode="legacy", cache=None))
    hand_client = await stack.enter_async_context(Client(governed_by_hand, mode="legacy", cache=None))
    # Listed first, as a host does: once that answers, the proxy has opened the connection's session. Otherwise the
    # handler of the handshake's `initialized` notification may still be opening it when a sync variant's call
    # blocks the event loop, which then waits for SQLite's write lock that the unfinished transaction holds.
    await governed_client.list_tools()

    async def governed_call(n: int) -> None:
        result = await governed_client.call_tool(TOOL, {"n": n})
        expect("the proxy's tools/call", text_of(result), (False, run_tool(n)))
        if governed.session_id is None:
            governed.session_id = (result.meta or {})[DECISION_META_KEY]["session_id"]

    async def plain_call(n: int) -> None:
        result = await plain_client.call_tool(TOOL, {"n": n})
        expect("the pass-through tools/call", text_of(result), (False, run_tool(n)))

    async def hand_call(n: int) -> None:
        result = await hand_client.call_tool(TOOL, {"n": n})
        expect("the by-hand tools/call", text_of(result), (False, run_tool(n)))

    governed = Variant("mcp_proxy", _timed(governed_call))
    ungoverned = Variant("mcp_proxy/ungoverned", _timed(plain_call), governed=False)
    by_hand = Variant("mcp_proxy/by_hand", _timed(hand_call), hand.session_id)
    return {v.name: v for v in (governed, ungoverned, by_hand)}


async def openai_agents_calls(stack: AsyncExitStack, planes: Planes) -> Variants:
    """The calls the OpenAI Agents SDK's runner makes for one function-tool call, on a governed and a plain tool."""
    from agents import Agent, FunctionTool, RunContextWrapper, ToolInputGuardrailData, function_tool
    from agents.tool import invoke_function_tool
    from agents.tool_context import ToolContext
    from openai.types.responses import ResponseFunctionToolCall

    from agent_control_plane.integrations.openai_agents import OpenAIAgentsGovernor

    gate = planes.gate("async", "openai_agents")
    governed_tool = OpenAIAgentsGovernor(gate).function_tool(arun_tool, name_override=TOOL)
    plain_tool = function_tool(arun_tool, name_override=TOOL)
    hand = planes.plain("async", "openai_agents/by_hand")

    async def governed_by_hand(n: int) -> str:
        """`run_tool`, proposed and settled by hand."""
        proposal_id = await hand.apropose({"n": n})
        output = await arun_tool(n)
        await hand.asettle(proposal_id, output)
        return output

    hand_tool = function_tool(governed_by_hand, name_override=TOOL)
    agent: Agent[Any] = Agent(name="bench", tools=[governed_tool])
    run_context: RunContextWrapper[Any] = RunContextWrapper(context=None)

    def sdk_call(tool: FunctionTool) -> Callable[[int], Awaitable[None]]:
        async def call(n: int) -> None:
            call_id, arguments = f"call_{n}", json.dumps({"n": n})
            if callable(tool.needs_approval):  # a plain tool's is False: the SDK asks nothing
                needs = await tool.needs_approval(run_context, json.loads(arguments), call_id)
                expect("needs_approval", needs, False)
            item = ResponseFunctionToolCall(type="function_call", name=TOOL, call_id=call_id, arguments=arguments)
            context = ToolContext.from_agent_context(run_context, call_id, tool_call=item, agent=agent)
            for guardrail in tool.tool_input_guardrails or ():
                verdict = await guardrail.run(ToolInputGuardrailData(context=context, agent=agent))
                expect("the tool input guardrail", verdict.behavior["type"], "allow")
            output = await invoke_function_tool(function_tool=tool, context=context, arguments=arguments)
            expect("the function tool", output, run_tool(n))

        return call

    return {
        "openai_agents": Variant("openai_agents", _timed(sdk_call(governed_tool)), gate.session_id),
        "openai_agents/ungoverned": Variant("openai_agents/ungoverned", _timed(sdk_call(plain_tool)), governed=False),
        "openai_agents/by_hand": Variant("openai_agents/by_hand", _timed(sdk_call(hand_tool)), hand.session_id),
    }


async def claude_agent_sdk_calls(stack: AsyncExitStack, planes: Planes) -> Variants:
    """The Claude Agent SDK's callbacks for one tool call: the PreToolUse hook or can_use_tool, then PostToolUse."""
    from claude_agent_sdk import (
        ClaudeAgentOptions,
        HookCallback,
        PermissionResultAllow,
        PostToolUseHookInput,
        PreToolUseHookInput,
        ToolPermissionContext,
    )
    from claude_agent_sdk.types import HookEvent

    from agent_control_plane.integrations.claude_agent_sdk import ClaudeAgentGovernor, Via

    def callbacks(options: ClaudeAgentOptions, event: HookEvent) -> list[HookCallback]:
        """The hooks the CLI would call for the tool: those of every matcher that matches its name."""
        matchers = (options.hooks or {}).get(event, [])
        return [hook for m in matchers if m.matcher is None or re.fullmatch(m.matcher, TOOL) for hook in m.hooks]

    where = {"session_id": "bench", "transcript_path": "/tmp/bench.jsonl", "cwd": "/tmp"}

    def before(n: int, tool_use_id: str) -> PreToolUseHookInput:
        return {
            "session_id": where["session_id"],
            "transcript_path": where["transcript_path"],
            "cwd": where["cwd"],
            "permission_mode": "default",
            "hook_event_name": "PreToolUse",
            "tool_name": TOOL,
            "tool_input": {"n": n},
            "tool_use_id": tool_use_id,
        }

    def after(n: int, tool_use_id: str, output: str) -> PostToolUseHookInput:
        return {
            "session_id": where["session_id"],
            "transcript_path": where["transcript_path"],
            "cwd": where["cwd"],
            "hook_event_name": "PostToolUse",
            "tool_name": TOOL,
            "tool_input": {"n": n},
            "tool_response": [{"type": "text", "text": output}],  # as an MCP tool's response reaches the hook
            "tool_use_id": tool_use_id,
        }

    def variant(via: Via) -> Variant:
        name = "claude_hooks" if via == "hooks" else "claude_can_use_tool"
        governor = ClaudeAgentGovernor(planes.gate("async", name))
        options = ClaudeAgentOptions(**governor.options(via=via))
        pre, post = callbacks(options, "PreToolUse"), callbacks(options, "PostToolUse")

        async def call(n: int) -> None:
            tool_use_id = f"toolu_{n}"
            if options.can_use_tool is not None:
                context = ToolPermissionContext(suggestions=[], tool_use_id=tool_use_id)
                answer = await options.can_use_tool(TOOL, {"n": n}, context)
                expect("can_use_tool", type(answer), PermissionResultAllow)
            for hook in pre:
                decided: Any = await hook(before(n, tool_use_id), tool_use_id, {"signal": None})
                expect("the PreToolUse hook", decided["hookSpecificOutput"]["permissionDecision"], "allow")
            output = await arun_tool(n)  # the CLI runs the tool
            for hook in post:
                await hook(after(n, tool_use_id, output), tool_use_id, {"signal": None})
            expect("unsettled calls after the PostToolUse hook", governor.unsettled, 0)

        return Variant(name, _timed(call), governor.gate.session_id)

    hooks, can_use_tool = variant("hooks"), variant("can_use_tool")
    return {hooks.name: hooks, can_use_tool.name: can_use_tool}


async def langgraph_calls(stack: AsyncExitStack, planes: Planes) -> Variants:
    """One-node graphs with the governed node or LangGraph's ToolNode, invoked (sync) and ainvoked (async)."""
    from langchain_core.messages import AIMessage, ToolMessage
    from langchain_core.tools import StructuredTool
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.graph import END, START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode

    from agent_control_plane.integrations.langgraph import GovernedToolNode

    tool = StructuredTool.from_function(func=run_tool, coroutine=arun_tool, name=TOOL, description="A trivial tool.")

    def graph(node: Any) -> Any:
        builder = StateGraph(MessagesState)
        builder.add_node("tools", node)
        builder.add_edge(START, "tools")
        builder.add_edge("tools", END)
        return builder.compile(checkpointer=InMemorySaver())

    def inputs(label: str, n: int) -> tuple[dict[str, Any], dict[str, Any]]:
        call = {"name": TOOL, "args": {"n": n}, "id": f"call-{n}", "type": "tool_call"}
        state = {"messages": [AIMessage("", id=f"ai-{n}", tool_calls=[call])]}
        return state, {"configurable": {"thread_id": f"{label}-{n}"}}

    def check(output: dict[str, Any], n: int) -> None:
        last = output["messages"][-1]
        got = (type(last), getattr(last, "status", None), last.content)
        expect("the graph's last message", got, (ToolMessage, "success", run_tool(n)))

    def variant(label: str, facade: Facade, node: Any, session_id: str | None) -> Variant:
        compiled = graph(node)

        def invoke(n: int) -> None:
            check(compiled.invoke(*inputs(label, n)), n)

        async def ainvoke(n: int) -> None:
            check(await compiled.ainvoke(*inputs(label, n)), n)

        timer = _timed_sync(invoke) if facade == "sync" else _timed(ainvoke)
        return Variant(label, timer, session_id, governed=session_id is not None)

    variants: Variants = {}
    kinds: tuple[tuple[str, Facade], ...] = (("langgraph", "sync"), ("langgraph_async", "async"))
    for name, facade in kinds:
        gate = planes.gate(facade, name)
        variants[name] = variant(name, facade, GovernedToolNode([tool], gate), gate.session_id)
        plain = ToolNode([tool], handle_tool_errors=True)  # as GovernedToolNode builds its own
        variants[f"{name}/ungoverned"] = variant(f"{name}/ungoverned", facade, plain, None)
        hand = planes.plain(facade, f"{name}/by_hand")
        variants[f"{name}/by_hand"] = variant(f"{name}/by_hand", facade, by_hand_node(hand, plain), hand.session_id)
    return variants


def by_hand_node(hand: Plain, tools: Any) -> Any:
    """A graph node that proposes the last message's one tool call, runs it through `tools`, and settles it.

    It proposes with the idempotency key `GovernedToolNode` sends, as governance written by hand for LangGraph
    must: LangGraph runs a node again when the graph resumes, and the key is what keeps a re-run from proposing (and
    running) the call a second time.
    """
    from langchain_core.runnables import RunnableConfig, RunnableLambda

    from agent_control_plane.integrations.langgraph import idempotency_key

    def call_and_key(state: dict[str, Any], config: RunnableConfig) -> tuple[Any, str]:
        message = state["messages"][-1]
        call = message.tool_calls[0]
        thread = str((config.get("configurable") or {})["thread_id"])
        return call, idempotency_key(thread, message.id, call["id"])

    def node(state: dict[str, Any], config: RunnableConfig) -> Any:
        call, key = call_and_key(state, config)
        proposal_id = hand.propose(call["args"], key)
        output = tools.invoke([call])
        hand.settle(proposal_id, output["messages"][0].content)
        return output

    async def anode(state: dict[str, Any], config: RunnableConfig) -> Any:
        call, key = call_and_key(state, config)
        proposal_id = await hand.apropose(call["args"], key)
        output = await tools.ainvoke([call])
        await hand.asettle(proposal_id, output["messages"][0].content)
        return output

    return RunnableLambda(node, afunc=anode, name="tools")
