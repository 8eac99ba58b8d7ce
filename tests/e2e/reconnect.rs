//! `reconnect.*` end to end: a stdio server that keeps exiting, network servers and a
//! gateway that cannot be reached. The router gives up after exactly `max_attempts`
//! retries, at the policy's delays, with a text that says so; with `max_attempts` 0 or -1
//! it keeps trying until the server is there, and the request that waited succeeds.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::support::ws_peer::{self, Act, WsPeer};
use crate::support::*;

/// Starts the flaky server: notes the time it started in `$2`, exits at once (status 1)
/// unless the file `$1` exists, else runs the MCP server `$4` with Python `$3`. A shell,
/// so that a process that exits at once costs milliseconds and the gaps between starts
/// are the router's delays.
const WRAPPER: &str = r#"date +%s.%N >> "$2"
[ -e "$1" ] || exit 1
exec "$3" "$4"
"#;

/// The MCP server itself; `tools/call` `crash` makes it exit with status 3.
const SERVER: &str = r#"
import json, sys
for line in sys.stdin:
    msg = json.loads(line)
    if "id" not in msg or "method" not in msg:
        continue
    if msg["method"] == "initialize":
        result = {"protocolVersion": msg["params"]["protocolVersion"], "capabilities": {},
                  "serverInfo": {"name": "flaky", "version": "1"}}
    elif msg["method"] == "tools/call" and msg["params"]["name"] == "crash":
        sys.exit(3)
    else:
        result = {}
    print(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}), flush=True)
"#;

struct Flaky {
    router: RouterProc,
    marker: PathBuf,
    starts: PathBuf,
}

impl Flaky {
    /// The router with the flaky server (working at first) and `reconnect` as its policy.
    fn start(reconnect: &str) -> Flaky {
        let dir = tempfile::tempdir().unwrap();
        let (wrapper, server) = (dir.path().join("flaky.sh"), dir.path().join("flaky.py"));
        let marker = dir.path().join("works");
        let starts = dir.path().join("starts");
        std::fs::write(&wrapper, WRAPPER).unwrap();
        std::fs::write(&server, SERVER).unwrap();
        std::fs::write(&marker, "").unwrap();
        let config = dir.path().join("mcp-router.yaml");
        std::fs::write(
            &config,
            format!(
                "servers:\n  - name: flaky\n    command: sh\n    args: [{}, {}, {}, {}, {}]\n    reconnect: {reconnect}\n",
                wrapper.display(),
                marker.display(),
                starts.display(),
                python(),
                server.display()
            ),
        )
        .unwrap();
        let router = RouterProc::start_in(dir, &["--config", config.to_str().unwrap()], &[]);
        Flaky {
            router,
            marker,
            starts,
        }
    }

