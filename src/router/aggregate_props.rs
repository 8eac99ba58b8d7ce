//! Property test for aggregation in the core: three servers, one client, random
//! interleavings of routed calls, fan-out lists, pings, cancels, servers coming, going and
//! failing, replies (right, duplicated, late) and timeouts; against the contract "every
//! client request gets exactly one reply, under its own id; nothing waits forever".

use std::collections::HashSet;

use proptest::prelude::*;

use super::*;
use crate::config::ItemFilter;

const N: usize = 3;
const IDS: [&str; 4] = ["1", "2", "\"a\"", "\"1\""];

#[derive(Debug, Clone)]
enum Step {
    Call {
        id: usize,
        server: usize,
    },
    List {
        id: usize,
    },
    Ping {
        id: usize,
    },
    Cancel {
        id: usize,
    },
    Up {
        server: usize,
    },
    Down {
        server: usize,
    },
    Fail {
        server: usize,
    },
    Pull {
        server: usize,
    },
    Reply {
        server: usize,
        pick: usize,
        twice: bool,
    },
    Expire {
        secs: u64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..IDS.len(), 0..N).prop_map(|(id, server)| Step::Call { id, server }),
        2 => (0..IDS.len()).prop_map(|id| Step::List { id }),
        1 => (0..IDS.len()).prop_map(|id| Step::Ping { id }),
        1 => (0..IDS.len()).prop_map(|id| Step::Cancel { id }),
        1 => (0..N).prop_map(|server| Step::Up { server }),
        1 => (0..N).prop_map(|server| Step::Down { server }),
        1 => (0..N).prop_map(|server| Step::Fail { server }),
        4 => (0..N).prop_map(|server| Step::Pull { server }),
        4 => (0..N, 0..8usize, any::<bool>()).prop_map(|(server, pick, twice)| Step::Reply { server, pick, twice }),
        1 => (1..15u64).prop_map(|secs| Step::Expire { secs }),
    ]
}

struct World {
    core: Core,
    s: SessionId,
    rx: mpsc::Receiver<Bytes>,
    now: Instant,
    /// Client ids waiting for their reply.
    open: HashSet<String>,
    /// Cancelled ids: at most one reply may still come (a race the client accepts).
    cancelled: HashSet<String>,
    gen: [u64; N],
    up: [bool; N],
    failed: [bool; N],
    /// Requests each server received on its current connection: (wire id, method).
    received: [Vec<(String, String)>; N],
}

fn msg(s: &str) -> Message {
    Message::parse(Bytes::copy_from_slice(s.as_bytes())).unwrap()
}

