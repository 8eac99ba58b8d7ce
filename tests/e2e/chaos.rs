//! The chaos soak (issue 13, "Resilience"): 32 client streams over one router stdio
//! session while the two test gateways behind it are killed, terminated, restarted slow
//! or dropping connections mid-stream, and frozen, at random.
//!
//! What is checked is the client's contract, not how the router meets it: every request
//! gets exactly one reply under its own id (a result, or a JSON-RPC error that says why),
//! a request the client cancelled at most one, no reply comes for an id never sent, no
//! reply carries another request's answer (some streams reuse one id for all their
//! requests, so a late reply to an earlier one would show), no reply waits much longer
//! than the request timeout, the router recovers once the gateways are healthy again, its
//! heap stays flat and it exits cleanly when the client closes stdin. Which endpoint
//! served a request, how many connections there are, whether a circuit opened: none of
//! that is asserted, so the test holds for one connection with failover at connect time
//! as much as for pools per endpoint with load balancing and circuit breakers.
//!
//! Bounded: `MCP_ROUTER_SOAK_SECS` (default 60) of traffic under chaos, then a few seconds
//! of drain and recovery. The schedule of faults and the request mix come from one seed,
//! printed first; `MCP_ROUTER_CHAOS_SEED=<seed>` runs the same schedule again (the
//! interleaving with the router's own timing is not reproducible, the faults are).
//! The seed also picks the configuration shape (`gateway.endpoints` or the Go router's
//! `gateway_pool.endpoints` with load balancing and a breaker) and whether each endpoint is
//! reached over WebSocket or TCP; `MCP_ROUTER_CHAOS_SHAPE=gateway|pool` and
//! `MCP_ROUTER_CHAOS_PROTOCOLS=ws+tcp` pin them.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::process::ChildStdin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::gateway::echo_backend;
use crate::support::gateway::GatewayProc;
use crate::support::*;

const TOKEN: &str = "chaos-gw-token";
/// Client streams: each has at most one request outstanding, so at most this many are.
const STREAMS: usize = 32;
/// Requests per second over all streams. Well below what the path carries (the gateway
/// answers one message at a time per connection, in well under a millisecond with the echo
/// backend) so that a slow gateway, not the pace, is what makes requests wait, and so the
/// soak leaves CPU for the tests running next to it.
const RATE: f64 = 200.0;
/// `local.request_timeout_ms`: the longest a request may wait for its reply.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Slack on top of the request timeout before a reply counts as having waited too long
/// (the router's timer, the pipes and a loaded CI machine).
const LATENESS_SLACK: Duration = Duration::from_secs(5);
/// After the chaos stops: how long nothing new is sent (replies still read).
const QUIET: Duration = Duration::from_secs(2);
/// The router's heap (`RssAnon`, see `Mem`) after the run may exceed its value after the
/// warm-up by this fraction or by `HEAP_SLACK_KIB`, whichever is larger. Measured: about
/// 3 MiB after warm-up; with one connection per endpoint +0.1–0.2 MiB by the end of a
/// minute and +0.24 MiB after ten (~69k requests, ~300 gateway restarts), in steps that
/// settle (allocator and buffer high-water marks); with the default pools (2 to 10
/// connections per endpoint, ~50 KiB each) up to +0.4 MiB while they grow under load.
/// Legitimate growth is bounded by the pools' size; a leak grows with the requests and
/// reconnects: 30 bytes per request outgrow the bound in a ten-minute soak
/// (`MCP_ROUTER_SOAK_SECS=600`), 200 in the default minute.
const HEAP_SLACK_FRACTION: f64 = 0.25;
const HEAP_SLACK_KIB: u64 = 2048;
/// What one more open connection may hold on top: a WebSocket connection keeps
/// tungstenite's 128 KiB read buffer and its write buffer (measured: the heap stepped by
/// ≈1.1 MiB as a default pool grew by ~8 WebSocket connections). Counted per descriptor
/// the router holds more at the end than after the warm-up (bounded by `FD_SLACK`), so a
/// leak per request or per reconnect still outgrows the bound.
const HEAP_PER_CONNECTION_KIB: u64 = 256;
/// Open file descriptors may grow by the sockets of pools grown to their default
/// `max_size` (10 per endpoint, from `min_size` 2) and a few more (a connection being
/// replaced); a descriptor leaked per reconnect (~100 a minute) outgrows that.
const FD_SLACK: u64 = 2 * (10 - 2) + 6;
/// Error kinds a request may legitimately end with while gateways come and go.
const TRANSIENT_KINDS: [&str; 5] = [
    "timeout",
    "upstream_exited",
    "upstream_unavailable",
    "queue_full",
    "circuit_open",
];

/// SplitMix64: tiny, and the same sequence for a seed on every platform and forever (a
/// printed seed must replay the same schedule after dependency updates too).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }

    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.range(lo, hi))
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?}: expected a whole number")),
    )
}

fn seed() -> u64 {
    env_u64("MCP_ROUTER_CHAOS_SEED").unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        // Time alone repeats across machines started together; the pid separates them.
        (t.as_nanos() as u64) ^ (u64::from(std::process::id()) << 40)
    })
}

/// Which configuration shape lists the two endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// `gateway.endpoints` with the gateway's own `connection:` and the default pool.
    Gateway,
    /// The Go router's `gateway_pool.endpoints`, with the load balancer and a circuit
    /// breaker switched on (short timeouts, so a healed gateway is used again soon), and
    /// small pools that churn: connections retired after 2 s idle and renewed every 4 s,
    /// so draining and replacing connections happens under the chaos too.
    Pool,
}

