//! `loadgen report`: medians over repeated runs, one markdown table per tag, plus each
//! label's figures relative to the baseline label of the same tag, and each label's
//! figures relative to `LABEL@before` (the same row run with a saved "before" router
//! binary, `bench/run --baseline=PATH`) when that label is present.
//!
//! Tags starting with `aggregate` (the aggregation section) get their own columns (memory
//! idle after the handshake, tools/list times), compare `router-agg3` with `router` and the
//! `list-*` rows with `list-direct`, and end with the targets, met or not.
//! Tags starting with `resilience` end with theirs: a gateway pool of 4 against 1 when each
//! request costs 1 ms of the gateway's time, and the admission machinery (rate limiter,
//! breaker, concurrency accounting) switched on against off.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use serde_json::Value;

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The labels others are compared with: in each table, the first of these present.
    #[arg(long, value_delimiter = ',', default_value = "direct")]
    pub baseline: Vec<String>,
}

/// Picks the scenario lines of one variant: `(key, value)`, e.g. `("window", 32)`.
type Variant = Option<(&'static str, u64)>;

/// (column name, scenario, variant, metric).
type Column = (&'static str, &'static str, Variant, &'static str);

const COLUMNS: &[Column] = &[
    ("first response ms", "startup", None, "first_response_ms"),
    ("RSS at rest KiB", "rest", None, "rss_kib"),
    ("p50 µs", "latency", None, "p50_us"),
    ("p90 µs", "latency", None, "p90_us"),
    ("p99 µs", "latency", None, "p99_us"),
    ("W=1 msg/s", "throughput", Some(("window", 1)), "msgs_per_s"),
    (
        "W=32 msg/s",
        "throughput",
        Some(("window", 32)),
        "msgs_per_s",
    ),
    ("peak RSS under load KiB", "memory", None, "peak_kib"),
    ("peak RSS after 10× more KiB", "soak", None, "peak_kib"),
    ("1 MiB ms", "large", Some(("mib", 1)), "round_trip_ms"),
    ("8 MiB ms", "large", Some(("mib", 8)), "round_trip_ms"),
    ("peak RSS with large KiB", "after_large", None, "peak_kib"),
    ("HTTP connections", "server", None, "connections"),
    ("HTTP requests", "server", None, "requests"),
];

/// The aggregation section's columns (tags starting with [`AGGREGATE`]).
const AGG_COLUMNS: &[Column] = &[
    ("first response ms", "startup", None, "first_response_ms"),
    ("RSS idle KiB", "idle", None, "rss_kib"),
    ("RSS at rest KiB", "rest", None, "rss_kib"),
    ("p50 µs", "latency", None, "p50_us"),
    ("p90 µs", "latency", None, "p90_us"),
    ("p99 µs", "latency", None, "p99_us"),
    ("W=1 msg/s", "throughput", Some(("window", 1)), "msgs_per_s"),
    (
        "W=32 msg/s",
        "throughput",
        Some(("window", 32)),
        "msgs_per_s",
    ),
    ("peak RSS under load KiB", "memory", None, "peak_kib"),
    ("peak RSS after 10× more KiB", "soak", None, "peak_kib"),
    ("1 MiB ms", "large", Some(("mib", 1)), "round_trip_ms"),
    ("8 MiB ms", "large", Some(("mib", 8)), "round_trip_ms"),
    ("tools/list p50 µs", "list", None, "p50_us"),
    ("tools/list p99 µs", "list", None, "p99_us"),
    ("tools listed", "list", None, "tools"),
];

/// Tags of the aggregation section start with this.
const AGGREGATE: &str = "aggregate";

/// In the aggregation section: (label, the label it is compared with).
const AGG_PAIRS: &[(&str, &str)] = &[
    ("router-agg3", "router"),
    ("list-router", "list-direct"),
    ("list-router-agg3", "list-direct"),
];

/// Every column once (by name), for collecting samples.
fn all_columns() -> Vec<&'static Column> {
    let mut all: Vec<&Column> = COLUMNS.iter().collect();
    for c in AGG_COLUMNS {
        if !all.iter().any(|a| a.0 == c.0) {
            all.push(c);
        }
    }
    all
}

/// A row run with the "before" binary is labelled like the current one plus this suffix.
const BEFORE: &str = "@before";

type Samples = BTreeMap<(String, String), BTreeMap<&'static str, Vec<f64>>>;
type Columns = BTreeMap<&'static str, Vec<f64>>;

pub fn run(args: &ReportArgs) -> anyhow::Result<()> {
    let mut samples: Samples = BTreeMap::new();
    let mut order: Vec<(String, String)> = Vec::new();
    let all = all_columns();
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let (Some(tag), Some(label), Some(scenario)) = (
            v["tag"].as_str(),
            v["label"].as_str(),
            v["scenario"].as_str(),
        ) else {
            continue;
        };
        let key = (tag.to_owned(), label.to_owned());
        if !order.contains(&key) {
            order.push(key.clone());
        }
        for (col, sc, variant, metric) in all.iter().copied() {
            if *sc != scenario || variant.is_some_and(|(k, want)| v[k].as_u64() != Some(want)) {
                continue;
            }
            if let Some(x) = v[metric].as_f64() {
                samples
                    .entry(key.clone())
                    .or_default()
                    .entry(col)
                    .or_default()
                    .push(x);
            }
        }
    }
    let mut out = std::io::stdout().lock();
    let tags: Vec<&String> = order.iter().map(|(t, _)| t).fold(Vec::new(), |mut acc, t| {
        if !acc.contains(&t) {
            acc.push(t);
        }
        acc
    });
    for tag in tags {
        let aggregate = tag.starts_with(AGGREGATE);
        let columns = if aggregate { AGG_COLUMNS } else { COLUMNS };
        writeln!(
            out,
            "\n### {}\n",
            if tag.is_empty() { "(untagged)" } else { tag }
        )?;
        write!(out, "| system | runs |")?;
        for (col, ..) in columns {
            write!(out, " {col} |")?;
        }
        writeln!(out)?;
        writeln!(out, "|---|---|{}", "---|".repeat(columns.len()))?;
        let labels = table_order(
            order
                .iter()
                .filter(|(t, _)| t == tag)
                .map(|(_, l)| l)
                .collect(),
        );
        for label in &labels {
            let cols = &samples[&(tag.clone(), (*label).clone())];
            let runs = cols.values().map(Vec::len).max().unwrap_or(0);
            write!(out, "| {label} | {runs} |")?;
            for (col, ..) in columns {
                match cols.get(col).and_then(|v| median(v)) {
                    Some(m) => write!(out, " {} |", fmt(m))?,
                    None => write!(out, " – |")?,
                }
            }
            writeln!(out)?;
        }
        let baseline = args.baseline.iter().find(|b| labels.contains(b));
        let cols = |label: &str| &samples[&(tag.clone(), label.to_owned())];
        let present = |label: &str| labels.iter().any(|l| l.as_str() == label);
        for label in &labels {
            let compared_with = if aggregate {
                AGG_PAIRS
                    .iter()
                    .find(|(l, b)| *l == label.as_str() && present(b))
                    .map(|(_, b)| *b)
            } else {
                baseline
                    .map(String::as_str)
                    .filter(|b| *b != label.as_str())
            };
            if let Some(baseline) = compared_with {
                let parts = vs_baseline(cols(label), cols(baseline), baseline);
                if !parts.is_empty() {
                    writeln!(out, "\n{label} vs {baseline}: {}", parts.join("; "))?;
                }
            }
            let before = format!("{label}{BEFORE}");
            if labels.contains(&&before) {
                let parts = vs_before(cols(label), cols(&before));
                writeln!(out, "\n{label} vs before: {}", parts.join("; "))?;
            }
        }
        // Both sections' targets read medians the same way.
        let get_of = |label: &str, c: &str| present(label).then(|| get(c, cols(label))).flatten();
        if tag.starts_with(RESILIENCE) {
            write_targets(&mut out, tag, resilience_targets(&get_of))?;
        }
        if aggregate {
            write_targets(&mut out, tag, aggregation_targets(&get_of))?;
        }
    }
    Ok(())
}

