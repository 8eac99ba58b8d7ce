//! Decision tests for aggregation in the core: three servers behind one core, the
//! client's messages planned, fanned out, merged and routed back; no I/O.

use super::*;
use crate::config::ItemFilter;

fn msg(s: &str) -> Message {
    Message::parse(Bytes::copy_from_slice(s.as_bytes())).unwrap()
}

fn json(b: &[u8]) -> serde_json::Value {
    serde_json::from_slice(b).unwrap()
}

struct H {
    core: Core,
    s: SessionId,
    rx: mpsc::Receiver<Bytes>,
}

const A: UpstreamId = UpstreamId(0);
const B: UpstreamId = UpstreamId(1);
const C: UpstreamId = UpstreamId(2);

fn server(name: &str) -> ServerSetup {
    ServerSetup {
        name: name.into(),
        prefix: name.into(),
        tools: ItemFilter::default(),
        prompts: ItemFilter::default(),
        resources: ItemFilter::default(),
    }
}

fn agg(servers: Vec<ServerSetup>) -> H {
    let core = Core::new(Limits {
        request_timeout: Duration::from_secs(30),
        max_queued_requests: 100,
    });
    for s in &servers {
        core.add_upstream(&s.name);
    }
    core.aggregate(AggregateSetup {
        separator: "__".into(),
        servers,
    });
    let (tx, rx) = mpsc::channel(64);
    let s = core.open_session(tx);
    H { core, s, rx }
}

fn three() -> H {
    agg(vec![server("a"), server("b"), server("c")])
}

impl H {
    fn send(&self, m: &str) -> ClientDecision {
        self.core.from_client(self.s, msg(m), Instant::now())
    }
    fn pull(&self, up: UpstreamId) -> Vec<Message> {
        let mut out = Vec::new();
        assert!(self.core.pull(up, 0, &mut out, 100));
        out
    }
    /// The one message `up` was sent; answered with `result` under its wire id.
    fn answer(&self, up: UpstreamId, result: &str) -> Option<Delivery> {
        let sent = self.pull(up);
        assert_eq!(sent.len(), 1, "{:?}", sent);
        let id = sent[0].id().unwrap().as_json().to_owned();
        self.core.from_upstream(
            up,
            0,
            msg(&format!(
                r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#
            )),
        )
    }
    fn notices(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(b) = self.rx.try_recv() {
            out.push(String::from_utf8_lossy(&b).into_owned());
        }
        out
    }
    fn init(&self) {
        for up in [A, B, C] {
            self.core.up(up);
        }
        assert!(matches!(self.send(INIT), ClientDecision::Accepted));
        self.answer(A, r#"{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"a"},"instructions":"A tools."}"#);
        self.answer(B, r#"{"protocolVersion":"2025-06-18","capabilities":{"tools":{"listChanged":true},"prompts":{}},"serverInfo":{"name":"b"}}"#);
        let d = self
            .answer(C, r#"{"protocolVersion":"2025-06-18","capabilities":{"resources":{"subscribe":true},"logging":{}},"serverInfo":{"name":"c"}}"#)
            .expect("merged initialize");
        let v = json(&d.bytes);
        assert_eq!(v["id"], 0);
        assert!(matches!(self.send(INITIALIZED), ClientDecision::Accepted));
        for up in [A, B, C] {
            assert_eq!(
                self.pull(up)
                    .iter()
                    .map(|m| m.method().unwrap_or("").to_owned())
                    .collect::<Vec<_>>(),
                ["notifications/initialized"]
            );
        }
    }
}

const INIT: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{"sampling":{}},"clientInfo":{"name":"cli","version":"1"}}}"#;
const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

#[test]
fn initialize_goes_to_every_server_with_the_clients_params_and_is_answered_merged() {
    let h = three();
    for up in [A, B, C] {
        h.core.up(up);
    }
    assert!(matches!(h.send(INIT), ClientDecision::Accepted));
    let sent = h.pull(A);
    // The client's own bytes, only the id is the router's.
    let wire = sent[0].id().unwrap().as_json().to_owned();
    assert!(wire.contains("mcp-router-agg-"), "{wire}");
    assert_eq!(
        String::from_utf8_lossy(sent[0].raw()),
        INIT.replace(r#""id":0"#, &format!(r#""id":{wire}"#))
    );
    let id = sent[0].id().unwrap().as_json().to_owned();
    assert!(h
        .core
        .from_upstream(A, 0, msg(&format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"protocolVersion":"2025-06-18","capabilities":{{"tools":{{}}}},"instructions":"A tools."}}}}"#)))
        .is_none());
    assert!(h
        .answer(
            B,
            r#"{"protocolVersion":"2025-03-26","capabilities":{"prompts":{}}}"#
        )
        .is_none());
    let d = h
        .answer(
            C,
            r#"{"protocolVersion":"2025-06-18","capabilities":{"resources":{"subscribe":true}}}"#,
        )
        .unwrap();
    let v = json(&d.bytes);
    assert_eq!(v["id"], 0);
    let r = &v["result"];
    assert_eq!(r["serverInfo"]["name"], "mcp-router");
    // B only agreed to 2025-03-26: the newest every server accepts.
    assert_eq!(r["protocolVersion"], "2025-03-26");
    assert_eq!(
        r["capabilities"],
        serde_json::json!({"tools":{"listChanged":true},"prompts":{"listChanged":true},"resources":{"subscribe":true,"listChanged":true}})
    );
    assert_eq!(r["instructions"], "## a\nA tools.");
}

