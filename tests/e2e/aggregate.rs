//! Aggregation: several servers behind one router, which is then one MCP server to its
//! client. The official Python SDK client runs the interop scenarios against each server
//! through the router (`scenario_client.py --prefix P`) and directly, and must get the same
//! results; raw JSON-RPC over the router's stdio checks the merged handshake, the names,
//! the filters, routing by name, URI and ref, cancellation, logging, a server that crashes
//! and comes back, and the other ways to configure several servers (a Claude Desktop JSON
//! file, repeated `--server` flags).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::interop::{assert_exercised, try_run_scenario};
use crate::support::*;

/// The separator the configs set (`aggregate: {separator: "__"}`).
const SEP: &str = "__";

struct Peers {
    py: PathBuf,
    js: PathBuf,
}

fn peers() -> Option<Peers> {
    Some(Peers {
        py: sdk_python()?,
        js: server_everything()?,
    })
}

impl Peers {
    /// The Python SDK test server over stdio.
    fn sdk(&self) -> Vec<String> {
        vec![
            self.py.display().to_string(),
            py_script("sdk_server.py").display().to_string(),
            "--transport".into(),
            "stdio".into(),
        ]
    }

    /// `@modelcontextprotocol/server-everything` over stdio.
    fn everything(&self) -> Vec<String> {
        vec!["node".into(), self.js.display().to_string(), "stdio".into()]
    }
}

/// `{"name": name, "command": [...]}` plus the members of `extra`.
fn server(name: &str, command: &[String], extra: Value) -> Value {
    let mut v = json!({"name": name, "command": command});
    if let Value::Object(more) = extra {
        v.as_object_mut().unwrap().extend(more);
    }
    v
}

/// A router config file: `aggregate: {separator: "__"}` and `servers:`, each server's keys
/// written as `key: <JSON>` (JSON values are YAML flow values).
fn config_yaml(servers: &[Value]) -> String {
    let mut s = format!("aggregate:\n  separator: \"{SEP}\"\nservers:\n");
    for srv in servers {
        let obj = srv.as_object().expect("a server is an object");
        // `name` first, as users write it.
        let mut keys: Vec<&String> = obj.keys().collect();
        keys.sort_by_key(|k| (k.as_str() != "name", k.as_str()));
        for (i, k) in keys.iter().enumerate() {
            s += if i == 0 { "  - " } else { "    " };
            s += &format!("{k}: {}\n", obj[k.as_str()]);
        }
    }
    s
}

/// Writes `router.yaml` for `servers` into `dir`; returns its path.
fn write_config(dir: &Path, servers: &[Value]) -> PathBuf {
    let path = dir.join("router.yaml");
    std::fs::write(&path, config_yaml(servers)).unwrap();
    path
}

/// A router (piped stdio) aggregating `servers`.
fn router_with(servers: &[Value]) -> RouterProc {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), servers);
    RouterProc::start_in(dir, &["--config", "router.yaml"], &[])
}

/// A server spoken to directly over its stdio (no router), for what it answers alone.
fn direct(command: &[String], env: &[(&str, &str)]) -> RouterProc {
    let args: Vec<&str> = command[1..].iter().map(String::as_str).collect();
    RouterProc::start_program(Path::new(&command[0]), &args, env)
}

/// `initialize` (handshake era) and `notifications/initialized`; the result, or a panic
/// naming what came back instead.
fn handshake(r: &mut RouterProc, version: &str, who: &str) -> Value {
    let v = r.initialize(version);
    match v.get("result") {
        Some(res) => res.clone(),
        None => panic!("{who}: initialize failed: {v}\nstderr:\n{}", r.stderr()),
    }
}

fn result<'a>(v: &'a Value, what: &str) -> &'a Value {
    v.get("result")
        .unwrap_or_else(|| panic!("{what}: expected a result, got {v}"))
}

// ---------------------------------------------------------------------------------------
// The SDK client's scenarios, through the router and directly
// ---------------------------------------------------------------------------------------

/// The keys of a direct run's document that describe the server's handshake (through the
/// router the handshake is the router's own and printed under `router`).
const HANDSHAKE_KEYS: [&str; 3] = ["protocol_version", "server_info", "instructions"];

/// One server of the scenario test: its name (= prefix), the scenario peer, the mode its
/// direct baseline runs in.
struct Member {
    name: &'static str,
    peer: &'static str,
    /// Its direct run in the era the router should give the client.
    direct: Value,
    /// Its direct run in the other era the router might give instead (auto with a
    /// handshake-era server: 2026-07-28), to compare with when it does.
    other_era: Option<Value>,
}