/// A section's targets as a markdown table: each met, not met or not measured.
fn write_targets(
    out: &mut impl Write,
    tag: &str,
    rows: Vec<(String, Option<(String, bool)>)>,
) -> std::io::Result<()> {
    writeln!(out, "\nTargets ({tag}):\n")?;
    writeln!(out, "| target | measured | |\n|---|---|---|")?;
    for (target, measured) in rows {
        let verdict = match measured {
            Some((_, true)) => "met",
            Some((_, false)) => "**not met**",
            None => "not measured",
        };
        let text = measured.map_or_else(|| "–".to_owned(), |(m, _)| m);
        writeln!(out, "| {target} | {text} | {verdict} |")?;
    }
    Ok(())
}

const RESILIENCE: &str = "resilience";
/// A pool of 4 moves at least this many times the messages of a pool of 1 (linear: 4).
const POOL_MIN_SCALE: f64 = 3.0;
/// Rate limiter + breaker + concurrency accounting add at most this much p50, µs.
const ADMISSION_P50_BUDGET_US: f64 = 1.0;

/// The resilience targets, as [`aggregation_targets`].
fn resilience_targets(
    get: &dyn Fn(&str, &str) -> Option<f64>,
) -> Vec<(String, Option<(String, bool)>)> {
    let scale = match (get("pool4", "W=32 msg/s"), get("pool1", "W=32 msg/s")) {
        (Some(a), Some(b)) if b > 0.0 => Some((
            format!("{} vs {} msg/s: {:.2}×", fmt(a), fmt(b), a / b),
            a / b >= POOL_MIN_SCALE,
        )),
        _ => None,
    };
    let cost = match (get("limits-on", "p50 µs"), get("limits-off", "p50 µs")) {
        (Some(a), Some(b)) => Some((
            format!("{} vs {} µs: {:+.1} µs", fmt(a), fmt(b), a - b),
            a - b <= ADMISSION_P50_BUDGET_US,
        )),
        _ => None,
    };
    vec![
        (
            "gateway pool of 4 vs 1 (1 ms per request at the gateway, W=32): ≥ 3× the messages/s"
                .to_owned(),
            scale,
        ),
        (
            "rate limiter + circuit breaker + concurrency limit on vs off: ≤ 1 µs added p50"
                .to_owned(),
            cost,
        ),
    ]
}

