"""Runs a fixed MCP scenario with the official Python SDK client and prints the results.

    python scenario_client.py --mode legacy|2026-07-28|auto --peer sdk|everything -- CMD [ARGS...]

Launches CMD over the SDK's stdio transport (with the full environment), runs the scenario
for that peer, and prints ONE JSON document (sorted keys) to stdout. The interop tests run it
once against a server directly and once with `mcp-router --` in front, and compare the two
documents: the router must be invisible. Exits non-zero with a message on any failure.

Nondeterministic values are dropped before printing: none for the `sdk` peer; for
`everything`, the `_meta` of results (timestamps/request ids inside) where present.

Through an aggregating router (several servers behind one), `--prefix P` runs the scenario
against one of them: tools and prompts are called as `P__name`; the listed tools and prompts
are those starting with `P__`, printed with the prefix taken off; log records are that
server's (logger `N` printed as none, `N/x` as `x`; `--server-name N`, default P), others are
dropped; resources are read under the URI the router lists for them (`mcp-router://P/<uri>`
when it lists that, else the server's own), and resources and templates are printed as the
router lists them, every page. The router's own handshake answers are printed under
`router`, not as `protocol_version`/`server_info`/`instructions`. Without `--prefix` the
output is exactly what a direct run prints.
"""

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from mcp.client import Client
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters
from mcp_types import (
    CreateMessageResult,
    ElicitResult,
    TextContent,
)


def dump(model: Any) -> Any:
    if isinstance(model, list):
        return [dump(m) for m in model]
    if hasattr(model, "model_dump"):
        return model.model_dump(mode="json", exclude_none=True, by_alias=True)
    return model


def strip_meta(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: strip_meta(x) for k, x in v.items() if k != "_meta"}
    if isinstance(v, list):
        return [strip_meta(x) for x in v]
    return v


class Names:
    """How the scenario names a server's tools, prompts and resources: unchanged in a direct
    run; behind an aggregating router, `P__name` and the URIs the router lists."""

    def __init__(self, prefix: str | None, server_name: str | None, separator: str = "__") -> None:
        self.prefix = prefix
        self.server_name = server_name or prefix
        self.sep = separator
        self.uris: set[str] = set()
        self.templates: set[str] = set()

    def name(self, name: str) -> str:
        return name if self.prefix is None else f"{self.prefix}{self.sep}{name}"

    def own(self, items: list[Any]) -> list[Any]:
        """The items of this server (dumped tools or prompts), with their prefix taken off."""
        if self.prefix is None:
            return items
        mine = self.prefix + self.sep
        return [dict(i, name=i["name"][len(mine) :]) for i in items if i["name"].startswith(mine)]

    def uri(self, uri: str, template: str | None = None) -> str:
        """The URI to read the server's `uri` under (`template`: the template it comes from)."""
        if self.prefix is None:
            return uri
        routed = f"mcp-router://{self.prefix}/"
        if template is None and routed + uri in self.uris:
            return routed + uri
        if template is not None and routed + template in self.templates:
            return routed + uri
        return uri

    def logs(self, records: list[Any]) -> list[Any]:
        if self.prefix is None:
            return records
        out = []
        for r in records:
            logger = r["logger"]
            if logger == self.server_name:
                out.append(dict(r, logger=None))
            elif isinstance(logger, str) and logger.startswith(self.server_name + "/"):
                out.append(dict(r, logger=logger[len(self.server_name) + 1 :]))
        return out


async def list_all(client: Client, what: str) -> list[Any]:
    """Every page of a list (`tools`, `prompts`, `resources`, `resource_templates`)."""
    fetch = getattr(client, f"list_{what}")
    items: list[Any] = []
    cursor = None
    while True:
        page = await (fetch(cursor=cursor) if cursor else fetch())
        items.extend(getattr(page, what))
        cursor = getattr(page, "next_cursor", None)
        if not cursor:
            return items


async def list_tools(client: Client, ns: Names) -> list[Any]:
    if ns.prefix is None:
        tools = (await client.list_tools()).tools
    else:
        tools = await list_all(client, "tools")
    return sorted(ns.own([dump(t) for t in tools]), key=lambda t: t["name"])


async def list_prompts(client: Client, ns: Names) -> list[Any]:
    if ns.prefix is None:
        return dump((await client.list_prompts()).prompts)
    return ns.own(dump(await list_all(client, "prompts")))


