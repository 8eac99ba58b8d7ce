#!/usr/bin/env python3
"""A raw stdio JSON-RPC server (standard library only) for the router's fault tests.

It records every line it receives (--record FILE, one line each, flushed), writes its pid
(--pidfile FILE), and answers:
  initialize            -> result echoing params.protocolVersion
  ping                  -> {}
  tools/call echo       -> {"content":[{"type":"text","text":<arguments.text>}]}
  tools/call sleep      -> answers after arguments.ms milliseconds (in a thread), unless
                           a notifications/cancelled for it arrived first (with
                           --ignore-cancel it answers anyway, then logs
                           "fault_server late reply to <id> sent" on stderr)
  tools/call crash      -> exits with status 3 at once, without answering
  tools/call big        -> a text of arguments.bytes bytes
  anything else w/ id   -> {"method": <method>}
Options: --ignore-eof (keep running after stdin closes, to test the kill path),
--grandchild (start a long `sleep` in the same process group, to test group kill),
--crash-on-start (exit 4 before reading anything), --stall-after-init (answer initialize,
then never read stdin again), --ignore-cancel (answer sleep calls even when cancelled: a
server that replies after the router gave up on the request).
"""
import argparse
import json
import os
import subprocess
import sys
import threading
import time

lock = threading.Lock()
cancelled = set()


def send(obj):
    data = json.dumps(obj, separators=(",", ":"))
    with lock:
        sys.stdout.write(data + "\n")
        sys.stdout.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--record")
    ap.add_argument("--pidfile")
    ap.add_argument("--ignore-eof", action="store_true")
    ap.add_argument("--grandchild", action="store_true")
    ap.add_argument("--crash-on-start", action="store_true")
    ap.add_argument("--stall-after-init", action="store_true")
    ap.add_argument("--ignore-cancel", action="store_true")
    args = ap.parse_args()
    if args.crash_on_start:
        sys.exit(4)
    if args.pidfile:
        with open(args.pidfile, "a") as f:
            f.write(f"{os.getpid()}\n")
    if args.grandchild:
        p = subprocess.Popen(["sleep", "300"])
        if args.pidfile:
            with open(args.pidfile, "a") as f:
                f.write(f"{p.pid}\n")
    record = open(args.record, "a") if args.record else None
    print(f"fault_server {os.getpid()} up", file=sys.stderr, flush=True)
    for line in sys.stdin:
        if record:
            record.write(line if line.endswith("\n") else line + "\n")
            record.flush()
        try:
            msg = json.loads(line)
        except ValueError:
            send({"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error"}})
            continue
        if isinstance(msg, list):
            # A `sleep` member delays the whole batch reply (a batch is answered at once).
            delay = max([((m.get("params") or {}).get("arguments") or {}).get("ms", 0)
                         for m in msg if (m.get("params") or {}).get("name") == "sleep"] or [0])
            replies = [reply_for(m) for m in msg if "id" in m and "method" in m]
            threading.Thread(target=lambda: (time.sleep(delay / 1000.0), send(replies)), daemon=True).start()
            continue
        method = msg.get("method")
        if method == "notifications/cancelled":
            cancelled.add(json.dumps(msg.get("params", {}).get("requestId")))
            continue
        if "id" not in msg or method is None:
            continue
        if method == "tools/call":
            params = msg.get("params") or {}
            name = params.get("name")
            a = params.get("arguments") or {}
            if name == "crash":
                os._exit(3)
            if name == "sleep":
                threading.Thread(
                    target=sleeper, args=(msg["id"], a.get("ms", 1000), args.ignore_cancel), daemon=True
                ).start()
                continue
        send(reply_for(msg))
        if args.stall_after_init and method == "initialize":
            # Stop reading stdin for good (the pipe fills up behind us).
            while True:
                time.sleep(1)
    print("fault_server stdin closed", file=sys.stderr, flush=True)
    if args.ignore_eof:
        while True:
            time.sleep(1)


def reply_for(msg):
    method = msg.get("method")
    params = msg.get("params") or {}
    if method == "initialize":
        result = {
            "protocolVersion": params.get("protocolVersion", "2025-06-18"),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "fault_server", "version": "1"},
        }
    elif method == "ping":
        result = {}
    elif method == "tools/call" and params.get("name") == "echo":
        text = (params.get("arguments") or {}).get("text", "")
        result = {"content": [{"type": "text", "text": text}]}
    elif method == "tools/call" and params.get("name") == "big":
        n = int((params.get("arguments") or {}).get("bytes", 0))
        result = {"content": [{"type": "text", "text": "x" * n}]}
    else:
        result = {"method": method}
    return {"jsonrpc": "2.0", "id": msg["id"], "result": result}


def sleeper(req_id, ms, ignore_cancel):
    time.sleep(ms / 1000.0)
    was_cancelled = json.dumps(req_id) in cancelled
    if was_cancelled and not ignore_cancel:
        return
    send({"jsonrpc": "2.0", "id": req_id, "result": {"content": [{"type": "text", "text": "slept"}]}})
    if was_cancelled:
        # Written after the reply, so a test that sees this line knows the reply is on stdout.
        print(f"fault_server late reply to {json.dumps(req_id)} sent", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