#[test]
fn ping_is_answered_by_the_router() {
    let h = three();
    match h.send(r#"{"jsonrpc":"2.0","id":"p","method":"ping"}"#) {
        ClientDecision::Reply(b) => {
            assert_eq!(&b[..], br#"{"jsonrpc":"2.0","id":"p","result":{}}"#)
        }
        other => panic!("{other:?}"),
    }
    h.core.up(A);
    assert!(h.pull(A).is_empty());
}

#[test]
fn tools_are_listed_with_prefixes_and_calls_are_routed_back_with_the_original_name() {
    let h = three();
    h.init();
    assert!(matches!(
        h.send(r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#),
        ClientDecision::Accepted
    ));
    // C has no tools capability: it is not asked.
    assert!(h.pull(C).is_empty());
    assert!(h
        .answer(A, r#"{"tools":[{"name":"echo","description":"Echo  it","inputSchema":{"type":"object"}}]}"#)
        .is_none());
    let d = h
        .answer(
            B,
            r#"{"tools":[{"name":"echo","inputSchema":{}},{"name":"add","annotations":{"x":1}}]}"#,
        )
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&d.bytes),
        r#"{"jsonrpc":"2.0","id":5,"result":{"tools":[{"name":"a__echo","description":"Echo  it","inputSchema":{"type":"object"}},{"name":"b__echo","inputSchema":{}},{"name":"b__add","annotations":{"x":1}}]}}"#
    );
    assert!(matches!(
        h.send(r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"b__echo","arguments":{"t":"x"}}}"#),
        ClientDecision::Accepted
    ));
    let sent = h.pull(B);
    assert_eq!(
        String::from_utf8_lossy(sent[0].raw()),
        r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"echo","arguments":{"t":"x"}}}"#
    );
    // The reply passes through untouched.
    let reply = r#"{"jsonrpc":"2.0","id":6,"result":{"content":[]}}"#;
    let d = h.core.from_upstream(B, 0, msg(reply)).unwrap();
    assert_eq!(&d.bytes[..], reply.as_bytes());
    assert!(h.pull(A).is_empty());
}

