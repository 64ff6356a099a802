"""The upstream side of the MCP proxy: the server it fronts, and a connection to it that fails with a clear error.

Imported by `agent_control_plane.integrations.mcp` once the `mcp` package is known to be there.
"""

from __future__ import annotations

import shlex
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import anyio
import mcp_types as types
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError

from agent_control_plane import __version__
from agent_control_plane.errors import ControlPlaneError

UPSTREAM_TIMEOUT = 30.0
"""Seconds the upstream server has to answer the MCP handshake when the proxy starts."""


class UpstreamUnavailableError(ControlPlaneError):
    """The upstream MCP server could not be started or reached, or did not answer the handshake."""


@dataclass(frozen=True, slots=True)
class Upstream:
    """The MCP server the proxy fronts: a command it starts and talks to over stdio, or a streamable HTTP URL.

    A started command gets the MCP SDK's minimal environment (HOME, PATH, USER, …) plus `env`, not the proxy's
    own, so the control plane's database URL never leaks into a tool server.
    """

    command: tuple[str, ...] = ()
    url: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None

    def __post_init__(self) -> None:
        if bool(self.command) == (self.url is not None):
            raise ValueError("an upstream is either a command or a URL (exactly one of them)")

    @classmethod
    def from_command(
        cls, command: str | Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | None = None
    ) -> Upstream:
        """A command line (split like a shell would, e.g. `"python server.py --root ."`) or its argument list."""
        argv = tuple(shlex.split(command) if isinstance(command, str) else command)
        if not argv:
            raise ValueError("the upstream command is empty")
        return cls(command=argv, env=dict(env or {}), cwd=cwd)

    @classmethod
    def from_url(cls, url: str) -> Upstream:
        """A streamable HTTP endpoint, e.g. `http://127.0.0.1:8000/mcp`."""
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"the upstream URL must start with http:// or https://, not {url!r}")
        return cls(url=url)

    def describe(self) -> str:
        return self.url if self.url is not None else shlex.join(self.command)

    def client(self) -> Client:
        """An MCP client for this upstream (not yet connected). It never caches tool listings."""
        info = types.Implementation(name="agent-control-plane mcp-proxy", version=__version__)
        if self.url is not None:
            return Client(self.url, client_info=info, cache=None)
        params = StdioServerParameters(
            command=self.command[0], args=list(self.command[1:]), env=dict(self.env) or None, cwd=self.cwd
        )
        return Client(params, client_info=info, cache=None)


async def run_connected(upstream: Upstream, serve: Callable[[Client], Awaitable[None]], *, timeout: float) -> None:
    """Connect to `upstream`, run `serve` with the connected client, then disconnect.

    Raises `UpstreamUnavailableError` when the upstream cannot be started or reached, or does not answer the MCP
    handshake within `timeout` seconds; what `serve` raises comes through as it is.
    """
    client = upstream.client()
    connected = anyio.Event()
    problem: str | None = None
    failure: Exception | None = None

    async def watchdog(scope: anyio.CancelScope) -> None:
        nonlocal problem
        with anyio.move_on_after(timeout):
            await connected.wait()
            return
        problem = f"it did not answer the MCP handshake within {timeout:g} s"
        scope.cancel()

    async with anyio.create_task_group() as group:
        group.start_soon(watchdog, group.cancel_scope)
        try:
            async with client:
                connected.set()
                await serve(client)
        except Exception as exc:  # kept out of the task group, which would wrap it in an exception group
            if connected.is_set():
                failure = exc
            else:
                problem = describe_error(exc)
        group.cancel_scope.cancel()
    if failure is not None:
        raise failure
    if problem is not None:
        failed = "could not be reached" if upstream.url is not None else "could not be started"
        raise UpstreamUnavailableError(f"the upstream MCP server {upstream.describe()!r} {failed}: {problem}")


def describe_error(exc: BaseException) -> str:
    """The innermost message of an error (task groups wrap what failed in exception groups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, MCPError):
        return exc.message
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, ControlPlaneError) else f"{type(exc).__name__}: {text}"