/// How the router reaches one gateway: its WebSocket listener or its TCP (MCPB) one
/// (the gateway's running frontend: no version ack, health checks unanswered).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    Ws,
    Tcp,
}

/// What the seed (or the environment) chose: the shape and each endpoint's protocol.
#[derive(Clone, Copy, Debug)]
struct Setup {
    shape: Shape,
    protocols: [Proto; 2],
}

impl Setup {
    /// `MCP_ROUTER_CHAOS_SHAPE=gateway|pool` and `MCP_ROUTER_CHAOS_PROTOCOLS=ws+tcp` (either
    /// of ws, tcp on each side) override the seed's choice.
    fn choose(rng: &mut Rng) -> Setup {
        let shape = match std::env::var("MCP_ROUTER_CHAOS_SHAPE").ok().as_deref() {
            Some("gateway") => Shape::Gateway,
            Some("pool") => Shape::Pool,
            Some(other) => panic!("MCP_ROUTER_CHAOS_SHAPE={other:?}: expected gateway or pool"),
            None if rng.coin() => Shape::Gateway,
            None => Shape::Pool,
        };
        // Mostly WebSocket (what the gateway is usually reached over), TCP in a third.
        let mut pick = || {
            if rng.range(0, 2) == 0 {
                Proto::Tcp
            } else {
                Proto::Ws
            }
        };
        let protocols = match std::env::var("MCP_ROUTER_CHAOS_PROTOCOLS").ok() {
            Some(v) => {
                let one = |p: &str| match p {
                    "ws" => Proto::Ws,
                    "tcp" => Proto::Tcp,
                    _ => panic!("MCP_ROUTER_CHAOS_PROTOCOLS={v:?}: expected e.g. ws+tcp"),
                };
                match v.split_once('+') {
                    Some((a, b)) => [one(a), one(b)],
                    None => panic!("MCP_ROUTER_CHAOS_PROTOCOLS={v:?}: expected e.g. ws+tcp"),
                }
            }
            None => [pick(), pick()],
        };
        Setup { shape, protocols }
    }

    /// As the environment variables spell it, for the replay line.
    fn env(&self) -> String {
        let p = |p: Proto| match p {
            Proto::Ws => "ws",
            Proto::Tcp => "tcp",
        };
        let shape = match self.shape {
            Shape::Gateway => "gateway",
            Shape::Pool => "pool",
        };
        format!(
            "MCP_ROUTER_CHAOS_SHAPE={shape} MCP_ROUTER_CHAOS_PROTOCOLS={}+{}",
            p(self.protocols[0]),
            p(self.protocols[1])
        )
    }

