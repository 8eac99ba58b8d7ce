//! The scenarios: startup, sequential latency, throughput at a window, large round trips,
//! memory. Each returns one JSON object; `run` runs them in a fixed order on one process.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::sut::Sut;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Name of this row in the report (e.g. `direct`, `router`).
    #[arg(long)]
    pub label: String,
    /// Free-form tag carried into every line (e.g. the CPU pinning).
    #[arg(long, default_value = "")]
    pub tag: String,
    /// Sequential requests timed one by one.
    #[arg(long, default_value_t = 5000)]
    pub requests: usize,
    /// Requests sent per throughput scenario.
    #[arg(long, default_value_t = 50_000)]
    pub throughput_requests: usize,
    /// Windows (requests in flight) to measure throughput at.
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    pub windows: Vec<usize>,
    /// Sizes of the large echo round trips, in MiB (0: none).
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    pub large_mib: Vec<usize>,
    /// The system under test and its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

const WARMUP: usize = 500;

fn echo_request(id: u64, text: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"{text}"}}}}}}"#
    )
}

pub fn run(args: &RunArgs) -> anyhow::Result<Vec<Value>> {
    let mut lines = Vec::new();
    let base = |scenario: &str| json!({"label": args.label, "tag": args.tag, "scenario": scenario});
    let started = Instant::now();
    let mut sut = Sut::spawn(&args.command)?;
    sut.send(r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"loadgen","version":"0.1.0"}}}"#)?;
    sut.flush()?;
    let first = sut.recv_response()?.to_owned();
    let startup = started.elapsed();
    if !first.contains("\"result\"") {
        bail!("initialize failed: {first}");
    }
    sut.send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)?;
    sut.flush()?;
    let mut line = base("startup");
    line["first_response_ms"] = json!(ms(startup));
    lines.push(line);

    let mut next_id = 1u64;
    // Warm up caches and allocators before anything is timed.
    for _ in 0..WARMUP {
        round_trip(&mut sut, next_id, "warm")?;
        next_id += 1;
    }
    let (rss, _) = sut.memory_kib()?;
    let mut line = base("rest");
    line["rss_kib"] = json!(rss);
    lines.push(line);

    let mut samples = Vec::with_capacity(args.requests);
    for _ in 0..args.requests {
        let t = Instant::now();
        round_trip(&mut sut, next_id, "ping")?;
        samples.push(t.elapsed());
        next_id += 1;
    }
    samples.sort_unstable();
    let mut line = base("latency");
    line["n"] = json!(samples.len());
    for (name, q) in [("p50_us", 0.50), ("p90_us", 0.90), ("p99_us", 0.99)] {
        line[name] = json!(us(quantile(&samples, q)));
    }
    line["max_us"] = json!(us(samples.last().copied().unwrap_or_default()));
    lines.push(line);

    for &window in &args.windows {
        let (elapsed, errors) = throughput(
            &mut sut,
            &mut next_id,
            window.max(1),
            args.throughput_requests,
        )?;
        let mut line = base("throughput");
        line["window"] = json!(window);
        line["n"] = json!(args.throughput_requests);
        line["msgs_per_s"] =
            json!((args.throughput_requests as f64 / elapsed.as_secs_f64()).round());
        line["errors"] = json!(errors);
        lines.push(line);
    }

    for &mib in args.large_mib.iter().filter(|m| **m > 0) {
        let text = "a".repeat(mib << 20);
        let t = Instant::now();
        sut.send(&echo_request(next_id, &text))?;
        sut.flush()?;
        let reply_len = sut.recv_response()?.len();
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

    let (rss, hwm) = sut.memory_kib()?;
    let mut line = base("memory");
    line["rss_kib"] = json!(rss);
    line["peak_kib"] = json!(hwm);
    lines.push(line);
    sut.finish()
        .context("shutting down the system under test")?;
    Ok(lines)
}

fn round_trip(sut: &mut Sut, id: u64, text: &str) -> anyhow::Result<()> {
    sut.send(&echo_request(id, text))?;
    sut.flush()?;
    let reply = sut.recv_response()?;
    if !reply.contains("\"result\"") {
        bail!("request {id} failed: {reply}");
    }
    Ok(())
}

/// Keeps `window` requests in flight until `total` were answered.
fn throughput(
    sut: &mut Sut,
    next_id: &mut u64,
    window: usize,
    total: usize,
) -> anyhow::Result<(Duration, usize)> {
    let t = Instant::now();
    let mut sent = 0;
    let mut errors = 0;
    while sent < window.min(total) {
        sut.send(&echo_request(*next_id, "load"))?;
        *next_id += 1;
        sent += 1;
    }
    sut.flush()?;
    for _ in 0..total {
        let reply = sut.recv()?;
        if !reply.contains("\"result\"") {
            errors += 1;
        }
        if sent < total {
            sut.send(&echo_request(*next_id, "load"))?;
            sut.flush()?;
            *next_id += 1;
            sent += 1;
        }
    }
    Ok((t.elapsed(), errors))
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