async def list_resources(client: Client, ns: Names) -> list[Any]:
    if ns.prefix is None:
        return dump((await client.list_resources()).resources)
    listed = dump(await list_all(client, "resources"))
    ns.uris = {r["uri"] for r in listed}
    return listed


async def list_templates(client: Client, ns: Names) -> list[Any]:
    if ns.prefix is None:
        return dump((await client.list_resource_templates()).resource_templates)
    listed = dump(await list_all(client, "resource_templates"))
    ns.templates = {t["uriTemplate"] for t in listed}
    return listed


class Recorder:
    def __init__(self) -> None:
        self.logs: list[Any] = []
        self.elicitations: list[Any] = []
        self.samplings: list[Any] = []

    async def on_log(self, params: Any) -> None:
        self.logs.append({"level": params.level, "data": params.data, "logger": params.logger})

    async def on_elicit(self, context: Any, params: Any) -> Any:
        self.elicitations.append(params.message)
        return ElicitResult(action="accept", content={"name": "Ada"})

    async def on_sample(self, context: Any, params: Any) -> Any:
        first = params.messages[0].content if params.messages else None
        self.samplings.append(getattr(first, "text", None))
        return CreateMessageResult(
            role="assistant",
            content=TextContent(type="text", text="sampled reply"),
            model="test-model",
            stopReason="endTurn",
        )


async def call_with_progress(client: Client, name: str, args: dict[str, Any]) -> tuple[Any, list[Any]]:
    seen: list[Any] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append({"progress": progress, "total": total, "message": message})

    result = await client.call_tool(name, args, progress_callback=on_progress)
    return dump(result), seen


async def gateway_scenario(client: Client, ns: Names) -> dict[str, Any]:
    """What a client gets through the mcp-bridge gateway, which forwards requests and
    their replies only (no server notifications, no server->client requests)."""
    out: dict[str, Any] = {}
    out["tools"] = await list_tools(client, ns)
    out["resources"] = await list_resources(client, ns)
    out["templates"] = await list_templates(client, ns)
    out["prompts"] = await list_prompts(client, ns)
    out["echo"] = dump(await client.call_tool(ns.name("echo"), {"text": "héllo ✓ \"quoted\"\n"}))
    out["add"] = dump(await client.call_tool(ns.name("add"), {"a": 2, "b": 40}))
    out["forecast"] = dump(await client.call_tool(ns.name("forecast"), {"region": "Zürich north", "days": 2}))
    out["slow"] = dump(await client.call_tool(ns.name("slow"), {"steps": 3}))
    out["chatty"] = dump(await client.call_tool(ns.name("chatty"), {}))
    out["read_static"] = dump(await client.read_resource(ns.uri("demo://static")))
    out["read_template"] = dump(await client.read_resource(ns.uri("demo://greeting/router", "demo://greeting/{who}")))
    out["prompt"] = dump(await client.get_prompt(ns.name("review"), {"code": "print(1)"}))
    if client.protocol_version != "2026-07-28":
        out["ping"] = dump(await client.send_ping())
    return out


