"""`acp mcp-proxy`: run the governing MCP proxy from the shell (or from an MCP client's server configuration).

Importing this module does not import `mcp`: `acp` works without the extra, and this command says how to install
it. On the stdio transport nothing but the protocol goes to stdout; messages and the log go to stderr.
"""

from __future__ import annotations

import logging
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from agent_control_plane._cli_base import Settings, fail


class TransportChoice(StrEnum):
    STDIO = "stdio"
    STREAMABLE_HTTP = "streamable-http"


Text = str | None


def mcp_proxy(
    ctx: typer.Context,
    upstream_command: Annotated[
        Text,
        typer.Option(
            "--upstream-command",
            help='The upstream MCP server to start, as a command line: "python server.py --root .".',
        ),
    ] = None,
    upstream_url: Annotated[
        Text, typer.Option("--upstream-url", help="Or the upstream's streamable HTTP endpoint: http://host:port/mcp.")
    ] = None,
    upstream_env: Annotated[
        list[str] | None,
        typer.Option(
            "--upstream-env",
            metavar="NAME=VALUE",
            help="An environment variable for the started upstream (repeatable); it gets no other of the proxy's.",
        ),
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy", metavar="FILE", help="The policy (YAML or JSON); without one, every call needs a human."
        ),
    ] = None,
    database_url: Annotated[
        Text,
        typer.Option("--database-url", envvar="ACP_DATABASE_URL", help="sqlite:///path.db or postgresql://…"),
    ] = None,
    table_prefix: Annotated[Text, typer.Option("--table-prefix", help="Prefix of the control plane's tables.")] = None,
    schema: Annotated[Text, typer.Option("--schema", help="Database schema holding the tables.")] = None,
    agent: Annotated[
        Text, typer.Option("--agent", help="The agent id every connection's calls are proposed as.")
    ] = None,
    org: Annotated[Text, typer.Option("--org", help="The org (tenant) the calls are made for.")] = None,
    team: Annotated[Text, typer.Option("--team", help="The team the calls are made for.")] = None,
    user: Annotated[Text, typer.Option("--user", help="The user the calls are made for.")] = None,
    approval_timeout: Annotated[
        float,
        typer.Option(
            "--approval-timeout",
            min=0,
            metavar="SECONDS",
            help="How long a call that needs a human waits for the decision; 0 answers at once with the ticket id.",
        ),
    ] = 0.0,
    resource_arg: Annotated[
        Text,
        typer.Option(
            "--resource-arg",
            metavar="NAME",
            help="The tool argument whose value is the call's resource (for policies that decide by resource).",
        ),
    ] = None,
    hide_blocked: Annotated[
        bool,
        typer.Option(
            "--hide-blocked", help="Leave out of the tool list the tools the policy blocks for any arguments."
        ),
    ] = False,
    transport: Annotated[
        TransportChoice, typer.Option("--transport", help="How MCP clients connect to the proxy.")
    ] = TransportChoice.STDIO,
    host: Annotated[str, typer.Option("--host", help="streamable-http: the address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, help="streamable-http: the port (0: any free one).")] = 8000,
    trust_identity_headers: Annotated[
        bool,
        typer.Option(
            "--trust-identity-headers",
            help="streamable-http: take X-ACP-Org/-Team/-User/-Agent from each connection's requests. Only behind "
            "a gateway that authenticates callers and sets these headers itself.",
        ),
    ] = False,
    upstream_timeout: Annotated[
        float,
        typer.Option("--upstream-timeout", min=0.1, metavar="SECONDS", help="How long the upstream has to start."),
    ] = 30.0,
) -> None:
    """Serve an MCP server in front of an upstream one that governs every tool call: allowed calls run upstream
    and are settled with their outcome; denied and steered ones, and those waiting for a human, come back as tool
    errors the model reads. One session per client connection (see `acp sessions list`, `acp tickets list`)."""
    try:
        from agent_control_plane.integrations import mcp as proxy
    except ImportError as exc:
        fail(str(exc) if "agent-control-plane[mcp]" in str(exc) else f"cannot load the MCP proxy: {exc}")

    if (upstream_command is None) == (upstream_url is None):
        raise typer.BadParameter("give exactly one of them", param_hint="'--upstream-command' / '--upstream-url'")
    if trust_identity_headers and transport is TransportChoice.STDIO:
        raise typer.BadParameter("stdio has no headers: use it with --transport streamable-http")
    try:
        env = dict(_pair(item) for item in upstream_env or [])
        upstream = (
            proxy.Upstream.from_command(upstream_command, env=env)
            if upstream_command is not None
            else proxy.Upstream.from_url(upstream_url or "")
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    from agent_control_plane.types.identity import IdentityContext, OrgId, TeamId, UserId

    identity = None
    if org or team or user:
        identity = IdentityContext(
            user_id=UserId(user) if user else None,
            org_id=OrgId(org) if org else None,
            team_id=TeamId(team) if team else None,
        )
    settings = proxy.ProxySettings(
        agent_id=agent,
        identity=identity,
        approval_timeout=approval_timeout,
        trust_identity_headers=trust_identity_headers,
        hide_blocked=hide_blocked,
        resource_of=proxy.resource_from_argument(resource_arg) if resource_arg else None,
    )
    root = ctx.find_object(Settings)
    assert root is not None, "the root callback sets it"
    _log_to_stderr()
    import anyio

    anyio.run(
        lambda: proxy.run_proxy(
            upstream,
            database_url=database_url or root.database_url,
            policy=policy,
            table_prefix=table_prefix or root.table_prefix,
            schema=schema or root.schema,
            settings=settings,
            transport=transport.value,
            host=host,
            port=port,
            upstream_timeout=upstream_timeout,
            on_listening=_say_listening,
        )
    )


def _pair(item: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep or not name:
        raise ValueError(f"--upstream-env {item!r}: expected NAME=VALUE")
    return name, value


def _say_listening(url: str) -> None:
    Console(stderr=True, highlight=False).print(f"acp mcp-proxy: listening on {url}", markup=False)


def _log_to_stderr() -> None:
    """Send the proxy's log to stderr: on the stdio transport, stdout carries nothing but the protocol."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("acp mcp-proxy %(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