#[test]
fn an_unknown_tool_is_a_clear_error_and_a_denied_one_cannot_be_called() {
    let mut b = server("b");
    b.tools = ItemFilter {
        allow: vec![],
        deny: vec!["sec*".into()],
    };
    let h = agg(vec![server("a"), b, server("c")]);
    h.init();
    match h.send(r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"zz__echo"}}"#) {
        ClientDecision::Reply(b) => {
            let v = json(&b);
            assert_eq!(v["error"]["code"], -32602);
            assert!(v["error"]["message"].as_str().unwrap().contains("zz__echo"));
        }
        other => panic!("{other:?}"),
    }
    match h.send(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"b__secret"}}"#)
    {
        ClientDecision::Reply(b) => assert!(String::from_utf8_lossy(&b).contains("hidden")),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        h.send(r#"{"jsonrpc":"2.0","id":8,"method":"tools/list"}"#),
        ClientDecision::Accepted
    ));
    h.answer(A, r#"{"tools":[]}"#);
    let d = h
        .answer(B, r#"{"tools":[{"name":"secret"},{"name":"open"}]}"#)
        .unwrap();
    let v = json(&d.bytes);
    assert_eq!(
        v["result"]["tools"],
        serde_json::json!([{"name":"b__open"}])
    );
}

#[test]
fn pages_of_every_server_are_walked_with_the_routers_cursor() {
    let h = three();
    h.init();
    h.send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
    h.answer(A, r#"{"tools":[{"name":"one"}],"nextCursor":"A2"}"#);
    let d = h.answer(B, r#"{"tools":[{"name":"two"}]}"#).unwrap();
    let v = json(&d.bytes);
    let cursor = v["result"]["nextCursor"].as_str().unwrap().to_owned();
    assert_ne!(cursor, "A2");
    h.send(&format!(
        r#"{{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{{"cursor":"{cursor}"}}}}"#
    ));
    assert!(h.pull(B).is_empty());
    let sent = h.pull(A);
    assert_eq!(json(sent[0].raw())["params"]["cursor"], "A2");
    let id = sent[0].id().unwrap().as_json().to_owned();
    let d = h
        .core
        .from_upstream(
            A,
            0,
            msg(&format!(
                r#"{{"jsonrpc":"2.0","id":{id},"result":{{"tools":[{{"name":"three"}}]}}}}"#
            )),
        )
        .unwrap();
    let v = json(&d.bytes);
    assert_eq!(
        v["result"],
        serde_json::json!({"tools":[{"name":"a__three"}]})
    );
    match h.send(r#"{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{"cursor":"bogus"}}"#) {
        ClientDecision::Reply(b) => assert_eq!(json(&b)["error"]["code"], -32602),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_server_that_goes_down_is_left_out_and_its_coming_back_is_announced() {
    let mut h = three();
    h.init();
    h.notices();
    let lost = RouterError::new(ErrorKind::UpstreamExited, "gone");
    let out = h.core.down(A, 0, &lost);
    let texts: Vec<String> = out
        .iter()
        .map(|d| String::from_utf8_lossy(&d.bytes).into_owned())
        .collect();
    assert_eq!(
        texts,
        [r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#]
    );
    h.send(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
    let d = h.answer(B, r#"{"tools":[{"name":"two"}]}"#).unwrap();
    assert_eq!(
        json(&d.bytes)["result"]["tools"],
        serde_json::json!([{"name":"b__two"}])
    );
    // Back (its supervisor replayed the handshake): the client hears about it.
    h.core.up(A);
    assert_eq!(
        h.notices(),
        [r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#]
    );
}

#[test]
fn a_server_that_misses_the_handshake_is_initialized_when_it_comes_up() {
    let mut h = three();
    h.core.up(A);
    h.core.up(B);
    // C is down: its part waits in its outbox; the answer does not wait past FANOUT_WAIT.
    let now = Instant::now();
    assert!(matches!(
        h.core.from_client(h.s, msg(INIT), now),
        ClientDecision::Accepted
    ));
    h.answer(
        A,
        r#"{"protocolVersion":"2025-06-18","capabilities":{"tools":{}}}"#,
    );
    assert!(h
        .answer(B, r#"{"protocolVersion":"2025-06-18","capabilities":{}}"#)
        .is_none());
    let out = h.core.expire(now + aggregating::FANOUT_WAIT);
    assert_eq!(out.len(), 1);
    assert_eq!(
        json(&out[0].bytes)["result"]["capabilities"],
        serde_json::json!({"tools":{"listChanged":true}})
    );
    h.send(INITIALIZED);
    h.pull(A);
    h.pull(B);
    // C comes up: it gets the client's initialize (still queued), then initialized.
    h.core.up(C);
    let d = h.answer(
        C,
        r#"{"protocolVersion":"2025-06-18","capabilities":{"prompts":{}}}"#,
    );
    assert!(d.is_none());
    let sent = h.pull(C);
    assert_eq!(
        sent.iter()
            .map(|m| m.method().unwrap_or(""))
            .collect::<Vec<_>>(),
        ["notifications/initialized"]
    );
    assert_eq!(
        h.notices(),
        [r#"{"jsonrpc":"2.0","method":"notifications/prompts/list_changed"}"#]
    );
}

#[test]
fn log_messages_name_their_server_and_set_level_reaches_every_server_with_logging() {
    let h = three();
    h.init();
    let d = h
        .core
        .from_upstream(C, 0, msg(r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"hi"}}"#))
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&d.bytes),
        r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"logger":"c","level":"info","data":"hi"}}"#
    );
    let d = h
        .core
        .from_upstream(C, 0, msg(r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","logger":"db","data":"hi"}}"#))
        .unwrap();
    assert!(String::from_utf8_lossy(&d.bytes).contains(r#""logger":"c/db""#));
    assert!(matches!(
        h.send(
            r#"{"jsonrpc":"2.0","id":9,"method":"logging/setLevel","params":{"level":"debug"}}"#
        ),
        ClientDecision::Accepted
    ));
    assert!(h.pull(A).is_empty());
    let d = h.answer(C, "{}").unwrap();
    assert_eq!(&d.bytes[..], br#"{"jsonrpc":"2.0","id":9,"result":{}}"#);
}

#[test]
fn resources_route_by_uri_and_a_shared_uri_is_made_unique_per_server() {
    let h = agg(vec![server("a"), server("b")]);
    for up in [A, B] {
        h.core.up(up);
    }
    h.send(INIT);
    h.answer(
        A,
        r#"{"protocolVersion":"2025-06-18","capabilities":{"resources":{}}}"#,
    );
    h.answer(
        B,
        r#"{"protocolVersion":"2025-06-18","capabilities":{"resources":{}}}"#,
    )
    .unwrap();
    h.send(r#"{"jsonrpc":"2.0","id":1,"method":"resources/list"}"#);
    h.answer(
        A,
        r#"{"resources":[{"uri":"file:///x","name":"x"},{"uri":"a://only","name":"o"}]}"#,
    );
    let d = h
        .answer(B, r#"{"resources":[{"uri":"file:///x","name":"x"}]}"#)
        .unwrap();
    let v = json(&d.bytes);
    let uris: Vec<&str> = v["result"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["uri"].as_str().unwrap())
        .collect();
    assert_eq!(
        uris,
        [
            "mcp-router://a/file:///x",
            "a://only",
            "mcp-router://b/file:///x"
        ]
    );
    h.send(r#"{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"mcp-router://b/file:///x"}}"#);
    assert!(h.pull(A).is_empty());
    assert_eq!(
        String::from_utf8_lossy(h.pull(B)[0].raw()),
        r#"{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///x"}}"#
    );
    h.send(r#"{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"a://only"}}"#);
    assert_eq!(h.pull(A).len(), 1);
    // A template both list is shown per server, and what the client makes of it routes.
    h.send(r#"{"jsonrpc":"2.0","id":4,"method":"resources/templates/list"}"#);
    h.answer(
        A,
        r#"{"resourceTemplates":[{"uriTemplate":"g://{x}","name":"g"}]}"#,
    );
    let d = h
        .answer(B, r#"{"resourceTemplates":[{"uriTemplate":"g://{x}","name":"g"},{"uriTemplate":"b://{y}","name":"h"}]}"#)
        .unwrap();
    let v = json(&d.bytes);
    let shown: Vec<&str> = v["result"]["resourceTemplates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["uriTemplate"].as_str().unwrap())
        .collect();
    assert_eq!(
        shown,
        [
            "mcp-router://a/g://{x}",
            "mcp-router://b/g://{x}",
            "b://{y}"
        ]
    );
    h.send(r#"{"jsonrpc":"2.0","id":5,"method":"resources/read","params":{"uri":"mcp-router://b/g://7"}}"#);
    assert_eq!(json(h.pull(B)[0].raw())["params"]["uri"], "g://7");
    h.send(r#"{"jsonrpc":"2.0","id":6,"method":"resources/read","params":{"uri":"b://1"}}"#);
    assert_eq!(h.pull(B).len(), 1);
    assert!(h.pull(A).is_empty());
    // An update of the shared URI names it as this server's.
    let d = h
        .core
        .from_upstream(B, 0, msg(r#"{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"file:///x"}}"#))
        .unwrap();
    assert_eq!(json(&d.bytes)["params"]["uri"], "mcp-router://b/file:///x");
}

#[test]
fn a_cancelled_call_reaches_only_the_server_that_has_it() {
    let h = three();
    h.init();
    h.send(r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"b__slow"}}"#);
    assert_eq!(h.pull(B).len(), 1);
    h.send(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":4}}"#);
    assert!(h.pull(A).is_empty());
    assert!(h.pull(C).is_empty());
    assert_eq!(h.pull(B)[0].method(), Some("notifications/cancelled"));
}

#[test]
fn server_requests_from_two_servers_under_one_id_reach_the_client_apart_and_answers_go_back() {
    let h = three();
    h.init();
    let d1 = h
        .core
        .from_upstream(
            A,
            0,
            msg(r#"{"jsonrpc":"2.0","id":1,"method":"sampling/createMessage"}"#),
        )
        .unwrap();
    let d2 = h
        .core
        .from_upstream(
            B,
            0,
            msg(r#"{"jsonrpc":"2.0","id":1,"method":"elicitation/create"}"#),
        )
        .unwrap();
    let id2 = json(&d2.bytes)["id"].clone();
    assert_eq!(json(&d1.bytes)["id"], 1);
    assert_ne!(id2, serde_json::json!(1));
    h.send(&format!(
        r#"{{"jsonrpc":"2.0","id":{id2},"result":{{"action":"accept"}}}}"#
    ));
    assert_eq!(
        &h.pull(B)[0].raw()[..],
        br#"{"jsonrpc":"2.0","id":1,"result":{"action":"accept"}}"#
    );
    h.send(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#);
    assert_eq!(h.pull(A).len(), 1);
}

#[test]
fn a_server_cancelling_its_request_is_told_to_the_client_under_the_id_it_was_shown() {
    let h = three();
    h.init();
    h.core
        .from_upstream(
            A,
            0,
            msg(r#"{"jsonrpc":"2.0","id":1,"method":"roots/list"}"#),
        )
        .unwrap();
    let shown = h
        .core
        .from_upstream(
            B,
            0,
            msg(r#"{"jsonrpc":"2.0","id":1,"method":"roots/list"}"#),
        )
        .unwrap();
    let shown = json(&shown.bytes)["id"].clone();
    let d = h
        .core
        .from_upstream(
            B,
            0,
            msg(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#),
        )
        .unwrap();
    assert_eq!(json(&d.bytes)["params"]["requestId"], shown);
    // Withdrawn: the client's late answer goes nowhere; A's request is still A's.
    h.send(&format!(
        r#"{{"jsonrpc":"2.0","id":{shown},"result":{{}}}}"#
    ));
    assert!(h.pull(B).is_empty());
    h.send(r#"{"jsonrpc":"2.0","id":1,"result":{"roots":[]}}"#);
    assert_eq!(h.pull(A).len(), 1);
}

#[test]
fn discover_merges_every_server_and_a_handshake_only_one_is_initialized_for_the_client() {
    let h = agg(vec![server("a"), server("b")]);
    h.core.up(A);
    h.core.up(B);
    let d = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{{{META}}}}}"#);
    h.send(&d);
    assert!(h
        .answer(A, r#"{"supportedVersions":["2026-07-28"],"capabilities":{"tools":{}},"instructions":"A.","resultType":"complete"}"#)
        .is_none());
    let sent = h.pull(B);
    let id = sent[0].id().unwrap().as_json().to_owned();
    let refused = format!(
        r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":-32601,"message":"Method not found"}}}}"#
    );
    assert!(
        h.core.from_upstream(B, 0, msg(&refused)).is_none(),
        "waits for B's initialize"
    );
    let d = h
        .answer(
            B,
            r#"{"protocolVersion":"2025-11-25","capabilities":{"prompts":{}},"instructions":"B."}"#,
        )
        .expect("the merged discover answer");
    let v = json(&d.bytes);
    assert_eq!(v["id"], 1);
    let r = &v["result"];
    assert_eq!(r["supportedVersions"], serde_json::json!(["2026-07-28"]));
    assert_eq!(
        r["capabilities"],
        serde_json::json!({"tools":{"listChanged":true},"prompts":{"listChanged":true}})
    );
    assert_eq!(r["instructions"], "## a\nA.\n\n## b\nB.");
    assert_eq!(
        r["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "mcp-router"
    );
    assert_eq!(h.pull(B)[0].method(), Some("notifications/initialized"));
}

const META: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"elicitation":{}},"io.modelcontextprotocol/clientInfo":{"name":"cli","version":"2"}}"#;

/// Two servers up and a pinned 2026-07-28 client whose first request is tools/list: A
/// speaks 2026-07-28, B only the handshake era (bridged by the router).
fn stateless_pair() -> H {
    let h = agg(vec![server("a"), server("b")]);
    h.core.up(A);
    h.core.up(B);
    let list = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{{{META}}}}}"#);
    assert!(matches!(h.send(&list), ClientDecision::Accepted));
    let methods = |ms: &[Message]| -> Vec<String> {
        ms.iter()
            .map(|m| m.method().unwrap_or("").to_owned())
            .collect()
    };
    for up in [A, B] {
        // The probe goes first, and alone: the request waits for its answer.
        let sent = h.pull(up);
        assert_eq!(methods(&sent), ["server/discover"]);
        let probe = json(sent[0].raw());
        assert_eq!(
            probe["params"]["_meta"]["io.modelcontextprotocol/clientInfo"]["name"],
            "cli"
        );
        let pid = sent[0].id().unwrap().as_json().to_owned();
        let probe_reply = if up == A {
            format!(
                r#"{{"jsonrpc":"2.0","id":{pid},"result":{{"supportedVersions":["2026-07-28"],"capabilities":{{"tools":{{}}}},"resultType":"complete"}}}}"#
            )
        } else {
            format!(
                r#"{{"jsonrpc":"2.0","id":{pid},"error":{{"code":-32601,"message":"Method not found"}}}}"#
            )
        };
        assert!(h.core.from_upstream(up, 0, msg(&probe_reply)).is_none());
        if up == B {
            // B refused discover: the router initializes it with the client's
            // capabilities, still before the client's request.
            let init = h.pull(B);
            assert_eq!(methods(&init), ["initialize"]);
            let v = json(init[0].raw());
            assert_eq!(
                v["params"]["capabilities"],
                serde_json::json!({"elicitation":{}})
            );
            assert_eq!(v["params"]["clientInfo"]["name"], "cli");
            let id = init[0].id().unwrap().as_json().to_owned();
            h.core.from_upstream(B, 0, msg(&format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"protocolVersion":"2025-11-25","capabilities":{{"tools":{{}}}}}}}}"#)));
        }
        let sent = h.pull(up);
        let expected: &[&str] = if up == A {
            &["tools/list"]
        } else {
            &["notifications/initialized", "tools/list"]
        };
        assert_eq!(methods(&sent), expected);
        let lid = sent.last().unwrap().id().unwrap().as_json().to_owned();
        let tools = if up == A {
            r#"{"tools":[{"name":"x"}],"resultType":"complete","ttlMs":5,"cacheScope":"private"}"#
        } else {
            r#"{"tools":[{"name":"y"}]}"#
        };
        let d = h.core.from_upstream(
            up,
            0,
            msg(&format!(
                r#"{{"jsonrpc":"2.0","id":{lid},"result":{tools}}}"#
            )),
        );
        if up == B {
            let v = json(&d.expect("merged list").bytes);
            assert_eq!(
                v["result"]["tools"],
                serde_json::json!([{"name":"a__x"},{"name":"b__y"}])
            );
            // The shortest: B (handshake era) writes none, which means 0.
            assert_eq!(v["result"]["ttlMs"], 0);
        }
    }
    h
}

#[test]
fn a_pinned_2026_client_has_servers_probed_and_a_handshake_only_server_bridged() {
    let h = stateless_pair();
    let call = format!(
        r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"b__y",{META},"arguments":{{}}}}}}"#
    );
    h.send(&call);
    // The handshake-era server gets the call without the 2026 keys of _meta.
    assert_eq!(
        String::from_utf8_lossy(h.pull(B)[0].raw()),
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"y","_meta":{},"arguments":{}}}"#
    );
    // Its result gets what the 2026-07-28 wire requires, nothing else changes.
    let d = h
        .core
        .from_upstream(
            B,
            0,
            msg(r#"{"jsonrpc":"2.0","id":2,"result":{"content":[]}}"#),
        )
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&d.bytes),
        r#"{"jsonrpc":"2.0","id":2,"result":{"resultType":"complete","content":[]}}"#
    );
    h.send(
        &call
            .replace("b__y", "a__x")
            .replace(r#""id":2"#, r#""id":3"#),
    );
    let sent = h.pull(A);
    assert!(String::from_utf8_lossy(sent[0].raw()).contains("io.modelcontextprotocol/clientInfo"));
    // B asks the client something: a 2026-07-28 client takes no server requests.
    assert!(h
        .core
        .from_upstream(
            B,
            0,
            msg(r#"{"jsonrpc":"2.0","id":7,"method":"elicitation/create","params":{}}"#)
        )
        .is_none());
    let refused = json(h.pull(B)[0].raw());
    assert_eq!(refused["id"], 7);
    assert_eq!(refused["error"]["code"], -32601);
}

#[test]
fn listen_streams_merge_with_the_clients_subscription_id_and_cancel_at_every_server() {
    let mut h = stateless_pair();
    h.notices();
    let listen = format!(
        r#"{{"jsonrpc":"2.0","id":"L","method":"subscriptions/listen","params":{{"notifications":{{"toolsListChanged":true}},{META}}}}}"#
    );
    match h.send(&listen) {
        ClientDecision::Reply(ack) => {
            let v = json(&ack);
            assert_eq!(v["method"], "notifications/subscriptions/acknowledged");
            assert_eq!(
                v["params"]["notifications"],
                serde_json::json!({"toolsListChanged": true})
            );
            assert_eq!(
                v["params"]["_meta"]["io.modelcontextprotocol/subscriptionId"],
                "L"
            );
        }
        other => panic!("{other:?}"),
    }
    // Only the 2026-07-28 server has listen streams.
    assert!(h.pull(B).is_empty());
    let part = h.pull(A);
    assert_eq!(part[0].method(), Some("subscriptions/listen"));
    let pid = part[0].id().unwrap().as_json().to_owned();
    let ack = format!(
        r#"{{"jsonrpc":"2.0","method":"notifications/subscriptions/acknowledged","params":{{"notifications":{{}},"_meta":{{"io.modelcontextprotocol/subscriptionId":{pid}}}}}}}"#
    );
    assert!(
        h.core.from_upstream(A, 0, msg(&ack)).is_none(),
        "the router acknowledged already"
    );
    let frame = format!(
        r#"{{"jsonrpc":"2.0","method":"notifications/tools/list_changed","params":{{"_meta":{{"io.modelcontextprotocol/subscriptionId":{pid}}}}}}}"#
    );
    let d = h.core.from_upstream(A, 0, msg(&frame)).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&d.bytes),
        r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed","params":{"_meta":{"io.modelcontextprotocol/subscriptionId":"L"}}}"#
    );
    // The handshake-era server's change goes on the client's stream too.
    let d = h
        .core
        .from_upstream(
            B,
            0,
            msg(r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#),
        )
        .unwrap();
    assert!(String::from_utf8_lossy(&d.bytes)
        .contains(r#""io.modelcontextprotocol/subscriptionId":"L""#));
    // No request timeout on a listen stream.
    assert!(h
        .core
        .expire(Instant::now() + Duration::from_secs(3600))
        .is_empty());
    h.send(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"L"}}"#);
    let cancel = json(h.pull(A)[0].raw());
    assert_eq!(cancel["method"], "notifications/cancelled");
    assert_eq!(cancel["params"]["requestId"].to_string(), pid);
    assert!(h.pull(B).is_empty());
    // After the stream ended, changes have nowhere to go.
    assert!(h
        .core
        .from_upstream(
            B,
            0,
            msg(r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#)
        )
        .is_none());
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            ".{0,12}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                proptest::collection::btree_map("[a-z_]{1,6}", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// A call's name is the only thing rewritten on the way to the server, and putting
        /// the shown name back gives the client's bytes exactly.
        #[test]
        fn a_routed_call_differs_only_in_its_name(args in json_value(), name in "[A-Za-z0-9_-]{1,30}", id in 0u32..1000) {
            let h = three();
            for up in [A, B, C] {
                h.core.up(up);
            }
            let args = serde_json::to_string(&args).unwrap();
            let client = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"arguments":{args},"name":"b__{name}"}}}}"#);
            prop_assert!(matches!(h.send(&client), ClientDecision::Accepted));
            let sent = h.pull(B);
            prop_assert_eq!(sent.len(), 1);
            let forwarded = String::from_utf8(sent[0].raw().to_vec()).unwrap();
            let expected = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"arguments":{args},"name":"{name}"}}}}"#);
            prop_assert_eq!(&forwarded, &expected);
            let span = crate::wire::rewrite::find(forwarded.as_bytes(), &["params", "name"]).unwrap();
            let quoted = crate::wire::rewrite::quote(&format!("b__{name}"));
            let restored = crate::wire::rewrite::splice(forwarded.as_bytes(), &[(span, quoted.as_bytes())]);
            prop_assert_eq!(String::from_utf8(restored).unwrap(), client);
        }

        /// Whatever a server lists, the merged items are its items byte for byte except
        /// the spliced name, and every shown name routes back to that item.
        #[test]
        fn merged_items_are_the_servers_bytes_but_the_name(extra in json_value(), names in proptest::collection::btree_set("[a-z.]{1,8}", 1..6)) {
            let h = three();
            h.init();
            h.send(r#"{"jsonrpc":"2.0","id":"l","method":"tools/list"}"#);
            let extra = serde_json::to_string(&extra).unwrap();
            let items: Vec<String> = names.iter().map(|n| format!(r#"{{"name":"{n}","x":{extra}}}"#)).collect();
            h.answer(A, r#"{"tools":[]}"#);
            let d = h.answer(B, &format!(r#"{{"tools":[{}]}}"#, items.join(","))).unwrap();
            let v = json(&d.bytes);
            let shown = v["result"]["tools"].as_array().unwrap().clone();
            prop_assert_eq!(shown.len(), names.len());
            for (item, original) in shown.iter().zip(&names) {
                let exposed = item["name"].as_str().unwrap().to_owned();
                prop_assert_eq!(&item["x"], &serde_json::from_str::<serde_json::Value>(&extra).unwrap());
                let call = format!(r#"{{"jsonrpc":"2.0","id":"c","method":"tools/call","params":{{"name":"{exposed}"}}}}"#);
                prop_assert!(matches!(h.send(&call), ClientDecision::Accepted));
                let sent = h.pull(B);
                let forwarded = json(sent[0].raw());
                prop_assert_eq!(forwarded["params"]["name"].as_str(), Some(original.as_str()));
                let id = sent[0].id().unwrap().as_json().to_owned();
                h.core.from_upstream(B, 0, msg(&format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#)));
            }
        }
    }
}

#[test]
fn a_handshake_era_servers_request_reaches_a_2026_client_as_input_required() {
    let h = stateless_pair();
    let call = format!(
        r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"b__y",{META},"arguments":{{}}}}}}"#
    );
    h.send(&call);
    assert_eq!(h.pull(B).len(), 1);
    // B asks the client while the call runs: the call answers input_required.
    let d = h
        .core
        .from_upstream(B, 0, msg(r#"{"jsonrpc":"2.0","id":7,"method":"elicitation/create","params":{"message":"Name?"}}"#))
        .unwrap();
    let v = json(&d.bytes);
    assert_eq!(v["id"], 2);
    assert_eq!(v["result"]["resultType"], "input_required");
    assert_eq!(
        v["result"]["inputRequests"]["server"],
        serde_json::json!({"method":"elicitation/create","params":{"message":"Name?"}})
    );
    let state = v["result"]["requestState"].as_str().unwrap().to_owned();
    // The client considers id 2 answered: it may use it again at once.
    let ping = h.send(r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#);
    assert!(matches!(ping, ClientDecision::Reply(_)));
    // Its retry carries the answer: B gets it under its own id; nothing else is sent.
    let retry = format!(
        r#"{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{{"name":"b__y",{META},"arguments":{{}},"inputResponses":{{"server":{{"action":"accept","content":{{"name":"Ada"}}}}}},"requestState":"{state}"}}}}"#
    );
    assert!(matches!(h.send(&retry), ClientDecision::Accepted));
    assert_eq!(
        String::from_utf8_lossy(h.pull(B)[0].raw()),
        r#"{"jsonrpc":"2.0","id":7,"result":{"action":"accept","content":{"name":"Ada"}}}"#
    );
    // The call's result goes to the retry.
    let d = h
        .core
        .from_upstream(B, 0, msg(r#"{"jsonrpc":"2.0","id":2,"result":{"content":[{"type":"text","text":"Hello, Ada"}]}}"#))
        .unwrap();
    let v = json(&d.bytes);
    assert_eq!(v["id"], 3);
    assert_eq!(v["result"]["resultType"], "complete");
    assert_eq!(h.core.pending_len(), 0);
}

#[test]
fn a_parked_call_that_times_out_answers_its_retry_with_the_timeout() {
    let h = stateless_pair();
    let call = format!(
        r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"b__y",{META}}}}}"#
    );
    h.send(&call);
    h.pull(B);
    let d = h
        .core
        .from_upstream(
            B,
            0,
            msg(r#"{"jsonrpc":"2.0","id":7,"method":"roots/list"}"#),
        )
        .unwrap();
    let state = json(&d.bytes)["result"]["requestState"]
        .as_str()
        .unwrap()
        .to_owned();
    // The timeout is not sent: the client was answered already.
    assert!(h
        .core
        .expire(Instant::now() + Duration::from_secs(31))
        .is_empty());
    let retry = format!(
        r#"{{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{{"name":"b__y","requestState":"{state}","inputResponses":{{"server":{{"roots":[]}}}}}}}}"#
    );
    match h.send(&retry) {
        ClientDecision::Reply(b) => {
            let v = json(&b);
            assert_eq!(v["id"], 4);
            assert_eq!(v["error"]["data"]["kind"], "timeout");
        }
        other => panic!("{other:?}"),
    }
}
