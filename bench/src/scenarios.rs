//! The scenarios: startup, memory idle after the handshake, sequential latency, tools/list
//! round trips, throughput at a window, large round trips, memory. Each returns one JSON
//! object; `run` runs them in a fixed order on one process.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::http::Http;
use crate::stdio::Stdio;
use crate::transport::{memory_kib, Transport};
use crate::ws::Ws;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Name of this row in the report (e.g. `direct`, `router`).
    #[arg(long)]
    pub label: String,
    /// Free-form tag carried into every line (e.g. the CPU pinning).
    #[arg(long, default_value = "")]
    pub tag: String,
    /// The tool every `tools/call` names (e.g. `one__echo` through an aggregating router).
    #[arg(long, default_value = "echo")]
    pub tool: String,
    /// Right after the handshake: one `tools/list`, a second idle, then the memory of the
    /// process under test (`idle` line).
    #[arg(long)]
    pub idle_rss: bool,
    /// `tools/list` round trips timed one by one, after the warm-up (0: none).
    #[arg(long, default_value_t = 0)]
    pub list: usize,
    /// Sequential requests timed one by one (0: none).
    #[arg(long, default_value_t = 5000)]
    pub requests: usize,
    /// Requests sent per throughput scenario (0: none).
    #[arg(long, default_value_t = 50_000)]
    pub throughput_requests: usize,
    /// Windows (requests in flight) to measure throughput at.
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    pub windows: Vec<usize>,
    /// Sizes of the large echo round trips, in MiB (0: none).
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    pub large_mib: Vec<usize>,
    /// After everything, send this many more requests at W=32 and report memory again
    /// (memory must stay flat as the request count grows).
    #[arg(long, default_value_t = 0)]
    pub soak: usize,
    /// Reach the system under test at this URL (`http://…`, `ws://…`) instead of spawning
    /// COMMAND.
    #[arg(long, conflicts_with = "command")]
    pub url: Option<String>,
    /// With --url: the server process whose memory is reported.
    #[arg(long)]
    pub pid: Option<u32>,
    /// The system under test and its arguments (spawned with piped stdio).
    #[arg(last = true)]
    pub command: Vec<String>,
}

const WARMUP: usize = 500;
/// Untimed `tools/list` round trips before the timed ones.
const LIST_WARMUP: usize = 20;

fn echo_request(tool: &str, id: u64, text: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{{"text":"{text}"}}}}}}"#
    )
}

fn list_request(id: u64) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list","params":{{}}}}"#)
}

/// Sends `tools/list` and checks it came back as a result; returns the reply.
fn list_tools(sut: &mut dyn Transport, id: u64) -> anyhow::Result<String> {
    let reply = sut.call(&list_request(id))?;
    if !reply.contains("\"result\"") {
        bail!("tools/list {id} failed: {reply}");
    }
    Ok(reply)
}

fn connect(args: &RunArgs) -> anyhow::Result<Box<dyn Transport>> {
    match (&args.url, args.command.is_empty()) {
        (Some(url), _) if url.starts_with("ws") => Ok(Box::new(Ws::connect(url, args.pid)?)),
        (Some(url), _) if url.starts_with("http") => Ok(Box::new(Http::connect(url, args.pid)?)),
        (Some(url), _) => bail!("--url {url}: use http://, https://, ws:// or wss://"),
        (None, false) => Ok(Box::new(Stdio::spawn(&args.command)?)),
        (None, true) => bail!("give --url URL or -- COMMAND"),
    }
}

