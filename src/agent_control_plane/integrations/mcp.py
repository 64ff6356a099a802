"""A governing MCP proxy: an MCP server that fronts an upstream MCP server and governs every tool call.

The proxy lists the upstream's tools and, for each `tools/call`, asks the control plane first (through `ToolGate`):
an allowed call is forwarded and then settled with its outcome; a denied or steered one, or one waiting for a
human, comes back as a tool result with `isError: true` whose text says why, and never reaches the upstream. Each
client connection is one control-plane session, opened at the MCP handshake and closed when the client
disconnects. `acp mcp-proxy` runs it; `run_proxy` is the same thing for Python hosts.

The proxy speaks the handshake era of MCP (protocol 2025-11-25 and earlier) to its clients, because a session lives
as long as a connection and the per-request 2026-07-28 revision has none: it does not answer `server/discover`, so
clients in the SDK's default `auto` mode fall back to the `initialize` handshake. To the upstream it speaks
whatever that server prefers.

Needs the `mcp` package: `pip install agent-control-plane[mcp]`.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from agent_control_plane.integrations._extras import require_extra

try:
    import anyio
    import mcp_types as types
    from mcp import Client
    from mcp.server import Server
    from mcp.server.connection import Connection
    from mcp.server.context import ServerRequestContext
    from mcp.server.runner import serve_loop
    from mcp.server.stdio import stdio_server
    from mcp.shared.exceptions import MCPError
    from mcp_types.version import MODERN_PROTOCOL_VERSIONS
except ModuleNotFoundError as exc:  # pragma: no cover - tests run it in a process without the package
    require_extra(exc, ("mcp", "mcp_types", "anyio"), "the MCP proxy", "mcp", "mcp")

from agent_control_plane import __version__
from agent_control_plane.aio import AsyncControlPlaneFacade
from agent_control_plane.errors import ControlPlaneError
from agent_control_plane.integrations._gate import CostOf, GateResult, ResourceOf, ToolGate
from agent_control_plane.integrations._mcp_policy import BlockedTools
from agent_control_plane.integrations._mcp_results import (
    forwarded,
    not_decided,
    refusal,
    result_text,
    upstream_failed,
)
from agent_control_plane.integrations._mcp_upstream import (
    UPSTREAM_TIMEOUT,
    Upstream,
    UpstreamUnavailableError,
    describe_error,
    run_connected,
)
from agent_control_plane.policy.model import PolicySource, load_policy
from agent_control_plane.types.identity import IdentityContext, OrgId, TeamId, UserId

__all__ = [
    "IDENTITY_HEADERS",
    "GoverningProxy",
    "ProxySettings",
    "Upstream",
    "UpstreamUnavailableError",
    "resource_from_argument",
    "run_proxy",
]

Transport = Literal["stdio", "streamable-http"]
Context = ServerRequestContext[Any, Any]

IDENTITY_HEADERS: Mapping[str, str] = {
    "org": "X-ACP-Org",
    "team": "X-ACP-Team",
    "user": "X-ACP-User",
    "agent": "X-ACP-Agent",
}
"""HTTP headers naming who a connection acts for, read only with `trust_identity_headers` (behind a gateway that
authenticates the caller and sets them; anyone can send them otherwise)."""


_STATE_KEY = "agent_control_plane"
logger = logging.getLogger("agent_control_plane.mcp_proxy")


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """How the proxy governs its connections.

    `agent_id` and `identity` name who every connection acts for; with `trust_identity_headers` (HTTP only) the
    `X-ACP-*` headers of a connection override them part by part. `approval_timeout` is how long a call that needs
    a human waits for the decision (0: answer at once with the ticket id). `hide_blocked` leaves out of the tool
    list the tools the policy blocks whatever their arguments. `resource_of` and `cost_of` give a call's resource
    and cost from its tool name and arguments (see `ToolGate`).
    """

    agent_id: str | None = None
    identity: IdentityContext | None = None
    approval_timeout: float = 0.0
    trust_identity_headers: bool = False
    hide_blocked: bool = False
    resource_of: ResourceOf | None = None
    cost_of: CostOf | None = None


def resource_from_argument(name: str) -> ResourceOf:
    """A `resource_of` that takes a call's resource from its argument `name` (when that is a string)."""

    def resource_of(tool: str, args: Mapping[str, Any]) -> str | None:
        value = args.get(name)
        return value if isinstance(value, str) else None

    return resource_of


@dataclass
class _Scope:
    """One client connection's control-plane session (opened on first use, under the lock)."""

    lock: anyio.Lock = field(default_factory=anyio.Lock)
    gate: ToolGate | None = None


