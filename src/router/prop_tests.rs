//! Property test for the routing core: one core, two upstreams, one or two client
//! sessions, random interleavings of everything that can happen to them, against a model
//! of the contract "exactly one reply per request".
//!
//! The model plays the clients, the upstream writers (`pull`), the servers (replies,
//! stale, duplicated, batched, oversized, server→client requests), the supervisor
//! (`up`, `down`, `failed`) and the timer (`expire`), and checks every effect the core
//! returns:
//!
//! 1. every client request (every request member of a batch) gets exactly one reply,
//!    under its own id, in its own session;
//! 2. nothing is delivered for a request already answered or never asked; a request the
//!    client cancelled gets at most one; a server's first reply to a request reaches that
//!    request or nobody (never another session's, nor a later request reusing the id);
//! 3. nothing waits forever: the core's pending table is exactly the model's open
//!    requests after every step, and empty after `fail_all`;
//! 4. a client's answer to a server request is written only to the connection generation
//!    that asked, at most once, under the server's id;
//! 5. bytes pass through untouched except for a spliced id (byte-identical where nothing
//!    is rewritten);
//! 6. a request closed before a writer took it (withdrawn by the client's cancel, timed out
//!    while queued) is never written later, and no request is written twice;
//! 7. a `notifications/cancelled` written to a connection never names a request that
//!    connection carries and its client still waits for.
//!
//! 1024 cases of up to ~60 operations run in a few seconds (`PROPTEST_CASES` for more).
//! The bugs it found are kept below as plain tests.

use std::collections::{BTreeMap, HashMap, HashSet};

use proptest::prelude::*;
use serde_json::value::RawValue;
use serde_json::Value;

use super::*;

const UPSTREAMS: usize = 2;
const TIMEOUT: Duration = Duration::from_secs(5);
/// Outbox bound while an upstream is down (small, so `queue_full` happens).
const QUEUE: usize = 4;
/// Client request ids: numbers and strings (`1` and `"1"` are different ids).
const IDS: [&str; 5] = ["1", "2", "3", "\"a\"", "\"1\""];
/// Ids servers use for their own requests.
const SERVER_IDS: [&str; 3] = ["1", "\"s\"", "7"];
const NOTE: &str = r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":1}}"#;
const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

type Check = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(format!($($arg)+));
        }
    };
}

#[derive(Debug, Clone)]
enum Op {
    /// A client request (`tools/call`) with a pooled id.
    Request {
        s: usize,
        up: usize,
        id: usize,
    },
    /// A batch of pooled ids (duplicates possible), maybe with a notification in it.
    Batch {
        s: usize,
        up: usize,
        ids: Vec<usize>,
        note: bool,
    },
    /// `initialize` (2025-03-26 when `batches`); answered at once if the upstream is up.
    Handshake {
        s: usize,
        up: usize,
        id: usize,
        batches: bool,
    },
    /// The client's `notifications/cancelled` for a pooled id (routed to `up`).
    Cancel {
        s: usize,
        id: usize,
        up: usize,
    },
    /// A connection comes.
    Up {
        up: usize,
    },
    /// The writer takes up to `max` messages (or a stale writer tries); it may refuse one.
    Pull {
        up: usize,
        max: usize,
        stale: bool,
        refuse: Option<usize>,
    },
    /// The server answers a request it received (or a stale connection does).
    Reply {
        up: usize,
        pick: usize,
        error: bool,
        stale: bool,
    },
    /// A server sends a reply it already sent once.
    ReplyAgain {
        pick: usize,
    },
    /// A server replies to a pooled id it may never have received.
    ReplyRandom {
        up: usize,
        id: usize,
    },
    /// A server answers several received requests in one batch (plus a random id).
    BatchReply {
        up: usize,
        picks: Vec<usize>,
        random: Option<usize>,
    },
    /// A server's reply to a received request is over the size limit.
    Oversized {
        up: usize,
        pick: usize,
    },
    /// A server asks the client something (from the current or a stale connection).
    ServerRequest {
        up: usize,
        id: usize,
        stale: bool,
    },
    /// The client answers a server request (`again`: one it answered already).
    Answer {
        pick: usize,
        again: bool,
    },
    /// The connection is lost (or a stale connection reports its loss).
    Down {
        up: usize,
        stale: bool,
    },
    /// The supervisor gives up on the upstream.
    Failed {
        up: usize,
    },
    Advance {
        ms: u64,
    },
    Expire {
        ms: u64,
    },
    Shutdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Open,
    Answered,
    Cancelled,
}

#[derive(Debug)]
struct Req {
    session: usize,
    id: String,
    up: usize,
    at: Instant,
    /// The bytes the client sent (a batch member's own text).
    text: String,
    /// `initialize`: the version asked for (the server agrees to it).
    version: Option<&'static str>,
    state: St,
    answers: u32,
    /// Taken by the writer of (generation, under wire id).
    carried: Option<(u64, String)>,
}

#[derive(Debug)]
struct ServerReq {
    up: usize,
    gen: u64,
    server_id: String,
    client_id: String,
    session: usize,
    /// The client answered it, or its connection is gone: out of the core's table.
    settled: bool,
}

#[derive(Debug)]
struct ClientAnswer {
    /// The server request the core routes it to (the one holding its id).
    to: usize,
    text: String,
    written: bool,
}

#[derive(Debug, Default)]
struct UpModel {
    gen: u64,
    live: bool,
    failed: bool,
    /// What each connection generation received (request tags), in order.
    inbox: BTreeMap<u64, Vec<usize>>,
}

struct Model {
    core: Core,
    sessions: Vec<SessionId>,
    _rx: Vec<mpsc::Receiver<Bytes>>,
    now: Instant,
    reqs: Vec<Req>,
    open: HashMap<(usize, String), usize>,
    ups: Vec<UpModel>,
    shutting: bool,
    server_reqs: Vec<ServerReq>,
    answers: Vec<ClientAnswer>,
    /// Requests the servers have answered at least once.
    server_answered: HashSet<usize>,
    /// Replies servers sent: (upstream, generation, bytes), for duplicates.
    sent: Vec<(usize, u64, String)>,
}

fn msg(s: &str) -> Message {
    Message::parse(Bytes::copy_from_slice(s.as_bytes())).expect("the test builds valid messages")
}

fn id_text(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// `text` with its `"id":from` replaced by `"id":to` (how the core splices ids).
fn with_id(text: &str, from: &str, to: &str) -> String {
    if from == to {
        return text.to_owned();
    }
    text.replacen(&format!(r#""id":{from}"#), &format!(r#""id":{to}"#), 1)
}

fn router_owned(id: &str) -> bool {
    id.starts_with("\"mcp-router-")
}

fn request_text(id: &str, tag: usize, version: Option<&str>) -> String {
    match version {
        Some(v) => format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"initialize","params":{{"protocolVersion":"{v}","tag":{tag}}}}}"#
        ),
        None => format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"tag":{tag}}}}}"#
        ),
    }
}

