//! The `mcpServers` shapes of the clients that write them, read entry by entry.

use super::*;

fn entries(json: &str) -> (Vec<RawServer>, Vec<String>) {
    let mut warnings = Vec::new();
    let servers = parse(&strip_jsonc(json), "f.json", &mut warnings).expect("parses");
    (servers, warnings)
}

fn names(servers: &[RawServer]) -> Vec<&str> {
    servers.iter().filter_map(|s| s.name.as_deref()).collect()
}

#[test]
fn the_shape_is_told_by_content() {
    assert!(matches!(
        sniff(r#"{"mcpServers": {}}"#),
        Sniff::McpServers(_)
    ));
    assert!(matches!(
        sniff(r#"{"servers": {"a": {}}}"#),
        Sniff::McpServers(_)
    ));
    // The router's own schema written as JSON: servers is a list.
    assert!(matches!(
        sniff(r#"{"servers": [{"name": "a"}]}"#),
        Sniff::OtherJson
    ));
    assert!(matches!(sniff(r#"{"mcpServers": []}"#), Sniff::OtherJson));
    assert!(matches!(
        sniff("servers:\n  - name: a\n"),
        Sniff::NotJson(_)
    ));
    assert!(matches!(sniff(""), Sniff::NotJson(_)));
}

#[test]
fn entries_keep_the_file_order() {
    let (servers, warnings) = entries(
        r#"{"mcpServers": {"zeta": {"command": "z"}, "alpha": {"command": "a"}, "mid": {"command": "m"}}}"#,
    );
    assert_eq!(names(&servers), ["zeta", "alpha", "mid"]);
    assert!(warnings.is_empty(), "{warnings:?}");
}

/// Claude Desktop's `claude_desktop_config.json`, as its documentation shows it.
const CLAUDE_DESKTOP: &str = r#"{
  "mcpServers": {
    "filesystem": {
      "command": "npx",
      "args": ["-y", "@modelcontextprotocol/server-filesystem", "/Users/username/Desktop", "/Users/username/Downloads"]
    },
    "github": {
      "command": "docker",
      "args": ["run", "-i", "--rm", "-e", "GITHUB_PERSONAL_ACCESS_TOKEN", "ghcr.io/github/github-mcp-server"],
      "env": { "GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_secret" }
    }
  },
  "globalShortcut": "Ctrl+Space"
}"#;

#[test]
fn a_claude_desktop_file_gives_stdio_entries() {
    let (servers, warnings) = entries(CLAUDE_DESKTOP);
    assert_eq!(names(&servers), ["filesystem", "github"]);
    let fs = &servers[0];
    assert!(matches!(&fs.command, Some(RawCommand::Words(w)) if w == &["npx"]));
    assert_eq!(fs.args.as_ref().map(Vec::len), Some(4));
    assert_eq!(fs.origin.as_deref(), Some("f.json: mcpServers.filesystem"));
    assert_eq!(fs.enabled, None);
    let gh = &servers[1];
    assert_eq!(
        gh.env
            .as_ref()
            .and_then(|e| e.get("GITHUB_PERSONAL_ACCESS_TOKEN"))
            .map(String::as_str),
        Some("ghp_secret")
    );
    assert_eq!(
        warnings,
        ["f.json: 'globalShortcut' is ignored (only mcpServers and servers are read)"]
    );
}

/// VS Code's `.vscode/mcp.json`: `servers`, `type`, `inputs`, comments, a trailing comma.
const VS_CODE: &str = r#"{
  // Inputs are prompted for by VS Code.
  "inputs": [
    { "type": "promptString", "id": "perplexity-key", "description": "Perplexity API Key", "password": true }
  ],
  "servers": {
    /* a local one */
    "Perplexity": {
      "type": "stdio",
      "command": "docker",
      "args": ["run", "-i", "--rm", "-e", "PERPLEXITY_API_KEY", "mcp/perplexity-ask"],
      "env": { "PERPLEXITY_API_KEY": "${input:perplexity-key}" },
    },
    "fetch": { "type": "http", "url": "https://mcp.example.com/sse", "headers": { "X-Team": "a//b" } },
    "legacy": { "type": "sse", "url": "http://localhost:3001/events", "disabled": true },
  }
}"#;

#[test]
fn a_vs_code_file_gives_its_servers_with_their_types() {
    let (servers, warnings) = entries(VS_CODE);
    assert_eq!(names(&servers), ["Perplexity", "fetch", "legacy"]);
    assert_eq!(servers[0].transport.as_deref(), Some("stdio"));
    assert_eq!(
        servers[0].origin.as_deref(),
        Some("f.json: servers.Perplexity")
    );
    assert_eq!(servers[1].transport.as_deref(), Some("http"));
    assert_eq!(
        servers[1].url.as_deref(),
        Some("https://mcp.example.com/sse")
    );
    // `//` inside a string is not a comment.
    assert_eq!(
        servers[1]
            .headers
            .as_ref()
            .and_then(|h| h.get("X-Team"))
            .map(String::as_str),
        Some("a//b")
    );
    assert_eq!(servers[2].transport.as_deref(), Some("sse"));
    assert_eq!(servers[2].enabled, Some(false));
    assert!(
        warnings.iter().any(|w| w.contains("'inputs' is ignored")),
        "{warnings:?}"
    );
    assert!(
        warnings.iter().any(|w| w.starts_with("f.json: servers.Perplexity.env.PERPLEXITY_API_KEY contains ${…}, which is used as written")),
        "{warnings:?}"
    );
}

#[test]
fn cursor_windsurf_and_cline_spellings() {
    let (servers, warnings) = entries(
        r#"{"mcpServers": {
            "remote": { "url": "https://api.example.com/mcp", "headers": { "Authorization": "Bearer x" } },
            "wind": { "serverUrl": "https://w.example.com/mcp" },
            "cline": { "command": "node", "args": ["s.js", 8080, true], "env": { "PORT": 8080 },
                       "disabled": false, "autoApprove": [], "transport": "stdio", "timeout": 60, "trnsport": 1 }
        }}"#,
    );
    assert_eq!(
        servers[0].url.as_deref(),
        Some("https://api.example.com/mcp")
    );
    assert_eq!(servers[1].url.as_deref(), Some("https://w.example.com/mcp"));
    let cline = &servers[2];
    assert_eq!(
        cline.args.as_deref(),
        Some(&["s.js".to_owned(), "8080".into(), "true".into()][..])
    );
    assert_eq!(
        cline
            .env
            .as_ref()
            .and_then(|e| e.get("PORT"))
            .map(String::as_str),
        Some("8080")
    );
    assert_eq!(cline.enabled, Some(true));
    assert_eq!(cline.transport.as_deref(), Some("stdio"));
    assert_eq!(
        warnings,
        [
            "f.json: 'mcpServers.cline.autoApprove' is a setting of the client that wrote the file; the router ignores it",
            "f.json: 'mcpServers.cline.timeout' is a setting of the client that wrote the file; the router ignores it",
            "f.json: unknown key 'mcpServers.cline.trnsport' is ignored; did you mean 'mcpServers.cline.transport'?",
        ]
    );
}

#[test]
fn a_misspelled_entry_key_gets_the_nearest_name() {
    let (_, warnings) = entries(r#"{"mcpServers": {"my.server": {"comand": "x", "arg": []}}}"#);
    assert_eq!(
        warnings,
        [
            "f.json: unknown key 'mcpServers.my.server.comand' is ignored; did you mean 'mcpServers.my.server.command'?",
            "f.json: unknown key 'mcpServers.my.server.arg' is ignored; did you mean 'mcpServers.my.server.args'?",
        ]
    );
}

#[test]
fn a_type_error_names_the_file_and_the_position() {
    let mut warnings = Vec::new();
    let err = parse(
        r#"{"mcpServers": {"a": {"command": 3}}}"#,
        "f.json",
        &mut warnings,
    )
    .expect_err("a number is not a command");
    assert!(
        err.starts_with("f.json: invalid type: integer `3`, expected a string"),
        "{err}"
    );
    assert!(err.contains("line 1 column"), "{err}");
    let err = parse(r#"{"mcpServers": {"a": []}}"#, "f.json", &mut warnings).expect_err("list");
    assert!(
        err.contains("expected struct Entry") || err.contains("invalid type"),
        "{err}"
    );
}

#[test]
fn an_empty_command_stays_empty_for_validation_to_report() {
    let (servers, _) = entries(r#"{"mcpServers": {"a": {"command": " "}}}"#);
    assert!(matches!(&servers[0].command, Some(RawCommand::Words(w)) if w.is_empty()));
}

#[test]
fn jsonc_comments_and_trailing_commas_are_blanked_in_place() {
    let text = "{\n  // c \"quoted\"\n  \"a\": [1, 2,], /* x\n y */ \"b\": \"//,]\",\n}";
    let stripped = strip_jsonc(text);
    assert_eq!(stripped.len(), text.len());
    assert_eq!(stripped.lines().count(), text.lines().count());
    let v: serde_json::Value = serde_json::from_str(&stripped).expect("plain JSON");
    assert_eq!(v["a"], serde_json::json!([1, 2]));
    assert_eq!(v["b"], "//,]");
    // Escaped quotes inside strings do not end them.
    let text = r#"{"a": "x\" // not a comment", "b": 1}"#;
    assert_eq!(strip_jsonc(text), text);
    // Multi-byte characters in comments are blanked whole.
    let v: serde_json::Value =
        serde_json::from_str(&strip_jsonc("{/* é */ \"a\": 1 // ü\n}")).unwrap();
    assert_eq!(v["a"], 1);
}

#[test]
fn a_yaml_file_in_the_json_shape_gets_a_hint() {
    let tree: serde_yaml_ng::Value =
        serde_yaml_ng::from_str("mcpServers:\n  a: { command: x }\n").unwrap();
    assert!(yaml_hint(&tree)
        .unwrap()
        .contains("--config FILE.json or servers_from"));
    let tree: serde_yaml_ng::Value =
        serde_yaml_ng::from_str("servers:\n  a: { command: x }\n").unwrap();
    assert!(yaml_hint(&tree)
        .unwrap()
        .contains("it is a list (- name: …)"));
    let tree: serde_yaml_ng::Value = serde_yaml_ng::from_str("servers:\n  - name: a\n").unwrap();
    assert!(yaml_hint(&tree).is_none());
}

#[test]
fn included_paths_are_relative_to_the_including_file_and_home() {
    let base = Path::new("/etc/mcp");
    assert_eq!(
        resolve("s.json", Some(base)),
        PathBuf::from("/etc/mcp/s.json")
    );
    assert_eq!(
        resolve("/abs/s.json", Some(base)),
        PathBuf::from("/abs/s.json")
    );
    if let Some(home) = dirs::home_dir() {
        assert_eq!(resolve("~/s.json", Some(base)), home.join("s.json"));
    }
}