/// Aggregation adds at most this much p50 over single-upstream routing, µs.
const AGG_P50_BUDGET_US: f64 = 10.0;
/// Aggregated W=32 throughput at least this share of single-upstream routing's.
const AGG_W32_MIN_SHARE: f64 = 0.80;
/// A merged tools/list adds at most this much over the slowest server's own list, µs.
const AGG_LIST_BUDGET_US: f64 = 1000.0;
/// The router's memory at rest with three stdio upstreams, at most, KiB.
const AGG_RSS_BUDGET_KIB: f64 = 10.0 * 1024.0;

/// The aggregation targets as markdown table rows: (target, Some((measured, met))) or
/// None when a figure is missing. `get(label, column)` is a median.
fn aggregation_targets(
    get: &dyn Fn(&str, &str) -> Option<f64>,
) -> Vec<(String, Option<(String, bool)>)> {
    let p50 = match (get("router-agg3", "p50 µs"), get("router", "p50 µs")) {
        (Some(a), Some(b)) => Some((
            format!("{} vs {} µs: {:+.1} µs", fmt(a), fmt(b), a - b),
            a - b <= AGG_P50_BUDGET_US,
        )),
        _ => None,
    };
    let mut rows = vec![(
        "aggregation (3 upstreams, calls to one) adds ≤ 10 µs p50 over single-upstream routing"
            .to_owned(),
        p50,
    )];
    let w32 = match (
        get("router-agg3", "W=32 msg/s"),
        get("router", "W=32 msg/s"),
    ) {
        (Some(a), Some(b)) if b > 0.0 => Some((
            format!("{} vs {} msg/s: {:.0} %", fmt(a), fmt(b), 100.0 * a / b),
            a / b >= AGG_W32_MIN_SHARE,
        )),
        _ => None,
    };
    rows.push((
        "aggregated W=32 throughput ≥ 80 % of single-upstream routing".to_owned(),
        w32,
    ));
    let list = match (
        get("list-router-agg3", "tools/list p50 µs"),
        get("list-direct", "tools/list p50 µs"),
    ) {
        (Some(a), Some(b)) => Some((
            format!("{} vs {} µs: {:+.2} ms", fmt(a), fmt(b), (a - b) / 1000.0),
            a - b <= AGG_LIST_BUDGET_US,
        )),
        _ => None,
    };
    rows.push((
        "merged tools/list (3 × 100 tools) adds ≤ 1 ms p50 over one server's own list".to_owned(),
        list,
    ));
    let rss = get("router-agg3", "RSS idle KiB").map(|a| {
        (
            format!("{} KiB ({:.1} MiB)", fmt(a), a / 1024.0),
            a <= AGG_RSS_BUDGET_KIB,
        )
    });
    rows.push((
        "router RSS at rest ≤ 10 MiB with three stdio upstreams (after initialize + tools/list, 1 s idle)".to_owned(),
        rss,
    ));
    rows
}