    /// When each process started (seconds since the epoch).
    fn starts(&self) -> Vec<f64> {
        read_lines(&self.starts)
            .iter()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Initialized, then the server is broken (every new process exits at once) and the
    /// running one crashes: returns the wall-clock time its crash was answered.
    fn initialize_then_break(&mut self) -> f64 {
        let init = self.router.initialize("2025-06-18");
        assert_eq!(init["result"]["serverInfo"]["name"], "flaky", "{init}");
        std::fs::remove_file(&self.marker).unwrap();
        let v = self
            .router
            .request(json!(1), "tools/call", json!({"name": "crash"}));
        assert_eq!(kind(&v), "upstream_exited", "{v}");
        now()
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn kind(v: &Value) -> &str {
    v["error"]["data"]["kind"].as_str().unwrap_or("")
}

fn message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or("")
}

/// Asserts that `later - earlier` is at least `ms` milliseconds (a little slack for the
/// two clocks' resolution).
fn at_least(earlier: f64, later: f64, ms: f64, what: &str) {
    let gap = (later - earlier) * 1000.0;
    assert!(gap >= ms - 5.0, "{what}: {gap:.0} ms, expected ≥ {ms} ms");
}

#[test]
fn a_stdio_server_is_restarted_exactly_max_attempts_times_at_the_delays_then_given_up() {
    let mut f = Flaky::start(
        "{ initial_delay_ms: 50, max_delay_ms: 200, multiplier: 2, max_attempts: 3, jitter: 0 }",
    );
    let crashed = f.initialize_then_break();
    // Waits through the restarts (none of them comes up), then gets the reason.
    let t = Instant::now();
    let v = f.router.request(json!(2), "ping", json!({}));
    let waited = t.elapsed();
    assert_eq!(kind(&v), "upstream_unavailable", "{v}");
    let text = message(&v);
    assert!(
        text.contains("server 'flaky' could not be kept running")
            && text.contains("exited with status 1")
            && text.ends_with("gave up after 3 restarts (reconnect.max_attempts: 3)"),
        "{text}"
    );
    // 50 + 100 + 200 ms of delays (plus three Python start-ups); loosely bounded above.
    assert!(
        waited >= Duration::from_millis(340) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    // The first process, then exactly three restarts, each after its delay.
    let starts = f.starts();
    assert_eq!(starts.len(), 4, "{starts:?}");
    at_least(crashed, starts[1], 50.0, "first restart");
    at_least(starts[1], starts[2], 100.0, "second restart");
    at_least(starts[2], starts[3], 200.0, "third restart");
    // Given up for good: no more processes, later requests answered at once.
    thread::sleep(Duration::from_millis(500));
    assert_eq!(f.starts().len(), 4);
    let t = Instant::now();
    let v = f.router.request(json!(3), "ping", json!({}));
    assert!(message(&v).contains("gave up after 3 restarts"), "{v}");
    assert!(t.elapsed() < Duration::from_millis(300));
    f.router.finish_ok();
}

#[test]
fn max_attempts_minus_one_restarts_until_the_server_works_and_the_waiting_request_succeeds() {
    let mut f = Flaky::start(
        "{ initial_delay_ms: 20, max_delay_ms: 100, multiplier: 2, max_attempts: -1, jitter: 0 }",
    );
    f.initialize_then_break();
    f.router
        .send(&json!({"jsonrpc":"2.0","id":2,"method":"ping"}));
    // Well past what the default limit (10) would allow, and many times max_delay.
    assert!(
        wait_until(WAIT, || f.starts().len() > 15),
        "{:?}\n{}",
        f.starts(),
        f.router.stderr()
    );
    assert!(
        f.router.recv(Duration::ZERO).is_none(),
        "nothing answered yet"
    );
    std::fs::write(&f.marker, "").unwrap();
    let (v, others) = f.router.response(&json!(2));
    assert_eq!(v["result"], json!({}), "{v}");
    assert!(others.is_empty(), "{others:?}");
    assert!(!f.router.stderr().contains("gave up"));
    // Recovered: the session was replayed on the new process, calls go on.
    assert_eq!(
        f.router.request(json!(3), "ping", json!({}))["result"],
        json!({})
    );
    f.router.finish_ok();
}

/// A loopback listener that accepts each connection and closes it at once (no upgrade, no
/// HTTP, no frame): every connection attempt fails, and when it came is noted.
struct Refuser {
    port: u16,
    accepts: Arc<Mutex<Vec<Instant>>>,
}

impl Refuser {
    fn start() -> Refuser {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepts = Arc::new(Mutex::new(Vec::new()));
        let noted = accepts.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                noted.lock().unwrap().push(Instant::now());
                // Read what the client sent first, so the close is a clean one (FIN) and
                // the client sees "connection closed", not whatever a reset turns into.
                thread::spawn(move || {
                    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                    let _ = s.read(&mut [0u8; 4096]);
                });
            }
        });
        Refuser { port, accepts }
    }

    fn accepted(&self) -> usize {
        self.accepts.lock().unwrap().len()
    }

    /// Milliseconds between one connection and the next.
    fn gaps_ms(&self) -> Vec<u128> {
        let at = self.accepts.lock().unwrap();
        at.windows(2)
            .map(|w| w[1].duration_since(w[0]).as_millis())
            .collect()
    }

    /// Each gap at least the delay the policy gives it (`delays`, milliseconds).
    fn assert_paced(&self, delays: &[u128], what: &str) {
        let gaps = self.gaps_ms();
        assert_eq!(gaps.len(), delays.len(), "{what}: {gaps:?}");
        for (gap, delay) in gaps.iter().zip(delays) {
            assert!(gap >= delay, "{what}: gaps {gaps:?}, delays {delays:?}");
        }
    }
}

fn start_with(config: &str, env: &[(&str, &str)]) -> RouterProc {
    let dir = tempfile::tempdir().unwrap();
    let path: &Path = &dir.path().join("mcp-router.yaml");
    std::fs::write(path, config).unwrap();
    let path = path.to_str().unwrap().to_owned();
    RouterProc::start_in(dir, &["--config", &path], env)
}

