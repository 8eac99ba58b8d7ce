//! Several servers: the per-server keys (`enabled`, `prefix`, filters, `transport`),
//! `aggregate:`, the `mcpServers` JSON as the file or through `servers_from:`, and the
//! `--server` flags; every rule with its message.

use std::path::{Path, PathBuf};

use super::*;

fn opts(path: &Path) -> LoadOptions {
    LoadOptions {
        config_path: Some(path.to_owned()),
        env: Vec::new(),
        search_dirs: Vec::new(),
        flags: FlagOverrides::default(),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn load_yaml(text: &str) -> Result<Loaded, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    load(&opts(&write(dir.path(), "mcp-router.yaml", text)))
}

fn errors_of(text: &str) -> String {
    load_yaml(text).expect_err("should not load").to_string()
}

fn names(cfg: &Config) -> Vec<&str> {
    cfg.servers.iter().map(|s| s.name.as_str()).collect()
}

#[test]
fn the_new_server_keys_load_and_are_rendered() {
    let loaded = load_yaml(
        r#"
aggregate: { separator: "-x-" }
servers:
  - name: github
    command: npx -y @modelcontextprotocol/server-github
    prefix: gh
    tools: { allow: ["create_*", "get_?"], deny: [create_repository] }
    prompts: { deny: ["*"] }
  - name: docs
    url: https://docs.example.com/sse
    transport: streamable-http
    resources: { allow: ["docs://*"] }
  - name: old
    enabled: false
    url: http://localhost:3001/events
    transport: sse
"#,
    )
    .expect("loads");
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    let cfg = &loaded.config;
    assert_eq!(cfg.aggregate.separator, "-x-");
    let [gh, docs, old] = &cfg.servers[..] else {
        panic!("{:?}", names(cfg))
    };
    assert!(gh.enabled && docs.enabled && !old.enabled);
    assert_eq!((gh.prefix.as_str(), docs.prefix.as_str()), ("gh", "docs"));
    assert!(gh.tools.allows("create_issue") && gh.tools.allows("get_x"));
    assert!(!gh.tools.allows("create_repository") && !gh.tools.allows("list_issues"));
    assert!(!gh.prompts.allows("anything") && gh.resources.allows("anything"));
    assert!(docs.resources.allows("docs://a") && !docs.resources.allows("file://a"));
    assert_eq!(gh.transport, None);
    assert_eq!(docs.transport, Some(TransportHint::StreamableHttp));
    assert_eq!(old.transport, Some(TransportHint::Sse));

    let yaml = render_effective(cfg);
    for needle in [
        "aggregate:\n  separator: -x-\n",
        "- name: github\n  enabled: true\n  prefix: gh\n",
        "  tools:\n    allow:\n    - create_*\n    - get_?\n    deny:\n    - create_repository\n",
        "  prompts:\n    deny:\n    - '*'\n",
        "  transport: streamable-http\n",
        "- name: old\n  enabled: false\n  prefix: old\n",
        "  transport: sse\n",
    ] {
        assert!(yaml.contains(needle), "missing {needle:?} in:\n{yaml}");
    }
    // No filter set: none rendered.
    let docs_part = &yaml[yaml.find("- name: docs").unwrap()..yaml.find("- name: old").unwrap()];
    assert!(
        !docs_part.contains("tools:") && docs_part.contains("resources:"),
        "{docs_part}"
    );
}

#[test]
fn the_defaults_are_enabled_a_prefix_from_the_name_and_the_double_underscore() {
    let cfg = load_yaml(
        "aggregate: { separator: '--' }\nservers:\n  - { name: 'My Server.v2', command: a }\n  - { name: 'ÄÖ-ü_1', command: b }\n  - { name: aaaaaaaaaabbbbbbbbbbccccccccccdddd, command: c }\n",
    )
    .expect("loads")
    .config;
    let prefixes: Vec<&str> = cfg.servers.iter().map(|s| s.prefix.as_str()).collect();
    assert_eq!(
        prefixes,
        ["My_Server_v2", "__-__1", "aaaaaaaaaabbbbbbbbbbccccccccccdd"]
    );
    assert!(cfg.servers.iter().all(|s| s.enabled && s.tools.is_empty()));
    assert_eq!(Config::default().aggregate.separator, "__");
}

#[test]
fn a_prefix_and_the_separator_must_be_tokens() {
    let err = errors_of(
        "aggregate: { separator: '::' }\nservers:\n  - { name: a, command: x, prefix: 'my prefix' }\n  - { name: b, command: y, prefix: '' }\n  - { name: c, command: z, prefix: aaaaaaaaaabbbbbbbbbbccccccccccddd }\n",
    );
    for needle in [
        "aggregate.separator: '::' is not allowed: use 1 to 8 letters, digits, '_' or '-' (it becomes part of tool names)",
        "servers[0].prefix: 'my prefix' is not allowed: use 1 to 32 letters, digits, '_' or '-'",
        "servers[1].prefix: '' is not allowed",
        "servers[2].prefix: 'aaaaaaaaaabbbbbbbbbbccccccccccddd' is not allowed",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    let err =
        errors_of("aggregate: { separator: 123456789 }\nservers: [{ name: a, command: x }]\n");
    assert!(
        err.contains("aggregate.separator: '123456789' is not allowed"),
        "{err}"
    );
}

#[test]
fn names_and_prefixes_are_unique_among_enabled_servers_naming_both() {
    let err = errors_of(
        "servers:\n  - { name: a, command: x }\n  - { name: a, command: y }\n  - { name: 'b c', command: z }\n  - { name: b_c, command: w }\n  - { name: d, command: v, prefix: p }\n  - { name: e, command: u, prefix: p }\n",
    );
    for needle in [
        "servers[1].name: 'a' is also the name of servers[0]: names must be unique among enabled servers (rename one, or set enabled: false on one)",
        "servers[3].prefix: 'b_c' (made from the name) is also the prefix of servers[2]: prefixes must be unique among enabled servers (set prefix: on one of them)",
        "servers[5].prefix: 'p' is also the prefix of servers[4]",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    // The repeated name's repeated prefix is not a second error.
    assert!(!err.contains("servers[1].prefix"), "{err}");
    // A disabled entry may share a name or prefix.
    let cfg = load_yaml(
        "servers:\n  - { name: a, command: x }\n  - { name: a, command: y, enabled: false }\n  - { name: b, command: z, prefix: a, enabled: false }\n",
    )
    .expect("a disabled duplicate is fine")
    .config;
    assert_eq!(names(&cfg), ["a", "a", "b"]);
}

#[test]
fn with_several_enabled_a_prefix_must_not_hold_the_separator() {
    let text =
        "servers:\n  - { name: my__srv, command: x }\n  - { name: b, command: y, prefix: b__c }\n";
    let err = errors_of(text);
    for needle in [
        "servers[0].prefix: 'my__srv' (made from the name) contains the separator '__', so a name like 'my__srv__tool' could not be split back",
        "servers[1].prefix: 'b__c' contains the separator '__'",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    // Alone, or with another separator, it is fine.
    load_yaml("servers:\n  - { name: my__srv, command: x }\n").expect("one server");
    load_yaml(&format!("aggregate: {{ separator: '-' }}\n{text}")).expect("another separator");
}

#[test]
fn every_server_disabled_is_an_error_saying_so() {
    let err = errors_of(
        "servers:\n  - { name: a, command: x, enabled: false }\n  - { name: b, url: 'https://h/mcp', enabled: false }\n",
    );
    assert!(
        err.contains("servers: every server is disabled (enabled: false, or \"disabled\": true in an mcpServers file): enable at least one"),
        "{err}"
    );
}

#[test]
fn a_transport_must_fit_the_target() {
    let err = errors_of(
        r#"
servers:
  - { name: a, url: "https://h/mcp", transport: carrier-pigeon }
  - { name: b, url: "wss://h/mcp", transport: sse }
  - { name: c, url: "https://h/mcp", transport: websocket }
  - { name: d, command: x, transport: http }
  - { name: e, url: "https://h/mcp", transport: stdio }
  - { name: f, auto_detect: true, candidates: [x], transport: sse }
  - { name: g, command: x, transport: stdio }
  - { name: h, url: "ws://h/mcp", transport: ws }
"#,
    );
    for needle in [
        "servers[0].transport: 'carrier-pigeon' is not one of stdio, http, streamable-http, streamableHttp, sse, ws, websocket",
        "servers[1].transport: 'sse' needs a http:// or https:// url, not wss://",
        "servers[2].transport: 'websocket' needs a ws:// or wss:// url, not https://",
        "servers[3].transport: 'http' is a network transport: it needs url, not command",
        "servers[4].transport: 'stdio' is for a command; this server has a url",
        "servers[5].transport: cannot be combined with auto_detect",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    assert!(
        !err.contains("servers[6]") && !err.contains("servers[7]"),
        "{err}"
    );
}

#[test]
fn an_empty_glob_is_an_error() {
    let err = errors_of("servers:\n  - { name: a, command: x, tools: { allow: [ok, ''] }, resources: { deny: [''] } }\n");
    for needle in [
        "servers[0].tools.allow[1]: is empty: it would match no name (use a glob such as read_* or *)",
        "servers[0].resources.deny[0]: is empty",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}

#[test]
fn misspelled_new_keys_get_the_nearest_name() {
    let loaded = load_yaml(
        "aggregate: { seperator: '-' }\nservers:\n  - { name: a, command: x, prefx: p, tools: { alow: [x] } }\n",
    )
    .expect("loads");
    for needle in [
        "unknown key 'aggregate.seperator' is ignored; did you mean 'aggregate.separator'?",
        "unknown key 'servers[].prefx' is ignored; did you mean 'servers[].prefix'?",
        "unknown key 'servers[].tools.alow' is ignored; did you mean 'servers[].tools.allow'?",
    ] {
        assert!(
            loaded.warnings.iter().any(|w| w == needle),
            "missing {needle:?}: {:#?}",
            loaded.warnings
        );
    }
}

const CLAUDE: &str = include_str!("../../tests/golden/claude_desktop_config.json");

#[test]
fn the_claude_desktop_example_loads_as_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "claude_desktop_config.json", CLAUDE);
    let loaded = load(&opts(&path)).expect("loads");
    assert!(loaded.warnings.is_empty(), "{:#?}", loaded.warnings);
    let cfg = &loaded.config;
    assert_eq!(
        names(cfg),
        ["filesystem", "github", "sqlite", "memory", "brave-search"]
    );
    let ServerTarget::Stdio(gh) = &cfg.servers[1].target else {
        panic!("stdio")
    };
    assert_eq!(gh.program, "docker");
    assert_eq!(
        gh.args.last().map(String::as_str),
        Some("ghcr.io/github/github-mcp-server")
    );
    assert_eq!(
        gh.env["GITHUB_PERSONAL_ACCESS_TOKEN"],
        "ghp_golden_never_printed"
    );
    assert_eq!(cfg.servers[4].prefix, "brave-search");
    assert!(cfg.servers.iter().all(|s| s.enabled));
    let yaml = render_effective(cfg);
    assert!(
        !yaml.contains("never_printed") && yaml.contains("GITHUB_PERSONAL_ACCESS_TOKEN: '***'"),
        "{yaml}"
    );
}

#[test]
fn a_vs_code_file_loads_with_types_and_disabled_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        ".vscode/mcp.json",
        r#"{
  // VS Code writes comments and trailing commas.
  "servers": {
    "github": { "type": "http", "url": "https://api.githubcopilot.com/mcp/sse" },
    "events": { "type": "sse", "url": "http://localhost:3001/events", "disabled": true },
    "fs": { "type": "stdio", "command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "."] },
  },
}"#,
    );
    let cfg = load(&opts(&path)).expect("loads").config;
    assert_eq!(names(&cfg), ["github", "events", "fs"]);
    assert_eq!(
        cfg.servers[0].transport,
        Some(TransportHint::StreamableHttp)
    );
    assert_eq!(cfg.servers[1].transport, Some(TransportHint::Sse));
    assert!(!cfg.servers[1].enabled);
    assert!(matches!(&cfg.servers[2].target, ServerTarget::Stdio(c) if c.program == "npx"));
}

#[test]
fn errors_in_a_json_entry_name_the_file_and_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "servers.json",
        r#"{"mcpServers": {"a": {"command": ""}, "b": {"url": "ftp://x"}, "c": {"type": "sse", "command": "x"}, "d": {}}}"#,
    );
    let err = load(&opts(&path)).expect_err("invalid").to_string();
    let file = path.display();
    for needle in [
        format!("{file}: mcpServers.a.command: is empty"),
        format!("{file}: mcpServers.b.url: scheme 'ftp' is not supported"),
        format!("{file}: mcpServers.c.type: 'sse' is a network transport"),
        format!("{file}: mcpServers.d: set one of command (a stdio server), url"),
    ] {
        assert!(err.contains(&needle), "missing {needle:?} in:\n{err}");
    }
}