/// The labels of one table in order of appearance, except that `X@before` comes right
/// after `X` (whichever of the two ran first).
fn table_order(labels: Vec<&String>) -> Vec<&String> {
    let current = |l: &&String| {
        l.strip_suffix(BEFORE)
            .filter(|c| labels.iter().any(|x| x.as_str() == *c))
            .is_none()
    };
    let mut out = Vec::with_capacity(labels.len());
    for label in labels.iter().filter(|l| current(l)) {
        out.push(*label);
        if let Some(before) = labels.iter().find(|b| **b == &format!("{label}{BEFORE}")) {
            out.push(*before);
        }
    }
    out
}

fn get(c: &str, from: &Columns) -> Option<f64> {
    from.get(c).and_then(|v| median(v))
}

/// `LABEL vs BASELINE`: what the system under test adds to the direct path.
fn vs_baseline(cols: &Columns, base: &Columns, baseline: &str) -> Vec<String> {
    let mut parts = Vec::new();
    for c in ["p50 µs", "p99 µs"] {
        if let (Some(a), Some(b)) = (get(c, cols), get(c, base)) {
            parts.push(format!(
                "added {} {:.1} µs",
                c.trim_end_matches(" µs"),
                a - b
            ));
        }
    }
    for c in ["W=1 msg/s", "W=32 msg/s"] {
        if let (Some(a), Some(b)) = (get(c, cols), get(c, base)) {
            parts.push(format!(
                "{} {:.0}% of {}",
                c.trim_end_matches(" msg/s"),
                100.0 * a / b,
                baseline
            ));
        }
    }
    for c in ["1 MiB ms", "8 MiB ms"] {
        if let (Some(a), Some(b)) = (get(c, cols), get(c, base)) {
            parts.push(format!(
                "{} {:.2}× {}",
                c.trim_end_matches(" ms"),
                a / b,
                baseline
            ));
        }
    }
    if let (Some(a), Some(b)) = (
        get("tools/list p50 µs", cols),
        get("tools/list p50 µs", base),
    ) {
        parts.push(format!("added tools/list p50 {:.1} µs", a - b));
    }
    if let (Some(a), Some(b)) = (get("RSS idle KiB", cols), get("RSS idle KiB", base)) {
        parts.push(format!("RSS idle {:+.0} KiB", a - b));
    }
    if let (Some(a), Some(b)) = (
        get("first response ms", cols),
        get("first response ms", base),
    ) {
        parts.push(format!("startup {:+.1} ms", a - b));
    }
    parts
}

/// `LABEL vs before`: the current router against the saved one, same row, same run.
/// Latencies and startup as differences (negative: faster now), throughput and memory
/// as ratios (above 100% / 1×: more now).
fn vs_before(cols: &Columns, before: &Columns) -> Vec<String> {
    let mut parts = Vec::new();
    for c in ["p50 µs", "p99 µs"] {
        if let (Some(a), Some(b)) = (get(c, cols), get(c, before)) {
            parts.push(format!(
                "{} {:+.1} µs ({} vs {})",
                c.trim_end_matches(" µs"),
                a - b,
                fmt(a),
                fmt(b)
            ));
        }
    }
    for c in ["W=1 msg/s", "W=32 msg/s"] {
        if let (Some(a), Some(b)) = (get(c, cols), get(c, before)) {
            parts.push(format!(
                "{} {:.0}% of before ({} vs {})",
                c.trim_end_matches(" msg/s"),
                100.0 * a / b,
                fmt(a),
                fmt(b)
            ));
        }
    }
    if let (Some(a), Some(b)) = (
        get("tools/list p50 µs", cols),
        get("tools/list p50 µs", before),
    ) {
        parts.push(format!(
            "tools/list p50 {:+.1} µs ({} vs {})",
            a - b,
            fmt(a),
            fmt(b)
        ));
    }
    for (c, name) in [
        ("RSS idle KiB", "RSS idle"),
        ("RSS at rest KiB", "RSS at rest"),
        ("peak RSS under load KiB", "peak RSS"),
    ] {
        if let (Some(a), Some(b)) = (get(c, cols), get(c, before)) {
            parts.push(format!(
                "{name} {:.2}× before ({} vs {} KiB)",
                a / b,
                fmt(a),
                fmt(b)
            ));
        }
    }
    if let (Some(a), Some(b)) = (
        get("first response ms", cols),
        get("first response ms", before),
    ) {
        parts.push(format!(
            "startup {:+.1} ms ({} vs {})",
            a - b,
            fmt(a),
            fmt(b)
        ));
    }
    parts
}

fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

fn fmt(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}