/// Runs the scenarios of the Python SDK server over stdio (`py`), server-everything over
/// stdio (`everything`, unless `!with_everything`) and the Python SDK server over Streamable
/// HTTP (`web`), each through one aggregating router and directly, and compares them. Every
/// problem is collected, so one failing mode reports all that differs.
fn aggregated_scenarios(mode: &str, with_everything: bool) {
    let Some(p) = peers() else { return };
    let web = sdk_net_server(&p.py, "streamable-http", free_port(), &[]);
    let web_url = web.url("/mcp");

    // The direct baseline of each server. A 2026-07-28 client adopts that version without
    // asking; `auto` probes `server/discover`, which the router answers only when every
    // server speaks 2026-07-28 (the Python servers do). server-everything speaks only the
    // handshake era, so with it:
    // - auto: the router does not answer discover, the client falls back to `initialize`,
    //   and every server is seen in the handshake era (the Python servers' legacy runs);
    // - 2026-07-28: the Python servers as they answer a 2026-07-28 client; server-everything
    //   cannot be spoken to in 2026-07-28 at all (the SDK client refuses its replies), so its
    //   only baseline is its handshake-era run: what the router would have to bridge.
    // Without it, auto finds 2026-07-28 through the router as it does directly.
    let sdk_mode = if mode == "auto" && with_everything {
        "legacy"
    } else {
        mode
    };
    let everything_mode = if mode == "2026-07-28" { "legacy" } else { mode };
    let run_direct = |peer: &str, mode: &str, args: Vec<String>, label: &str| {
        let doc = try_run_scenario(&p.py, mode, peer, &args, label)
            .unwrap_or_else(|e| panic!("the direct baseline failed (not the router's doing): {e}"));
        assert_exercised(mode, peer, &doc);
        doc
    };
    let dash = |cmd: Vec<String>| [vec!["--".to_owned()], cmd].concat();
    let mut members = Vec::new();
    for (name, peer, args) in [
        ("py", "sdk", dash(p.sdk())),
        ("everything", "everything", dash(p.everything())),
        ("web", "sdk", vec!["--url".into(), web_url.clone()]),
    ] {
        if peer == "everything" && !with_everything {
            continue;
        }
        let label = format!("{name} direct");
        let (direct, other_era) = if peer == "everything" {
            (
                run_direct(peer, everything_mode, args.clone(), &label),
                None,
            )
        } else {
            let other = (sdk_mode != mode).then(|| run_direct(peer, mode, args.clone(), &label));
            (run_direct(peer, sdk_mode, args.clone(), &label), other)
        };
        members.push(Member {
            name,
            peer,
            direct,
            other_era,
        });
    }

    // URIs (and templates) listed by more than one server: the router lists those as
    // `mcp-router://<prefix>/<uri>`, the others unchanged.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for m in &members {
        for r in items(&m.direct, "resources") {
            *seen
                .entry(r["uri"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        for t in items(&m.direct, "templates") {
            *seen
                .entry(t["uriTemplate"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    let shared: BTreeSet<String> = seen
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(u, _)| u)
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let mut servers = vec![
        server("py", &p.sdk(), json!({})),
        server("everything", &p.everything(), json!({})),
        json!({"name": "web", "url": web_url}),
    ];
    if !with_everything {
        servers.remove(1);
    }
    let config = write_config(dir.path(), &servers);
    let mut problems = Vec::new();
    for m in &members {
        let mut args: Vec<String> = vec!["--prefix".into(), m.name.into()];
        if m.peer == "everything" {
            // The resource its direct run read (the first it listed), not the first of all.
            if let Some(uri) = m.direct["read"]["contents"][0]["uri"].as_str() {
                args.extend(["--read-uri".into(), uri.into()]);
            }
        }
        args.extend([
            "--".into(),
            router_bin().display().to_string(),
            "--config".into(),
            config.display().to_string(),
        ]);
        let label = format!("{} through the aggregating router", m.name);
        match try_run_scenario(&p.py, mode, m.peer, &args, &label) {
            Ok(routed) => compare_routed(mode, m, &members, &routed, &shared, &mut problems),
            Err(e) if mode == "2026-07-28" && m.peer == "everything" => problems.push(format!(
                "{mode}/{}: a pinned 2026-07-28 client cannot use server-everything (a \
                 handshake-era server) through the aggregating router: {e}",
                m.name
            )),
            Err(e) => problems.push(format!("{mode}/{}: {e}", m.name)),
        }
    }
    assert!(
        problems.is_empty(),
        "{mode}: {} problem(s) with the aggregating router:\n\n{}",
        problems.len(),
        problems.join("\n\n")
    );
}

/// The list under `key` of a scenario document (empty when absent).
fn items<'a>(doc: &'a Value, key: &str) -> &'a [Value] {
    doc[key].as_array().map_or(&[], Vec::as_slice)
}

fn compare_routed(
    mode: &str,
    m: &Member,
    members: &[Member],
    routed: &Value,
    shared: &BTreeSet<String>,
    problems: &mut Vec<String>,
) {
    let who = format!("{mode}/{}", m.name);
    // The router's own handshake (or discover answer), as the SDK client saw it (a pinned
    // 2026-07-28 client asks nothing, so there is nothing to see).
    if mode != "2026-07-28" {
        let hs = &routed["router"];
        // The version the client gets from the Python server alone in the era expected.
        let version = &members[0].direct["protocol_version"];
        let modern = version == "2026-07-28";
        // A 2026-07-28 server need not name itself; if the router does, it is itself.
        if hs["server_info"]["name"] != "mcp-router" && !(modern && hs["server_info"].is_null()) {
            problems.push(format!(
                "{who}: the router must answer {} itself (serverInfo.name \"mcp-router\"); got server_info {}",
                if modern { "server/discover" } else { "initialize" },
                hs["server_info"]
            ));
        }
        let with_everything = members.iter().any(|s| s.peer == "everything");
        // auto with a handshake-era server: the handshake era is wanted (and pinned by
        // `server_discover_does_not_offer_2026_with_a_handshake_era_server`); a router that
        // gives 2026-07-28 instead, bridging that server, must still give every result the
        // servers give alone in that era (compared below with their 2026-07-28 runs).
        let bridged = members[0]
            .other_era
            .as_ref()
            .map(|o| &o["protocol_version"]);
        if &hs["protocol_version"] != version && Some(&hs["protocol_version"]) != bridged {
            problems.push(format!(
                "{who}: the client (mode {mode}) and every server speak {version}; through the router it got {}{}",
                hs["protocol_version"],
                match (mode, with_everything) {
                    ("auto", true) => " (server-everything speaks only the handshake era, so the router must not answer server/discover as 2026-07-28)",
                    ("auto", false) => " (every server speaks 2026-07-28, so the router answers server/discover)",
                    _ => "",
                }
            ));
        }
        let instructions = hs["instructions"].as_str().unwrap_or_default();
        for s in members {
            if let Some(theirs) = s.direct["instructions"].as_str() {
                if !section_has(instructions, s.name, theirs) {
                    problems.push(format!(
                        "{who}: the router's instructions have no line \"## {}\" followed by that server's instructions; they are:\n{instructions:.600}",
                        s.name
                    ));
                }
            }
        }
    }

    // Everything but the handshake and the resource lists: equal (to the run in the era the
    // router gave, when it gave another than it should: what else that changes).
    let (baseline, note) = match &m.other_era {
        Some(o) if routed["router"]["protocol_version"] == o["protocol_version"] => (
            o,
            format!(
                " (compared with its direct run in the era the router gave, {})",
                o["protocol_version"]
            ),
        ),
        _ => (&m.direct, String::new()),
    };
    let mut want = baseline.as_object().unwrap().clone();
    for k in HANDSHAKE_KEYS.iter().chain(&["resources", "templates"]) {
        want.remove(*k);
    }
    let mut got = routed.as_object().unwrap().clone();
    for k in ["router", "resources", "templates"] {
        got.remove(k);
    }
    let mut differ = Vec::new();
    diff(
        &Value::Object(want),
        &Value::Object(got),
        String::new(),
        &mut differ,
    );
    if !differ.is_empty() {
        problems.push(format!(
            "{who}: results differ through the aggregating router{note}:\n{}",
            differ.join("\n")
        ));
    }

    // Every resource and template the server lists directly is listed by the router:
    // unchanged, or under `mcp-router://<prefix>/<uri>` when another server lists the same
    // URI too. A template two servers list is checked by
    // `a_template_two_servers_list_is_shown_for_each`; here it must only be there.
    for (key, uri_key) in [("resources", "uri"), ("templates", "uriTemplate")] {
        let listed = items(routed, key);
        for item in items(&m.direct, key) {
            let uri = item[uri_key].as_str().unwrap();
            let mut expect = item.clone();
            if shared.contains(uri) {
                expect[uri_key] = json!(format!("mcp-router://{}/{uri}", m.name));
            }
            if listed.contains(&expect) {
                continue;
            }
            let copies = listed.iter().filter(|i| *i == item).count();
            if key == "templates" && copies > 0 {
                continue;
            }
            if shared.contains(uri) && copies > 0 {
                problems.push(format!(
                    "{who}: {key}: {uri} is listed by more than one server; the router lists it {copies} time(s) unchanged instead of as {} (the client cannot tell the servers' apart, nor reach a chosen one's)",
                    expect[uri_key]
                ));
            } else {
                problems.push(format!(
                    "{who}: {key}: the router does not list {expect}; it lists: {}",
                    short(Some(&routed[key]))
                ));
            }
        }
    }
}

/// Where `a` (direct) and `b` (routed) differ, by path (`tools[3].inputSchema`), at most
/// 12 places.
fn diff(a: &Value, b: &Value, path: String, out: &mut Vec<String>) {
    if a == b || out.len() >= 12 {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let at = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match (x.get(k), y.get(k)) {
                    (Some(v), Some(w)) => diff(v, w, at, out),
                    (v, w) => out.push(format!(
                        "  {at}:\n    direct: {}\n    routed: {}",
                        short(v),
                        short(w)
                    )),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                diff(v, w, format!("{path}[{i}]"), out);
            }
        }
        // Lists of named items: which names only one side has.
        (Value::Array(x), Value::Array(y)) if x.iter().chain(y).all(|i| i["name"].is_string()) => {
            let names = |l: &[Value]| -> BTreeSet<String> {
                l.iter()
                    .map(|i| i["name"].as_str().unwrap().to_owned())
                    .collect()
            };
            let (nx, ny) = (names(x), names(y));
            out.push(format!(
                "  {path}: only direct: {:?}; only routed: {:?}",
                nx.difference(&ny).collect::<Vec<_>>(),
                ny.difference(&nx).collect::<Vec<_>>()
            ));
        }
        _ => out.push(format!(
            "  {path}:\n    direct: {}\n    routed: {}",
            short(Some(a)),
            short(Some(b))
        )),
    }
}

/// Whether `text` has a line `## <name>` followed (after blank lines) by `theirs`.
fn section_has(text: &str, name: &str, theirs: &str) -> bool {
    let heading = format!("## {name}\n");
    text.match_indices(&heading).any(|(at, _)| {
        text[at + heading.len()..]
            .trim_start_matches('\n')
            .starts_with(theirs.trim_end())
    })
}

fn short(v: Option<&Value>) -> String {
    let s = v.map_or("(absent)".to_owned(), Value::to_string);
    if s.len() > 700 {
        let mut at = 700;
        while !s.is_char_boundary(at) {
            at += 1;
        }
        format!("{}…", &s[..at])
    } else {
        s
    }
}

#[test]
fn scenarios_legacy_mode() {
    aggregated_scenarios("legacy", true);
}

#[test]
fn scenarios_auto_mode() {
    aggregated_scenarios("auto", true);
}

#[test]
fn scenarios_2026_mode() {
    aggregated_scenarios("2026-07-28", true);
}

/// Only 2026-07-28 servers, a pinned 2026-07-28 client: as with each server alone.
#[test]
fn scenarios_2026_mode_every_server_2026() {
    aggregated_scenarios("2026-07-28", false);
}

/// Only 2026-07-28 servers: the router answers `server/discover`, and an auto client
/// speaks 2026-07-28 with every server, as it does with each alone.
#[test]
fn scenarios_auto_mode_every_server_2026() {
    aggregated_scenarios("auto", false);
}

// ---------------------------------------------------------------------------------------
// Raw JSON-RPC over the router's stdio
// ---------------------------------------------------------------------------------------

fn call(r: &mut RouterProc, id: Value, tool: &str, args: Value) -> Value {
    r.request(id, "tools/call", json!({"name": tool, "arguments": args}))
}

/// The text of a tool result's first content item.
fn text(v: &Value) -> &str {
    v["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("expected a tool result with text, got {v}"))
}

/// Every page of `method` (`tools/list`, …): each item's raw JSON text, as written.
fn list_raw(r: &mut RouterProc, first_id: i64, method: &str, key: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 0..50 {
        let id = json!(first_id + page);
        let params = match &cursor {
            Some(c) => json!({"cursor": c}),
            None => json!({}),
        };
        r.send(&json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}));
        let (line, _) = r.response_line(&id);
        #[derive(serde::Deserialize)]
        struct Page<'a> {
            #[serde(borrow)]
            result: Option<BTreeMap<String, &'a RawValue>>,
        }
        let p: Page = serde_json::from_str(&line).unwrap();
        let res = p
            .result
            .unwrap_or_else(|| panic!("{method} failed: {line:.500}"));
        let list: Vec<&RawValue> = serde_json::from_str(
            res.get(key)
                .unwrap_or_else(|| panic!("{method}: no {key} in {line:.500}"))
                .get(),
        )
        .unwrap();
        out.extend(list.iter().map(|i| i.get().to_owned()));
        match res.get("nextCursor") {
            Some(c) => cursor = Some(serde_json::from_str(c.get()).unwrap()),
            None => return out,
        }
    }
    panic!("{method}: more than 50 pages");
}

