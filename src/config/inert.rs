//! Keys that are accepted and validated but change nothing yet, and the notes that say so.
//!
//! Owns the table of such keys (`inert/table.rs`: key path → why it does nothing, and which
//! planned capability will make it work) and the few keys that do nothing only in context (a stdio server's
//! `headers`, a network server's `args` …). `load` adds one note per reason to
//! `Loaded.warnings`, naming every key under it that the user set, in the file, the
//! environment or a flag; defaults never produce a note, so each set key is named once.
//!
//! The table is an audit of which keys code outside `config/` reads; it is not derived from
//! the code. A key that starts to work must leave the table in the same change: the tests
//! (`inert/tests.rs`) classify every schema key as either live or covered here, so a new
//! key cannot slip through unclassified, and a live one cannot be called inert.

use std::collections::BTreeSet;

use serde_yaml_ng::Value;

use super::raw::{RawConfig, RawServer};

mod table;

use table::{Row, FREE_FORM, ROWS};

/// One line per reason that has keys the user set: "`a`, `b` are set but do nothing yet: …".
pub fn notes(raw: &RawConfig) -> Vec<String> {
    // Every field of the raw tree is an `Option` with no default, so a value here is one
    // the user gave (file, environment or flag).
    let Ok(tree) = serde_yaml_ng::to_value(raw) else {
        return Vec::new();
    };
    let mut set = Vec::new();
    set_keys(&tree, String::new(), &mut set);
    let mut taken = BTreeSet::new();
    let mut out = Vec::new();
    // In-context reasons first: they say more than a table row would.
    for (keys, why) in in_context(raw, &set) {
        let keys: Vec<&str> = keys
            .iter()
            .map(String::as_str)
            .filter(|k| taken.insert(k.to_string()))
            .collect();
        if !keys.is_empty() {
            out.push(note(&keys, why, None));
        }
    }
    for row in ROWS {
        let keys: Vec<&str> = set
            .iter()
            .map(String::as_str)
            .filter(|k| row_covers(row, k, &tree))
            .filter(|k| taken.insert(k.to_string()))
            .collect();
        if !keys.is_empty() {
            out.push(note(&keys, row.why, row.planned));
        }
    }
    out
}

fn note(keys: &[&str], why: &str, planned: Option<&str>) -> String {
    let names: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
    let names = names.join(", ");
    let (is, does) = if keys.len() == 1 {
        ("is", "does")
    } else {
        ("are", "do")
    };
    match planned {
        Some(p) => format!("{names} {is} set but {does} nothing yet: {why} (planned: {p})"),
        None => format!("{names} {is} set but {does} nothing: {why}"),
    }
}

/// Whether `key` (with real indices, `servers[0].auth.scope`) falls under `row`, and the row
/// is not quieted by a setting that asks for what happens anyway.
fn row_covers(row: &Row, key: &str, tree: &Value) -> bool {
    row.paths
        .iter()
        .any(|path| is_under(key, path) && !quieted(row, path, key, tree))
}

/// `key` (real indices) is `pattern` (`[]` for any index) or under it.
fn is_under(key: &str, pattern: &str) -> bool {
    let key = without_indices(key);
    key == pattern
        || key
            .strip_prefix(pattern)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

/// The row's quiet setting, looked up in the same section as `key` (same indices).
fn quieted(row: &Row, pattern: &str, key: &str, tree: &Value) -> bool {
    let Some((leaf, value)) = row.quiet else {
        return false;
    };
    // Indices sit inside segments (`endpoints[1]`), so the pattern's segment count is the
    // section's in the real key too.
    let depth = pattern.split('.').count();
    let mut section: Vec<&str> = key.split('.').take(depth).collect();
    if !leaf.is_empty() {
        section.push(leaf);
    }
    lookup(tree, &section).and_then(Value::as_bool) == Some(value)
}

/// The value at `segments` (`["endpoints[1]", "tls"]`) in the tree.
fn lookup<'a>(tree: &'a Value, segments: &[&str]) -> Option<&'a Value> {
    segments.iter().try_fold(tree, |node, segment| {
        let (name, indices) = segment.split_once('[').unwrap_or((segment, ""));
        let mut node = node.get(name)?;
        for index in indices.split('[').filter(|i| !i.is_empty()) {
            node = node.get(index.trim_end_matches(']').parse::<usize>().ok()?)?;
        }
        Some(node)
    })
}

/// `servers[3].tls.enabled` → `servers[].tls.enabled`.
fn without_indices(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut in_index = false;
    for c in key.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push('[');
            }
            ']' => {
                in_index = false;
                out.push(']');
            }
            _ if in_index => {}
            _ => out.push(c),
        }
    }
    out
}