    /// The router's configuration: both endpoints, reconnecting fast and forever.
    fn config(&self, a: &str, b: &str) -> String {
        // Connect attempts bounded at 1 s (a frozen gateway accepts TCP but never
        // upgrades); keepalives every second notice a dead idle connection; reconnects
        // start at 50 ms.
        let connection = "timeout_ms: 1000, keepalive_interval_ms: 1000, reconnect: { initial_delay_ms: 50, max_delay_ms: 500, multiplier: 2.0, max_attempts: -1, jitter: 0.2 }";
        // Fewer slots than streams, so requests also wait in the router's queue for a slot
        // (and are carried over to the next connection when one breaks), and a queue
        // smaller than the streams, so an outage of both gateways also refuses some
        // (`queue_full`) instead of only queueing them.
        let local = format!(
            "local:\n  request_timeout_ms: {}\n  max_concurrent_requests: 16\n  max_queued_requests: 24\n",
            REQUEST_TIMEOUT.as_millis()
        );
        match self.shape {
            Shape::Gateway => format!(
                "gateway:\n  endpoints:\n    - url: {a}\n    - url: {b}\n  connection: {{ {connection} }}\n{local}"
            ),
            Shape::Pool => format!(
                "gateway_pool:\n  endpoints:\n    - url: {a}\n      connection: {{ {connection}, pool: {{ min_size: 1, max_size: 4, max_idle_time_ms: 2000, max_lifetime_ms: 4000, acquire_timeout_ms: 2000, health_check_interval_ms: 1000 }} }}\n    - url: {b}\n  load_balancer: {{ strategy: round_robin, failover_timeout: 1s, retry_count: 1 }}\n  circuit_breaker: {{ enabled: true, failure_threshold: 5, recovery_timeout: 1s, success_threshold: 2, timeout_duration: 5s, monitoring_window: 10s }}\n{local}"
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The chaos driver

/// How a gateway is (re)started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Healthy,
    /// `--delay-ms`: every request waits this long in the gateway (which answers one at a
    /// time per connection, so the last of 32 outstanding waits 32× as long).
    Slow(u64),
    /// `--drop-after`: each connection breaks on the request after this many answers.
    Dropping(u64),
}

/// Owns both gateways while the chaos runs; returns them when told to stop.
struct Driver {
    gateways: Vec<GatewayProc>,
    modes: Vec<Mode>,
    base: Vec<Vec<String>>,
    rng: Rng,
    t0: Instant,
    /// What was done when, for the failure message and the replay.
    log: Vec<String>,
    counts: BTreeMap<&'static str, u32>,
}

impl Driver {
    fn args(&self, g: usize, mode: Mode) -> Vec<String> {
        let mut args = self.base[g].clone();
        match mode {
            Mode::Healthy => {}
            Mode::Slow(ms) => args.extend(["--delay-ms".into(), ms.to_string()]),
            Mode::Dropping(n) => args.extend(["--drop-after".into(), n.to_string()]),
        }
        args
    }

    fn note(&mut self, what: &'static str, detail: String) {
        *self.counts.entry(what).or_default() += 1;
        self.log.push(format!(
            "{:>7.3}s {what} {detail}",
            self.t0.elapsed().as_secs_f64()
        ));
    }

    /// Sleeps `d`, or less once the chaos is to stop (what the pause undoes is then
    /// undone at once).
    fn pause(&self, d: Duration, stop: &AtomicBool) {
        let until = Instant::now() + d;
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn start(&mut self, g: usize, mode: Mode) {
        let args = self.args(g, mode);
        self.gateways[g].restart_with(&args);
        self.modes[g] = mode;
    }

    /// One random fault (or none) on one random gateway. Every outage (killed, stopped,
    /// frozen) is undone within the step, so the other gateway is up whenever one is
    /// down, except in `both`, which lasts at most a second; a slow or dropping gateway
    /// stays so until a later step restarts it.
    fn step(&mut self, stop: &AtomicBool) {
        let g = usize::from(self.rng.coin());
        let name = ["A", "B"][g];
        match self.rng.range(0, 99) {
            0..=21 => {
                let pause = self.rng.ms(50, 1500);
                self.note("kill", format!("{name}, restart after {pause:?}"));
                self.gateways[g].kill();
                self.pause(pause, stop);
                self.start(g, Mode::Healthy);
            }
            22..=29 => {
                let pause = self.rng.ms(50, 800);
                self.note("term", format!("{name}, restart after {pause:?}"));
                self.gateways[g].terminate();
                self.pause(pause, stop);
                self.start(g, Mode::Healthy);
            }
            30..=44 => {
                // Mostly a delay the 32 outstanding requests absorb; sometimes one that
                // pushes the last of them past the request timeout (32 × 200 ms > 5 s).
                let ms = if self.rng.range(0, 3) == 0 {
                    self.rng.range(150, 400)
                } else {
                    self.rng.range(2, 60)
                };
                self.note("slow", format!("{name}, --delay-ms {ms}"));
                self.start(g, Mode::Slow(ms));
            }
            45..=59 => {
                let n = self.rng.range(10, 200);
                self.note("drop", format!("{name}, --drop-after {n}"));
                self.start(g, Mode::Dropping(n));
            }
            60..=69 => {
                // SIGSTOP: the sockets stay open and nothing is read or answered; what
                // was in flight is late when it thaws — sometimes later than the request
                // timeout, so the router has answered it (`timeout`) and must drop the
                // gateway's late reply. The other gateway stays up meanwhile.
                let pause = if self.rng.range(0, 2) == 0 {
                    self.rng.ms(5500, 7000)
                } else {
                    self.rng.ms(100, 2500)
                };
                self.note("freeze", format!("{name} for {pause:?}"));
                self.gateways[g].signal("STOP");
                self.pause(pause, stop);
                self.gateways[g].signal("CONT");
            }
            70..=79 => {
                self.note("heal", name.to_string());
                self.start(g, Mode::Healthy);
            }
            80..=82 => {
                let pause = self.rng.ms(100, 1000);
                self.note("both", format!("killed, restart after {pause:?}"));
                for gw in &mut self.gateways {
                    gw.kill();
                }
                self.pause(pause, stop);
                self.start(0, Mode::Healthy);
                self.start(1, Mode::Healthy);
            }
            _ => self.note("leave", name.to_string()),
        }
    }

    fn run(mut self, stop: &AtomicBool) -> Driver {
        while !stop.load(Ordering::Relaxed) {
            let gap = self.rng.ms(100, 1200);
            self.pause(gap, stop);
            if stop.load(Ordering::Relaxed) {
                break;
            }
            self.step(stop);
        }
        // The end: both healthy again (a degraded one restarted once more).
        for g in 0..2 {
            if self.modes[g] != Mode::Healthy {
                self.note("heal", format!("{} (end)", ["A", "B"][g]));
                self.start(g, Mode::Healthy);
            }
        }
        self
    }
}

// ---------------------------------------------------------------------------------------
// The client side: requests, replies, and the book that matches them

#[derive(Clone, Copy, Debug)]
enum Call {
    /// `tools/call echo` with text `c<n>`: the reply must carry that text.
    Echo,
    /// `tools/call add` n + 1: the reply must carry the sum.
    Add,
    Ping,
    ToolsList,
}

struct Sent {
    n: u64,
    stream: usize,
    call: Call,
    at: Instant,
    /// The client sent `notifications/cancelled` for it: from then on no reply is owed
    /// (one may still come, having crossed the cancellation), a second is still one too
    /// many, and its stream has moved on.
    cancelled: bool,
}

/// Streams from this one on reuse one id for all their requests (JSON-RPC asks only that
/// ids of outstanding requests differ; clients that count from 1 per session or keep one
/// id per worker do this). After a timeout or a dropped connection the gateway may still
/// answer the old request under that id: the router must not hand that late reply to the
/// new request (its content tells: it echoes the old request's number).
const REUSE_FROM: usize = 24;
/// The numeric ids of the even reusing streams are this plus the stream.
const REUSED_BASE: u64 = 1_000_000_000;

/// How a request number's id was written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    /// `n`
    Number,
    /// `"c-<n>"`
    String,
    /// The stream's own id (`REUSED_BASE + stream` or `"r<stream>"`).
    Reused,
}

/// Every request sent and every reply seen. Requests are numbered `n` from 1; the id is
/// `n` for even streams and `"c-<n>"` for odd ones (both id types), or the stream's one
/// reused id (see `REUSE_FROM`).
#[derive(Default)]
struct Book {
    /// By the id's JSON text (`1` and `"1"` are different ids).
    pending: HashMap<String, Sent>,
    /// Replies per request number (index `n - 1`).
    replies: Vec<u8>,
    forms: Vec<Form>,
    /// Request numbers the client cancelled (owed no reply).
    cancelled: std::collections::HashSet<u64>,
    next: u64,
}

fn reused_id(stream: usize) -> Value {
    if stream.is_multiple_of(2) {
        json!(REUSED_BASE + stream as u64)
    } else {
        json!(format!("r{stream}"))
    }
}

impl Book {
    /// A fresh request for `stream`: its id's JSON text and its line, recorded as pending
    /// before it is written (the reply may come before the writer looks again).
    fn request(&mut self, stream: usize, call: Call) -> (String, Vec<u8>) {
        self.next += 1;
        let n = self.next;
        let (form, id) = if stream >= REUSE_FROM {
            (Form::Reused, reused_id(stream))
        } else if stream % 2 == 1 {
            (Form::String, json!(format!("c-{n}")))
        } else {
            (Form::Number, json!(n))
        };
        self.replies.push(0);
        self.forms.push(form);
        let sent = Sent {
            n,
            stream,
            call,
            at: Instant::now(),
            cancelled: false,
        };
        let key = id.to_string();
        let previous = self.pending.insert(key.clone(), sent);
        assert!(previous.is_none(), "the test reused an outstanding id {id}");
        let (method, params) = match call {
            Call::Echo => (
                "tools/call",
                json!({"name":"echo","arguments":{"text":format!("c{n}")}}),
            ),
            Call::Add => (
                "tools/call",
                json!({"name":"add","arguments":{"a":n,"b":1}}),
            ),
            Call::Ping => ("ping", json!({})),
            Call::ToolsList => ("tools/list", json!({})),
        };
        let mut line =
            serde_json::to_vec(&json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}))
                .expect("a request serializes");
        line.push(b'\n');
        (key, line)
    }

    /// Marks the request under `key` cancelled if it is still unanswered; returns the
    /// `notifications/cancelled` line to send and the stream that is free again.
    fn cancel(&mut self, key: &str) -> Option<(Vec<u8>, usize)> {
        let sent = self.pending.get_mut(key).filter(|s| !s.cancelled)?;
        sent.cancelled = true;
        let (n, stream) = (sent.n, sent.stream);
        self.cancelled.insert(n);
        let id: Value = serde_json::from_str(key).expect("a key is an id's JSON text");
        let mut line = serde_json::to_vec(&json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":id,"reason":"chaos: the client gave up"}}))
            .expect("a notification serializes");
        line.push(b'\n');
        Some((line, stream))
    }

    /// Whether every request that is owed a reply got one.
    fn settled(&self) -> bool {
        self.pending.values().all(|s| s.cancelled)
    }

    /// Whether this id was ever sent (in exactly this form).
    fn ever_sent(&self, id: &Value) -> bool {
        let form = |n: u64| {
            n.checked_sub(1)
                .and_then(|i| self.forms.get(usize::try_from(i).ok()?).copied())
        };
        let reused = |stream: u64| {
            (REUSE_FROM as u64..STREAMS as u64).contains(&stream)
                && self.forms.contains(&Form::Reused)
        };
        match id {
            Value::Number(n) => match n.as_u64() {
                Some(v) if v >= REUSED_BASE => v % 2 == 0 && reused(v - REUSED_BASE),
                Some(v) => form(v) == Some(Form::Number),
                None => false,
            },
            Value::String(s) => {
                if let Some(n) = s.strip_prefix("c-").and_then(|n| n.parse().ok()) {
                    form(n) == Some(Form::String)
                } else if let Some(k) = s.strip_prefix('r').and_then(|k| k.parse::<u64>().ok()) {
                    k % 2 == 1 && reused(k)
                } else {
                    false
                }
            }
            _ => false,
        }
    }
}

/// What the replies said.
#[derive(Default)]
struct Tally {
    replies: u64,
    ok: u64,
    errors: BTreeMap<String, u64>,
    duplicates: u64,
    unknown: u64,
    /// A result that is not the answer to the request with that id.
    mismatched: u64,
    /// Neither a result nor an error with a message.
    malformed: u64,
    /// Replies later than the request timeout allows, net of the machine's stalls.
    late: u64,
    /// Replies to requests the client had cancelled (they crossed the cancellation).
    cancelled_answered: u64,
    notifications: u64,
    max_latency: Duration,
    /// The longest wait less the stalls seen meanwhile.
    max_net_latency: Duration,
    /// The first few of each problem, for the failure message.
    examples: Vec<String>,
}

impl Tally {
    fn example(&mut self, what: &str, line: &str) {
        if self.examples.len() < 20 {
            self.examples.push(format!("{what}: {line:.300}"));
        }
    }
}

fn result_matches(call: Call, n: u64, result: &Value) -> bool {
    let text = result["content"][0]["text"].as_str();
    match call {
        Call::Echo => text == Some(format!("c{n}").as_str()),
        Call::Add => text == Some((n + 1).to_string().as_str()),
        Call::Ping => result.is_object(),
        Call::ToolsList => result["tools"].as_array().is_some_and(|t| !t.is_empty()),
    }
}

/// When this test process was not scheduled, seen by a thread that sleeps 10 ms at a time
/// and notes how much longer it took. CI machines run other tests (and other jobs) next
/// to this one; when the machine stalls, the router stalls with it, so how late a reply
/// is is judged net of the stalls while it was outstanding — a router that forgets a
/// deadline is late by far more than any stall explains.
#[derive(Default)]
struct Stalls {
    /// (end, length) of each oversleep longer than `STALL_MIN`.
    seen: Mutex<Vec<(Instant, Duration)>>,
}

const STALL_TICK: Duration = Duration::from_millis(10);
const STALL_MIN: Duration = Duration::from_millis(25);

impl Stalls {
    fn watch(self: Arc<Self>, stop: Arc<AtomicBool>) -> thread::JoinHandle<()> {
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                thread::sleep(STALL_TICK);
                let over = t.elapsed().saturating_sub(STALL_TICK);
                if over > STALL_MIN {
                    self.seen.lock().unwrap().push((Instant::now(), over));
                }
            }
        })
    }

    /// How long the process stalled between `from` and `to`.
    fn within(&self, from: Instant, to: Instant) -> Duration {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|&(end, len)| {
                let start = end.checked_sub(len).unwrap_or(end).max(from);
                end.min(to).saturating_duration_since(start)
            })
            .sum()
    }

    fn summary(&self) -> (Duration, Duration) {
        let seen = self.seen.lock().unwrap();
        let total = seen.iter().map(|s| s.1).sum();
        let max = seen.iter().map(|s| s.1).max().unwrap_or_default();
        (total, max)
    }
}

