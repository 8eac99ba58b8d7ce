#!/usr/bin/env python3
"""A small, deliberately misbehaving MCP-over-HTTP server (standard library only) for the
router's HTTP fault tests. Real SDK servers behave; this one hangs, holds and loops on
purpose, and writes down what it saw.

Streamable HTTP on POST /mcp (JSON replies):
  initialize          -> result echoing params.protocolVersion (+ Mcp-Session-Id with --session)
  tools/call echo     -> {"content":[{"type":"text","text":<arguments.text>}]}
  tools/call hold     -> answers after --hold-ms milliseconds (concurrency is counted)
  other requests      -> {}
  notifications and responses -> 202
  a batch (array)     -> an array with a result per request member ({"method": …})
Faults:
  --hang-notifications   accept a notification POST and never answer it
  --hang-tools           accept a tools/call POST and never answer it
  --hang-delete          accept the session DELETE and never answer it
  --get-retry-zero       GET /mcp answers an SSE stream (a priming event with `retry: 0`) and
                         closes it at once
  --legacy-endpoint URL  GET /sse is a legacy SSE stream whose endpoint event names URL;
                         POSTs to /messages answer 202 (replies never come)
  --hang-posts           with --legacy-endpoint: accept POSTs to /messages and never answer
  --fail-file PATH       while PATH exists, every tools/call POST is answered HTTP 500
Otherwise GET /mcp answers 405.
--record FILE: one line per HTTP request: `<verb> <path> <json-rpc method or -> auth=<yes|no>`.
--stats FILE: rewritten with `max_concurrent=<n> answered=<n>` as `hold` calls come and go.
"""
import argparse
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ARGS = None
LOCK = threading.Lock()
STATE = {"current": 0, "max": 0, "answered": 0}


def record(verb, path, method, headers):
    if not ARGS.record:
        return
    auth = "yes" if headers.get("Authorization") else "no"
    with LOCK, open(ARGS.record, "a") as f:
        f.write(f"{verb} {path} {method or '-'} auth={auth}\n")


def write_stats():
    if ARGS.stats:
        with open(ARGS.stats, "w") as f:
            f.write(f"max_concurrent={STATE['max']} answered={STATE['answered']}\n")


def hang():
    threading.Event().wait()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes: without this, Nagle and delayed ACKs add
    # 40 ms to every keep-alive reply.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", content_type="application/json", headers=()):
        self.send_response(status)
        if body:
            self.send_header("Content-Type", content_type)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def do_GET(self):
        record("GET", self.path, None, self.headers)
        if ARGS.legacy_endpoint and self.path.startswith("/sse"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            self.wfile.write(f"event: endpoint\ndata: {ARGS.legacy_endpoint}\n\n".encode())
            self.wfile.flush()
            hang()
        if ARGS.get_retry_zero and self.path.startswith("/mcp"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            # The priming event a 2025-11-25 server sends before it closes a stream to make
            # the client poll: an id, `retry:`, empty data.
            self.wfile.write(b"id: prime-1\nretry: 0\ndata: \n\n")
            self.wfile.flush()
            self.close_connection = True
            return
        self.reply(405, headers=[("Allow", "POST")])

    def do_DELETE(self):
        record("DELETE", self.path, None, self.headers)
        if ARGS.hang_delete:
            hang()
        self.reply(200)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        try:
            msg = json.loads(self.rfile.read(length))
        except ValueError:
            self.reply(400, b'{"error":"not json"}')
            return
        if isinstance(msg, list):
            # A JSON-RPC batch (2025-03-26): one array of results for its requests.
            record("POST", self.path, "batch", self.headers)
            out = [{"jsonrpc": "2.0", "id": m["id"], "result": {"method": m["method"]}}
                   for m in msg if isinstance(m, dict) and "id" in m and "method" in m]
            if out:
                self.reply(200, json.dumps(out).encode())
            else:
                self.reply(202)
            return
        method = msg.get("method")
        record("POST", self.path, method or "response", self.headers)
        if ARGS.legacy_endpoint and self.path.startswith("/messages"):
            if ARGS.hang_posts:
                hang()
            self.reply(202)
            return
        if not self.path.startswith("/mcp"):
            self.reply(404, b"not found", "text/plain")
            return
        if "id" not in msg or method is None:
            if ARGS.hang_notifications and method is not None:
                hang()
            self.reply(202)
            return
        params = msg.get("params") or {}
        headers = []
        if method == "initialize":
            result = {
                "protocolVersion": params.get("protocolVersion", "2025-11-25"),
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "http-faults", "version": "1"},
            }
            if ARGS.session:
                headers.append(("Mcp-Session-Id", "faults-session-1"))
        elif method == "tools/call":
            if ARGS.fail_file and os.path.exists(ARGS.fail_file):
                self.reply(500, b"internal error", "text/plain")
                return
            if ARGS.hang_tools:
                hang()
            name = params.get("name")
            args = params.get("arguments") or {}
            if name == "hold":
                with LOCK:
                    STATE["current"] += 1
                    STATE["max"] = max(STATE["max"], STATE["current"])
                    write_stats()
                time.sleep(ARGS.hold_ms / 1000)
                with LOCK:
                    STATE["current"] -= 1
                    STATE["answered"] += 1
                    write_stats()
                result = {"content": [{"type": "text", "text": f"held {args.get('n')}"}]}
            else:
                result = {"content": [{"type": "text", "text": args.get("text", "")}]}
        else:
            result = {}
        body = json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}).encode()
        self.reply(200, body, headers=headers)


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--session", action="store_true")
    ap.add_argument("--hang-notifications", action="store_true")
    ap.add_argument("--hang-tools", action="store_true")
    ap.add_argument("--hang-delete", action="store_true")
    ap.add_argument("--get-retry-zero", action="store_true")
    ap.add_argument("--legacy-endpoint")
    ap.add_argument("--hang-posts", action="store_true")
    ap.add_argument("--hold-ms", type=int, default=300)
    ap.add_argument("--fail-file")
    ap.add_argument("--record")
    ap.add_argument("--stats")
    ARGS = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
