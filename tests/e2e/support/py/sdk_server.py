"""An MCP server built on the official Python SDK (`mcp` 2.3.0, `MCPServer`).

Used by the interop tests as a real, independently written server. It offers tools (echo,
add, slow with progress, chatty with log messages, ask_name with elicitation, crash),
a static resource, a resource template and a prompt. Outputs are deterministic.

Run: python sdk_server.py --transport stdio
     python sdk_server.py --transport streamable-http --port 8000 [--json-response] [--stateless]
"""

import argparse
import asyncio
import os
from typing import Annotated

from pydantic import BaseModel

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.resolve import Elicit, Resolve

server = MCPServer("sdk-test-server", instructions="Test server for mcp-router interop tests.", version="1.0.0")


class Name(BaseModel):
    name: str


def ask_for_name() -> Elicit[Name]:
    return Elicit("What is your name?", Name)


@server.tool()
def echo(text: str) -> str:
    """Returns its text."""
    return text


@server.tool()
def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


@server.tool()
async def slow(steps: int, ctx: Context, delay: float = 0.05) -> str:
    """Reports progress for each step, then answers."""
    for i in range(steps):
        await ctx.report_progress(i + 1, steps, f"step {i + 1}")
        await asyncio.sleep(delay)
    return f"done after {steps} steps"


@server.tool()
async def chatty(ctx: Context) -> str:
    """Emits log messages to the client."""
    await ctx.info("chatty says hello")
    await ctx.warning("chatty warns")
    return "logged"


@server.tool()
def ask_name(name: Annotated[Name, Resolve(ask_for_name)]) -> str:
    """Asks the client for a name (elicitation), then greets it."""
    return f"Hello, {name.name}!"


@server.tool()
def crash() -> str:
    """Kills the server process mid-request."""
    os._exit(3)


@server.resource("demo://static", mime_type="text/plain")
def static_resource() -> str:
    """A fixed text."""
    return "static content"


@server.resource("demo://greeting/{who}", mime_type="text/plain")
def greeting(who: str) -> str:
    """A templated greeting."""
    return f"Greetings, {who}."


@server.prompt()
def review(code: str) -> str:
    """Asks for a code review."""
    return f"Please review this code:\n{code}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--transport", default="stdio", choices=["stdio", "streamable-http", "sse"])
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--json-response", action="store_true", help="streamable-http: JSON replies, not SSE")
    ap.add_argument("--stateless", action="store_true", help="streamable-http: no sessions")
    args = ap.parse_args()
    if args.transport == "stdio":
        server.run("stdio")
    elif args.transport == "streamable-http":
        server.run(
            "streamable-http",
            host="127.0.0.1",
            port=args.port,
            json_response=args.json_response,
            stateless_http=args.stateless,
        )
    else:
        server.run(args.transport, host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