/// The router at `config`, whose upstream never connects: the first request waits for
/// every attempt, then gets the give-up text. Returns it and how long it took.
fn given_up(config: &str, env: &[(&str, &str)]) -> (RouterProc, String, Duration) {
    let t = Instant::now();
    let mut r = start_with(config, env);
    let v = r.request(json!(1), "ping", json!({}));
    let took = t.elapsed();
    assert_eq!(kind(&v), "upstream_unavailable", "{v}\n{}", r.stderr());
    (r, message(&v).to_owned(), took)
}

const THREE: &str =
    "{ initial_delay_ms: 50, max_delay_ms: 200, multiplier: 2, max_attempts: 3, jitter: 0 }";

#[test]
fn network_servers_are_tried_once_plus_max_attempts_times_then_given_up() {
    for (scheme, url) in [
        ("ws", "ws://127.0.0.1:{port}/mcp"),
        ("tcp", "tcp://127.0.0.1:{port}"),
        ("sse", "http://127.0.0.1:{port}/sse"),
    ] {
        let refuser = Refuser::start();
        let url = url.replace("{port}", &refuser.port.to_string());
        let (mut r, text, took) = given_up(
            &format!("servers:\n  - name: net\n    url: {url}\n    reconnect: {THREE}\n"),
            &[],
        );
        assert!(
            text.starts_with("server 'net' could not be reached")
                && text.ends_with("gave up after 3 reconnect attempts (reconnect.max_attempts: 3)"),
            "{scheme}: {text}"
        );
        assert!(took >= Duration::from_millis(350), "{scheme}: {took:?}");
        assert!(took < Duration::from_secs(10), "{scheme}: {took:?}");
        // The first connection, then exactly three more, each after its delay.
        refuser.assert_paced(&[50, 100, 200], scheme);
        thread::sleep(Duration::from_millis(400));
        assert_eq!(
            refuser.accepted(),
            4,
            "{scheme}: no attempt after giving up"
        );
        r.finish_ok();
    }
}

const TOKEN: [(&str, &str); 1] = [("MCP_AUTH_TOKEN", "t0ken-for-the-test")];

/// 100 ms, then 300 ms; `n` retries; one connection (no pool).
fn gateway_policy(n: usize) -> String {
    format!(
        "{{ reconnect: {{ initial_delay_ms: 100, multiplier: 3, max_attempts: {n}, jitter: 0 }}, pool: {{ enabled: false }} }}"
    )
}

fn gave_up_after(n: usize) -> String {
    format!(
        "gave up after {n} reconnect attempt{} (reconnect.max_attempts: {n})",
        if n == 1 { "" } else { "s" }
    )
}

#[test]
fn the_gateway_takes_its_policy_from_its_connection_section() {
    // `gateway:`, over either protocol; and `gateway_pool:` alone, from its endpoint.
    for (shape, attempts, template) in [
        ("gateway ws", 2, "gateway:\n  url: ws://127.0.0.1:{port}/\n  connection: {policy}\n"),
        ("gateway tcp", 2, "gateway:\n  url: tcp://127.0.0.1:{port}\n  connection: {policy}\n"),
        ("gateway_pool", 1, "gateway_pool:\n  endpoints:\n    - url: ws://127.0.0.1:{port}/\n      connection: {policy}\n"),
    ] {
        let refuser = Refuser::start();
        let config = template
            .replace("{port}", &refuser.port.to_string())
            .replace("{policy}", &gateway_policy(attempts));
        let (mut r, text, took) = given_up(&config, &TOKEN);
        assert!(text.ends_with(&gave_up_after(attempts)), "{shape}: {text}");
        assert!(took < Duration::from_secs(10), "{shape}: {took:?}");
        refuser.assert_paced(&[100, 300][..attempts], shape);
        r.finish_ok();
    }
}

#[test]
fn each_gateway_endpoint_follows_its_own_reconnect_section() {
    let (a, b) = (Refuser::start(), Refuser::start());
    let config = format!(
        "gateway:\n  url: ws://127.0.0.1:{}/\n  connection: {}\n  endpoints:\n    - url: ws://127.0.0.1:{}/\n      connection: {}\n",
        a.port,
        gateway_policy(2),
        b.port,
        gateway_policy(1)
    );
    let (mut r, text, _) = given_up(&config, &TOKEN);
    // Answered once neither endpoint can be used: the last to give up says why.
    assert!(text.ends_with(&gave_up_after(2)), "{text}");
    a.assert_paced(&[100, 300], "gateway.url");
    b.assert_paced(&[100], "gateway.endpoints[0]");
    r.finish_ok();
}

