//! `config check`'s view of the effective configuration: YAML, unset keys left out,
//! durations as written by people (`30s`), every secret and every server `env`/`headers`
//! value masked (those routinely carry API keys), and so are the userinfo and query of
//! server URLs (`https://***@host/mcp?***`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_yaml_ng::Value;

use super::{Config, ServerTarget};

/// The effective configuration as YAML, safe to paste into a bug report.
pub fn render_effective(config: &Config) -> String {
    match serde_yaml_ng::to_value(config) {
        Ok(mut v) => {
            prune_nulls(&mut v);
            serde_yaml_ng::to_string(&v).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
        }
        Err(e) => format!("# cannot render: {e}\n"),
    }
}

fn prune_nulls(v: &mut Value) {
    match v {
        Value::Mapping(m) => {
            m.retain(|_, child| !child.is_null());
            for (_, child) in m.iter_mut() {
                prune_nulls(child);
            }
        }
        Value::Sequence(s) => s.iter_mut().for_each(prune_nulls),
        _ => {}
    }
}

pub fn duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&super::duration::format(*d))
}

pub fn duration_opt<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => duration(d, s),
        None => s.serialize_none(),
    }
}

/// A compiled pattern as it was written.
pub fn regex<S: Serializer>(r: &regex::Regex, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(r.as_str())
}

pub fn attempts<S: Serializer>(n: &Option<u32>, s: S) -> Result<S::Ok, S::Error> {
    match n {
        Some(n) => s.serialize_u32(*n),
        None => s.serialize_str("unlimited"),
    }
}

pub fn masked_values<S: Serializer>(m: &BTreeMap<String, String>, s: S) -> Result<S::Ok, S::Error> {
    let mut map = s.serialize_map(Some(m.len()))?;
    for k in m.keys() {
        map.serialize_entry(k, "***")?;
    }
    map.end()
}

/// A URL with userinfo and query masked (gateway endpoints carry tokens there too).
pub fn masked_url<S: Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&masked_candidate(url))
}

pub fn millis<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// In the file's own shape: `command` + `env` + `cwd`, `url`, or
/// `auto_detect` + `candidates` + `fallback`.
impl Serialize for ServerTarget {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        match self {
            ServerTarget::Stdio(cmd) => {
                let words: Vec<&String> = std::iter::once(&cmd.program).chain(&cmd.args).collect();
                map.serialize_entry("command", &words)?;
                if !cmd.env.is_empty() {
                    let masked: BTreeMap<&String, &str> =
                        cmd.env.keys().map(|k| (k, "***")).collect();
                    map.serialize_entry("env", &masked)?;
                }
                if let Some(cwd) = &cmd.cwd {
                    map.serialize_entry("cwd", cwd)?;
                }
            }
            ServerTarget::Url(url) if url.is_empty() => {}
            ServerTarget::Url(url) => map.serialize_entry("url", &masked_candidate(url))?,
            ServerTarget::AutoDetect {
                candidates,
                fallback_gateway,
            } => {
                map.serialize_entry("auto_detect", &true)?;
                let shown: Vec<String> = candidates.iter().map(|c| masked_candidate(c)).collect();
                map.serialize_entry("candidates", &shown)?;
                map.serialize_entry(
                    "fallback",
                    if *fallback_gateway { "gateway" } else { "none" },
                )?;
            }
        }
        map.end()
    }
}

/// A URL candidate with its secret parts masked; a command line as written.
fn masked_candidate(candidate: &str) -> String {
    if candidate.contains("://") {
        crate::telemetry::redact::masked(candidate)
    } else {
        candidate.to_owned()
    }
}
