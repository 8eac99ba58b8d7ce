//! The server entries (`servers:`, then those of `servers_from:` files): raw → validated.
//!
//! Per entry: the target (command, url, or auto-detection), the transport hint, `enabled`,
//! the prefix, the item filters, bearer and TLS, and the per-server limits
//! (`max_concurrent_requests`, `rate_limit`, `circuit_breaker`). Across entries: names and prefixes unique
//! among the enabled ones, prefixes free of the separator once several are enabled, not
//! every server switched off. An entry from an `mcpServers` file is named by where it came
//! from (`servers.json: mcpServers.github`) instead of its index.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::resilience::{breaker, rate_limit};
use super::{check_url, expand_home, reconnect, scheme_of, tls, Problems, SERVER_SCHEMES};
use crate::config::raw::{RawAuth, RawCommand, RawFilter, RawServer};
use crate::config::{
    BearerSource, CircuitBreaker, ConnectionMode, ItemFilter, ReconnectPolicy, ServerConfig,
    ServerTarget, StdioCommand, TlsConfig, TransportHint,
};

/// The longest prefix: tool names must fit `^[A-Za-z0-9_-]{1,64}$` with the prefix, the
/// separator and the server's own name in it.
pub const MAX_PREFIX: usize = 32;

/// What `transport:` (an `mcpServers` entry's `type`) accepts.
const TRANSPORTS: &[&str] = &[
    "stdio",
    "http",
    "streamable-http",
    "streamableHttp",
    "sse",
    "ws",
    "websocket",
];

/// `text` is 1 to `max` of `[A-Za-z0-9_-]`.
pub fn is_token(text: &str, max: usize) -> bool {
    !text.is_empty() && text.len() <= max && text.bytes().all(is_token_byte)
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// A server's prefix when none is given: its name, every character outside
/// `[A-Za-z0-9_-]` replaced by `_`, at most [`MAX_PREFIX`] long.
pub fn default_prefix(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii() && is_token_byte(c as u8) {
                c
            } else {
                '_'
            }
        })
        .take(MAX_PREFIX)
        .collect()
}

/// The first enabled entry holding each name and prefix, to name both in an error.
#[derive(Default)]
struct Taken {
    names: BTreeMap<String, String>,
    prefixes: BTreeMap<String, String>,
    /// (entry, prefix, whether it was given) of every enabled entry.
    enabled: Vec<(String, String, bool)>,
}

/// What an entry takes for what it does not say.
pub struct Defaults<'a> {
    /// `advanced.circuit_breaker`'s values over the built-in ones.
    pub breaker: &'a CircuitBreaker,
    /// `aggregate.separator`.
    pub separator: &'a str,
}