/// Every key with a value, as a path (`gateway.tls.verify`, `servers[0].name`). A list of
/// mappings is walked per element; a list of scalars, an empty list and an empty mapping
/// are values themselves.
fn set_keys(v: &Value, prefix: String, out: &mut Vec<String>) {
    match v {
        Value::Null => {}
        _ if FREE_FORM.contains(&without_indices(&prefix).as_str()) => out.push(prefix),
        Value::Mapping(m) if !m.is_empty() => {
            for (k, child) in m {
                let name = match k {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => continue,
                };
                let path = if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}.{name}")
                };
                set_keys(child, path, out);
            }
        }
        Value::Sequence(s) if s.iter().any(Value::is_mapping) => {
            for (i, item) in s.iter().enumerate() {
                set_keys(item, format!("{prefix}[{i}]"), out);
            }
        }
        Value::Tagged(t) => set_keys(&t.value, prefix, out),
        _ => out.push(prefix),
    }
}

/// Keys that do nothing because of where they are: a server's keys that its kind does not
/// use, and `gateway_pool` endpoints when `gateway:` is set too.
fn in_context(raw: &RawConfig, set: &[String]) -> Vec<(Vec<String>, &'static str)> {
    let mut out = Vec::new();
    // The set keys at `prefix` or under it.
    let under = |prefix: &str| -> Vec<String> {
        set.iter()
            .filter(|k| {
                k.strip_prefix(prefix).is_some_and(|rest| {
                    rest.is_empty() || rest.starts_with('.') || rest.starts_with('[')
                })
            })
            .cloned()
            .collect()
    };
    let mut gateway_mode = Vec::new();
    let mut stdio_net = Vec::new();
    let mut net_cmd = Vec::new();
    let mut detect_cmd = Vec::new();
    let mut no_detect = Vec::new();
    for (i, s) in raw.servers.iter().flatten().enumerate() {
        let at = format!("servers[{i}]");
        let leaf_keys = |names: &[&str]| -> Vec<String> {
            names
                .iter()
                .flat_map(|n| under(&format!("{at}.{n}")))
                .collect()
        };
        match kind(s) {
            ServerKind::Gateway => gateway_mode.extend(leaf_keys(&[
                "command",
                "args",
                "env",
                "cwd",
                "url",
                "auto_detect",
                "candidates",
                "fallback",
                "headers",
                "auth",
                "tls",
                "reconnect",
                "transport",
            ])),
            ServerKind::Stdio => {
                stdio_net.extend(leaf_keys(&["headers", "auth", "tls"]));
                no_detect.extend(leaf_keys(&["candidates", "fallback"]));
            }
            ServerKind::Url => {
                net_cmd.extend(leaf_keys(&["args", "env", "cwd"]));
                no_detect.extend(leaf_keys(&["candidates", "fallback"]));
            }
            ServerKind::Detect => detect_cmd.extend(leaf_keys(&["args", "env", "cwd"])),
            ServerKind::Invalid => {}
        }
    }
    out.push((
        gateway_mode,
        "the server is reached through the gateway (connection_mode: gateway), which uses the gateway.* settings",
    ));
    out.push((
        stdio_net,
        "the server is a local command (stdio); headers, auth and tls apply to network servers",
    ));
    out.push((
        net_cmd,
        "the server is a network server (url); args, env and cwd apply to a command",
    ));
    out.push((
        detect_cmd,
        "auto-detection runs each candidate command line as written; args, env and cwd are not added to it",
    ));
    out.push((
        no_detect,
        "candidates and fallback are used only with auto_detect: true",
    ));
    if raw.gateway.is_some() && raw.gateway_pool.is_some() {
        out.push((
            under("gateway_pool.endpoints"),
            "gateway: is set too, so only gateway.url and gateway.endpoints are used",
        ));
    }
    out
}

enum ServerKind {
    Gateway,
    Stdio,
    Url,
    Detect,
    /// Validation reports it; nothing to add.
    Invalid,
}

/// The same decision `validate::servers` and the run make, from the raw entry.
fn kind(s: &RawServer) -> ServerKind {
    if s.connection_mode.as_deref() == Some("gateway") {
        return ServerKind::Gateway;
    }
    match (
        s.command.is_some(),
        s.url.is_some(),
        s.auto_detect == Some(true),
    ) {
        (true, false, false) => ServerKind::Stdio,
        (false, true, false) => ServerKind::Url,
        (false, false, true) => ServerKind::Detect,
        _ => ServerKind::Invalid,
    }
}

#[cfg(test)]
mod tests;