/// A stream whose request was answered, and whether with an error.
struct Freed {
    stream: usize,
    error: bool,
}

/// Records one line from the router's stdout; returns the stream the reply frees.
fn record(book: &Mutex<Book>, stalls: &Stalls, tally: &mut Tally, line: &str) -> Option<Freed> {
    let v: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(_) => {
            tally.malformed += 1;
            tally.example("not JSON", line);
            return None;
        }
    };
    if v.get("method").is_some() {
        tally.notifications += 1;
        return None;
    }
    tally.replies += 1;
    let id = v.get("id").unwrap_or(&Value::Null);
    let mut b = book.lock().unwrap();
    let Some(sent) = b.pending.remove(&id.to_string()) else {
        let sent_before = b.ever_sent(id);
        drop(b);
        if sent_before {
            tally.duplicates += 1;
            tally.example("a reply for a request already answered", line);
        } else {
            tally.unknown += 1;
            tally.example("a reply for an id never sent", line);
        }
        return None;
    };
    let n = sent.n;
    let i = (n - 1) as usize;
    b.replies[i] = b.replies[i].saturating_add(1);
    drop(b);
    let now = Instant::now();
    let latency = now - sent.at;
    if sent.cancelled {
        // Its reply crossed the cancellation: allowed once; it must still be its own.
        tally.cancelled_answered += 1;
        if v.get("result")
            .is_some_and(|r| !result_matches(sent.call, n, r))
        {
            tally.mismatched += 1;
            tally.example(
                &format!("not the answer to cancelled {:?} #{n}", sent.call),
                line,
            );
        }
        // Its stream went on when it was cancelled.
        return None;
    }
    tally.max_latency = tally.max_latency.max(latency);
    let net = if latency > REQUEST_TIMEOUT {
        latency.saturating_sub(stalls.within(sent.at, now))
    } else {
        latency
    };
    tally.max_net_latency = tally.max_net_latency.max(net);
    if net > REQUEST_TIMEOUT + LATENESS_SLACK {
        tally.late += 1;
        tally.example(
            &format!("answered after {latency:?} ({net:?} net of stalls)"),
            line,
        );
    }
    let error = v.get("result").is_none();
    if let Some(result) = v.get("result") {
        if result_matches(sent.call, n, result) {
            tally.ok += 1;
        } else {
            tally.mismatched += 1;
            tally.example(&format!("not the answer to {:?} #{n}", sent.call), line);
        }
    } else if let Some(msg) = v["error"]["message"].as_str().filter(|m| !m.is_empty()) {
        let kind = match v["error"]["data"]["kind"].as_str() {
            Some(k) => k.to_owned(),
            // Not the router's: the gateway's own error, passed through.
            None => format!("gateway({})", v["error"]["code"]),
        };
        if !TRANSIENT_KINDS.contains(&kind.as_str()) && !kind.starts_with("gateway(") {
            tally.example(&format!("unexpected error kind {kind} ({msg})"), line);
        }
        *tally.errors.entry(kind).or_default() += 1;
    } else {
        tally.malformed += 1;
        tally.example("neither a result nor an error", line);
    }
    Some(Freed {
        stream: sent.stream,
        error,
    })
}

