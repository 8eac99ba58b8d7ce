//! The `mcpServers` JSON other MCP clients keep (Claude Desktop, Cursor, Windsurf, Cline;
//! VS Code's `mcp.json` names the object `servers`), read as server entries: the whole
//! file (`--config claude_desktop_config.json`) or included (`servers_from:`).
//!
//! Owns recognizing the shape by content (comments and trailing commas allowed, as VS Code
//! writes them), reading the entries in file order, turning each into the raw entry a
//! YAML file would hold (so it is validated like one), and the warnings: keys that are
//! ignored, `${…}` that is not expanded (the YAML loader expands nothing either). It does
//! not validate values; `validate/servers.rs` does, naming the entry by its origin.

use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::raw::{RawCommand, RawPaths, RawServer};

/// The keys of one entry that are read (`serverUrl` is Windsurf's `url`, `transport` an
/// older spelling of `type`).
const ENTRY_KEYS: &[&str] = &[
    "command",
    "args",
    "env",
    "cwd",
    "url",
    "serverUrl",
    "headers",
    "type",
    "transport",
    "disabled",
];

/// Keys these clients give an entry for their own use (approvals, timeouts, UI); named as
/// such instead of being matched against the keys read.
const CLIENT_KEYS: &[&str] = &[
    "autoApprove",
    "alwaysAllow",
    "disabledTools",
    "timeout",
    "description",
    "envFile",
];

/// What a file holds, judged by its content.
pub enum Sniff {
    /// A JSON object with an `mcpServers` object or a `servers` object: this text (its
    /// comments and trailing commas blanked out).
    McpServers(String),
    /// A JSON object of some other shape (perhaps a router config written as JSON).
    OtherJson,
    /// Not JSON: the parser's complaint.
    NotJson(String),
}

pub fn sniff(text: &str) -> Sniff {
    let json = strip_jsonc(text);
    match serde_json::from_str::<serde_json::Value>(&json) {
        Ok(v) => {
            let is_object = |key| v.get(key).is_some_and(serde_json::Value::is_object);
            if is_object("mcpServers") || is_object("servers") {
                Sniff::McpServers(json)
            } else {
                Sniff::OtherJson
            }
        }
        Err(e) => Sniff::NotJson(e.to_string()),
    }
}

/// A YAML router file that holds the JSON shape (`mcpServers:`, or `servers:` as a
/// mapping): what to do instead.
pub fn yaml_hint(tree: &serde_yaml_ng::Value) -> Option<String> {
    if tree.get("mcpServers").is_some() {
        return Some("mcpServers: is the JSON shape other MCP clients use: keep it in a JSON file and name that with --config FILE.json or servers_from: FILE.json, or list the servers under servers: (- name: …)".into());
    }
    if tree
        .get("servers")
        .is_some_and(serde_yaml_ng::Value::is_mapping)
    {
        return Some("servers: is a mapping of NAME: {…} (VS Code's mcp.json shape); in this file it is a list (- name: …); or keep the JSON in its own file and name it with servers_from:".into());
    }
    None
}

/// The entries of an `mcpServers` text, in file order, each labelled `LABEL: mcpServers.NAME`.
pub fn parse(
    json: &str,
    label: &str,
    warnings: &mut Vec<String>,
) -> Result<Vec<RawServer>, String> {
    let mut ignored = Vec::new();
    let de = &mut serde_json::Deserializer::from_str(json);
    let file: File = serde_ignored::deserialize(de, |path| ignored.push(path.to_string()))
        .map_err(|e| format!("{label}: {e}"))?;
    for path in ignored {
        warnings.push(ignored_warning(label, &path));
    }
    let sections = [("mcpServers", file.mcp_servers), ("servers", file.servers)];
    let mut out = Vec::new();
    for (section, entries) in sections {
        for (name, entry) in entries.map(|o| o.0).unwrap_or_default() {
            let origin = format!("{label}: {section}.{name}");
            if let Some(field) = entry.unexpanded() {
                warnings.push(format!(
                    "{origin}.{field} contains ${{…}}, which is used as written: the router expands no variables (put the value itself, or set env: on the entry)"
                ));
            }
            out.push(entry.into_raw(name, origin));
        }
    }
    Ok(out)
}