class GoverningProxy:
    """The MCP server in front of one connected upstream client, governing its tool calls on `plane`.

    `policy` (the control plane's policy source) is read only to hide always-blocked tools. `serve_stdio` serves
    the one client on this process's stdin/stdout; `serve_http` serves any number over streamable HTTP.
    """

    def __init__(
        self,
        plane: AsyncControlPlaneFacade,
        upstream: Client,
        settings: ProxySettings | None = None,
        *,
        policy: PolicySource | None = None,
        upstream_name: str = "upstream",
    ) -> None:
        self.plane = plane
        self.upstream = upstream
        self.settings = settings or ProxySettings()
        self.upstream_name = upstream_name
        self._transport: Transport = "stdio"
        self._blocked = BlockedTools(policy) if self.settings.hide_blocked and policy is not None else None
        self.server: Server[Any] = Server(
            "agent-control-plane",
            version=__version__,
            title=f"{upstream_name} (governed by agent-control-plane)",
            instructions=upstream.instructions,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
        )
        self.server.add_request_handler("server/discover", types.RequestParams, _refuse_discover)
        self.server.add_notification_handler("notifications/initialized", types.NotificationParams, self._initialized)

    # serving ------------------------------------------------------------------------------------------------
    async def serve_stdio(self) -> None:
        """Serve one client over stdin/stdout until it disconnects (nothing else is written to stdout)."""
        self._transport = "stdio"
        async with stdio_server() as (read_stream, write_stream):
            await serve_loop(self.server, read_stream, write_stream, lifespan_state={})

    async def serve_http(
        self, host: str = "127.0.0.1", port: int = 8000, *, on_listening: Callable[[str], None] | None = None
    ) -> None:
        """Serve streamable HTTP at `http://host:port/mcp` until interrupted (port 0: any free port).

        `on_listening` receives the endpoint URL once the socket listens.
        """
        import uvicorn  # a dependency of mcp; only the HTTP transport needs it

        self._transport = "streamable-http"
        app = self.server.streamable_http_app(host=host)
        listener = _listen(host, port)
        bound_port = listener.getsockname()[1]
        name = f"[{host}]" if ":" in host else host
        if on_listening is not None:
            on_listening(f"http://{name}:{bound_port}/mcp")
        config = uvicorn.Config(app, host=host, port=bound_port, log_level="warning", lifespan="on")
        await uvicorn.Server(config).serve(sockets=[listener])

    # handlers -----------------------------------------------------------------------------------------------
    async def _initialized(self, ctx: Context, params: types.NotificationParams) -> None:
        try:
            await self._gate(ctx)
        except (ControlPlaneError, MCPError) as exc:
            logger.warning("could not open a control-plane session for a new MCP connection: %s", exc)

    async def _list_tools(self, ctx: Context, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        try:
            await self._gate(ctx)
        except ControlPlaneError as exc:
            raise MCPError(code=types.INTERNAL_ERROR, message=f"the control plane is unavailable: {exc}") from None
        listing = await self.upstream.list_tools(cursor=params.cursor if params is not None else None)
        tools = listing.tools
        if self._blocked is not None:
            tools = [tool for tool in tools if tool.name not in self._blocked]
        return types.ListToolsResult(tools=tools, next_cursor=listing.next_cursor)

    async def _call_tool(self, ctx: Context, params: types.CallToolRequestParams) -> types.CallToolResult:
        tool, args = params.name, params.arguments or {}
        try:
            gate = await self._gate(ctx)
            decided = await gate.acheck(tool, args)
        except ControlPlaneError as exc:
            return not_decided(tool, str(exc))
        if not decided.allowed:
            return refusal(decided)
        return await self._run_upstream(gate, decided, tool, args)

    async def _run_upstream(
        self, gate: ToolGate, allowed: GateResult, tool: str, args: dict[str, Any]
    ) -> types.CallToolResult:
        try:
            answer = await self.upstream.call_tool(tool, args)
        except Exception as exc:
            problem = describe_error(exc)
            await self._settle(gate, allowed, error=problem)
            return upstream_failed(tool, allowed, problem)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._settle(gate, allowed, error="cancelled by the MCP client before the upstream answered")
            raise
        text = result_text(answer)
        if answer.is_error:
            await self._settle(gate, allowed, error=text or "the upstream reported an error")
        else:
            await self._settle(gate, allowed, output=text)
        return forwarded(answer, allowed)

    async def _settle(
        self, gate: ToolGate, allowed: GateResult, *, output: Any = None, error: str | None = None
    ) -> None:
        try:
            await gate.asettle(allowed, output=output, error=error)
        except ControlPlaneError as exc:
            # The side effect happened (or was attempted): the caller gets its result either way; recovery settles
            # what this could not (`acp recover`).
            logger.error("could not settle proposal %s: %s", allowed.decision.proposal_id, exc)

    # sessions -----------------------------------------------------------------------------------------------
    async def _gate(self, ctx: Context) -> ToolGate:
        """The gate of the connection `ctx` arrived on; its session is opened by the first request that asks."""
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            raise MCPError(
                code=types.INVALID_REQUEST,
                message=(
                    "agent-control-plane's MCP proxy governs one session per connection, so it speaks the "
                    "initialize handshake (protocol 2025-11-25): connect with mode='legacy' or 'auto'"
                ),
            )
        connection = _connection_of(ctx)
        scope = connection.state.get(_STATE_KEY)
        if not isinstance(scope, _Scope):  # no await since the lookup: two requests cannot both create one
            scope = connection.state[_STATE_KEY] = _Scope()
        async with scope.lock:
            if scope.gate is None:
                scope.gate = await self._open(ctx, connection)
            return scope.gate

    async def _open(self, ctx: Context, connection: Connection) -> ToolGate:
        agent_id, identity, source = self._who(ctx)
        client = connection.client_params.client_info if connection.client_params is not None else None
        client_name = client.name if client is not None else "client"
        session_id = await self.plane.open_session(f"MCP {client_name} via {self.upstream_name}", agent_id=agent_id)
        connection.exit_stack.push_async_callback(self._close, session_id)
        await self.plane.emit(
            session_id,
            "mcp_client_connected",
            {
                "client": None if client is None else {"name": client.name, "version": client.version},
                "protocol_version": ctx.protocol_version,
                "transport": self._transport,
                "upstream": self.upstream_name,
                "agent_id": agent_id,
                "identity": None if identity is None else identity.as_dict(),
                "identity_from": source,
            },
        )
        logger.info("MCP connection from %s: session %s", client_name, session_id)
        settings = self.settings
        return ToolGate(
            self.plane,
            session_id,
            agent_id=agent_id,
            identity=identity,
            approval_timeout=settings.approval_timeout,
            resource_of=settings.resource_of,
            cost_of=settings.cost_of,
        )

    def _who(self, ctx: Context) -> tuple[str | None, IdentityContext | None, str]:
        """The agent and identity a connection acts for, and where they came from (config or headers)."""
        settings = self.settings
        agent_id, identity = settings.agent_id, settings.identity
        headers: Mapping[str, str] | None = getattr(ctx.request, "headers", None)
        if not settings.trust_identity_headers or headers is None:
            return agent_id, identity, "config"
        given = {part: headers.get(header) for part, header in IDENTITY_HEADERS.items()}
        if not any(given.values()):
            return agent_id, identity, "config"
        base = identity or IdentityContext()
        identity = IdentityContext(
            user_id=UserId(given["user"]) if given["user"] else base.user_id,
            org_id=OrgId(given["org"]) if given["org"] else base.org_id,
            team_id=TeamId(given["team"]) if given["team"] else base.team_id,
        )
        return given["agent"] or agent_id, identity, "headers"

    async def _close(self, session_id: str) -> None:
        try:
            await self.plane.close_session(session_id, reason="the MCP client disconnected")
        except ControlPlaneError as exc:  # e.g. killed or aborted meanwhile: it takes no proposals either way
            logger.info("session %s was not closed: %s", session_id, exc)


async def run_proxy(
    upstream: Upstream,
    *,
    database_url: str = "sqlite:///./acp.db",
    policy: PolicySource | None = None,
    table_prefix: str = "acp_",
    schema: str | None = None,
    settings: ProxySettings | None = None,
    transport: Transport = "stdio",
    host: str = "127.0.0.1",
    port: int = 8000,
    upstream_timeout: float = UPSTREAM_TIMEOUT,
    on_listening: Callable[[str], None] | None = None,
) -> None:
    """Set up the control plane's schema, connect to `upstream`, and serve until the client (stdio) or the
    process (HTTP) stops. Raises `UpstreamUnavailableError` when the upstream cannot be started or reached."""
    policy = None if policy is None else load_policy(policy)  # read once, for the plane and for hide_blocked
    plane = AsyncControlPlaneFacade.from_database_url(
        database_url, policy=policy, table_prefix=table_prefix, schema=schema
    )

    async def serve(client: Client) -> None:
        info = client.server_info
        name = info.name if info is not None else upstream.describe()
        proxy = GoverningProxy(plane, client, settings, policy=policy, upstream_name=name)
        if transport == "stdio":
            await proxy.serve_stdio()
        else:
            await proxy.serve_http(host, port, on_listening=on_listening)

    try:
        await plane.setup()
        await run_connected(upstream, serve, timeout=upstream_timeout)
    finally:
        await plane.close()


def _connection_of(ctx: Context) -> Connection:
    """The client connection a request arrived on, whose `state` and `exit_stack` scope the session.

    mcp 2.3 gives low-level handlers no public path to it yet (its `Context.connection` is not what the runner
    hands them), so this reads the one the request's `ServerSession` holds, and says so if that ever changes.
    """
    connection = getattr(ctx.session, "_connection", None)
    if not isinstance(connection, Connection):
        raise RuntimeError(
            "this version of the mcp package does not expose a request's connection to its handlers; "
            "agent-control-plane's MCP proxy is tested with mcp>=2.3,<3"
        )
    return connection


async def _refuse_discover(ctx: Context, params: types.RequestParams) -> types.DiscoverResult:
    # Not answering the 2026-07-28 probe makes `auto` clients fall back to the handshake, which has a connection.
    raise MCPError(code=types.METHOD_NOT_FOUND, message="server/discover: this server speaks the initialize handshake")


def _listen(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    listener = socket.socket(family, kind, proto)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(address)
        listener.listen()  # from now on connections wait in the backlog until the server accepts them
    except OSError as exc:
        listener.close()
        raise ControlPlaneError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return listener