// ---------------------------------------------------------------------------------------
// The router process, seen from /proc

/// A `/proc/<pid>/status` field in KiB (or a count), 0 if unreadable.
fn proc_status(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// The router's memory: `VmRSS` (what was asked for, shown) and `RssAnon` (asserted).
/// `VmRSS` also counts the binary's own pages from the page cache, which the kernel drops
/// and reads back as memory pressure comes and goes (on a busy CI machine by 20 MiB in
/// either direction); heap growth, what a leak is, shows in `RssAnon` alone.
#[derive(Clone, Copy, Debug, Default)]
struct Mem {
    rss: u64,
    anon: u64,
    fds: u64,
}

fn mem(pid: u32) -> Mem {
    Mem {
        rss: proc_status(pid, "VmRSS:"),
        anon: proc_status(pid, "RssAnon:"),
        fds: std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64),
    }
}

// ---------------------------------------------------------------------------------------

/// The writer: 32 streams, each sending its next request once its last was answered
/// (after an error, like a client, a little later), paced to `RATE` overall, until
/// `stop`. Returns the router's stdin (closing it would end the session).
fn writer(
    mut stdin: ChildStdin,
    book: Arc<Mutex<Book>>,
    free: Receiver<Freed>,
    stop: Arc<AtomicBool>,
    mut rng: Rng,
) -> (ChildStdin, Receiver<Freed>) {
    let gap = Duration::from_secs_f64(1.0 / RATE);
    let mut next = Instant::now();
    // Requests to cancel, and when.
    let mut cancels: Vec<(Instant, String)> = Vec::new();
    // Streams free to send, and from when: at once after a result or a cancellation;
    // after an error, 100 ms to 1 s later — without that, the streams whose requests the
    // router refuses at once (queue full) would retry at the full pace and turn every
    // outage into thousands of errors, drowning the requests the test is about.
    let mut ready: Vec<(Instant, usize)> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        while let Ok(f) = free.try_recv() {
            let after = if f.error {
                rng.ms(100, 1000)
            } else {
                Duration::ZERO
            };
            ready.push((now + after, f.stream));
        }
        cancels.retain(|(due, key)| {
            if *due > now {
                return true;
            }
            // Under the book's lock: the reply may be being recorded right now.
            let cancelled = book.lock().unwrap().cancel(key);
            if let Some((line, stream)) = cancelled {
                if let Err(e) = stdin.write_all(&line) {
                    panic!("writing to the router's stdin failed: {e}");
                }
                ready.push((now, stream));
            }
            false
        });
        next += gap;
        let now = Instant::now();
        if next > now {
            thread::sleep(next - now);
        } else if now - next > Duration::from_millis(100) {
            // Fell behind (all streams busy, or the machine is loaded): no catch-up burst.
            next = now;
        }
        let now = Instant::now();
        let Some(i) = ready.iter().position(|(at, _)| *at <= now) else {
            continue;
        };
        let (_, stream) = ready.swap_remove(i);
        let call = match rng.range(0, 99) {
            0..=69 => Call::Echo,
            70..=84 => Call::Add,
            // A reused id's reply must tell which request it answers: no ping or list.
            _ if stream >= REUSE_FROM => Call::Echo,
            85..=94 => Call::Ping,
            _ => Call::ToolsList,
        };
        let (key, line) = book.lock().unwrap().request(stream, call);
        if let Err(e) = stdin.write_all(&line) {
            panic!("writing to the router's stdin failed: {e}");
        }
        // Some requests the client gives up on: soon (usually after the reply, which
        // the router must then not answer twice) or later (while it is queued, in
        // flight, or on a connection about to break). Not on a reused id: its stream
        // moves on at once and would reuse the id while a reply may still come.
        if stream < REUSE_FROM && rng.range(0, 99) < 3 {
            let after = if rng.coin() {
                rng.ms(0, 50)
            } else {
                rng.ms(50, 3000)
            };
            cancels.push((Instant::now() + after, key));
        }
    }
    (stdin, free)
}