pub fn servers(raw: &[RawServer], defaults: &Defaults<'_>, p: &mut Problems) -> Vec<ServerConfig> {
    let separator = defaults.separator;
    let mut taken = Taken::default();
    let mut out = Vec::new();
    for (i, s) in raw.iter().enumerate() {
        let at = s.origin.clone().unwrap_or_else(|| format!("servers[{i}]"));
        let enabled = s.enabled.unwrap_or(true);
        let name = match &s.name {
            Some(n) if !n.trim().is_empty() => n.clone(),
            _ => {
                p.err(
                    &format!("{at}.name"),
                    "is missing (every server needs a unique name)",
                );
                format!("server-{i}")
            }
        };
        let prefix = match &s.prefix {
            Some(given) => {
                if !is_token(given, MAX_PREFIX) {
                    p.err(
                        &format!("{at}.prefix"),
                        format!("'{given}' is not allowed: use 1 to {MAX_PREFIX} letters, digits, '_' or '-'"),
                    );
                }
                given.clone()
            }
            None => default_prefix(&name),
        };
        if enabled {
            unique(&mut taken, &at, &name, &prefix, s.prefix.is_some(), p);
        }
        let target = target(s, &at, p);
        let transport = transport_hint(s, &at, target.as_ref(), p);
        let connection_mode = match s.connection_mode.as_deref() {
            None | Some("direct") => ConnectionMode::Direct,
            Some("gateway") => ConnectionMode::Gateway,
            Some(other) => {
                p.one_of(
                    &format!("{at}.connection_mode"),
                    other,
                    &["direct", "gateway"],
                );
                ConnectionMode::Direct
            }
        };
        // The built-in policy when the entry has none: `gateway.connection.reconnect` is
        // the gateway connection's own (a server reached through the gateway uses it).
        let reconnect = s
            .reconnect
            .as_ref()
            .map_or_else(ReconnectPolicy::default, |r| {
                reconnect(r, &format!("{at}.reconnect"), p)
            });
        let max_concurrent_requests = match s.max_concurrent_requests {
            Some(0) => {
                p.err(
                    &format!("{at}.max_concurrent_requests"),
                    "0 is not allowed (at least 1; leave it out to use local.max_concurrent_requests)",
                );
                None
            }
            n => n.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        };
        let rate_limit = rate_limit(s.rate_limit.as_ref(), &format!("{at}.rate_limit"), p);
        let circuit_breaker = breaker(
            s.circuit_breaker.as_ref(),
            &format!("{at}.circuit_breaker"),
            defaults.breaker,
            p,
        );
        let tools = filter(s.tools.as_ref(), &format!("{at}.tools"), p);
        let prompts = filter(s.prompts.as_ref(), &format!("{at}.prompts"), p);
        let resources = filter(s.resources.as_ref(), &format!("{at}.resources"), p);
        if let Some(target) = target {
            out.push(ServerConfig {
                name,
                enabled,
                prefix,
                connection_mode,
                target,
                transport,
                reconnect,
                headers: s.headers.clone().unwrap_or_default(),
                bearer: server_bearer(s.auth.as_ref(), &at, p),
                tls: s.tls.as_ref().map_or_else(
                    || TlsConfig {
                        min_version: "1.2".into(),
                        ..TlsConfig::default()
                    },
                    |t| tls(t, &format!("{at}.tls"), "1.2", p),
                ),
                tools,
                prompts,
                resources,
                max_concurrent_requests,
                rate_limit,
                circuit_breaker,
            });
        }
    }
    if taken.enabled.len() > 1 {
        for (at, prefix, given) in &taken.enabled {
            if prefix.contains(separator) {
                let why = if *given { "" } else { " (made from the name)" };
                p.err(
                    &format!("{at}.prefix"),
                    format!("'{prefix}'{why} contains the separator '{separator}', so a name like '{prefix}{separator}tool' could not be split back: set a prefix without it, or another aggregate.separator"),
                );
            }
        }
    }
    if !raw.is_empty() && raw.iter().all(|s| s.enabled == Some(false)) {
        p.err(
            "servers",
            "every server is disabled (enabled: false, or \"disabled\": true in an mcpServers file): enable at least one, or remove the entries",
        );
    }
    out
}

/// Names and prefixes are unique among enabled entries: an error names both.
fn unique(t: &mut Taken, at: &str, name: &str, prefix: &str, given: bool, p: &mut Problems) {
    match t.names.get(name) {
        Some(first) => p.err(
            &format!("{at}.name"),
            format!("'{name}' is also the name of {first}: names must be unique among enabled servers (rename one, or set enabled: false on one)"),
        ),
        None => {
            t.names.insert(name.to_owned(), at.to_owned());
        }
    }
    match t.prefixes.get(prefix) {
        // A repeated name already has its error; its prefix repeating too says nothing new.
        Some(_) if t.names.get(name).is_some_and(|first| first != at) => {}
        Some(first) => {
            let from = if given { "" } else { " (made from the name)" };
            p.err(
                &format!("{at}.prefix"),
                format!("'{prefix}'{from} is also the prefix of {first}: prefixes must be unique among enabled servers (set prefix: on one of them)"),
            );
        }
        None => {
            t.prefixes.insert(prefix.to_owned(), at.to_owned());
        }
    }
    t.enabled.push((at.to_owned(), prefix.to_owned(), given));
}

/// The command (split like a shell when one string), the URL, or the auto-detection.
fn target(s: &RawServer, at: &str, p: &mut Problems) -> Option<ServerTarget> {
    let command = match &s.command {
        None => None,
        Some(RawCommand::Words(w)) if w.is_empty() => {
            p.err(&format!("{at}.command"), "is empty");
            None
        }
        Some(RawCommand::Words(w)) => Some(w.clone()),
        Some(RawCommand::Line(line)) => match shell_words::split(line) {
            Ok(w) if !w.is_empty() => Some(w),
            Ok(_) => {
                p.err(&format!("{at}.command"), "is empty");
                None
            }
            Err(e) => {
                p.err(
                    &format!("{at}.command"),
                    format!("'{line}' cannot be split into words: {e}"),
                );
                None
            }
        },
    };
    let auto_detect = s.auto_detect.unwrap_or(false);
    let candidates = s.candidates.clone().unwrap_or_default();
    let fallback_gateway = match s.fallback.as_deref() {
        None | Some("") | Some("none") => false,
        Some("gateway") => true,
        Some(other) => {
            p.one_of(&format!("{at}.fallback"), other, &["gateway", "none"]);
            false
        }
    };
    match (command, &s.url, auto_detect) {
        (Some(words), None, false) => {
            let mut args = words[1..].to_vec();
            args.extend(s.args.clone().unwrap_or_default());
            Some(ServerTarget::Stdio(StdioCommand {
                program: words[0].clone(),
                args,
                env: s.env.clone().unwrap_or_default(),
                cwd: s.cwd.as_ref().map(|c| PathBuf::from(expand_home(c))),
            }))
        }
        (None, Some(url), false) => {
            check_url(url, &format!("{at}.url"), SERVER_SCHEMES, p);
            Some(ServerTarget::Url(url.clone()))
        }
        (None, None, true) => {
            if candidates.is_empty() {
                p.err(
                    &format!("{at}.candidates"),
                    "auto_detect: true needs at least one candidate (command lines or URLs)",
                );
            }
            Some(ServerTarget::AutoDetect {
                candidates,
                fallback_gateway,
            })
        }
        (None, None, false) if s.connection_mode.as_deref() == Some("gateway") => {
            Some(ServerTarget::Url(String::new()))
        }
        (None, None, false) => {
            p.err(at, "set one of command (a stdio server), url (a network server), or auto_detect: true with candidates");
            None
        }
        _ => {
            p.err(
                at,
                "set only one of command, url, or auto_detect with candidates",
            );
            None
        }
    }
}

