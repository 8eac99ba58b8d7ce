"""An MCP server built on the official Python SDK (`mcp` 2.3.0, `MCPServer`).

Used by the interop tests as a real, independently written server. It offers tools (echo,
add, slow with progress, chatty with log messages, ask_name with elicitation, crash),
wait_cancel that records its own cancellation), a static resource, a resource template and
a prompt. Outputs are deterministic.

Env: SDK_CANCEL_LOG names a file to which `wait_cancel` appends its tag (one line) when its
call is cancelled, so a test can see which server a cancellation reached.

Run: python sdk_server.py --transport stdio
     python sdk_server.py --transport streamable-http --port 8000 [--json-response] [--stateless]
     python sdk_server.py --transport sse --port 8000 [--sse-path /events]
"""

import argparse
import asyncio
import os
from typing import Annotated

from pydantic import BaseModel, Field

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.resolve import Elicit, Resolve
from mcp.server.streamable_http import EventMessage, EventStore

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
async def log_as(logger: str, text: str, ctx: Context) -> str:
    """Emits one info log message under the logger name `logger`."""
    await ctx.log("info", text, logger_name=logger)
    return "logged"


@server.tool()
def ask_name(name: Annotated[Name, Resolve(ask_for_name)]) -> str:
    """Asks the client for a name (elicitation), then greets it."""
    return f"Hello, {name.name}!"


@server.tool()
def forecast(region: Annotated[str, Field(json_schema_extra={"x-mcp-header": "Region"})], days: int = 1) -> str:
    """A tool whose `region` argument travels as the Mcp-Param-Region header (2026-07-28 HTTP)."""
    return f"sunny in {region} for {days} day(s)"


@server.tool()
async def interrupted(ctx: Context) -> str:
    """Closes its own SSE reply stream mid-way (with --resumable); the client must resume
    it with Last-Event-ID to get the answer. Without an event store it just answers."""
    await ctx.report_progress(1, 2, "before the break")
    await ctx.close_sse_stream()
    await asyncio.sleep(0.3)
    await ctx.report_progress(2, 2, "after the break")
    return "resumed"


@server.tool()
def crash() -> str:
    """Kills the server process mid-request."""
    os._exit(3)


@server.tool()
async def wait_cancel(tag: str, ctx: Context, seconds: float = 20) -> str:
    """Reports progress 0 (when asked for progress: it is waiting now), sleeps up to
    `seconds`; when the call is cancelled, appends `tag` to $SDK_CANCEL_LOG."""
    await ctx.report_progress(0, None, f"{tag} waiting")
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        log = os.environ.get("SDK_CANCEL_LOG")
        if log:
            with open(log, "a", encoding="utf-8") as f:
                f.write(tag + "\n")
        raise
    return f"{tag} not cancelled"


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


class MemoryEventStore(EventStore):
    """Keeps every SSE event so a client can resume a stream with Last-Event-ID."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, object]] = []

    async def store_event(self, stream_id, message):
        event_id = str(len(self.events) + 1)
        self.events.append((event_id, stream_id, message))
        return event_id

    async def replay_events_after(self, last_event_id, send_callback):
        index = next((i for i, (e, _, _) in enumerate(self.events) if e == last_event_id), None)
        if index is None:
            return None
        stream_id = self.events[index][1]
        for event_id, sid, message in self.events[index + 1 :]:
            if sid == stream_id and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream_id


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--transport", default="stdio", choices=["stdio", "streamable-http", "sse"])
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--json-response", action="store_true", help="streamable-http: JSON replies, not SSE")
    ap.add_argument("--stateless", action="store_true", help="streamable-http: no sessions")
    ap.add_argument("--resumable", action="store_true", help="streamable-http: keep events for Last-Event-ID")
    ap.add_argument("--sse-path", default="/sse", help="sse: where the event stream is served")
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
            event_store=MemoryEventStore() if args.resumable else None,
            retry_interval=100 if args.resumable else None,
        )
    else:
        server.run(args.transport, host="127.0.0.1", port=args.port, sse_path=args.sse_path)


if __name__ == "__main__":
    main()