impl World {
    fn new() -> Self {
        let core = Core::new(Limits {
            request_timeout: Duration::from_secs(30),
            max_queued_requests: 4,
        });
        let mut servers = Vec::new();
        for i in 0..N {
            let name = format!("s{i}");
            core.add_upstream(&name);
            servers.push(ServerSetup {
                name: name.clone(),
                prefix: name,
                tools: ItemFilter::default(),
                prompts: ItemFilter::default(),
                resources: ItemFilter::default(),
            });
        }
        core.aggregate(AggregateSetup {
            separator: "__".into(),
            servers,
        });
        let (tx, rx) = mpsc::channel(100_000);
        let s = core.open_session(tx);
        let mut w = World {
            core,
            s,
            rx,
            now: Instant::now(),
            open: HashSet::new(),
            cancelled: HashSet::new(),
            gen: [0; N],
            up: [false; N],
            failed: [false; N],
            received: Default::default(),
        };
        // The handshake, answered by every server.
        for i in 0..N {
            w.core.up(UpstreamId(i as u32));
            w.up[i] = true;
        }
        w.client(r#"{"jsonrpc":"2.0","id":"init","method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{}}}"#, "\"init\"")
            .unwrap();
        for i in 0..N {
            w.pull(i).unwrap();
            w.reply(i, 0, false).unwrap();
        }
        w.client(
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            "",
        )
        .unwrap();
        w
    }

    fn check(&mut self, bytes: &Bytes) -> Result<(), String> {
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
        if v.get("method").is_some() {
            return Ok(());
        }
        let id = v["id"].to_string();
        if self.open.remove(&id) {
            return Ok(());
        }
        if self.cancelled.remove(&id) {
            return Ok(());
        }
        Err(format!(
            "a reply for no open request: {}",
            String::from_utf8_lossy(bytes)
        ))
    }

    fn drain(&mut self) -> Result<(), String> {
        while let Ok(b) = self.rx.try_recv() {
            self.check(&b)?;
        }
        Ok(())
    }

    fn deliver(&mut self, ds: Vec<Delivery>) -> Result<(), String> {
        for d in ds {
            self.check(&d.bytes)?;
        }
        self.drain()
    }

    /// A client message; `id` (its JSON) is opened unless it is already in flight.
    fn client(&mut self, text: &str, id: &str) -> Result<(), String> {
        let dup = !id.is_empty() && self.open.contains(id);
        if !id.is_empty() && !dup {
            self.open.insert(id.to_owned());
            self.cancelled.remove(id);
        }
        match self.core.from_client(self.s, msg(text), self.now) {
            ClientDecision::Reply(b) => {
                if dup {
                    // The in-use error for the duplicate: the first stays open.
                    let v: serde_json::Value =
                        serde_json::from_slice(&b).map_err(|e| e.to_string())?;
                    if v["error"].is_null() {
                        return Err(format!("a duplicate id was not refused: {v}"));
                    }
                } else {
                    self.check(&b)?;
                }
            }
            _ if dup => return Err(format!("a duplicate id {id} was accepted")),
            _ => {}
        }
        self.drain()
    }

    fn pull(&mut self, i: usize) -> Result<(), String> {
        if !self.up[i] {
            return Ok(());
        }
        let mut out = Vec::new();
        self.core
            .pull(UpstreamId(i as u32), self.gen[i], &mut out, 100);
        for m in out {
            if m.kind() == Kind::Request {
                let id = m.id().map(|i| i.as_json().to_owned()).unwrap_or_default();
                self.received[i].push((id, m.method().unwrap_or("").to_owned()));
            }
        }
        Ok(())
    }

    fn reply(&mut self, i: usize, pick: usize, twice: bool) -> Result<(), String> {
        if self.received[i].is_empty() || !self.up[i] {
            return Ok(());
        }
        let k = pick % self.received[i].len();
        let (id, method) = if twice {
            self.received[i][k].clone()
        } else {
            self.received[i].remove(k)
        };
        let result = match method.as_str() {
            "initialize" => {
                r#"{"protocolVersion":"2025-06-18","capabilities":{"tools":{}}}"#.to_owned()
            }
            "tools/list" => format!(r#"{{"tools":[{{"name":"t{i}"}}]}}"#),
            _ => "{}".to_owned(),
        };
        let d = self.core.from_upstream(
            UpstreamId(i as u32),
            self.gen[i],
            msg(&format!(
                r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#
            )),
        );
        self.deliver(d.into_iter().collect())
    }

    fn run(&mut self, step: &Step) -> Result<(), String> {
        match *step {
            Step::Call { id, server } => {
                let id = IDS[id];
                self.client(&format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"s{server}__t"}}}}"#), id)
            }
            Step::List { id } => {
                let id = IDS[id];
                self.client(
                    &format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list"}}"#),
                    id,
                )
            }
            Step::Ping { id } => {
                let id = IDS[id];
                self.client(
                    &format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#),
                    id,
                )
            }
            Step::Cancel { id } => {
                let id = IDS[id];
                if self.open.remove(id) {
                    self.cancelled.insert(id.to_owned());
                }
                self.client(&format!(r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{id}}}}}"#), "")
            }
            Step::Up { server } => {
                if self.up[server] || self.failed[server] {
                    return Ok(());
                }
                self.gen[server] = self.core.up(UpstreamId(server as u32));
                self.up[server] = true;
                self.drain()
            }
            Step::Down { server } => {
                if !self.up[server] {
                    return Ok(());
                }
                let lost = RouterError::new(ErrorKind::UpstreamExited, "gone");
                let ds = self
                    .core
                    .down(UpstreamId(server as u32), self.gen[server], &lost);
                self.up[server] = false;
                self.received[server].clear();
                self.deliver(ds)
            }
            Step::Fail { server } => {
                if self.failed[server] {
                    return Ok(());
                }
                let ds = self.core.failed(
                    UpstreamId(server as u32),
                    RouterError::new(ErrorKind::UpstreamUnavailable, "no"),
                );
                self.failed[server] = true;
                self.up[server] = false;
                self.received[server].clear();
                self.deliver(ds)
            }
            Step::Pull { server } => self.pull(server),
            Step::Reply {
                server,
                pick,
                twice,
            } => self.reply(server, pick, twice),
            Step::Expire { secs } => {
                self.now += Duration::from_secs(secs);
                let ds = self.core.expire(self.now);
                self.deliver(ds)
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn every_request_gets_exactly_one_reply(steps in proptest::collection::vec(step(), 1..60)) {
        let mut w = World::new();
        prop_assert!(w.open.is_empty(), "the handshake was answered");
        for s in &steps {
            if let Err(e) = w.run(s) {
                return Err(TestCaseError::fail(format!("{e}\nafter {s:?} in {steps:?}")));
            }
        }
        // Nothing waits forever: the timer answers whatever is left.
        w.now += Duration::from_secs(3600);
        let ds = w.core.expire(w.now);
        w.deliver(ds).map_err(TestCaseError::fail)?;
        prop_assert!(w.open.is_empty(), "never answered: {:?} after {:?}", w.open, steps);
        prop_assert_eq!(w.core.pending_len(), 0);
    }
}