/// `transport:` (`type` in an `mcpServers` entry), checked against the target it goes with.
fn transport_hint(
    s: &RawServer,
    at: &str,
    target: Option<&ServerTarget>,
    p: &mut Problems,
) -> Option<TransportHint> {
    let kind = s.transport.as_deref()?;
    let key = format!(
        "{at}.{}",
        if s.origin.is_some() {
            "type"
        } else {
            "transport"
        }
    );
    if !p.one_of(&key, kind, TRANSPORTS) {
        return None;
    }
    let hint = match kind {
        "stdio" => None,
        "sse" => Some(TransportHint::Sse),
        "ws" | "websocket" => Some(TransportHint::WebSocket),
        _ => Some(TransportHint::StreamableHttp),
    };
    match (target, hint) {
        // Reported already, or through the gateway (an inert note says so).
        (None, _) | (Some(ServerTarget::Stdio(_)), None) => {}
        (Some(ServerTarget::Url(url)), _) if url.is_empty() => {}
        (Some(ServerTarget::Url(_)), None) => {
            p.err(&key, "'stdio' is for a command; this server has a url");
        }
        (Some(ServerTarget::Url(url)), Some(h)) => {
            let (schemes, needs): (&[&str], &str) = match h {
                TransportHint::WebSocket => (&["ws", "wss"], "ws:// or wss://"),
                _ => (&["http", "https"], "http:// or https://"),
            };
            let scheme = scheme_of(url);
            if !scheme.is_empty() && !schemes.contains(&scheme) {
                p.err(
                    &key,
                    format!("'{kind}' needs a {needs} url, not {scheme}://"),
                );
            }
        }
        (Some(ServerTarget::Stdio(_)), Some(_)) => {
            p.err(
                &key,
                format!("'{kind}' is a network transport: it needs url, not command"),
            );
        }
        (Some(ServerTarget::AutoDetect { .. }), _) => {
            p.err(
                &key,
                "cannot be combined with auto_detect: the probe decides the transport",
            );
        }
    }
    hint
}

/// `allow` / `deny` globs; an empty pattern is a mistake (it matches no name).
fn filter(f: Option<&RawFilter>, at: &str, p: &mut Problems) -> ItemFilter {
    let Some(f) = f else {
        return ItemFilter::default();
    };
    for (key, list) in [("allow", &f.allow), ("deny", &f.deny)] {
        for (j, glob) in list.iter().flatten().enumerate() {
            if glob.is_empty() {
                p.err(
                    &format!("{at}.{key}[{j}]"),
                    "is empty: it would match no name (use a glob such as read_* or *)",
                );
            }
        }
    }
    ItemFilter {
        allow: f.allow.clone().unwrap_or_default(),
        deny: f.deny.clone().unwrap_or_default(),
    }
}

fn server_bearer(a: Option<&RawAuth>, at: &str, p: &mut Problems) -> BearerSource {
    let Some(a) = a else {
        return BearerSource::default();
    };
    if let Some(kind) = a.kind.as_deref() {
        p.one_of(&format!("{at}.auth.type"), kind, &["bearer"]);
    }
    if a.token_env.is_some() && a.token_file.is_some() {
        p.err(
            &format!("{at}.auth"),
            "set one of token_env or token_file, not both",
        );
    }
    BearerSource {
        token_env: a.token_env.clone(),
        token_file: a.token_file.as_ref().map(|f| PathBuf::from(expand_home(f))),
    }
}