#[test]
fn each_connection_of_a_gateway_pool_paces_itself() {
    let refuser = Refuser::start();
    let config = format!(
        "gateway:\n  url: ws://127.0.0.1:{}/\n  connection:\n    reconnect: {{ initial_delay_ms: 100, multiplier: 3, max_attempts: 2, jitter: 0 }}\n    pool: {{ enabled: true, min_size: 2, max_size: 2 }}\n",
        refuser.port
    );
    let (mut r, text, took) = given_up(&config, &TOKEN);
    assert!(text.ends_with(&gave_up_after(2)), "{text}");
    assert!(took >= Duration::from_millis(400), "{took:?}");
    // Both standing connections: the first attempt and two retries each, then no more.
    assert!(
        wait_until(WAIT, || refuser.accepted() == 6),
        "{:?}",
        refuser.gaps_ms()
    );
    thread::sleep(Duration::from_millis(500));
    assert_eq!(refuser.accepted(), 6, "{:?}", refuser.gaps_ms());
    r.finish_ok();
}

#[test]
fn max_attempts_zero_reconnects_until_a_websocket_server_listens_and_the_request_succeeds() {
    let port = free_port();
    let mut r = start_with(
        &format!(
            "servers:\n  - name: late\n    url: ws://127.0.0.1:{port}/mcp\n    reconnect: {{ initial_delay_ms: 20, max_delay_ms: 100, multiplier: 2, max_attempts: 0, jitter: 0.5 }}\n"
        ),
        &[],
    );
    r.send(&json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"e2e","version":"1"}}}));
    // Nothing listens: well past the default limit of 10, and many times max_delay.
    assert!(
        r.wait_log("attempt=15", WAIT),
        "still reconnecting: {}",
        r.stderr()
    );
    assert!(r.recv(Duration::ZERO).is_none(), "nothing answered yet");
    let peer = WsPeer::start_on(
        port,
        Box::new(|_, msg| msg.map_or(Act::Reply(vec![]), ws_peer::answer)),
    );
    let (v, _) = r.response(&json!(0));
    assert_eq!(v["result"]["serverInfo"]["name"], "ws-peer", "{v}");
    assert_eq!(peer.connections(), 1);
    let v = r.request(json!(1), "tools/call", json!({"name": "x"}));
    assert_eq!(v["result"]["echo"]["name"], "x", "{v}");
    assert!(!r.stderr().contains("gave up"));
    r.finish_ok();
}

/// Streamable HTTP has no connection to re-establish, but its GET stream is reopened when
/// it ends: a server that closes it at once (`retry: 0`, floored at 100 ms) gets waits
/// growing by `multiplier` up to `max_delay_ms` (200 ms here; 60 s by default), for good.
#[test]
fn a_get_stream_closed_at_once_is_reopened_at_the_servers_reconnect_pace() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("seen.txt");
    let port = free_port();
    let _server = net_server(
        std::process::Command::new(python())
            .arg(py_script("http_faults.py"))
            .args(["--port", &port.to_string(), "--session", "--get-retry-zero"])
            .args(["--record", record.to_str().unwrap()]),
        port,
    );
    let mut r = start_with(
        &format!(
            "servers:\n  - name: web\n    url: http://127.0.0.1:{port}/mcp\n    reconnect: {{ initial_delay_ms: 150, max_delay_ms: 200, multiplier: 2, max_attempts: 2, jitter: 0 }}\n"
        ),
        &[],
    );
    let init = r.initialize("2025-11-25");
    assert!(init["result"].is_object(), "{init}");
    let gets = || recorded(&record, "GET /mcp");
    assert!(wait_until(WAIT, || gets() >= 1), "{}", r.stderr());
    let first = gets();
    thread::sleep(Duration::from_secs(2));
    // 100, then 200 ms apart (plus each GET's own time): about ten in 2 s, past
    // max_attempts (2), where the default policy's growing waits would allow five.
    let n = gets() - first;
    assert!((7..=25).contains(&n), "{n} GETs in 2 s");
    r.finish_ok();
}