struct Client<'a> {
    router: &'a RouterProc,
    book: Arc<Mutex<Book>>,
    stalls: Arc<Stalls>,
    tally: Tally,
    free_tx: Sender<Freed>,
}

impl Client<'_> {
    /// Reads replies for `d`, or until every request sent was answered; returns whether
    /// they all were.
    fn drain(&mut self, d: Duration) -> bool {
        self.pump_until(d, true)
    }

    /// Reads replies for `d`.
    fn pump(&mut self, d: Duration) {
        self.pump_until(d, false);
    }

    fn pump_until(&mut self, d: Duration, until_answered: bool) -> bool {
        let until = Instant::now() + d;
        loop {
            if until_answered && self.book.lock().unwrap().settled() {
                return true;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let Some(line) = self.router.recv_line(left.min(Duration::from_millis(50))) else {
                continue;
            };
            if let Some(freed) = record(&self.book, &self.stalls, &mut self.tally, &line) {
                // The writer may have stopped listening: then nothing waits for it.
                let _ = self.free_tx.send(freed);
            }
        }
    }

    /// Sends one request outside the writer (after the chaos).
    fn send(&self, stdin: &mut ChildStdin, stream: usize) {
        let (_, line) = self.book.lock().unwrap().request(stream, Call::Echo);
        stdin.write_all(&line).expect("write to the router");
    }
}

