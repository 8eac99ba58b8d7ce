//! The command line's ways of naming servers without a file: `--server NAME=COMMAND-OR-URL`
//! (repeatable) and the `mcp-router -- COMMAND…` shorthand, each turned into the raw
//! server entries a file would hold, so they are validated like any other.
//!
//! Parsing only: `cli/` calls [`parse_server_flag`] as the flag's value parser, `load`
//! puts the entries in place of `servers:`.

use std::path::Path;

use super::raw::{RawCommand, RawServer};

/// URL schemes that make a `--server` value a network server (anything else is a command).
const URL_SCHEMES: &[&str] = &["http", "https", "ws", "wss", "tcp", "tcps", "tcp+tls"];

/// One `--server NAME=COMMAND-OR-URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFlag {
    pub name: String,
    pub target: FlagTarget,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlagTarget {
    /// The command line, split like a shell does (program first).
    Command(Vec<String>),
    /// An `http(s)://`, `ws(s)://` or `tcp(s)://` URL.
    Url(String),
}

const EXAMPLE: &str = "e.g. --server fs='npx -y @modelcontextprotocol/server-filesystem /tmp' or --server docs=https://mcp.example.com/mcp";

/// `NAME=COMMAND-OR-URL`: the name is up to the first `=`; a value with a URL scheme is a
/// network server, anything else a command line split like a shell does.
pub fn parse_server_flag(text: &str) -> Result<ServerFlag, String> {
    let Some((name, value)) = text.split_once('=') else {
        return Err(format!("expected NAME=COMMAND-OR-URL, {EXAMPLE}"));
    };
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("the server name before '=' is empty, {EXAMPLE}"));
    }
    let value = value.trim();
    if value.is_empty() {
        return Err(format!(
            "nothing after '{name}=': give a command or a URL, {EXAMPLE}"
        ));
    }
    let target = if is_url(value) {
        FlagTarget::Url(value.to_owned())
    } else {
        let words = shlex::split(value).ok_or_else(|| {
            format!("'{value}' cannot be split into words (an unclosed quote or a trailing backslash), {EXAMPLE}")
        })?;
        FlagTarget::Command(words)
    };
    Ok(ServerFlag {
        name: name.to_owned(),
        target,
    })
}

fn is_url(value: &str) -> bool {
    value.split_once("://").is_some_and(|(scheme, rest)| {
        !rest.is_empty() && URL_SCHEMES.contains(&scheme.to_ascii_lowercase().as_str())
    })
}

impl ServerFlag {
    /// The entry a file would hold for this flag.
    pub(super) fn to_raw(&self) -> RawServer {
        let mut raw = RawServer {
            name: Some(self.name.clone()),
            origin: Some(format!("--server {}", self.name)),
            ..RawServer::default()
        };
        match &self.target {
            FlagTarget::Command(words) => raw.command = Some(RawCommand::Words(words.clone())),
            FlagTarget::Url(url) => raw.url = Some(url.clone()),
        }
        raw
    }
}

/// The server that `mcp-router -- CMD ARGS…` routes to, named after the program; a lone
/// URL (`mcp-router -- https://host/mcp`) is a network server named after its host.
pub(super) fn command_server(words: &[String]) -> RawServer {
    if let [url] = words {
        if let Some((scheme, rest)) = url.split_once("://") {
            if URL_SCHEMES.contains(&scheme) {
                let host = rest.split(['/', '?', '#']).next().unwrap_or(rest);
                let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
                let name = Some(if host.is_empty() {
                    url.clone()
                } else {
                    host.to_owned()
                });
                // An http(s) URL may be Streamable HTTP or legacy SSE: let detection tell.
                return if scheme.starts_with("http") {
                    RawServer {
                        name,
                        auto_detect: Some(true),
                        candidates: Some(vec![url.clone()]),
                        ..RawServer::default()
                    }
                } else {
                    RawServer {
                        name,
                        url: Some(url.clone()),
                        ..RawServer::default()
                    }
                };
            }
        }
    }
    let name = Path::new(&words[0])
        .file_name()
        .map_or_else(|| words[0].clone(), |n| n.to_string_lossy().into_owned());
    RawServer {
        name: Some(name),
        command: Some(RawCommand::Words(words.to_vec())),
        ..RawServer::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> FlagTarget {
        FlagTarget::Command(list.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn a_command_is_split_like_a_shell() {
        let f = parse_server_flag("fs=npx -y '@scope/server fs' /tmp --opt=a=b").unwrap();
        assert_eq!(f.name, "fs");
        assert_eq!(
            f.target,
            words(&["npx", "-y", "@scope/server fs", "/tmp", "--opt=a=b"])
        );
        let f = parse_server_flag(" weather = python server.py ").unwrap();
        assert_eq!(f.name, "weather");
        assert_eq!(f.target, words(&["python", "server.py"]));
    }

    #[test]
    fn a_url_scheme_makes_a_network_server() {
        for url in [
            "http://localhost:8080/mcp",
            "https://mcp.example.com/mcp?key=x",
            "ws://localhost/mcp",
            "wss://h/mcp",
            "tcp://h:9000",
            "tcps://h:9000",
            "HTTPS://h/mcp",
        ] {
            let f = parse_server_flag(&format!("x={url}")).unwrap();
            assert_eq!(f.target, FlagTarget::Url(url.into()), "{url}");
        }
        // Not a URL: a program whose argument happens to contain "://".
        let f = parse_server_flag("x=curl https://h").unwrap();
        assert_eq!(f.target, words(&["curl", "https://h"]));
        let f = parse_server_flag("x=ftp://h").unwrap();
        assert_eq!(f.target, words(&["ftp://h"]));
    }

    #[test]
    fn bad_syntax_says_what_is_expected_with_an_example() {
        for (text, needle) in [
            ("python server.py", "expected NAME=COMMAND-OR-URL"),
            ("=python server.py", "name before '=' is empty"),
            ("  =x", "name before '=' is empty"),
            ("fs=", "nothing after 'fs='"),
            ("fs=python 'unclosed", "cannot be split into words"),
        ] {
            let err = parse_server_flag(text).expect_err(text);
            assert!(err.contains(needle), "{text}: {err}");
            assert!(err.contains("e.g. --server fs="), "{text}: {err}");
        }
    }

    #[test]
    fn a_flag_becomes_the_entry_a_file_would_hold() {
        let raw = parse_server_flag("docs=https://h/mcp").unwrap().to_raw();
        assert_eq!(raw.name.as_deref(), Some("docs"));
        assert_eq!(raw.url.as_deref(), Some("https://h/mcp"));
        assert_eq!(raw.origin.as_deref(), Some("--server docs"));
        let raw = parse_server_flag("fs=npx srv").unwrap().to_raw();
        assert!(matches!(raw.command, Some(RawCommand::Words(w)) if w == ["npx", "srv"]));
    }
}