#[test]
fn a_json_file_that_is_not_the_shape_says_what_is_expected() {
    let dir = tempfile::tempdir().unwrap();
    let broken = write(dir.path(), "broken.json", "{\"mcpServers\": {\"a\": }");
    let err = load(&opts(&broken)).expect_err("broken").to_string();
    assert!(
        err.contains("not valid JSON: expected value at line 1 column"),
        "{err}"
    );
    let other = write(dir.path(), "other.json", "{\"globalShortcut\": \"x\"}");
    let err = load(&opts(&other)).expect_err("no servers").to_string();
    assert!(err.contains("no mcpServers (or servers) object"), "{err}");
    // The router's own schema in JSON is still the router's schema.
    let own = write(
        dir.path(),
        "own.json",
        r#"{"servers": [{"name": "a", "command": "x"}]}"#,
    );
    assert_eq!(names(&load(&opts(&own)).expect("loads").config), ["a"]);
    // The JSON shape in a YAML file.
    let err = errors_of("mcpServers:\n  a: { command: x }\n");
    assert!(
        err.contains("mcpServers: is the JSON shape other MCP clients use"),
        "{err}"
    );
    let err = errors_of("servers:\n  a: { command: x }\n");
    assert!(
        err.contains("servers: is a mapping of NAME: {…} (VS Code's mcp.json shape)"),
        "{err}"
    );
}