fn reply_text(wire: &str, tag: usize, version: Option<&str>, error: bool) -> String {
    match (error, version) {
        (true, _) => format!(
            r#"{{"jsonrpc":"2.0","id":{wire},"error":{{"code":-32000,"message":"no","data":{{"tag":{tag}}}}}}}"#
        ),
        (false, Some(v)) => format!(
            r#"{{"jsonrpc":"2.0","id":{wire},"result":{{"protocolVersion":"{v}","tag":{tag}}}}}"#
        ),
        (false, None) => format!(r#"{{"jsonrpc":"2.0","id":{wire},"result":{{"tag":{tag}}}}}"#),
    }
}

/// One response as a client sees it.
struct Resp {
    id: String,
    /// `error.data.kind`: the router's own error.
    kind: Option<String>,
}

fn response(v: &Value) -> Result<Resp, String> {
    ensure!(
        v.is_object() && v.get("method").is_none() && v.get("id").is_some(),
        "not a response: {v}"
    );
    Ok(Resp {
        id: id_text(&v["id"]),
        kind: v["error"]["data"]["kind"].as_str().map(str::to_owned),
    })
}

fn error() -> RouterError {
    RouterError::new(ErrorKind::UpstreamExited, "connection lost")
}

impl Model {
    fn new(nsess: usize) -> Self {
        let core = Core::new(Limits {
            request_timeout: TIMEOUT,
            max_queued_requests: QUEUE,
        });
        for i in 0..UPSTREAMS {
            core.add_upstream(&format!("srv{i}"));
        }
        let (mut sessions, mut rx) = (Vec::new(), Vec::new());
        for _ in 0..nsess {
            let (tx, r) = mpsc::channel(1);
            sessions.push(core.open_session(tx));
            rx.push(r);
        }
        Self {
            core,
            sessions,
            _rx: rx,
            now: Instant::now(),
            reqs: Vec::new(),
            open: HashMap::new(),
            ups: (0..UPSTREAMS).map(|_| UpModel::default()).collect(),
            shutting: false,
            server_reqs: Vec::new(),
            answers: Vec::new(),
            server_answered: HashSet::new(),
            sent: Vec::new(),
        }
    }

    fn run(&mut self, ops: &[Op]) -> Check {
        for (i, op) in ops.iter().enumerate() {
            self.step(op).map_err(|e| format!("step {i} {op:?}: {e}"))?;
            let (core, model) = (self.core.pending_len(), self.open.len());
            ensure!(
                core == model,
                "after step {i} {op:?}: the core has {core} pending requests, the clients wait for {model}"
            );
        }
        self.fail_all()
    }

    fn step(&mut self, op: &Op) -> Check {
        let n = self.sessions.len();
        match op.clone() {
            Op::Request { s, up, id } => self.client_request(s % n, up, id, None).map(drop),
            Op::Batch { s, up, ids, note } => self.client_batch(s % n, up, &ids, note),
            Op::Handshake { s, up, id, batches } => self.handshake(s % n, up, id, batches),
            Op::Cancel { s, id, up } => self.cancel(s % n, id, up),
            Op::Up { up } => self.up(up),
            Op::Pull {
                up,
                max,
                stale,
                refuse,
            } => self.pull(up, max, stale, refuse),
            Op::Reply {
                up,
                pick,
                error,
                stale,
            } => self.reply(up, pick, error, stale),
            Op::ReplyAgain { pick } => {
                if self.sent.is_empty() {
                    return Ok(());
                }
                let (up, gen, text) = self.sent[pick % self.sent.len()].clone();
                self.upstream_reply(up, gen, &text, None)
            }
            Op::ReplyRandom { up, id } => {
                let gen = self.ups[up].gen;
                let text = format!(r#"{{"jsonrpc":"2.0","id":{},"result":{{}}}}"#, IDS[id]);
                self.upstream_reply(up, gen, &text, None)
            }
            Op::BatchReply { up, picks, random } => self.batch_reply(up, &picks, random),
            Op::Oversized { up, pick } => self.oversized(up, pick),
            Op::ServerRequest { up, id, stale } => self.server_request(up, id, stale),
            Op::Answer { pick, again } => self.answer(pick, again),
            Op::Down { up, stale } => self.down(up, stale),
            Op::Failed { up } => self.failed(up),
            Op::Advance { ms } => {
                self.now += Duration::from_millis(ms);
                Ok(())
            }
            Op::Expire { ms } => {
                self.now += Duration::from_millis(ms);
                self.expire()
            }
            Op::Shutdown => {
                self.core.begin_shutdown();
                self.shutting = true;
                Ok(())
            }
        }
    }

    // --- bookkeeping -------------------------------------------------------------------

    /// A reply reached `session` under `id`: the request it answers (exactly once).
    fn take_reply(&mut self, session: usize, id: &str) -> Result<usize, String> {
        if let Some(t) = self.open.remove(&(session, id.to_owned())) {
            let r = &mut self.reqs[t];
            r.answers += 1;
            r.state = St::Answered;
            return Ok(t);
        }
        // A request the client cancelled may still get (at most) one.
        if let Some(t) = self.reqs.iter().rposition(|r| {
            r.session == session && r.id == id && r.state == St::Cancelled && r.answers == 0
        }) {
            self.reqs[t].answers += 1;
            return Ok(t);
        }
        Err(format!(
            "session {session} got a reply under id {id}, which it has no request waiting for (already answered or never asked)"
        ))
    }

    fn decode(&self, d: Delivery) -> Result<(usize, Value, String), String> {
        let s = d.session.0 as usize;
        ensure!(s < self.sessions.len(), "delivery for unknown session {s}");
        let raw = String::from_utf8(d.bytes.to_vec()).map_err(|e| e.to_string())?;
        let v: Value =
            serde_json::from_str(&raw).map_err(|e| format!("delivered bytes {raw}: {e}"))?;
        Ok((s, v, raw))
    }

    /// The open request the core waits for under (`up`, `wire`) sent on `gen`.
    fn open_carried(&self, up: usize, gen: u64, wire: &str) -> Option<usize> {
        self.open.values().copied().find(|&t| {
            let r = &self.reqs[t];
            r.up == up
                && r.carried
                    .as_ref()
                    .is_some_and(|(g, w)| *g == gen && w == wire)
        })
    }

    /// Router errors, exactly one for each of `expected`.
    fn expect_errors(&mut self, ds: Vec<Delivery>, expected: Vec<usize>, what: &str) -> Check {
        let mut want: HashSet<usize> = expected.into_iter().collect();
        for d in ds {
            let (s, v, raw) = self.decode(d)?;
            let r = response(&v)?;
            ensure!(
                r.kind.is_some(),
                "{what}: expected a router error, got {raw}"
            );
            let t = self.take_reply(s, &r.id)?;
            ensure!(
                want.remove(&t),
                "{what}: an error for request #{t}, which it should not answer: {raw}"
            );
        }
        ensure!(want.is_empty(), "{what}: no error for requests {want:?}");
        Ok(())
    }

    // --- clients -------------------------------------------------------------------------

    fn new_req(&mut self, s: usize, up: usize, id: &str, version: Option<&'static str>) -> usize {
        let tag = self.reqs.len();
        self.reqs.push(Req {
            session: s,
            id: id.to_owned(),
            up,
            at: self.now,
            text: request_text(id, tag, version),
            version,
            state: St::Open,
            answers: 0,
            carried: None,
        });
        tag
    }

    /// The request's tag if the core took it.
    fn client_request(
        &mut self,
        s: usize,
        up: usize,
        idx: usize,
        version: Option<&'static str>,
    ) -> Result<Option<usize>, String> {
        let id = IDS[idx];
        let in_use = self.open.contains_key(&(s, id.to_owned()));
        let tag = self.new_req(s, up, id, version);
        let text = self.reqs[tag].text.clone();
        let dec = if up == 0 && tag.is_multiple_of(2) {
            // The default route (one upstream serves everything until aggregation).
            self.core
                .from_client(self.sessions[s], msg(&text), self.now)
        } else {
            self.core.from_client_to(
                self.sessions[s],
                UpstreamId(up as u32),
                msg(&text),
                self.now,
            )
        };
        match dec {
            ClientDecision::Accepted => {
                ensure!(
                    !self.shutting,
                    "request #{tag} accepted while shutting down"
                );
                ensure!(
                    !in_use,
                    "request #{tag} accepted under id {id}, already in flight for session {s}"
                );
                ensure!(
                    !self.ups[up].failed,
                    "request #{tag} accepted by a failed upstream"
                );
                self.open.insert((s, id.to_owned()), tag);
                Ok(Some(tag))
            }
            ClientDecision::Reply(b) => {
                let raw = String::from_utf8_lossy(&b).into_owned();
                let v: Value = serde_json::from_str(&raw).map_err(|e| format!("{raw}: {e}"))?;
                let r = response(&v)?;
                ensure!(
                    r.id == id,
                    "request #{tag} refused under id {} ({raw})",
                    r.id
                );
                let want = if self.shutting {
                    "shutting_down"
                } else if in_use {
                    "invalid_request"
                } else if self.ups[up].failed {
                    "upstream_exited"
                } else {
                    "queue_full"
                };
                ensure!(
                    r.kind.as_deref() == Some(want),
                    "request #{tag} refused with {raw}, expected kind {want}"
                );
                let q = &mut self.reqs[tag];
                q.state = St::Answered;
                q.answers = 1;
                Ok(None)
            }
            ClientDecision::Drop => Err(format!("request #{tag} dropped without an answer")),
        }
    }

    fn client_batch(&mut self, s: usize, up: usize, idxs: &[usize], note: bool) -> Check {
        let ids: Vec<&str> = idxs.iter().map(|&i| IDS[i]).collect();
        let dup = ids.iter().collect::<HashSet<_>>().len() != ids.len();
        let in_use = ids
            .iter()
            .any(|id| self.open.contains_key(&(s, (*id).to_owned())));
        let tags: Vec<usize> = ids.iter().map(|id| self.new_req(s, up, id, None)).collect();
        let mut parts: Vec<String> = tags.iter().map(|&t| self.reqs[t].text.clone()).collect();
        if note {
            parts.insert(1, NOTE.to_owned());
        }
        let text = format!("[{}]", parts.join(","));
        let dec = self.core.from_client_to(
            self.sessions[s],
            UpstreamId(up as u32),
            msg(&text),
            self.now,
        );
        match dec {
            ClientDecision::Accepted => {
                ensure!(
                    !self.shutting,
                    "batch {tags:?} accepted while shutting down"
                );
                ensure!(!dup, "batch {tags:?} with a duplicate id accepted");
                ensure!(
                    !in_use,
                    "batch {tags:?} accepted with an id already in flight"
                );
                ensure!(!self.ups[up].failed, "batch accepted by a failed upstream");
                for (&t, id) in tags.iter().zip(&ids) {
                    self.open.insert((s, (*id).to_owned()), t);
                }
            }
            ClientDecision::Reply(b) => {
                let raw = String::from_utf8_lossy(&b).into_owned();
                let v: Value = serde_json::from_str(&raw).map_err(|e| format!("{raw}: {e}"))?;
                let arr = v.as_array().ok_or(format!("batch refused with {raw}"))?;
                ensure!(
                    arr.len() == tags.len(),
                    "batch of {} requests refused with {} answers: {raw}",
                    tags.len(),
                    arr.len()
                );
                for ((item, &t), id) in arr.iter().zip(&tags).zip(&ids) {
                    let r = response(item)?;
                    ensure!(
                        r.id == *id && r.kind.is_some(),
                        "batch member #{t} refused as {item}"
                    );
                    let q = &mut self.reqs[t];
                    q.state = St::Answered;
                    q.answers = 1;
                }
            }
            ClientDecision::Drop => return Err(format!("batch {tags:?} dropped")),
        }
        Ok(())
    }

    fn handshake(&mut self, s: usize, up: usize, idx: usize, batches: bool) -> Check {
        let version = if batches { "2025-03-26" } else { "2025-06-18" };
        let Some(tag) = self.client_request(s, up, idx, Some(version))? else {
            return Ok(());
        };
        if self.ups[up].live {
            self.pull(up, usize::MAX, false, None)?;
            let gen = self.ups[up].gen;
            if self.reqs[tag].state == St::Open
                && self.reqs[tag]
                    .carried
                    .as_ref()
                    .is_some_and(|(g, _)| *g == gen)
            {
                self.reply_to(up, gen, tag, false)?;
            }
        }
        let dec = self.core.from_client_to(
            self.sessions[s],
            UpstreamId(up as u32),
            msg(INITIALIZED),
            self.now,
        );
        ensure!(
            !matches!(dec, ClientDecision::Reply(_)),
            "a notification was answered"
        );
        Ok(())
    }

    fn cancel(&mut self, s: usize, idx: usize, up: usize) -> Check {
        let id = IDS[idx];
        let text = format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{id},"reason":"user"}}}}"#
        );
        let target = self.open.get(&(s, id.to_owned())).copied();
        let dec = self.core.from_client_to(
            self.sessions[s],
            UpstreamId(up as u32),
            msg(&text),
            self.now,
        );
        ensure!(
            !matches!(dec, ClientDecision::Reply(_)),
            "a cancellation was answered"
        );
        if let Some(t) = target {
            self.open.remove(&(s, id.to_owned()));
            self.reqs[t].state = St::Cancelled;
            match self.reqs[t].carried.clone() {
                None => ensure!(
                    matches!(dec, ClientDecision::Drop),
                    "cancelling queued request #{t}: {dec:?}, expected it withdrawn (Drop)"
                ),
                Some((g, _)) => {
                    let u = &self.ups[self.reqs[t].up];
                    let live = u.live && u.gen == g;
                    ensure!(
                        matches!(dec, ClientDecision::Accepted) == live,
                        "cancelling request #{t} sent on connection {g}: {dec:?}"
                    );
                }
            }
        }
        Ok(())
    }

    fn answer(&mut self, pick: usize, again: bool) -> Check {
        let candidates: Vec<usize> = (0..self.server_reqs.len())
            .filter(|&k| self.server_reqs[k].settled == again)
            .collect();
        if candidates.is_empty() {
            return Ok(());
        }
        let k = candidates[pick % candidates.len()];
        let (client_id, session) = {
            let e = &self.server_reqs[k];
            (e.client_id.clone(), e.session)
        };
        let n = self.answers.len();
        let text = format!(r#"{{"jsonrpc":"2.0","id":{client_id},"result":{{"answer":{n}}}}}"#);
        // The core routes by id: to the server request holding it now.
        let to = (0..self.server_reqs.len())
            .find(|&j| !self.server_reqs[j].settled && self.server_reqs[j].client_id == client_id);
        let dec =
            self.core
                .from_client_to(self.sessions[session], UpstreamId(0), msg(&text), self.now);
        let expect = to.is_some_and(|j| {
            let e = &self.server_reqs[j];
            let u = &self.ups[e.up];
            u.live && u.gen == e.gen
        });
        match dec {
            ClientDecision::Accepted => ensure!(
                expect,
                "the answer to server request #{k} was accepted; the connection that asked is gone or it was answered"
            ),
            ClientDecision::Drop => ensure!(
                !expect,
                "the answer to server request #{k} was dropped while its connection is live"
            ),
            ClientDecision::Reply(b) => {
                return Err(format!("the client's answer was answered: {b:?}"))
            }
        }
        if let Some(j) = to {
            self.server_reqs[j].settled = true;
            if expect {
                self.answers.push(ClientAnswer {
                    to: j,
                    text,
                    written: false,
                });
            }
        }
        Ok(())
    }

    // --- writers -------------------------------------------------------------------------

    fn up(&mut self, up: usize) -> Check {
        if self.ups[up].failed || self.ups[up].live {
            // A live upstream's next connection is a second one (a pool).
            return Ok(());
        }
        let gen = self.core.up(UpstreamId(up as u32));
        ensure!(
            gen == self.ups[up].gen,
            "up() gave generation {gen}, expected {}",
            self.ups[up].gen
        );
        self.ups[up].live = true;
        Ok(())
    }

    fn pull(&mut self, up: usize, max: usize, stale: bool, refuse: Option<usize>) -> Check {
        let u = &self.ups[up];
        let (gen, ok_expected) = match (stale, u.gen) {
            (true, 0) => (u.gen + 1, false),
            (true, g) => (g - 1, false),
            (false, g) => (g, u.live),
        };
        let mut out = Vec::new();
        let ok = self.core.pull(UpstreamId(up as u32), gen, &mut out, max);
        ensure!(
            ok == ok_expected,
            "pull by connection {gen} of upstream {up} returned {ok}"
        );
        ensure!(
            ok || out.is_empty(),
            "a stale writer got {} messages",
            out.len()
        );
        ensure!(out.len() <= max, "pulled {} > {max}", out.len());
        // The requests each written message carries, as (tag, wire id).
        let mut written: Vec<Vec<(usize, String)>> = Vec::new();
        for m in &out {
            let raw = String::from_utf8(m.raw().to_vec()).map_err(|e| e.to_string())?;
            let v: Value = serde_json::from_str(&raw).map_err(|e| format!("{raw}: {e}"))?;
            let mut carried = Vec::new();
            if v.is_array() {
                let members: Vec<&RawValue> =
                    serde_json::from_str(&raw).map_err(|e| e.to_string())?;
                for member in members {
                    let mv: Value =
                        serde_json::from_str(member.get()).map_err(|e| e.to_string())?;
                    if mv.get("id").is_some() {
                        carried.push(self.carry(up, gen, &mv, member.get())?);
                    } else {
                        ensure!(member.get() == NOTE, "unexpected batch member {member}");
                    }
                }
            } else if v.get("method").is_some() && v.get("id").is_some() {
                carried.push(self.carry(up, gen, &v, &raw)?);
            } else if v.get("method").is_some() {
                if v["method"] == "notifications/cancelled" {
                    let w = id_text(&v["params"]["requestId"]);
                    if let Some(t) = self.open_carried(up, gen, &w) {
                        return Err(format!(
                            "a cancellation of {w} written to connection {gen} of upstream {up}, which carries request #{t} under that id, still waited for by session {}",
                            self.reqs[t].session
                        ));
                    }
                }
            } else {
                self.written_answer(up, gen, &v, &raw)?;
            }
            written.push(carried);
        }
        let Some(k) = refuse else { return Ok(()) };
        // The writer could not carry one message: its requests are failed one by one.
        let with_requests: Vec<&Vec<(usize, String)>> =
            written.iter().filter(|c| !c.is_empty()).collect();
        if with_requests.is_empty() {
            return Ok(());
        }
        let refused = with_requests[k % with_requests.len()].clone();
        for (tag, wire) in refused {
            let reason = RouterError::new(ErrorKind::UpstreamUnavailable, "cannot write");
            let d = self.core.fail_request(
                UpstreamId(up as u32),
                &Id::from_raw_json(&wire),
                &reason,
                super::Outcome::Failed,
            );
            self.expect_errors(d.into_iter().collect(), vec![tag], "fail_request")?;
            if let Some(inbox) = self.ups[up].inbox.get_mut(&gen) {
                inbox.retain(|&t| t != tag);
            }
        }
        Ok(())
    }

    /// A request written to connection `gen` of `up`.
    fn carry(
        &mut self,
        up: usize,
        gen: u64,
        v: &Value,
        raw: &str,
    ) -> Result<(usize, String), String> {
        let tag = v["params"]["tag"]
            .as_u64()
            .ok_or(format!("written request without tag: {raw}"))? as usize;
        let wire = id_text(&v["id"]);
        let r = &self.reqs[tag];
        ensure!(
            r.up == up,
            "request #{tag} for upstream {} written to upstream {up}",
            r.up
        );
        ensure!(
            r.state == St::Open,
            "request #{tag} written to connection {gen} of upstream {up} after it was {:?} (before any writer took it)",
            r.state
        );
        ensure!(
            r.carried.is_none(),
            "request #{tag} written twice ({:?}, then connection {gen})",
            r.carried
        );
        ensure!(
            wire == r.id || router_owned(&wire),
            "request #{tag} written under id {wire}, neither its own {} nor a router id",
            r.id
        );
        ensure!(
            raw == with_id(&r.text, &r.id, &wire),
            "request #{tag} written as {raw}, sent as {}",
            r.text
        );
        if let Some(other) = self.open.values().copied().find(|&t| {
            let o = &self.reqs[t];
            o.up == up && o.carried.as_ref().is_some_and(|(_, w)| *w == wire)
        }) {
            return Err(format!(
                "request #{tag} written under wire id {wire}, which request #{other} already holds on upstream {up}"
            ));
        }
        self.reqs[tag].carried = Some((gen, wire.clone()));
        self.ups[up].inbox.entry(gen).or_default().push(tag);
        Ok((tag, wire))
    }

    fn written_answer(&mut self, up: usize, gen: u64, v: &Value, raw: &str) -> Check {
        let n = v["result"]["answer"]
            .as_u64()
            .ok_or(format!("unexpected message written: {raw}"))? as usize;
        let a = &self.answers[n];
        let e = &self.server_reqs[a.to];
        ensure!(
            e.up == up && e.gen == gen,
            "the client's answer to server request #{} (asked by connection {} of upstream {}) written to connection {gen} of upstream {up}",
            a.to,
            e.gen,
            e.up
        );
        ensure!(!a.written, "the client's answer #{n} written twice");
        let want = with_id(&a.text, &e.client_id, &e.server_id);
        ensure!(raw == want, "answer written as {raw}, expected {want}");
        self.answers[n].written = true;
        Ok(())
    }

    // --- servers -------------------------------------------------------------------------

    fn reply(&mut self, up: usize, pick: usize, error: bool, stale: bool) -> Check {
        let cur = self.ups[up].gen;
        let gen = if stale {
            let old: Vec<u64> = self.ups[up]
                .inbox
                .iter()
                .filter(|(g, v)| **g < cur && !v.is_empty())
                .map(|(g, _)| *g)
                .collect();
            if old.is_empty() {
                return Ok(());
            }
            old[pick % old.len()]
        } else {
            cur
        };
        let inbox = self.ups[up].inbox.get(&gen).cloned().unwrap_or_default();
        if inbox.is_empty() {
            return Ok(());
        }
        self.reply_to(up, gen, inbox[pick % inbox.len()], error)
    }

    fn reply_to(&mut self, up: usize, gen: u64, tag: usize, error: bool) -> Check {
        let (wire, version) = {
            let r = &self.reqs[tag];
            (
                r.carried.clone().map(|c| c.1).unwrap_or_default(),
                r.version,
            )
        };
        let text = reply_text(&wire, tag, version, error);
        let legit = !self.server_answered.contains(&tag);
        self.sent.push((up, gen, text.clone()));
        self.upstream_reply(up, gen, &text, legit.then_some(tag))
    }

    /// A single reply from connection `gen` of `up`; `meant`: the request a well-behaved
    /// server answers with it (first reply only).
    fn upstream_reply(&mut self, up: usize, gen: u64, text: &str, meant: Option<usize>) -> Check {
        let wire = id_text(&serde_json::from_str::<Value>(text).map_err(|e| e.to_string())?["id"]);
        let expected = self.open_carried(up, gen, &wire);
        self.server_answers(up, gen, &wire);
        let d = self
            .core
            .from_upstream(UpstreamId(up as u32), gen, msg(text));
        match (d, expected) {
            (None, None) => Ok(()),
            (None, Some(r)) => Err(format!(
                "reply {text} from connection {gen} of upstream {up}, which carries request #{r}, was dropped"
            )),
            (Some(d), expected) => {
                let (s, v, raw) = self.decode(d)?;
                let resp = response(&v)?;
                let t = self.take_reply(s, &resp.id)?;
                ensure!(
                    expected == Some(t),
                    "reply {text} from connection {gen} of upstream {up} delivered as the answer to #{t} (expected {expected:?})"
                );
                let client_id = self.reqs[t].id.clone();
                ensure!(
                    raw == with_id(text, &wire, &client_id),
                    "reply {text} delivered as {raw}"
                );
                self.no_leak(meant, t)
            }
        }
    }

    /// A reply under `wire` from connection `gen`: whatever it carried under that id is
    /// answered as far as the server is concerned (a later one is a duplicate).
    fn server_answers(&mut self, up: usize, gen: u64, wire: &str) {
        for (t, r) in self.reqs.iter().enumerate() {
            if r.up == up
                && r.carried
                    .as_ref()
                    .is_some_and(|(g, w)| *g == gen && w == wire)
            {
                self.server_answered.insert(t);
            }
        }
    }

    /// A well-behaved server's reply to `meant` reached the client as the answer to `got`.
    fn no_leak(&self, meant: Option<usize>, got: usize) -> Check {
        let Some(m) = meant else { return Ok(()) };
        let (a, b) = (&self.reqs[m], &self.reqs[got]);
        // Not even the same session reusing an id it gave up on (a late reply answers
        // nobody; the reused id travels under a router id while the server may answer).
        ensure!(
            m == got,
            "the server's reply to request #{m} of session {} (id {}, {:?}) was delivered to session {} as the answer to its request #{got}",
            a.session,
            a.id,
            a.state,
            b.session
        );
        Ok(())
    }

    fn batch_reply(&mut self, up: usize, picks: &[usize], random: Option<usize>) -> Check {
        let gen = self.ups[up].gen;
        let inbox = self.ups[up].inbox.get(&gen).cloned().unwrap_or_default();
        // (text, wire, meant)
        let mut members: Vec<(String, String, Option<usize>)> = Vec::new();
        if !inbox.is_empty() {
            for p in picks {
                let tag = inbox[p % inbox.len()];
                let (wire, version) = {
                    let r = &self.reqs[tag];
                    (
                        r.carried.clone().map(|c| c.1).unwrap_or_default(),
                        r.version,
                    )
                };
                let legit = !self.server_answered.contains(&tag);
                members.push((
                    reply_text(&wire, tag, version, false),
                    wire,
                    legit.then_some(tag),
                ));
            }
        }
        if let Some(i) = random {
            let text = format!(r#"{{"jsonrpc":"2.0","id":{},"result":{{}}}}"#, IDS[i]);
            members.push((text, IDS[i].to_owned(), None));
        }
        // A repeated member is a duplicate reply.
        let mut seen = HashSet::new();
        for m in &mut members {
            if !seen.insert(m.1.clone()) {
                m.2 = None;
            }
        }
        for m in members.clone() {
            self.server_answers(up, gen, &m.1);
        }
        if members.is_empty() {
            return Ok(());
        }
        // What each member answers: a request this connection carries, which a batch can
        // answer (one session's, under its own id; a repeated member answers once).
        let mut claimed = HashSet::new();
        let mut session = None;
        let expected: Vec<Option<usize>> = members
            .iter()
            .map(|(_, wire, _)| {
                let t = self.open_carried(up, gen, wire).filter(|&t| {
                    let r = &self.reqs[t];
                    r.id == *wire
                        && *session.get_or_insert(r.session) == r.session
                        && claimed.insert(t)
                })?;
                Some(t)
            })
            .collect();
        let text = format!(
            "[{}]",
            members
                .iter()
                .map(|m| m.0.as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
        let d = self
            .core
            .from_upstream(UpstreamId(up as u32), gen, msg(&text));
        let Some(d) = d else {
            ensure!(
                expected.iter().all(Option::is_none),
                "batch reply {text} dropped, though it answers {expected:?}"
            );
            return Ok(());
        };
        let (s, _, raw) = self.decode(d)?;
        let delivered: Vec<&RawValue> = serde_json::from_str(&raw)
            .map_err(|e| format!("batch reply delivered as {raw}: {e}"))?;
        let mut i = 0;
        let mut kept = HashSet::new();
        for item in delivered {
            while i < members.len() && members[i].0 != item.get() {
                i += 1;
            }
            ensure!(
                i < members.len(),
                "batch reply {text} delivered as {raw}: member {item} is not one of it, byte for byte, in order"
            );
            let v: Value = serde_json::from_str(item.get()).map_err(|e| e.to_string())?;
            let t = self.take_reply(s, &response(&v)?.id)?;
            ensure!(
                expected[i] == Some(t),
                "batch reply member {item} delivered to session {s} as the answer to #{t} (expected {:?})",
                expected[i]
            );
            self.no_leak(members[i].2, t)?;
            kept.insert(i);
            i += 1;
        }
        for (j, e) in expected.iter().enumerate() {
            if let Some(t) = e {
                ensure!(
                    kept.contains(&j),
                    "batch reply {text}: member {j} answers #{t} but was stripped"
                );
            }
        }
        Ok(())
    }

    fn oversized(&mut self, up: usize, pick: usize) -> Check {
        let gen = self.ups[up].gen;
        let inbox: Vec<usize> = self.ups[up]
            .inbox
            .get(&gen)
            .into_iter()
            .flatten()
            .copied()
            .filter(|&t| self.reqs[t].state == St::Open)
            .collect();
        if !self.ups[up].live || inbox.is_empty() {
            return Ok(());
        }
        let tag = inbox[pick % inbox.len()];
        let (gen, wire) = self.reqs[tag].carried.clone().unwrap_or_default();
        self.server_answered.insert(tag);
        let d = self.core.oversized(
            UpstreamId(up as u32),
            gen,
            Some(&Id::from_raw_json(&wire)),
            100,
            10,
        );
        self.expect_errors(d.into_iter().collect(), vec![tag], "oversized")
    }

    fn server_request(&mut self, up: usize, idx: usize, stale: bool) -> Check {
        let u = &self.ups[up];
        let gen = match (stale, u.gen) {
            (true, 0) => return Ok(()),
            (true, g) => g - 1,
            (false, g) if u.live => g,
            _ => return Ok(()),
        };
        let sid = SERVER_IDS[idx];
        let k = self.server_reqs.len();
        let text = format!(
            r#"{{"jsonrpc":"2.0","id":{sid},"method":"roots/list","params":{{"stag":{k}}}}}"#
        );
        let held = self
            .server_reqs
            .iter()
            .any(|e| !e.settled && e.client_id == sid);
        let Some(d) = self
            .core
            .from_upstream(UpstreamId(up as u32), gen, msg(&text))
        else {
            ensure!(stale, "server request {text} not delivered");
            return Ok(());
        };
        let (s, v, raw) = self.decode(d)?;
        ensure!(
            s == 0,
            "server request delivered to session {s}, not the owner"
        );
        let c = id_text(&v["id"]);
        if held {
            ensure!(
                router_owned(&c),
                "server request {text} delivered under id {c}, which another server request holds"
            );
        } else {
            ensure!(c == sid, "server request {text} delivered under id {c}");
        }
        ensure!(
            raw == with_id(&text, sid, &c),
            "server request {text} delivered as {raw}"
        );
        self.server_reqs.push(ServerReq {
            up,
            gen,
            server_id: sid.to_owned(),
            client_id: c,
            session: s,
            settled: false,
        });
        Ok(())
    }

    // --- supervisor and timer ------------------------------------------------------------

    fn down(&mut self, up: usize, stale: bool) -> Check {
        let gen = self.ups[up].gen;
        if stale {
            if gen == 0 {
                return Ok(());
            }
            let d = self.core.down(UpstreamId(up as u32), gen - 1, &error());
            return self.expect_errors(d, Vec::new(), "stale down");
        }
        if !self.ups[up].live {
            return Ok(());
        }
        let lost: Vec<usize> = self
            .open
            .values()
            .copied()
            .filter(|&t| {
                let r = &self.reqs[t];
                r.up == up && r.carried.as_ref().is_some_and(|(g, _)| *g == gen)
            })
            .collect();
        let d = self.core.down(UpstreamId(up as u32), gen, &error());
        self.expect_errors(d, lost, "down")?;
        let u = &mut self.ups[up];
        u.gen += 1;
        u.live = false;
        for e in &mut self.server_reqs {
            if e.up == up && e.gen == gen {
                e.settled = true;
            }
        }
        Ok(())
    }

    fn failed(&mut self, up: usize) -> Check {
        let all: Vec<usize> = self
            .open
            .values()
            .copied()
            .filter(|&t| self.reqs[t].up == up)
            .collect();
        let d = self.core.failed(UpstreamId(up as u32), error());
        self.expect_errors(d, all, "failed")?;
        let u = &mut self.ups[up];
        u.gen += 1;
        u.live = false;
        u.failed = true;
        for e in &mut self.server_reqs {
            if e.up == up {
                e.settled = true;
            }
        }
        Ok(())
    }

    fn expire(&mut self) -> Check {
        let now = self.now;
        let due: Vec<usize> = self
            .open
            .values()
            .copied()
            .filter(|&t| self.reqs[t].at + TIMEOUT <= now)
            .collect();
        let d = self.core.expire(now);
        self.expect_errors(d, due, "expire")
    }

    fn fail_all(&mut self) -> Check {
        let all: Vec<usize> = self.open.values().copied().collect();
        let d = self
            .core
            .fail_all(&RouterError::new(ErrorKind::ShuttingDown, "bye"));
        self.expect_errors(d, all, "fail_all")?;
        ensure!(
            self.core.pending_len() == 0,
            "{} requests still pending after fail_all",
            self.core.pending_len()
        );
        for (t, r) in self.reqs.iter().enumerate() {
            match r.state {
                St::Open => return Err(format!("request #{t} never answered")),
                St::Answered => ensure!(r.answers == 1, "request #{t}: {} answers", r.answers),
                St::Cancelled => ensure!(r.answers <= 1, "cancelled #{t}: {} answers", r.answers),
            }
        }
        Ok(())
    }
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    use proptest::collection::vec;
    use proptest::option;
    let s = || 0..2usize;
    // Skewed towards upstream 0: its pending table sees more of the collisions.
    let up = || prop_oneof![2 => Just(0usize), 1 => Just(1usize)];
    // Skewed towards the first ids: collisions (in flight, across sessions) are the point.
    let id = || prop_oneof![3 => Just(0usize), 2 => Just(1usize), 2 => 2..IDS.len()];
    let pick = || 0..64usize;
    let op = prop_oneof![
        14 => (s(), up(), id()).prop_map(|(s, up, id)| Op::Request { s, up, id }),
        5 => (s(), up(), vec(0..IDS.len(), 2..=3), proptest::bool::weighted(0.3))
            .prop_map(|(s, up, ids, note)| Op::Batch { s, up, ids, note }),
        4 => (s(), up(), id(), proptest::bool::weighted(0.8))
            .prop_map(|(s, up, id, batches)| Op::Handshake { s, up, id, batches }),
        5 => (s(), id(), up()).prop_map(|(s, id, up)| Op::Cancel { s, id, up }),
        14 => up().prop_map(|up| Op::Up { up }),
        16 => (
            up(),
            prop_oneof![1..4usize, Just(100)],
            proptest::bool::weighted(0.1),
            option::weighted(0.1, 0..8usize)
        )
            .prop_map(|(up, max, stale, refuse)| Op::Pull { up, max, stale, refuse }),
        14 => (up(), pick(), proptest::bool::weighted(0.2), proptest::bool::weighted(0.15))
            .prop_map(|(up, pick, error, stale)| Op::Reply { up, pick, error, stale }),
        2 => pick().prop_map(|pick| Op::ReplyAgain { pick }),
        2 => (up(), id()).prop_map(|(up, id)| Op::ReplyRandom { up, id }),
        4 => (up(), vec(pick(), 1..=3), option::weighted(0.3, id()))
            .prop_map(|(up, picks, random)| Op::BatchReply { up, picks, random }),
        1 => (up(), pick()).prop_map(|(up, pick)| Op::Oversized { up, pick }),
        4 => (up(), 0..SERVER_IDS.len(), proptest::bool::weighted(0.15))
            .prop_map(|(up, id, stale)| Op::ServerRequest { up, id, stale }),
        4 => (pick(), proptest::bool::weighted(0.15))
            .prop_map(|(pick, again)| Op::Answer { pick, again }),
        3 => (up(), proptest::bool::weighted(0.2)).prop_map(|(up, stale)| Op::Down { up, stale }),
        1 => up().prop_map(|up| Op::Failed { up }),
        3 => (0..3000u64).prop_map(|ms| Op::Advance { ms }),
        3 => (0..4000u64).prop_map(|ms| Op::Expire { ms }),
    ];
    // Most cases start with the upstreams up (a writer pulling); some with them down.
    // Half of them have negotiated 2025-03-26 (batches) with it already.
    let start = vec(
        (proptest::bool::weighted(0.8), proptest::bool::weighted(0.5)),
        UPSTREAMS,
    )
    .prop_map(|ups| {
        let mut ops = Vec::new();
        for (up, &(live, batches)) in ups.iter().enumerate() {
            if live {
                ops.push(Op::Up { up });
                if batches {
                    ops.push(Op::Handshake {
                        s: 0,
                        up,
                        id: IDS.len() - 1,
                        batches,
                    });
                }
            }
        }
        ops
    });
    // A shutdown in some cases (an operation would come too often: nothing is accepted after).
    let shutdown = option::weighted(0.2, any::<prop::sample::Index>());
    (start, vec(op, 1..60), shutdown).prop_map(|(mut start, mut ops, shutdown)| {
        if let Some(at) = shutdown {
            ops.insert(at.index(ops.len() + 1), Op::Shutdown);
        }
        start.extend(ops);
        start
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1024,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn exactly_one_reply_per_request(nsess in 1..=2usize, ops in ops()) {
        let mut m = Model::new(nsess);
        if let Err(e) = m.run(&ops) {
            return Err(TestCaseError::fail(e));
        }
    }
}

// --- Bugs the property test found, kept as plain tests -------------------------------------

/// One core (upstream A), `n` sessions, A up at generation 0.
fn bug_core(n: usize) -> (Core, Vec<SessionId>, Vec<mpsc::Receiver<Bytes>>) {
    let core = Core::new(Limits {
        request_timeout: TIMEOUT,
        max_queued_requests: QUEUE,
    });
    core.add_upstream("a");
    let (mut sessions, mut rx) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let (tx, r) = mpsc::channel(1);
        sessions.push(core.open_session(tx));
        rx.push(r);
    }
    assert_eq!(core.up(A), 0);
    (core, sessions, rx)
}

const A: UpstreamId = UpstreamId(0);

fn pulled(core: &Core) -> Vec<String> {
    let mut out = Vec::new();
    assert!(core.pull(A, 0, &mut out, 100));
    out.iter()
        .map(|m| String::from_utf8_lossy(m.raw()).into_owned())
        .collect()
}

fn send(core: &Core, s: SessionId, text: &str, now: Instant) -> ClientDecision {
    core.from_client_to(s, A, msg(text), now)
}

fn delivered(d: Option<Delivery>) -> (SessionId, String) {
    let d = d.expect("a delivery");
    (d.session, String::from_utf8_lossy(&d.bytes).into_owned())
}

fn wire_of(text: &str) -> String {
    id_text(&serde_json::from_str::<Value>(text).unwrap()["id"])
}

const PING1: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
const CANCEL1: &str = r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1,"reason":"user"}}"#;

fn negotiate_batches(core: &Core, s: SessionId) {
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-03-26"}}"#;
    send(core, s, init, Instant::now());
    pulled(core);
    let reply = r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-03-26"}}"#;
    assert!(core.from_upstream(A, 0, msg(reply)).is_some());
}

/// A batch reply member under a router id (a second session's request, rewritten) was
/// delivered as is: the client got the router's id, never its own answer.
#[test]
fn bug_batch_reply_member_under_a_router_id_reached_the_client_unrewritten() {
    let (core, s, _rx) = bug_core(2);
    let now = Instant::now();
    send(&core, s[0], PING1, now);
    send(&core, s[1], PING1, now);
    let wire = wire_of(&pulled(&core)[1]);
    assert!(router_owned(&wire));
    let member = format!(r#"{{"jsonrpc":"2.0","id":{wire},"result":{{}}}}"#);
    // A batch answers batch members only: stripped; the request waits for its own reply.
    assert!(core
        .from_upstream(A, 0, msg(&format!("[{member}]")))
        .is_none());
    assert_eq!(core.pending_len(), 2);
    let (to, bytes) = delivered(core.from_upstream(A, 0, msg(&member)));
    assert_eq!(
        (to, bytes.as_str()),
        (s[1], r#"{"jsonrpc":"2.0","id":1,"result":{}}"#)
    );
}

/// A batch reply answering two sessions' requests went whole to the first session; the
/// second one's request was dropped from the table and never answered.
#[test]
fn bug_batch_reply_for_two_sessions_went_to_one_and_lost_the_other() {
    let (core, s, _rx) = bug_core(2);
    let now = Instant::now();
    send(&core, s[0], PING1, now);
    send(
        &core,
        s[1],
        r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#,
        now,
    );
    pulled(&core);
    let one = r#"{"jsonrpc":"2.0","id":1,"result":{}}"#;
    let two = r#"{"jsonrpc":"2.0","id":2,"result":{}}"#;
    let (to, bytes) = delivered(core.from_upstream(A, 0, msg(&format!("[{one},{two}]"))));
    assert_eq!((to, bytes), (s[0], format!("[{one}]")));
    assert_eq!(core.pending_len(), 1, "session 1's request still waits");
    let (to, bytes) = delivered(core.from_upstream(A, 0, msg(two)));
    assert_eq!((to, bytes.as_str()), (s[1], two));
}

/// A client's cancellation naming an id it has nothing in flight under was passed on,
/// and cancelled another session's request under that id at the server.
#[test]
fn bug_cancel_for_an_id_not_in_flight_reached_another_sessions_request() {
    let (core, s, _rx) = bug_core(2);
    let now = Instant::now();
    send(&core, s[0], PING1, now);
    pulled(&core);
    assert!(matches!(
        send(&core, s[1], CANCEL1, now),
        ClientDecision::Drop
    ));
    assert!(pulled(&core).is_empty());
}

/// Cancelling a request that travels under a router id passed the client's id on: the
/// server cancelled the other session's request under it, and not this one.
#[test]
fn bug_cancel_of_a_rewritten_request_named_the_clients_id() {
    let (core, s, _rx) = bug_core(2);
    let now = Instant::now();
    send(&core, s[0], PING1, now);
    send(&core, s[1], PING1, now);
    let wire = wire_of(&pulled(&core)[1]);
    assert!(matches!(
        send(&core, s[1], CANCEL1, now),
        ClientDecision::Accepted
    ));
    let written = pulled(&core);
    assert_eq!(
        written,
        [CANCEL1.replace(r#""requestId":1"#, &format!(r#""requestId":{wire}"#))]
    );
    let (to, _) =
        delivered(core.from_upstream(A, 0, msg(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#)));
    assert_eq!(to, s[0]);
}

/// A batch member the client cancelled (or that timed out) while the batch was still
/// queued was written all the same: the server ran a request nobody waited for.
#[test]
fn bug_withdrawn_batch_member_was_still_written() {
    let (core, s, _rx) = bug_core(1);
    negotiate_batches(&core, s[0]);
    core.down(A, 0, &error());
    let t0 = Instant::now();
    let five = r#"{"jsonrpc":"2.0","id":5,"method":"ping"}"#;
    let six = r#"{"jsonrpc":"2.0","id":6,"method":"ping"}"#;
    send(&core, s[0], &format!("[{five},{six}]"), t0);
    let cancel5 = CANCEL1.replace(r#""requestId":1"#, r#""requestId":5"#);
    assert!(matches!(
        send(&core, s[0], &cancel5, t0),
        ClientDecision::Drop
    ));
    send(
        &core,
        s[0],
        r#"[{"jsonrpc":"2.0","id":7,"method":"ping"}]"#,
        t0,
    );
    assert_eq!(
        core.expire(t0 + TIMEOUT).len(),
        2,
        "6 and 7 time out while queued"
    );
    // Nothing is left to write: 5 was withdrawn, 6 and 7 timed out before any writer.
    assert_eq!(core.up(A), 1);
    let mut out = Vec::new();
    assert!(core.pull(A, 1, &mut out, 100));
    assert!(out.is_empty(), "{out:?}");
}

/// A late reply to a request its client cancelled (or that timed out) after it was sent
/// answered whichever request reused its id on that connection, in another session too.
#[test]
fn bug_late_reply_to_a_cancelled_request_answered_another_sessions_request() {
    let (core, s, _rx) = bug_core(2);
    let t0 = Instant::now();
    send(&core, s[0], PING1, t0);
    pulled(&core);
    assert!(matches!(
        send(&core, s[0], CANCEL1, t0),
        ClientDecision::Accepted
    ));
    pulled(&core);
    // Session 1 asks under the same id while the server may still answer the first.
    send(&core, s[1], PING1, t0);
    let wire = wire_of(&pulled(&core)[0]);
    assert!(router_owned(&wire), "travels under {wire}");
    let late = r#"{"jsonrpc":"2.0","id":1,"result":{"for":"session 0"}}"#;
    assert!(core.from_upstream(A, 0, msg(late)).is_none());
    let (to, bytes) = delivered(core.from_upstream(
        A,
        0,
        msg(&format!(r#"{{"jsonrpc":"2.0","id":{wire},"result":{{}}}}"#)),
    ));
    assert_eq!(
        (to, bytes.as_str()),
        (s[1], r#"{"jsonrpc":"2.0","id":1,"result":{}}"#)
    );
    // The late reply came: the id is free again, pass-through as before.
    send(&core, s[0], PING1, t0);
    assert_eq!(pulled(&core), [PING1]);
    // Same after a timeout.
    let two = r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#;
    send(&core, s[0], two, t0);
    pulled(&core);
    assert_eq!(core.expire(t0 + TIMEOUT).len(), 2);
    pulled(&core);
    send(&core, s[1], two, t0);
    assert!(router_owned(&wire_of(&pulled(&core)[0])));
    assert!(core
        .from_upstream(A, 0, msg(r#"{"jsonrpc":"2.0","id":2,"result":{}}"#))
        .is_none());
}