#[test]
fn soak_32_streams_two_gateways_exactly_once() {
    let seed = seed();
    let soak = Duration::from_secs(env_u64("MCP_ROUTER_SOAK_SECS").unwrap_or(60));
    let mut rng = Rng(seed);
    let setup = Setup::choose(&mut rng);
    eprintln!(
        "chaos: seed {seed}, {setup:?}, {soak:?} (replay: MCP_ROUTER_CHAOS_SEED={seed} {})",
        setup.env()
    );
    let t_start = Instant::now();
    let stalls = Arc::new(Stalls::default());
    let stop_watch = Arc::new(AtomicBool::new(false));
    let watcher = stalls.clone().watch(stop_watch.clone());

    let backend = echo_backend();
    let base: Vec<Vec<String>> = (0..2)
        .map(|_| {
            [
                "--backend",
                &backend,
                "--ws",
                "127.0.0.1:0",
                "--tcp",
                "127.0.0.1:0",
                "--token",
                TOKEN,
            ]
            .map(String::from)
            .to_vec()
        })
        .collect();
    let gateways: Vec<GatewayProc> = base.iter().map(|a| GatewayProc::start(a)).collect();
    let urls: Vec<String> = gateways
        .iter()
        .zip(setup.protocols)
        .map(|(g, p)| match p {
            Proto::Ws => g.ws_url("/mcp"),
            Proto::Tcp => g.tcp_url(),
        })
        .collect();
    let yaml = setup.config(&urls[0], &urls[1]);

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("mcp-router.yaml");
    std::fs::write(&cfg, &yaml).unwrap();
    let cfg = cfg.display().to_string();
    let mut router = RouterProc::start_in(dir, &["--config", &cfg], &[("MCP_AUTH_TOKEN", TOKEN)]);
    let pid = router.child.id();
    let init = router.initialize("2025-06-18");
    assert!(init["result"].is_object(), "{init}\n{}", router.stderr());

    let stop = Arc::new(AtomicBool::new(false));
    let driver = Driver {
        gateways,
        modes: vec![Mode::Healthy; 2],
        base,
        rng: Rng(rng.next()),
        t0: Instant::now(),
        log: Vec::new(),
        counts: BTreeMap::new(),
    };
    let driver = {
        let stop = stop.clone();
        thread::spawn(move || driver.run(&stop))
    };

    let book = Arc::new(Mutex::new(Book::default()));
    let (free_tx, free_rx) = mpsc::channel();
    for stream in 0..STREAMS {
        free_tx
            .send(Freed {
                stream,
                error: false,
            })
            .unwrap();
    }
    let writer = {
        let (stdin, book, stop) = (router.take_stdin(), book.clone(), stop.clone());
        let rng = Rng(rng.next());
        thread::spawn(move || writer(stdin, book, free_rx, stop, rng))
    };

    let mut client = Client {
        router: &router,
        book: book.clone(),
        stalls: stalls.clone(),
        tally: Tally::default(),
        free_tx,
    };

    // The soak: replies read as they come; memory and progress noted every second.
    let t0 = Instant::now();
    let warmup = Duration::from_secs(10).min(soak / 3);
    let mut samples: Vec<(u64, Mem)> = Vec::new();
    let mut timeline: Vec<(u64, u64)> = Vec::new();
    let mut warm: Option<Mem> = None;
    while t0.elapsed() < soak {
        client.pump(Duration::from_secs(1).min(soak.saturating_sub(t0.elapsed())));
        let m = mem(pid);
        samples.push((t0.elapsed().as_secs(), m));
        let t = &client.tally;
        timeline.push((t.ok, t.errors.values().sum()));
        if warm.is_none() && t0.elapsed() >= warmup {
            warm = Some(m);
        }
    }

    // The chaos stops and the gateways are healed (replies read meanwhile: latency is
    // measured when a reply is read); nothing new is sent for a while; then every request
    // still outstanding must be answered within the request timeout.
    stop.store(true, Ordering::Relaxed);
    while !(writer.is_finished() && driver.is_finished()) {
        client.pump(Duration::from_millis(50));
    }
    let (mut stdin, _free_rx) = writer.join().expect("the writer thread");
    let driver = driver.join().expect("the chaos driver thread");
    client.pump(QUIET);
    let drained = client.drain(REQUEST_TIMEOUT + LATENESS_SLACK);

    // Recovery: healthy gateways serve again — first one by one until ten in a row
    // succeed (a breaker may still be open, a reconnect under way), then 64 at once.
    let recovery_from = Instant::now();
    let mut in_a_row = 0;
    while in_a_row < 10 && recovery_from.elapsed() < Duration::from_secs(15) {
        let ok_before = client.tally.ok;
        client.send(&mut stdin, 0);
        client.drain(REQUEST_TIMEOUT + LATENESS_SLACK);
        if client.tally.ok > ok_before {
            in_a_row += 1;
        } else {
            in_a_row = 0;
            thread::sleep(Duration::from_millis(100));
        }
    }
    let recovered_after = recovery_from.elapsed();
    let ok_before_burst = client.tally.ok;
    let burst_from = Instant::now();
    // As many as the router takes at once here: 16 slots and 24 queued.
    let burst = 32;
    for i in 0..burst {
        // Streams with ids of their own: these go out together, not one after another.
        client.send(&mut stdin, i % REUSE_FROM);
    }
    client.drain(REQUEST_TIMEOUT + LATENESS_SLACK);
    let burst_ok = client.tally.ok - ok_before_burst;
    let burst_stall = stalls.within(burst_from, Instant::now());
    // Nothing more may come: a late duplicate would show up here.
    client.pump(Duration::from_millis(1500));

    let end = mem(pid);
    let threads = proc_status(pid, "Threads:");
    let Client { tally, .. } = client;
    // The client is done: closing stdin must end the router cleanly.
    drop(stdin);
    let exit_code = router
        .wait_exit(Duration::from_secs(10))
        .and_then(|s| s.code());
    stop_watch.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    let (stalled, longest_stall) = stalls.summary();

    let book = book.lock().unwrap();
    let requests = book.next;
    let lost: Vec<u64> = (1..=requests)
        .filter(|n| book.replies[(*n - 1) as usize] == 0 && !book.cancelled.contains(n))
        .collect();
    let warm = warm.unwrap_or_else(|| samples.first().map(|s| s.1).unwrap_or_default());
    let kinds = join(tally.errors.iter().map(|(k, n)| format!("{k}: {n}")), ", ");
    eprintln!(
        "chaos: requests {requests}, replies {}, ok {}, errors by kind {{{kinds}}}, duplicates {}, lost {}, rss start {} KiB end {} KiB, seed {seed}",
        tally.replies,
        tally.ok,
        tally.duplicates,
        lost.len(),
        warm.rss,
        end.rss,
    );
    let actions = join(driver.counts.iter().map(|(k, n)| format!("{k} {n}")), ", ");
    eprintln!(
        "chaos: {setup:?}, actions {{{actions}}}, cancelled {} (answered anyway {}), unknown {}, mismatched {}, malformed {}, late {}, notifications {}, max latency {:.2?} ({:.2?} net of stalls), recovered after {recovered_after:.1?}, burst {burst_ok}/{burst}, anon rss start {} KiB end {} KiB, fds {} → {}, threads {threads}, machine stalls {stalled:.1?} (longest {longest_stall:.1?}), took {:.1?}",
        book.cancelled.len(),
        tally.cancelled_answered,
        tally.unknown,
        tally.mismatched,
        tally.malformed,
        tally.late,
        tally.notifications,
        tally.max_latency,
        tally.max_net_latency,
        warm.anon,
        end.anon,
        warm.fds,
        end.fds,
        t_start.elapsed()
    );
    let series = join(
        samples
            .iter()
            .map(|(t, m)| format!("{t}s:{}/{}", m.rss, m.anon)),
        " ",
    );
    eprintln!("chaos: rss/anon KiB by second: {series}");
    let mut last = (0, 0);
    let per_second = join(
        timeline.iter().map(|&(ok, err)| {
            let step = format!("{}/{}", ok - last.0, err - last.1);
            last = (ok, err);
            step
        }),
        " ",
    );
    eprintln!("chaos: ok/errors by second: {per_second}");
    eprintln!("chaos: schedule:\n  {}", driver.log.join("\n  "));

    let context = || {
        let log = router.stderr();
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        format!(
            "seed {seed} (replay: MCP_ROUTER_CHAOS_SEED={seed} {}), config:\n{yaml}\nexamples:\n  {}\nrouter stderr (last 60 lines):\n{}",
            setup.env(),
            tally.examples.join("\n  "),
            join(tail.into_iter().rev(), "\n")
        )
    };
    let lost_pending = join(
        book.pending
            .iter()
            .filter(|(_, s)| !s.cancelled)
            .take(10)
            .map(|(id, s)| {
                format!(
                    "#{} id {id} {:?} stream {} sent {:.1?} ago",
                    s.n,
                    s.call,
                    s.stream,
                    s.at.elapsed()
                )
            }),
        "; ",
    );
    assert!(
        drained && lost.is_empty(),
        "{} requests got no reply (first: {lost_pending}); {}",
        lost.len(),
        context()
    );
    assert_eq!(tally.duplicates, 0, "duplicate replies; {}", context());
    assert_eq!(
        tally.unknown,
        0,
        "replies for ids never sent; {}",
        context()
    );
    assert_eq!(
        tally.mismatched,
        0,
        "replies carrying another request's answer; {}",
        context()
    );
    assert_eq!(tally.malformed, 0, "malformed replies; {}", context());
    let unexpected: Vec<&String> = tally
        .errors
        .keys()
        .filter(|k| !TRANSIENT_KINDS.contains(&k.as_str()) && !k.starts_with("gateway("))
        .collect();
    assert!(
        unexpected.is_empty(),
        "errors of kinds chaos does not explain: {unexpected:?}; {}",
        context()
    );
    assert_eq!(
        tally.late,
        0,
        "replies later than the request timeout {REQUEST_TIMEOUT:?} + {LATENESS_SLACK:?}, net of machine stalls; {}",
        context()
    );
    assert!(
        tally.ok * 2 > requests,
        "most requests should succeed: {} of {requests}; {}",
        tally.ok,
        context()
    );
    // A machine stall as long as the burst's timeout may fail it; anything else may not.
    assert!(
        burst_ok == burst as u64 || burst_stall > Duration::from_secs(1),
        "after the chaos, with both gateways healthy, every request succeeds (recovered after {recovered_after:?}); {}",
        context()
    );
    let anon_bound = warm.anon
        + HEAP_SLACK_KIB.max((warm.anon as f64 * HEAP_SLACK_FRACTION) as u64)
        + HEAP_PER_CONNECTION_KIB * end.fds.saturating_sub(warm.fds);
    assert!(
        end.anon <= anon_bound,
        "the router's heap (RssAnon) grew from {} KiB after warm-up to {} KiB (bound {anon_bound}): {series}; {}",
        warm.anon,
        end.anon,
        context()
    );
    assert!(
        end.fds <= warm.fds + FD_SLACK,
        "open file descriptors grew from {} to {}; {}",
        warm.fds,
        end.fds,
        context()
    );
    assert_eq!(
        exit_code,
        Some(0),
        "the router did not exit cleanly; {}",
        context()
    );
}

fn join<S: AsRef<str>>(parts: impl IntoIterator<Item = S>, sep: &str) -> String {
    let mut out = String::new();
    for (i, p) in parts.into_iter().enumerate() {
        if i > 0 {
            out.push_str(sep);
        }
        out.push_str(p.as_ref());
    }
    out
}