#[test]
fn servers_from_appends_json_servers_relative_to_the_yaml_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "conf/clients/claude.json", CLAUDE);
    write(
        dir.path(),
        "conf/cursor.json",
        r#"{"mcpServers": {"remote": {"url": "https://api.example.com/mcp?key=${API_KEY}"}}}"#,
    );
    let yaml = write(
        dir.path(),
        "conf/mcp-router.yaml",
        "servers:\n  - { name: local, command: python server.py }\nservers_from: [clients/claude.json, cursor.json]\n",
    );
    let loaded = load(&opts(&yaml)).expect("loads");
    assert_eq!(
        names(&loaded.config),
        [
            "local",
            "filesystem",
            "github",
            "sqlite",
            "memory",
            "brave-search",
            "remote"
        ]
    );
    assert_eq!(
        loaded.warnings,
        ["cursor.json: mcpServers.remote.url contains ${…}, which is used as written: the router expands no variables (put the value itself, or set env: on the entry)"]
    );
    // A single path, and a name repeated across the files: both entries named.
    let yaml = write(
        dir.path(),
        "conf/one.yaml",
        "servers:\n  - { name: github, command: gh-mcp }\nservers_from: clients/claude.json\n",
    );
    let err = load(&opts(&yaml)).expect_err("duplicate").to_string();
    assert!(
        err.contains(
            "clients/claude.json: mcpServers.github.name: 'github' is also the name of servers[0]"
        ),
        "{err}"
    );
}

