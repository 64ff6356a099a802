"""A small upstream MCP server: tools to read, deploy and launch a software project. It knows nothing of governance.

`mcp_tool_gateway.py` puts `acp mcp-proxy` in front of it (the proxy's tests do too). Each call it runs is appended
to the file given with --record, which shows which calls really reached it.

    python mcp_demo_server.py [--record calls.jsonl]            # MCP over stdio
    python mcp_demo_server.py [--record calls.jsonl] --http     # streamable HTTP on a free port of 127.0.0.1

With --http it prints `listening on http://127.0.0.1:PORT/mcp` to stderr once it accepts connections.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from pathlib import Path

import anyio
import uvicorn
from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("project-tools", instructions="Tools to read, deploy and launch a small software project.")
FILES = {"README.md": "a small project that deploys a web service", "notes.txt": "ship on Friday"}
record: Path | None = None


def ran(tool: str, **args: str) -> None:
    if record is not None:
        with record.open("a", encoding="utf-8") as out:
            out.write(json.dumps({"tool": tool, "args": args}) + "\n")


@server.tool()
def read_file(path: str) -> str:
    """Read a file of the project."""
    ran("read_file", path=path)
    if path not in FILES:
        raise ToolError(f"no such file: {path}")
    return f"{path}: {FILES[path]}"


@server.tool()
def delete_repo(name: str) -> str:
    """Delete a repository, irreversibly."""
    ran("delete_repo", name=name)
    return f"repository {name} deleted"


@server.tool()
def deploy(target: str) -> str:
    """Deploy the current build to a target such as prod/web."""
    ran("deploy", target=target)
    return f"deployed to {target}"


@server.tool()
def deploy_staging(service: str) -> str:
    """Deploy the current build of a service to staging and run its smoke tests."""
    ran("deploy_staging", service=service)
    return f"{service} is on staging; smoke tests passed"


@server.tool()
def launch(rocket: str) -> str:
    """Launch a rocket."""
    ran("launch", rocket=rocket)
    return f"rocket {rocket} launched"


async def serve_http() -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()  # connections wait in the backlog until uvicorn accepts them
    port = listener.getsockname()[1]
    config = uvicorn.Config(server.streamable_http_app(), host="127.0.0.1", port=port, log_level="warning")
    print(f"listening on http://127.0.0.1:{port}/mcp", file=sys.stderr, flush=True)
    await uvicorn.Server(config).serve(sockets=[listener])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="A small upstream MCP server for the MCP proxy's demo and tests.")
    parser.add_argument("--record", type=Path, help="append each call this server runs to this file (JSON lines)")
    parser.add_argument("--http", action="store_true", help="serve streamable HTTP instead of stdio")
    options = parser.parse_args()
    record = options.record
    if options.http:
        anyio.run(serve_http)
    else:
        server.run()