/// Where the value of the top-level member `key` of the JSON object `raw` is (the bytes of
/// its JSON text, quotes included).
fn top_level_value(raw: &str, key: &str) -> Option<std::ops::Range<usize>> {
    let b = raw.as_bytes();
    let want = serde_json::to_string(key).unwrap();
    let (mut depth, mut i) = (0usize, 0usize);
    while i < b.len() {
        match b[i] {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth -= 1,
            b'"' => {
                let start = i;
                i += 1;
                while b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                let end = i + 1;
                if depth == 1 && raw[start..end] == want {
                    let mut j = end;
                    while b[j].is_ascii_whitespace() {
                        j += 1;
                    }
                    if b[j] == b':' {
                        j += 1;
                        while b[j].is_ascii_whitespace() {
                            j += 1;
                        }
                        let value = &raw[j..];
                        let mut de = serde_json::Deserializer::from_str(value).into_iter::<Value>();
                        de.next()?.ok()?;
                        return Some(j..j + de.byte_offset());
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

fn field(raw: &str, key: &str) -> String {
    let v: Value = serde_json::from_str(raw).unwrap();
    v[key].as_str().unwrap_or_default().to_owned()
}

/// A name a client may call (the tool name rule of the spec).
fn valid_name(n: &str) -> bool {
    (1..=64).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The simple glob of the filters: `*` any run, `?` one character.
fn glob(pattern: &str, s: &str) -> bool {
    fn go(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], s) || (!s.is_empty() && go(p, &s[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &s[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), s.as_bytes())
}

/// What a `{allow, deny}` filter lets through (no allow list: everything).
fn allowed(allow: &[&str], deny: &[&str], name: &str) -> bool {
    (allow.is_empty() || allow.iter().any(|p| glob(p, name))) && !deny.iter().any(|p| glob(p, name))
}

/// Each server's items of one list, directly: (prefix, raw items).
fn direct_lists(
    servers: &[(&str, &[String])],
    method: &str,
    key: &str,
) -> Vec<(String, Vec<String>)> {
    servers
        .iter()
        .map(|(prefix, cmd)| {
            let mut d = direct(cmd, &[]);
            handshake(&mut d, "2025-11-25", prefix);
            ((*prefix).to_owned(), list_raw(&mut d, 1, method, key))
        })
        .collect()
}

#[test]
fn initialize_is_answered_by_the_router_with_the_servers_merged() {
    let Some(p) = peers() else { return };
    for version in ["2025-11-25", "2025-03-26"] {
        // What each server answers alone.
        let alone: Vec<(&str, Value)> = [("py", p.sdk()), ("everything", p.everything())]
            .into_iter()
            .map(|(name, cmd)| {
                let mut d = direct(&cmd, &[]);
                (name, handshake(&mut d, version, name))
            })
            .collect();
        for (name, res) in &alone {
            assert_eq!(
                res["protocolVersion"], version,
                "precondition: {name} accepts {version} when alone"
            );
        }
        let mut r = router_with(&[
            server("py", &p.sdk(), json!({})),
            server("everything", &p.everything(), json!({"prefix": "ev"})),
            server(
                "off",
                &["/nonexistent/mcp-server".to_owned()],
                json!({"enabled": false}),
            ),
        ]);
        let res = handshake(&mut r, version, "the router");
        assert_eq!(
            res["serverInfo"]["name"], "mcp-router",
            "with several servers the router answers initialize itself: {res}"
        );
        assert_eq!(
            res["protocolVersion"], version,
            "every server accepts the client's {version}: the router answers with it: {res}"
        );
        let caps = res["capabilities"].as_object().expect("capabilities");
        let union: BTreeSet<&String> = alone
            .iter()
            .flat_map(|(_, a)| a["capabilities"].as_object().unwrap().keys())
            .collect();
        let got: BTreeSet<&String> = caps.keys().collect();
        assert_eq!(
            got, union,
            "the router's capabilities are the union of the servers' (py: {}, everything: {}); got {}",
            alone[0].1["capabilities"], alone[1].1["capabilities"], res["capabilities"]
        );
        for k in ["tools", "prompts", "resources"] {
            assert_eq!(
                caps[k]["listChanged"], true,
                "{k}.listChanged is true (a server's coming and going changes the lists): {}",
                res["capabilities"]
            );
        }
        let instructions = res["instructions"]
            .as_str()
            .unwrap_or_else(|| panic!("the router's instructions: expected text, got {res}"));
        for (name, a) in &alone {
            let theirs = a["instructions"].as_str().unwrap();
            assert!(
                section_has(instructions, name, theirs),
                "the instructions have a line \"## {name}\" followed by {name}'s own:\n{instructions:.1500}"
            );
        }
        assert!(
            !instructions.contains("## off"),
            "a disabled server has no section: {instructions:.1500}"
        );
        let pong = r.request(json!("p1"), "ping", json!({}));
        assert_eq!(pong["result"], json!({}), "ping is answered: {pong}");
        let tools = list_raw(&mut r, 100, "tools/list", "tools");
        assert!(
            !tools.iter().any(|t| field(t, "name").starts_with("off")),
            "a disabled server lists nothing"
        );
        r.finish_ok();
    }
}

/// A 2026-07-28 `server/discover`, as the SDK client sends it.
fn discover(r: &mut RouterProc, id: Value) -> Value {
    r.request(
        id,
        "server/discover",
        json!({"_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "e2e", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {},
        }}),
    )
}

#[test]
fn server_discover_is_answered_when_every_server_speaks_2026() {
    let Some(p) = peers() else { return };
    // Alone, the Python server answers discover.
    let mut alone = direct(&p.sdk(), &[]);
    let theirs = discover(&mut alone, json!(1));
    let theirs = result(&theirs, "precondition: the Python server answers discover");
    let py_instructions = theirs["instructions"].as_str().unwrap().to_owned();

    let mut r = router_with(&[
        server("py", &p.sdk(), json!({})),
        server("py2", &p.sdk(), json!({"prefix": "alt"})),
    ]);
    let v = discover(&mut r, json!(1));
    let res = result(&v, "server/discover with only 2026-07-28 servers");
    assert!(
        res["supportedVersions"]
            .as_array()
            .is_some_and(|v| v.contains(&json!("2026-07-28"))),
        "the router offers 2026-07-28: {v}"
    );
    for k in ["tools", "prompts", "resources"] {
        assert_eq!(
            res["capabilities"][k]["listChanged"], true,
            "capabilities.{k}.listChanged: {v}"
        );
    }
    let instructions = res["instructions"].as_str().unwrap_or_default();
    for name in ["py", "py2"] {
        assert!(
            section_has(instructions, name, &py_instructions),
            "a \"## {name}\" section: {v}"
        );
    }
    if let Some(info) = res["_meta"].get("io.modelcontextprotocol/serverInfo") {
        assert_eq!(info["name"], "mcp-router", "the router names itself: {v}");
    }
    r.finish_ok();
}

#[test]
fn server_discover_bridges_a_handshake_era_server() {
    let Some(p) = peers() else { return };
    let mut alone = direct(&p.everything(), &[]);
    let v = discover(&mut alone, json!(1));
    assert!(
        v.get("error").is_some(),
        "precondition: server-everything is of the handshake era: {v}"
    );
    let mut r = router_with(&[
        server("py", &p.sdk(), json!({})),
        server("everything", &p.everything(), json!({})),
    ]);
    let v = discover(&mut r, json!(1));
    let res = &v["result"];
    assert_eq!(res["supportedVersions"], json!(["2026-07-28"]), "{v}");
    // server-everything was initialized by the router: its part of the answer is there.
    let instructions = res["instructions"].as_str().unwrap_or("");
    assert!(instructions.contains("## everything"), "{v}");
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    let echoed = r.request(
        json!(2),
        "tools/call",
        json!({"name": "everything__echo", "arguments": {"message": "bridged"}, "_meta": meta}),
    );
    assert_eq!(text(&echoed), "Echo: bridged", "{echoed}");
    assert_eq!(echoed["result"]["resultType"], "complete", "{echoed}");
    r.finish_ok();
}

#[test]
fn a_template_two_servers_list_is_shown_for_each() {
    let Some(p) = peers() else { return };
    let mut r = router_with(&[
        server("py", &p.sdk(), json!({})),
        server("py2", &p.sdk(), json!({"prefix": "alt"})),
    ]);
    handshake(&mut r, "2025-11-25", "the router");
    // As for the static resource both list:
    let listed: Vec<String> = list_raw(&mut r, 10, "resources/list", "resources")
        .iter()
        .map(|t| field(t, "uri"))
        .collect();
    assert_eq!(
        listed,
        [
            "mcp-router://py/demo://static",
            "mcp-router://alt/demo://static"
        ]
    );
    let listed: Vec<String> = list_raw(&mut r, 1, "resources/templates/list", "resourceTemplates")
        .iter()
        .map(|t| field(t, "uriTemplate"))
        .collect();
    assert_eq!(
        listed,
        [
            "mcp-router://py/demo://greeting/{who}",
            "mcp-router://alt/demo://greeting/{who}"
        ],
        "both servers list demo://greeting/{{who}}: each is shown in the form naming it"
    );
    for prefix in ["py", "alt"] {
        let v = r.request(
            json!(prefix),
            "resources/read",
            json!({"uri": format!("mcp-router://{prefix}/demo://greeting/x")}),
        );
        assert_eq!(
            result(&v, "a read under the shown form")["contents"][0]["text"],
            "Greetings, x.",
            "{v}"
        );
    }
    r.finish_ok();
}

#[test]
fn lists_name_every_item_once_prefixed_and_otherwise_byte_identical() {
    let Some(p) = peers() else { return };
    let (sdk, everything) = (p.sdk(), p.everything());
    let servers: [(&str, &[String]); 2] = [("py", &sdk), ("ev", &everything)];
    let mut r = router_with(&[
        server("py", &sdk, json!({})),
        server("everything", &everything, json!({"prefix": "ev"})),
    ]);
    handshake(&mut r, "2025-11-25", "the router");
    for (i, (method, key)) in [("tools/list", "tools"), ("prompts/list", "prompts")]
        .into_iter()
        .enumerate()
    {
        let routed = list_raw(&mut r, 10 + 100 * i as i64, method, key);
        let mut by_name: BTreeMap<String, &str> = BTreeMap::new();
        for item in &routed {
            let name = field(item, "name");
            assert!(
                valid_name(&name),
                "{method}: {name:?} is not a valid name (^[A-Za-z0-9_-]{{1,64}}$)"
            );
            assert!(
                by_name.insert(name.clone(), item).is_none(),
                "{method}: {name} listed twice"
            );
        }
        let mut want = BTreeSet::new();
        for (prefix, items) in direct_lists(&servers, method, key) {
            for item in items {
                let name = format!("{prefix}{SEP}{}", field(&item, "name"));
                let Some(got) = by_name.get(&name) else {
                    panic!(
                        "{method}: {name} is missing; the router lists {:?}",
                        by_name.keys()
                    )
                };
                // The server's bytes with only the name's value replaced.
                let span = top_level_value(&item, "name")
                    .unwrap_or_else(|| panic!("{method}: no name in {item}"));
                let expect = format!(
                    "{}{}{}",
                    &item[..span.start],
                    serde_json::to_string(&name).unwrap(),
                    &item[span.end..]
                );
                assert_eq!(
                    **got, expect,
                    "{method}: {name}: byte for byte the server's item, but the name"
                );
                want.insert(name);
            }
        }
        let got: BTreeSet<String> = by_name.keys().cloned().collect();
        assert_eq!(got, want, "{method}: every item once, nothing else");
    }
    // Resources and templates: URIs unchanged (no two servers share one here), each item
    // byte for byte as the server wrote it.
    for (i, (method, key, uri)) in [
        ("resources/list", "resources", "uri"),
        (
            "resources/templates/list",
            "resourceTemplates",
            "uriTemplate",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let routed = list_raw(&mut r, 300 + 100 * i as i64, method, key);
        let mut count = 0;
        for (prefix, items) in direct_lists(&servers, method, key) {
            for item in items {
                assert!(
                    routed.contains(&item),
                    "{method}: {prefix}'s {} is not listed as the server wrote it ({item}); the router lists {routed:?}",
                    field(&item, uri)
                );
                count += 1;
            }
        }
        assert_eq!(routed.len(), count, "{method}: nothing else is listed");
    }

    // Routing: by prefixed name, by URI (a template's too), by completion ref; each answer
    // as the server gives it alone.
    let mut alone: Vec<RouterProc> = [&sdk, &everything]
        .into_iter()
        .map(|cmd| {
            let mut d = direct(cmd, &[]);
            handshake(&mut d, "2025-11-25", &cmd[0]);
            d
        })
        .collect();
    let (py, ev) = (0, 1);
    let cases = [
        (
            py,
            "tools/call",
            json!({"name": "add", "arguments": {"a": 2, "b": 40}}),
            json!({"name": "py__add", "arguments": {"a": 2, "b": 40}}),
        ),
        (
            ev,
            "tools/call",
            json!({"name": "get-sum", "arguments": {"a": 2, "b": 40}}),
            json!({"name": "ev__get-sum", "arguments": {"a": 2, "b": 40}}),
        ),
        (
            py,
            "prompts/get",
            json!({"name": "review", "arguments": {"code": "x = 1"}}),
            json!({"name": "py__review", "arguments": {"code": "x = 1"}}),
        ),
        (
            py,
            "resources/read",
            json!({"uri": "demo://greeting/aggregate"}),
            json!({"uri": "demo://greeting/aggregate"}),
        ),
        (
            ev,
            "completion/complete",
            json!({"ref": {"type": "ref/prompt", "name": "completable-prompt"}, "argument": {"name": "department", "value": "E"}}),
            json!({"ref": {"type": "ref/prompt", "name": "ev__completable-prompt"}, "argument": {"name": "department", "value": "E"}}),
        ),
    ];
    for (n, (which, method, plain, prefixed)) in cases.into_iter().enumerate() {
        let want = alone[which].request(json!(n), method, plain);
        let got = r.request(json!(1000 + n), method, prefixed.clone());
        assert_eq!(
            got.get("result"),
            want.get("result"),
            "{method} {prefixed}: the answer of the server alone ({want}); got {got}"
        );
        assert!(want.get("result").is_some(), "precondition: {want}");
    }
    // A URI of an everything template: only everything can read it.
    let v = r.request(
        json!("t"),
        "resources/read",
        json!({"uri": "demo://resource/dynamic/text/1"}),
    );
    let c = &result(&v, "resources/read of an everything template")["contents"][0];
    assert_eq!(c["uri"], "demo://resource/dynamic/text/1", "{v}");
    assert!(
        c["text"]
            .as_str()
            .unwrap_or_default()
            .starts_with("Resource 1:"),
        "{v}"
    );
    r.finish_ok();
}

#[test]
fn filters_hide_exactly_what_they_say() {
    let Some(p) = peers() else { return };
    let (sdk, everything) = (p.sdk(), p.everything());
    type Rule<'a> = (&'a [&'a str], &'a [&'a str]);
    let py_tools: Rule = (&[], &["crash", "wait_*"]);
    let py_prompts: Rule = (&[], &["*"]);
    let ev_tools: Rule = (&["echo", "get-*", "trigger-*"], &["trigger-sampling-*"]);
    let ev_prompts: Rule = (&["simple-prompt", "args-?rompt"], &[]);
    // Resources and templates are matched by URI.
    let py_resources: Rule = (&[], &[]);
    let ev_resources: Rule = (&[], &["*/extension.md", "demo://resource/dynamic/blob/*"]);
    let rule = |(allow, deny): Rule| json!({"allow": allow, "deny": deny});
    let mut r = router_with(&[
        server(
            "py",
            &sdk,
            json!({"tools": rule(py_tools), "prompts": rule(py_prompts)}),
        ),
        server(
            "everything",
            &everything,
            json!({"prefix": "ev", "tools": rule(ev_tools), "prompts": rule(ev_prompts),
                   "resources": rule(ev_resources)}),
        ),
    ]);
    handshake(&mut r, "2025-11-25", "the router");
    let servers: [(&str, &[String]); 2] = [("py", &sdk), ("ev", &everything)];
    for (i, (method, key, by, rules)) in [
        ("tools/list", "tools", "name", [py_tools, ev_tools]),
        ("prompts/list", "prompts", "name", [py_prompts, ev_prompts]),
        (
            "resources/list",
            "resources",
            "uri",
            [py_resources, ev_resources],
        ),
        (
            "resources/templates/list",
            "resourceTemplates",
            "uriTemplate",
            [py_resources, ev_resources],
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let mut want = BTreeSet::new();
        let mut hidden = 0;
        for ((prefix, items), (allow, deny)) in
            direct_lists(&servers, method, key).into_iter().zip(rules)
        {
            for item in items {
                let name = field(&item, by);
                if allowed(allow, deny, &name) {
                    // Names are prefixed; URIs (none shared here) are not.
                    want.insert(if by == "name" {
                        format!("{prefix}{SEP}{name}")
                    } else {
                        name
                    });
                } else {
                    hidden += 1;
                }
            }
        }
        assert!(
            hidden > 0 && !want.is_empty(),
            "precondition: {method}: the rules hide some, not all"
        );
        let got: BTreeSet<String> = list_raw(&mut r, 10 + 100 * i as i64, method, key)
            .iter()
            .map(|t| field(t, by))
            .collect();
        assert_eq!(got, want, "{method}: exactly what the filters let through");
    }
    assert!(!glob("args-?rompt", "args-prompts") && glob("args-?rompt", "args-prompt"));

    // A hidden tool cannot be called (and does not reach its server: `crash` would end it).
    let v = call(&mut r, json!(1), "py__crash", json!({}));
    assert!(
        v.get("error").is_some(),
        "calling a hidden tool is an error: {v}"
    );
    let v = r.request(
        json!(2),
        "prompts/get",
        json!({"name": "py__review", "arguments": {"code": "x"}}),
    );
    assert!(
        v.get("error").is_some(),
        "getting a hidden prompt is an error: {v}"
    );
    let (v, seen) = {
        r.send(&json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"py__echo","arguments":{"text":"alive"}}}));
        r.response(&json!(3))
    };
    assert_eq!(text(&v), "alive", "py is still up");
    assert!(
        !seen
            .iter()
            .any(|m| m["method"] == "notifications/tools/list_changed"),
        "py did not go down: {seen:?}"
    );
    r.finish_ok();
}

/// Sends a `tools/call` with a progress token and waits for the tool's first progress
/// notification (the SDK's `wait_cancel` reports progress 0 once it is waiting).
fn start_waiting(r: &mut RouterProc, id: i64, tool: &str, tag: &str, seconds: f64) {
    let token = format!("tok-{id}");
    r.send(
        &json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{
        "name": tool, "arguments": {"tag": tag, "seconds": seconds},
        "_meta": {"progressToken": token}}}),
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(m) = r.recv(left) else {
            panic!(
                "{tool} ({tag}) never reported that it waits\nstderr:\n{}",
                r.stderr()
            )
        };
        if m["method"] == "notifications/progress" && m["params"]["progressToken"] == token {
            return;
        }
        assert!(
            m.get("id") != Some(&json!(id)),
            "{tool} ({tag}) answered before it waited: {m}"
        );
    }
}

#[test]
fn a_cancelled_call_reaches_only_its_server() {
    let Some(p) = peers() else { return };
    let logs = tempfile::tempdir().unwrap();
    let py_log = logs.path().join("py-cancelled.log");
    let alt_log = logs.path().join("alt-cancelled.log");
    let env = |f: &Path| json!({"SDK_CANCEL_LOG": f.display().to_string()});
    let mut r = router_with(&[
        server("py", &p.sdk(), json!({"env": env(&py_log)})),
        server(
            "py2",
            &p.sdk(),
            json!({"prefix": "alt", "env": env(&alt_log)}),
        ),
    ]);
    handshake(&mut r, "2025-11-25", "the router");
    // Both servers are waiting in a call; the client cancels py's.
    start_waiting(&mut r, 10, "py__wait_cancel", "py-call", 20.0);
    start_waiting(&mut r, 11, "alt__wait_cancel", "alt-call", 2.0);
    r.send(&json!({"jsonrpc":"2.0","method":"notifications/cancelled",
        "params":{"requestId":10,"reason":"the user gave up"}}));
    assert!(
        wait_until(WAIT, || read_lines(&py_log) == ["py-call"]),
        "py saw the cancellation of its call: {:?}\nstderr:\n{}",
        read_lines(&py_log),
        r.stderr()
    );
    let (v, seen) = r.response(&json!(11));
    assert_eq!(
        text(&v),
        "alt-call not cancelled",
        "the other server's call ran to its end"
    );
    assert!(
        !seen
            .iter()
            .any(|m| m.get("id") == Some(&json!(10)) && m.get("result").is_some()),
        "no result for the cancelled call: {seen:?}"
    );
    assert!(
        read_lines(&alt_log).is_empty(),
        "the other python server saw no cancellation: {:?}",
        read_lines(&alt_log)
    );
    // Control: the other server's cancellations are seen in its own file.
    start_waiting(&mut r, 12, "alt__wait_cancel", "alt-control", 20.0);
    r.send(&json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":12}}));
    assert!(
        wait_until(WAIT, || read_lines(&alt_log) == ["alt-control"]),
        "py2 saw the cancellation of its call: {:?}",
        read_lines(&alt_log)
    );
    assert_eq!(read_lines(&py_log), ["py-call"]);
    let v = call(&mut r, json!(13), "py__echo", json!({"text": "after"}));
    assert_eq!(text(&v), "after", "the session goes on");
    r.finish_ok();
}

/// The `notifications/message` params among `msgs`.
fn log_records(msgs: &[Value]) -> Vec<&Value> {
    msgs.iter()
        .filter(|m| m["method"] == "notifications/message")
        .map(|m| &m["params"])
        .collect()
}

#[test]
fn logs_name_their_server_and_set_level_reaches_every_server_with_logging() {
    let Some(p) = peers() else { return };
    let mut r = router_with(&[
        server("py", &p.sdk(), json!({})),
        server("everything", &p.everything(), json!({"prefix": "ev"})),
    ]);
    handshake(&mut r, "2025-11-25", "the router");
    // py (no logging capability) logs anyway: `py`, or `py/<its logger>`.
    let v = r.request(json!(1), "logging/setLevel", json!({"level": "debug"}));
    assert!(v.get("result").is_some(), "logging/setLevel succeeds: {v}");
    r.send(&json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"py__chatty","arguments":{}}}));
    let (_, seen) = r.response(&json!(2));
    let recs = log_records(&seen);
    assert_eq!(
        recs,
        [
            &json!({"level":"info","logger":"py","data":"chatty says hello"}),
            &json!({"level":"warning","logger":"py","data":"chatty warns"}),
        ],
        "py's log records, logger set to the server's name"
    );
    r.send(&json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"py__log_as","arguments":{"logger":"db","text":"named"}}}));
    let (_, seen) = r.response(&json!(3));
    assert_eq!(
        log_records(&seen),
        [&json!({"level":"info","logger":"py/db","data":"named"})],
        "a server's own logger is kept after its name"
    );

    // everything's simulated logging sends one record at once (a random level, only if at
    // or above the level set), before the tool's reply.
    let mut id = 10;
    let mut toggle = |r: &mut RouterProc| {
        id += 1;
        r.send(&json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"ev__toggle-simulated-logging","arguments":{}}}));
        r.response(&json!(id)).1
    };
    let on = toggle(&mut r);
    let recs = log_records(&on);
    assert!(
        !recs.is_empty() && recs.iter().all(|l| l["logger"] == "everything"),
        "at level debug everything's record arrives, logger \"everything\": {on:?}"
    );
    toggle(&mut r); // off
    let v = r.request(json!(4), "logging/setLevel", json!({"level": "emergency"}));
    assert!(v.get("result").is_some(), "logging/setLevel succeeds: {v}");
    let mut records = Vec::new();
    for _ in 0..8 {
        records.extend(log_records(&toggle(&mut r)).into_iter().cloned()); // on
        records.extend(log_records(&toggle(&mut r)).into_iter().cloned()); // off
    }
    r.send(&json!({"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"ev__echo","arguments":{"message":"flush"}}}));
    records.extend(log_records(&r.response(&json!(5)).1).into_iter().cloned());
    let below: Vec<&Value> = records
        .iter()
        .filter(|l| l["logger"] == "everything" && l["level"] != "emergency")
        .collect();
    // Without the level, each of the 8 starts sends a random one of 8 levels.
    assert!(
        below.is_empty(),
        "everything got logging/setLevel emergency, so it sends nothing below: {below:?}"
    );
    r.finish_ok();
}

fn tool_names(r: &mut RouterProc, id: i64) -> BTreeSet<String> {
    list_raw(r, id, "tools/list", "tools")
        .iter()
        .map(|t| field(t, "name"))
        .collect()
}

fn with_prefix(names: &BTreeSet<String>, prefix: &str) -> BTreeSet<String> {
    let p = format!("{prefix}{SEP}");
    names
        .iter()
        .filter(|n| n.starts_with(&p))
        .cloned()
        .collect()
}

/// Waits for `notifications/tools/list_changed`, looking first at `seen`.
fn wait_list_changed(r: &RouterProc, seen: &mut Vec<Value>, why: &str) {
    let is_it = |m: &Value| m["method"] == "notifications/tools/list_changed";
    if let Some(i) = seen.iter().position(is_it) {
        seen.drain(..=i);
        return;
    }
    seen.clear();
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match r.recv(left) {
            Some(m) if is_it(&m) => return,
            Some(_) => {}
            None => panic!(
                "no notifications/tools/list_changed within {WAIT:?} ({why})\nstderr:\n{}",
                r.stderr()
            ),
        }
    }
}

#[test]
fn a_crashed_server_leaves_the_lists_and_comes_back() {
    let Some(p) = peers() else { return };
    let mut r = router_with(&[
        server(
            "py",
            &p.sdk(),
            json!({"reconnect": {"initial_delay_ms": 1500, "max_attempts": 5}}),
        ),
        server("everything", &p.everything(), json!({})),
    ]);
    handshake(&mut r, "2025-11-25", "the router");
    let before = tool_names(&mut r, 1);
    let py_tools = with_prefix(&before, "py");
    let ev_tools = with_prefix(&before, "everything");
    assert!(
        py_tools.contains("py__echo") && ev_tools.contains("everything__echo"),
        "both servers' tools: {before:?}"
    );
    // Settled: whatever the servers announced at start has arrived.
    let v = call(
        &mut r,
        json!(2),
        "everything__echo",
        json!({"message": "ready"}),
    );
    assert_eq!(text(&v), "Echo: ready");
    while r.recv(Duration::from_millis(100)).is_some() {}

    r.send(&json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"py__crash","arguments":{}}}));
    let (v, mut seen) = r.response(&json!(3));
    let crashed = Instant::now();
    assert!(
        v.get("error").is_some(),
        "the call that crashed its server gets an error: {v}"
    );
    r.send(&json!({"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"everything__echo","arguments":{"message":"still here"}}}));
    let (v, more) = r.response(&json!(4));
    seen.extend(more);
    assert_eq!(
        text(&v),
        "Echo: still here",
        "the other server keeps answering"
    );
    r.send(&json!({"jsonrpc":"2.0","id":5,"method":"ping"}));
    let (v, more) = r.response(&json!(5));
    seen.extend(more);
    assert_eq!(
        v["result"],
        json!({}),
        "ping is answered while py is down: {v}"
    );
    wait_list_changed(&r, &mut seen, "py went down");
    let down = tool_names(&mut r, 10);
    let elapsed = crashed.elapsed();
    assert!(
        with_prefix(&down, "py").is_empty(),
        "while py is down ({elapsed:?} after the crash, restart after 1.5 s) it lists no tools: {down:?}"
    );
    assert_eq!(
        with_prefix(&down, "everything"),
        ev_tools,
        "everything's stay"
    );

    // After the restart: another list_changed, and py's tools are back.
    let mut id = 20;
    loop {
        wait_list_changed(&r, &mut seen, "py came back");
        let now = tool_names(&mut r, id);
        id += 10;
        if !with_prefix(&now, "py").is_empty() {
            assert_eq!(now, before, "the same tools as before the crash");
            break;
        }
        assert!(
            crashed.elapsed() < WAIT,
            "py's tools did not come back: {now:?}\nstderr:\n{}",
            r.stderr()
        );
    }
    let v = call(&mut r, json!(100), "py__echo", json!({"text": "back"}));
    assert_eq!(text(&v), "back", "py answers again");
    r.finish_ok();
}

/// initialize through `r`: the router's own answer, with a section per server; then both
/// servers' tools are listed under their prefixes and answer.
fn serves_both(r: &mut RouterProc, names: &[&str]) {
    let res = handshake(r, "2025-11-25", "the router");
    assert_eq!(res["serverInfo"]["name"], "mcp-router", "{res}");
    let instructions = res["instructions"].as_str().unwrap_or_default();
    let tools = tool_names(r, 1);
    for (i, name) in names.iter().enumerate() {
        assert!(
            instructions.contains(&format!("## {name}\n")),
            "a section for {name}: {instructions:.800}"
        );
        let echo = format!("{name}{SEP}echo");
        assert!(tools.contains(&echo), "{echo} is listed: {tools:?}");
        let args = if *name == "everything" {
            json!({"message": "hi"})
        } else {
            json!({"text": "hi"})
        };
        let v = call(r, json!(10 + i), &echo, args);
        assert!(text(&v).ends_with("hi"), "{echo} answers: {v}");
    }
}

#[test]
fn a_claude_desktop_json_config_runs_its_servers() {
    let Some(p) = peers() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cancel_log = dir.path().join("cancelled.log");
    let sdk = p.sdk();
    let everything = p.everything();
    let file = json!({"mcpServers": {
        "py": {"command": sdk[0], "args": &sdk[1..],
               "env": {"SDK_CANCEL_LOG": cancel_log.display().to_string()}},
        "everything": {"command": everything[0], "args": &everything[1..]},
    }});
    std::fs::write(
        dir.path().join("claude_desktop_config.json"),
        serde_json::to_string_pretty(&file).unwrap(),
    )
    .unwrap();
    let mut r = RouterProc::start_in(dir, &["--config", "claude_desktop_config.json"], &[]);
    serves_both(&mut r, &["py", "everything"]);
    // The server's `env` reached it: its cancellation log is where the file says.
    start_waiting(&mut r, 20, "py__wait_cancel", "from-json", 20.0);
    r.send(&json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":20}}));
    assert!(
        wait_until(WAIT, || read_lines(&cancel_log) == ["from-json"]),
        "py got its env from the JSON file (SDK_CANCEL_LOG): {:?}",
        read_lines(&cancel_log)
    );
    r.finish_ok();
}

#[test]
fn repeated_server_flags_aggregate_commands_and_urls() {
    let Some(p) = peers() else { return };
    let web = sdk_net_server(&p.py, "streamable-http", free_port(), &[]);
    let py = format!("py={}", shell_line(&p.sdk()));
    let ev = format!("everything={}", shell_line(&p.everything()));
    let url = format!("web={}", web.url("/mcp"));
    let mut r = RouterProc::start(&["--server", &py, "--server", &ev, "--server", &url], &[]);
    serves_both(&mut r, &["py", "everything", "web"]);
    r.finish_ok();
}

/// A command line for a flag (the test's paths have no spaces or quotes).
fn shell_line(words: &[String]) -> String {
    for w in words {
        assert!(
            !w.contains([' ', '\'', '"', '\\']),
            "a path the test cannot quote simply: {w}"
        );
    }
    words.join(" ")
}