#[test]
fn a_servers_from_file_that_is_missing_or_not_the_shape_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "plain.json", "{\"servers\": []}");
    write(dir.path(), "router.yaml", "servers: []\n");
    let yaml = write(
        dir.path(),
        "mcp-router.yaml",
        "servers_from: [missing.json, plain.json, router.yaml]\n",
    );
    let err = load(&opts(&yaml)).expect_err("bad includes").to_string();
    for needle in [
        "servers_from[0]: cannot read ",
        "missing.json (No such file or directory",
        "servers_from[1]: ",
        "plain.json has no mcpServers (or servers) object",
        "servers_from[2]: ",
        "router.yaml is not JSON (",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}

fn flag(text: &str) -> ServerFlag {
    parse_server_flag(text).expect("flag parses")
}

#[test]
fn server_flags_replace_the_configured_servers() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = write(
        dir.path(),
        "mcp-router.yaml",
        "servers:\n  - { name: file, command: x }\nservers_from: never-read.json\n",
    );
    let mut o = opts(&yaml);
    o.flags.servers = vec![
        flag("fs=npx -y @modelcontextprotocol/server-filesystem '/tmp/my dir'"),
        flag("docs=https://docs.example.com/mcp"),
    ];
    o.flags.headers = vec![("X-Team".into(), "a".into())];
    let cfg = load(&o).expect("loads").config;
    assert_eq!(names(&cfg), ["fs", "docs"]);
    let ServerTarget::Stdio(fs) = &cfg.servers[0].target else {
        panic!("stdio")
    };
    assert_eq!(fs.args.last().map(String::as_str), Some("/tmp/my dir"));
    assert!(
        matches!(&cfg.servers[1].target, ServerTarget::Url(u) if u == "https://docs.example.com/mcp")
    );
    assert_eq!(cfg.servers[1].headers["X-Team"], "a");

    o.flags.servers = vec![flag("a=x"), flag("a=https://h/mcp")];
    let err = load(&o).expect_err("duplicate").to_string();
    assert!(
        err.contains("--server a.name: 'a' is also the name of --server a"),
        "{err}"
    );

    o.flags.servers = vec![flag("a=x")];
    o.flags.stdio_command = Some(vec!["python".into(), "s.py".into()]);
    let err = load(&o).expect_err("both").to_string();
    assert!(
        err.contains("--server and `-- COMMAND` both name the servers to route to: use one"),
        "{err}"
    );
}