/// The servers of every `servers_from:` file, in order; `base` is the directory of the
/// file that names them (relative paths are relative to it; `~/` is the home directory).
pub fn include(
    list: &RawPaths,
    base: Option<&Path>,
    warnings: &mut Vec<String>,
) -> Result<Vec<RawServer>, Vec<String>> {
    let paths = list.as_slice();
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, written) in paths.iter().enumerate() {
        let at = match list {
            RawPaths::One(_) => "servers_from".to_owned(),
            RawPaths::Many(_) => format!("servers_from[{i}]"),
        };
        let path = resolve(written, base);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                errors.push(format!("{at}: cannot read {} ({e}); check the path (relative paths are relative to the config file)", path.display()));
                continue;
            }
        };
        match sniff(&text) {
            Sniff::McpServers(json) => match parse(&json, written, warnings) {
                Ok(servers) => out.extend(servers),
                Err(e) => errors.push(format!("{at}: {e}")),
            },
            Sniff::NotJson(e) => errors.push(format!("{at}: {} is not JSON ({e}); servers_from: takes mcpServers JSON files", path.display())),
            Sniff::OtherJson => errors.push(format!("{at}: {} has no mcpServers (or servers) object; expected {{\"mcpServers\": {{\"NAME\": {{\"command\": …}}}}}}", path.display())),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn resolve(written: &str, base: Option<&Path>) -> PathBuf {
    let home = dirs::home_dir();
    let path = match (written.strip_prefix("~/"), &home) {
        (Some(rest), Some(home)) => home.join(rest),
        _ if written == "~" && home.is_some() => home.clone().unwrap_or_default(),
        _ => PathBuf::from(written),
    };
    match base {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path,
    }
}

fn ignored_warning(label: &str, path: &str) -> String {
    let parts: Vec<&str> = path.split('.').filter(|p| *p != "?").collect();
    match parts.as_slice() {
        // An entry's key; the server's own name may hold dots.
        [section @ ("mcpServers" | "servers"), name @ .., key] if !name.is_empty() => {
            let entry = format!("{section}.{}", name.join("."));
            let known: Vec<String> = ENTRY_KEYS.iter().map(|k| format!("{entry}.{k}")).collect();
            let full = format!("{entry}.{key}");
            if CLIENT_KEYS.contains(key) {
                return format!(
                    "{label}: '{full}' is a setting of the client that wrote the file; the router ignores it"
                );
            }
            match super::load::suggest(&full, &known) {
                Some(s) => format!("{label}: unknown key '{full}' is ignored; did you mean '{s}'?"),
                None => format!("{label}: unknown key '{full}' is ignored"),
            }
        }
        _ => format!(
            "{label}: '{}' is ignored (only mcpServers and servers are read)",
            parts.join(".")
        ),
    }
}

#[derive(Deserialize)]
struct File {
    #[serde(rename = "mcpServers")]
    mcp_servers: Option<Ordered<Entry>>,
    servers: Option<Ordered<Entry>>,
}

/// One server as these clients write it.
#[derive(Deserialize)]
struct Entry {
    command: Option<String>,
    args: Option<Vec<Scalar>>,
    env: Option<Ordered<Scalar>>,
    cwd: Option<String>,
    #[serde(alias = "serverUrl")]
    url: Option<String>,
    headers: Option<Ordered<Scalar>>,
    #[serde(rename = "type", alias = "transport")]
    kind: Option<String>,
    disabled: Option<bool>,
}

impl Entry {
    /// The first value that holds `${…}` (`env.TOKEN`, `args[2]` …).
    fn unexpanded(&self) -> Option<String> {
        let has = |s: &str| s.contains("${");
        if self.command.as_deref().is_some_and(has) {
            return Some("command".into());
        }
        if let Some(i) = self.args.iter().flatten().position(|a| has(&a.0)) {
            return Some(format!("args[{i}]"));
        }
        for (key, map) in [("env", &self.env), ("headers", &self.headers)] {
            if let Some((k, _)) = map.iter().flat_map(|m| &m.0).find(|(_, v)| has(&v.0)) {
                return Some(format!("{key}.{k}"));
            }
        }
        for (key, v) in [("cwd", &self.cwd), ("url", &self.url)] {
            if v.as_deref().is_some_and(has) {
                return Some(key.into());
            }
        }
        None
    }

    fn into_raw(self, name: String, origin: String) -> RawServer {
        let map = |m: Option<Ordered<Scalar>>| {
            m.map(|m| m.0.into_iter().map(|(k, v)| (k, v.0)).collect())
        };
        RawServer {
            name: Some(name),
            enabled: self.disabled.map(|d| !d),
            // The program as written: these clients start it without a shell.
            command: self
                .command
                .map(|c| RawCommand::Words(if c.trim().is_empty() { vec![] } else { vec![c] })),
            args: self.args.map(|a| a.into_iter().map(|s| s.0).collect()),
            env: map(self.env),
            cwd: self.cwd,
            url: self.url,
            headers: map(self.headers),
            transport: self.kind,
            origin: Some(origin),
            ..RawServer::default()
        }
    }
}

/// A JSON object's members in file order (the server order is the file's).
struct Ordered<V>(Vec<(String, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Ordered<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for Members<V> {
            type Value = Ordered<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(member) = map.next_entry::<String, V>()? {
                    out.push(member);
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(Members(PhantomData))
    }
}

/// A string, or a number or boolean written where a string was meant (`"PORT": 8080`).
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl Visitor<'_> for Text {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        d.deserialize_any(Text)
    }
}

/// JSON with comments (`//`, `/* */`) and trailing commas, as VS Code writes `mcp.json`:
/// each of those blanked to spaces (newlines kept, so error positions stay right).
/// Strings are left alone.
pub fn strip_jsonc(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = bytes.to_vec();
    let mut i = 0;
    let mut in_string = false;
    // Where the last comma outside a string is, while only blanks follow it.
    let mut comma: Option<usize> = None;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match b {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        match (b, bytes.get(i + 1)) {
            (b'"', _) => {
                in_string = true;
                comma = None;
            }
            (b'/', Some(b'/')) => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    out[i] = b' ';
                    i += 1;
                }
                continue;
            }
            (b'/', Some(b'*')) => {
                let end = text[i + 2..]
                    .find("*/")
                    .map_or(bytes.len(), |e| i + 2 + e + 2);
                for (j, byte) in out.iter_mut().enumerate().take(end).skip(i) {
                    if bytes[j] != b'\n' {
                        *byte = b' ';
                    }
                }
                i = end;
                continue;
            }
            (b',', _) => comma = Some(i),
            (b'}' | b']', _) => {
                if let Some(c) = comma.take() {
                    out[c] = b' ';
                }
            }
            (b' ' | b'\t' | b'\r' | b'\n', _) => {}
            _ => comma = None,
        }
        i += 1;
    }
    // Only ASCII bytes outside strings were replaced, by ASCII spaces.
    String::from_utf8(out).unwrap_or_else(|_| text.to_owned())
}

#[cfg(test)]
mod tests;