pub fn run(args: &RunArgs) -> anyhow::Result<Vec<Value>> {
    let mut lines = Vec::new();
    let base = |scenario: &str| json!({"label": args.label, "tag": args.tag, "scenario": scenario});
    let started = Instant::now();
    let mut sut = connect(args)?;
    let first = sut.call(r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"loadgen","version":"0.1.0"}}}"#)?;
    let startup = started.elapsed();
    if !first.contains("\"result\"") {
        bail!("initialize failed: {first}");
    }
    sut.notify(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)?;
    let mut line = base("startup");
    line["first_response_ms"] = json!(ms(startup));
    lines.push(line);
    let memory = |sut: &dyn Transport| sut.pid().map(memory_kib).transpose();

    let mut next_id = 1u64;
    if args.idle_rss {
        list_tools(sut.as_mut(), next_id)?;
        next_id += 1;
        std::thread::sleep(Duration::from_secs(1));
        if let Some((rss, _)) = memory(sut.as_ref())? {
            let mut line = base("idle");
            line["rss_kib"] = json!(rss);
            lines.push(line);
        }
    }
    // Warm up caches, allocators and connection pools before anything is timed.
    for _ in 0..WARMUP {
        round_trip(sut.as_mut(), &args.tool, next_id, "warm")?;
        next_id += 1;
    }
    if let Some((rss, _)) = memory(sut.as_ref())? {
        let mut line = base("rest");
        line["rss_kib"] = json!(rss);
        lines.push(line);
    }

    if args.list > 0 {
        let mut reply = String::new();
        for _ in 0..LIST_WARMUP {
            reply = list_tools(sut.as_mut(), next_id)?;
            next_id += 1;
        }
        let listed: Value = serde_json::from_str(&reply).context("tools/list reply")?;
        let tools = listed["result"]["tools"].as_array().map_or(0, Vec::len);
        let mut samples = Vec::with_capacity(args.list);
        for _ in 0..args.list {
            let t = Instant::now();
            list_tools(sut.as_mut(), next_id)?;
            samples.push(t.elapsed());
            next_id += 1;
        }
        let mut line = timings(base("list"), samples);
        line["tools"] = json!(tools);
        line["reply_bytes"] = json!(reply.len());
        lines.push(line);
    }

    if args.requests > 0 {
        let mut samples = Vec::with_capacity(args.requests);
        for _ in 0..args.requests {
            let t = Instant::now();
            round_trip(sut.as_mut(), &args.tool, next_id, "ping")?;
            samples.push(t.elapsed());
            next_id += 1;
        }
        lines.push(timings(base("latency"), samples));
    }

    // Owned: `Make` closures are 'static (the pipelines hand them to threads).
    let tool = args.tool.clone();
    let make = move |id: u64| echo_request(&tool, id, "load");
    for &window in args.windows.iter().filter(|_| args.throughput_requests > 0) {
        let n = args.throughput_requests;
        let t = Instant::now();
        let errors = sut.pipeline(&make, next_id, window.max(1), n)?;
        let elapsed = t.elapsed();
        next_id += n as u64;
        let mut line = base("throughput");
        line["window"] = json!(window);
        line["n"] = json!(n);
        line["msgs_per_s"] = json!((n as f64 / elapsed.as_secs_f64()).round());
        line["errors"] = json!(errors);
        lines.push(line);
    }

    if let Some((rss, hwm)) = memory(sut.as_ref())? {
        let mut line = base("memory");
        line["rss_kib"] = json!(rss);
        line["peak_kib"] = json!(hwm);
        line["requests"] = json!(next_id);
        lines.push(line);
    }
    if args.soak > 0 {
        sut.pipeline(&make, next_id, 32, args.soak)?;
        next_id += args.soak as u64;
        if let Some((rss, hwm)) = memory(sut.as_ref())? {
            let mut line = base("soak");
            line["rss_kib"] = json!(rss);
            line["peak_kib"] = json!(hwm);
            line["requests"] = json!(next_id);
            lines.push(line);
        }
    }
    for &mib in args.large_mib.iter().filter(|m| **m > 0) {
        let text = "a".repeat(mib << 20);
        let t = Instant::now();
        let reply_len = sut.call(&echo_request(&args.tool, next_id, &text))?.len();
        let elapsed = t.elapsed();
        next_id += 1;
        if reply_len < text.len() {
            bail!("{mib} MiB echo came back short ({reply_len} bytes)");
        }
        let mut line = base("large");
        line["mib"] = json!(mib);
        line["round_trip_ms"] = json!(ms(elapsed));
        lines.push(line);
    }

    if let Some((rss, hwm)) = memory(sut.as_ref())? {
        let mut line = base("after_large");
        line["rss_kib"] = json!(rss);
        line["peak_kib"] = json!(hwm);
        lines.push(line);
    }
    sut.finish()
        .context("shutting down the system under test")?;
    Ok(lines)
}

/// `line` with the count and the p50/p90/p99/max of `samples`.
fn timings(mut line: Value, mut samples: Vec<Duration>) -> Value {
    samples.sort_unstable();
    line["n"] = json!(samples.len());
    for (name, q) in [("p50_us", 0.50), ("p90_us", 0.90), ("p99_us", 0.99)] {
        line[name] = json!(us(quantile(&samples, q)));
    }
    line["max_us"] = json!(us(samples.last().copied().unwrap_or_default()));
    line
}

fn round_trip(sut: &mut dyn Transport, tool: &str, id: u64, text: &str) -> anyhow::Result<()> {
    let reply = sut.call(&echo_request(tool, id, text))?;
    if !reply.contains("\"result\"") {
        bail!("request {id} failed: {reply}");
    }
    Ok(())
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn us(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e7).round() / 10.0
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}