async def sdk_scenario(client: Client, rec: Recorder, mode: str, ns: Names, ask: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {}
    out["tools"] = await list_tools(client, ns)
    out["resources"] = await list_resources(client, ns)
    out["templates"] = await list_templates(client, ns)
    out["prompts"] = await list_prompts(client, ns)
    out["echo"] = dump(await client.call_tool(ns.name("echo"), {"text": "héllo ✓ \"quoted\"\n"}))
    out["add"] = dump(await client.call_tool(ns.name("add"), {"a": 2, "b": 40}))
    out["forecast"] = dump(await client.call_tool(ns.name("forecast"), {"region": "Zürich north", "days": 2}))
    out["slow"], out["progress"] = await call_with_progress(client, ns.name("slow"), {"steps": 4})
    out["chatty"] = dump(await client.call_tool(ns.name("chatty"), {}))
    if ask:
        out["ask_name"] = dump(await client.call_tool(ns.name("ask_name"), {}))
    out["read_static"] = dump(await client.read_resource(ns.uri("demo://static")))
    out["read_template"] = dump(await client.read_resource(ns.uri("demo://greeting/router", "demo://greeting/{who}")))
    out["prompt"] = dump(await client.get_prompt(ns.name("review"), {"code": "print(1)"}))
    if client.protocol_version != "2026-07-28":
        out["ping"] = dump(await client.send_ping())
    # Cancellation: the client gives up on a long call (it sends notifications/cancelled in
    # the handshake era, or abandons the request in 2026-07-28); the session goes on.
    try:
        await client.call_tool(ns.name("slow"), {"steps": 40, "delay": 0.1}, read_timeout_seconds=0.3)
        out["cancel"] = "not cancelled"
    except Exception as e:  # the SDK's timeout error
        out["cancel"] = type(e).__name__
    out["after_cancel"] = dump(await client.call_tool(ns.name("echo"), {"text": "after cancel"}))
    # Let trailing notifications (logs) arrive before reading the recorder.
    await asyncio.sleep(0.2)
    out["logs"] = ns.logs(rec.logs)
    out["elicitations"] = rec.elicitations
    return out


async def everything_scenario(client: Client, rec: Recorder, mode: str, ns: Names, read_uri: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    out["tools"] = await list_tools(client, ns)
    out["resources"] = strip_meta(await list_resources(client, ns))
    out["prompts"] = await list_prompts(client, ns)
    out["echo"] = dump(await client.call_tool(ns.name("echo"), {"message": "héllo ✓"}))
    out["get-sum"] = dump(await client.call_tool(ns.name("get-sum"), {"a": 2, "b": 40}))
    out["long"], out["progress"] = await call_with_progress(
        client, ns.name("trigger-long-running-operation"), {"duration": 1, "steps": 4}
    )
    out["sampling"] = strip_meta(
        dump(await client.call_tool(ns.name("trigger-sampling-request"), {"prompt": "hi", "maxTokens": 20}))
    )
    first = read_uri or (out["resources"][0]["uri"] if out["resources"] else None)
    if first:
        out["read"] = strip_meta(dump(await client.read_resource(ns.uri(first))))
    prompt_names = [p["name"] for p in out["prompts"]]
    if "simple-prompt" in prompt_names:
        out["prompt"] = dump(await client.get_prompt(ns.name("simple-prompt"), {}))
    out["ping"] = dump(await client.send_ping())
    out["samplings"] = rec.samplings
    return out


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", required=True, choices=["legacy", "2026-07-28", "auto"])
    ap.add_argument("--peer", required=True, choices=["sdk", "everything"])
    ap.add_argument("--url", help="connect to this Streamable HTTP URL instead of running a command")
    ap.add_argument("--sse-url", help="connect to this legacy HTTP+SSE URL instead of running a command")
    ap.add_argument(
        "--no-server-requests",
        action="store_true",
        help="skip the tool that asks the client (a JSON-reply HTTP server cannot carry that request)",
    )
    ap.add_argument(
        "--gateway-subset",
        action="store_true",
        help="only what the mcp-bridge gateway carries: requests and replies (sdk peer)",
    )
    ap.add_argument("--prefix", help="the server's prefix behind an aggregating router (tools are P__name)")
    ap.add_argument("--server-name", help="with --prefix: the server's name in log records (default: the prefix)")
    ap.add_argument("--read-uri", help="everything peer: the resource to read (default: the first listed)")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if args.url:
        params = args.url
    elif args.sse_url:
        params = sse_client(args.sse_url)
    elif cmd:
        params = StdioServerParameters(command=cmd[0], args=cmd[1:], env=dict(os.environ))
    else:
        print("scenario_client: give --url URL or a server command after --", file=sys.stderr)
        return 2
    ns = Names(args.prefix, args.server_name)
    rec = Recorder()
    async with Client(
        params,
        mode=args.mode,
        cache=None,
        read_timeout_seconds=30,
        logging_callback=rec.on_log,
        elicitation_callback=rec.on_elicit,
        sampling_callback=rec.on_sample,
        log_level="info",
    ) as client:
        handshake = {
            "protocol_version": client.protocol_version,
            "server_info": dump(client.server_info),
            "instructions": client.instructions,
        }
        # Behind an aggregating router the handshake is the router's own, not the server's.
        out: dict[str, Any] = handshake if args.prefix is None else {"router": handshake}
        if args.gateway_subset:
            out.update(await gateway_scenario(client, ns))
        elif args.peer == "sdk":
            out.update(await sdk_scenario(client, rec, args.mode, ns, ask=not args.no_server_requests))
        else:
            out.update(await everything_scenario(client, rec, args.mode, ns, args.read_uri))
    print(json.dumps(out, sort_keys=True, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
