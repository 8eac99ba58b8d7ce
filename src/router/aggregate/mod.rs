//! Several servers behind one router: the router is one MCP server to its client.
//!
//! Owns what aggregation decides: which server a client message is for (by the prefixed
//! tool or prompt name, by resource URI), which client requests the router answers itself
//! (`ping`) or from every server's answers (`initialize`, `server/discover`, lists,
//! `logging/setLevel`), how those answers are merged, and what a server's coming and going
//! tells the client (`notifications/*/list_changed`). The core calls [`Aggregate::plan`]
//! under its lock and performs the plan with its own machinery (pending table, outboxes,
//! reverse table), so timeouts, lost connections and shutdown settle aggregated requests
//! exactly like any other. With one server none of this runs: the router stays
//! byte-transparent. No I/O here.

mod answers;
pub mod catalog;
pub mod cursor;
mod eras;
pub mod input;
mod listen;
pub mod merge;
pub mod names;
pub mod ops;
pub mod uri;

use std::borrow::Cow;

use bytes::Bytes;

use super::session::Era;
use super::UpstreamId;
use crate::config::ItemFilter;
use crate::wire::{rewrite, ErrorKind, Id, Message, RouterError};
use catalog::Catalog;
use merge::ServerInfo;
pub use ops::{ListKind, OpKind, Ops, Part, Ready};

/// One server as aggregation sees it (from its configuration).
#[derive(Debug, Clone)]
pub struct ServerSetup {
    pub name: String,
    pub prefix: String,
    pub tools: ItemFilter,
    pub prompts: ItemFilter,
    pub resources: ItemFilter,
}

/// Aggregation's configuration: the servers in upstream order.
#[derive(Debug, Clone)]
pub struct Setup {
    pub separator: String,
    pub servers: Vec<ServerSetup>,
}

/// Whether a server can take a message now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Avail {
    Up,
    Down,
    Failed,
}

/// What to do with a client message.
#[derive(Debug)]
pub enum Plan {
    /// Answer the client now; nothing goes to a server.
    Reply(Bytes),
    /// To one server (rewritten where it named a prefixed tool, prompt or URI).
    Forward(UpstreamId, Message),
    /// To several servers, one merged answer.
    FanOut(OpKind, Vec<(UpstreamId, Message)>),
    /// A notification for each of these servers.
    Broadcast(Vec<UpstreamId>),
    /// The client's retry of a parked call (see `input`), by its request state.
    Resume(String),
}

#[derive(Debug)]
struct Server {
    setup: ServerSetup,
    /// What it said in its `initialize` (or `server/discover`) answer.
    info: Option<ServerInfo>,
    /// The era the router speaks to it: `Stateless` once it answered `server/discover`,
    /// `Handshake` once it was initialized (by the client, or by the router for a
    /// 2026-07-28 client when it does not speak that version).
    era: Option<Era>,
}

/// What a late part still means.
#[derive(Debug, Default)]
pub struct LateEffects {
    /// Send this server the client's `notifications/initialized`.
    pub initialized: Option<Message>,
    /// Notifications for the client.
    pub to_client: Vec<Bytes>,
}

/// Aggregation's state, inside the core.
#[derive(Debug)]
pub struct Aggregate {
    sep: String,
    servers: Vec<Server>,
    catalog: Catalog,
    pub ops: Ops,
    /// The client's `initialize`, as it sent it (servers that come later get it too).
    hello: Option<Message>,
    /// The client's `notifications/initialized`.
    initialized: Option<Message>,
    /// The era the client speaks.
    client_era: Era,
    /// The `_meta` of the 2026-07-28 client's first request (its capabilities and
    /// identity, for the `initialize` the router sends a handshake-era server for it).
    client_meta: Option<Vec<u8>>,
    /// Whether servers were asked their era for a 2026-07-28 client.
    probed: bool,
    /// `server/discover` probes to queue before the message just planned.
    probe: Vec<(UpstreamId, Message)>,
    /// The client's open `subscriptions/listen` stream, if any.
    listen: Option<Listen>,
    /// Name collisions resolved so far, as reported in the log (for `config check`).
    collisions: Vec<String>,
    /// Servers the router just initialized for a 2026-07-28 client: they are owed
    /// `notifications/initialized`.
    bridged: Vec<UpstreamId>,
    /// Calls parked while their handshake-era server asks a 2026-07-28 client something.
    pub inputs: input::Inputs,
}

/// One `subscriptions/listen` stream made of every server's.
#[derive(Debug)]
struct Listen {
    /// The client's listen request id: every frame carries it as its subscription id.
    id: Id,
    /// Each server's listen request (its wire id is that server's subscription id).
    parts: Vec<(UpstreamId, Id)>,
}

const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";

const VERSION_KEY: &[&str] = &["params", "_meta", "io.modelcontextprotocol/protocolVersion"];

fn id_of(msg: &Message) -> Id {
    msg.id()
        .cloned()
        .unwrap_or_else(|| Id::from_raw_json("null"))
}

fn error(kind: ErrorKind, id: &Id, text: String) -> Plan {
    Plan::Reply(RouterError::new(kind, text).to_response(Some(id)))
}

/// The answer to a request without the string member routing needs.
fn missing(msg: &Message, id: &Id, path: &[&str]) -> Plan {
    let text = format!(
        "{}: {} is missing",
        msg.method().unwrap_or(""),
        path.join(".")
    );
    error(ErrorKind::InvalidParams, id, text)
}

/// The string at `path` in `raw`, with its span.
fn string_field<'a>(raw: &'a [u8], path: &[&str]) -> Option<(rewrite::Span, Cow<'a, str>)> {
    let span = rewrite::find(raw, path)?;
    let text = rewrite::string_at(raw, span.clone())?;
    Some((span, text))
}

/// The `notifications/initialized` the router sends a server it initialized itself.
fn bridge_initialized() -> Message {
    Message::parse(Bytes::from_static(
        br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    ))
    .expect("a constant message parses")
}

/// `msg` with the string at `span` replaced by `text`.
fn respliced(msg: &Message, span: rewrite::Span, text: &str) -> Option<Message> {
    msg.spliced_with(span, text.len() + 2, |out| rewrite::quote_into(out, text))
}

impl Aggregate {
    pub fn new(setup: Setup) -> Self {
        Self {
            sep: setup.separator,
            servers: setup
                .servers
                .into_iter()
                .map(|setup| Server {
                    setup,
                    info: None,
                    era: None,
                })
                .collect(),
            catalog: Catalog::default(),
            ops: Ops::default(),
            hello: None,
            initialized: None,
            client_era: Era::Unknown,
            client_meta: None,
            probed: false,
            probe: Vec::new(),
            listen: None,
            collisions: Vec::new(),
            bridged: Vec::new(),
            inputs: input::Inputs::default(),
        }
    }

    /// Every name collision resolved so far, one line each.
    pub fn collisions(&self) -> &[String] {
        &self.collisions
    }

    /// `server/discover` probes the last plan needs sent first (to servers whose era is
    /// not known yet, for a 2026-07-28 client).
    pub fn take_probe(&mut self) -> Vec<(UpstreamId, Message)> {
        std::mem::take(&mut self.probe)
    }

    pub fn name(&self, up: UpstreamId) -> &str {
        self.servers
            .get(up.0 as usize)
            .map_or("?", |s| s.setup.name.as_str())
    }

    fn prefixes(&self) -> Vec<&str> {
        self.servers
            .iter()
            .map(|s| s.setup.prefix.as_str())
            .collect()
    }

    fn ids(&self) -> impl Iterator<Item = UpstreamId> + '_ {
        (0..self.servers.len() as u32).map(UpstreamId)
    }

    /// Where a client request or notification goes. `avail[i]` is server i's state.
    pub fn plan(&mut self, msg: &Message, avail: &[Avail]) -> Plan {
        let usable = |up: &UpstreamId| {
            avail
                .get(up.0 as usize)
                .is_some_and(|a| *a != Avail::Failed)
        };
        let Some(method) = msg.method() else {
            return Plan::Broadcast(Vec::new());
        };
        if msg.id().is_none() {
            return match method {
                "notifications/initialized" => {
                    self.initialized = Some(msg.clone());
                    Plan::Broadcast(self.initialized_servers())
                }
                _ => Plan::Broadcast(self.ids().filter(usable).collect()),
            };
        }
        let id = id_of(msg);
        self.observe_client(msg, method, usable);
        let plan = self.plan_request(msg, method, &id, avail);
        match plan {
            Plan::Forward(up, m) => Plan::Forward(up, self.for_server(up, m)),
            Plan::FanOut(kind, parts) => Plan::FanOut(
                kind,
                parts
                    .into_iter()
                    .map(|(up, m)| (up, self.for_server(up, m)))
                    .collect(),
            ),
            other => other,
        }
    }

    fn plan_request(&mut self, msg: &Message, method: &str, id: &Id, avail: &[Avail]) -> Plan {
        let usable = |up: &UpstreamId| {
            avail
                .get(up.0 as usize)
                .is_some_and(|a| *a != Avail::Failed)
        };
        let id = id.clone();
        if matches!(method, "tools/call" | "prompts/get" | "resources/read") {
            if let Some(token) = self.inputs.token_of(msg) {
                return Plan::Resume(token);
            }
        }
        match method {
            "ping" => Plan::Reply(merge::result(&id, b"{}")),
            "initialize" => {
                self.hello = Some(msg.clone());
                self.initialized = None;
                for s in &mut self.servers {
                    s.info = None;
                    s.era = None;
                }
                let to = self.ids().filter(usable).map(|u| (u, msg.clone())).collect();
                Plan::FanOut(OpKind::Initialize, to)
            }
            "server/discover" => {
                let to = self.ids().filter(usable).map(|u| (u, msg.clone())).collect();
                Plan::FanOut(OpKind::Discover, to)
            }
            "logging/setLevel" => {
                let to = self
                    .ids()
                    .filter(usable)
                    .filter(|u| self.info(*u).is_some_and(|i| i.has("logging")))
                    .map(|u| (u, msg.clone()))
                    .collect();
                Plan::FanOut(OpKind::SetLevel, to)
            }
            "subscriptions/listen" => {
                let to = self
                    .ids()
                    .filter(usable)
                    .filter(|u| self.servers[u.0 as usize].era != Some(Era::Handshake))
                    .map(|u| (u, msg.clone()))
                    .collect();
                Plan::FanOut(OpKind::Listen, to)
            }
            "tools/call" => self.by_name(ListKind::Tools, msg, &id, &["params", "name"]),
            "prompts/get" => self.by_name(ListKind::Prompts, msg, &id, &["params", "name"]),
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                self.by_uri(msg, &id, &["params", "uri"])
            }
            "completion/complete" => match string_field(msg.raw(), &["params", "ref", "type"]) {
                Some((_, t)) if t == "ref/prompt" => {
                    self.by_name(ListKind::Prompts, msg, &id, &["params", "ref", "name"])
                }
                Some((_, t)) if t == "ref/resource" => {
                    self.by_uri(msg, &id, &["params", "ref", "uri"])
                }
                _ => error(
                    ErrorKind::InvalidParams,
                    &id,
                    "completion/complete: params.ref must name a prompt (ref/prompt) or a resource (ref/resource)".into(),
                ),
            },
            m => match ListKind::from_method(m) {
                Some(kind) => self.list(kind, msg, &id, avail),
                None => error(
                    ErrorKind::MethodNotFound,
                    &id,
                    format!("method '{m}' is not routed when several servers are aggregated: it names no tool, prompt or resource"),
                ),
            },
        }
    }

    fn info(&self, up: UpstreamId) -> Option<&ServerInfo> {
        self.servers.get(up.0 as usize)?.info.as_ref()
    }

    fn initialized_servers(&self) -> Vec<UpstreamId> {
        self.ids().filter(|u| self.info(*u).is_some()).collect()
    }

    fn by_name(&self, kind: ListKind, msg: &Message, id: &Id, path: &[&str]) -> Plan {
        let what = if kind == ListKind::Tools {
            "tool"
        } else {
            "prompt"
        };
        let Some((span, shown)) = string_field(msg.raw(), path) else {
            return missing(msg, id, path);
        };
        let Some((server, original)) = self
            .catalog
            .resolve_name(kind, &shown, &self.sep, || self.prefixes())
        else {
            return error(
                ErrorKind::InvalidParams,
                id,
                format!("unknown {what} '{shown}': no server behind this router has it (names are <server prefix>{}<name>; list them again)", self.sep),
            );
        };
        let s = &self.servers[server];
        let filter = if kind == ListKind::Tools {
            &s.setup.tools
        } else {
            &s.setup.prompts
        };
        if !filter.allows(original) {
            return error(
                ErrorKind::InvalidParams,
                id,
                format!(
                    "{what} '{shown}' is hidden by the configuration of server '{}'",
                    s.setup.name
                ),
            );
        }
        match respliced(msg, span, original) {
            Some(m) => Plan::Forward(UpstreamId(server as u32), m),
            None => error(
                ErrorKind::InvalidRequest,
                id,
                "the request could not be rewritten".into(),
            ),
        }
    }

    fn by_uri(&self, msg: &Message, id: &Id, path: &[&str]) -> Plan {
        let Some((span, shown)) = string_field(msg.raw(), path) else {
            return missing(msg, id, path);
        };
        let with_resources: Vec<usize> = (0..self.servers.len())
            .filter(|i| {
                self.servers[*i]
                    .info
                    .as_ref()
                    .is_some_and(|x| x.has("resources"))
            })
            .collect();
        let Some((server, original)) =
            self.catalog
                .resolve_uri(&shown, &self.prefixes(), &with_resources)
        else {
            return error(
                ErrorKind::InvalidParams,
                id,
                format!("unknown resource '{shown}': no server behind this router lists it or a template it matches (list resources again)"),
            );
        };
        let up = UpstreamId(server as u32);
        match original {
            None => Plan::Forward(up, msg.clone()),
            Some(original) => match respliced(msg, span, &original) {
                Some(m) => Plan::Forward(up, m),
                None => error(
                    ErrorKind::InvalidRequest,
                    id,
                    "the request could not be rewritten".into(),
                ),
            },
        }
    }

    fn list(&self, kind: ListKind, msg: &Message, id: &Id, avail: &[Avail]) -> Plan {
        let up_now = |u: UpstreamId| avail.get(u.0 as usize) == Some(&Avail::Up);
        let cursor = string_field(msg.raw(), &["params", "cursor"]);
        let Some((span, cursor)) = cursor else {
            let to = self
                .ids()
                .filter(|u| up_now(*u))
                .filter(|u| self.info(*u).is_none_or(|i| i.has(kind.capability())))
                .map(|u| (u, msg.clone()))
                .collect();
            return Plan::FanOut(OpKind::List(kind), to);
        };
        let Some(parts) = cursor::unpack(&cursor) else {
            return error(
                ErrorKind::InvalidParams,
                id,
                format!(
                    "{}: invalid cursor (not one this router gave out)",
                    kind.items_key()
                ),
            );
        };
        let mut to = Vec::new();
        for (name, their) in parts {
            let Some(i) = self.servers.iter().position(|s| s.setup.name == name) else {
                continue;
            };
            let up = UpstreamId(i as u32);
            if !up_now(up) {
                continue;
            }
            if let Some(m) = respliced(msg, span.clone(), &their) {
                to.push((up, m));
            }
        }
        Plan::FanOut(OpKind::List(kind), to)
    }

    /// What to send a server that is up but was never made ready for this client: the
    /// client's `initialize` (handshake era), or a `server/discover` probe (2026-07-28).
    pub fn greeting(&self, up: UpstreamId) -> Option<(OpKind, Message)> {
        if self.info(up).is_some() {
            return None;
        }
        match self.client_era {
            Era::Handshake => Some((OpKind::Background, self.hello.clone()?)),
            Era::Stateless => Some((OpKind::Probe, self.discover_message()?)),
            Era::Unknown => None,
        }
    }

    /// `notifications/*/list_changed` for each list server `up` contributes to (it came
    /// or went), once the client has done its handshake.
    pub fn list_changed(&self, up: UpstreamId) -> Vec<Bytes> {
        let Some(info) = self.info(up) else {
            return Vec::new();
        };
        if self.client_era == Era::Unknown {
            return Vec::new();
        }
        let lists = ["tools", "prompts", "resources"]
            .into_iter()
            .filter(|c| info.has(c));
        if self.client_era == Era::Stateless {
            return lists
                .filter_map(|c| self.on_listen(&format!("notifications/{c}/list_changed")))
                .collect();
        }
        lists
            .map(|c| merge::notification(&format!("notifications/{c}/list_changed")))
            .collect()
    }

    /// A server's notification as the client should see it (`None`: not at all): log
    /// messages name their server in `logger`; frames of a server's listen stream carry
    /// the client's subscription id; a server's own acknowledgement is the router's to
    /// give (already given).
    pub fn from_server(&self, up: UpstreamId, msg: Message) -> Option<Message> {
        if self.client_era == Era::Stateless {
            return self.stateless_frame(up, msg);
        }
        match msg.method() {
            Some("notifications/message") => Some(self.relabel(up, msg)),
            Some("notifications/resources/updated") => Some(self.shown_uri(up, msg)),
            _ => Some(msg),
        }
    }

    /// A resource update names the URI as the client was shown it (the per-server form
    /// when two servers list that URI).
    fn shown_uri(&self, up: UpstreamId, msg: Message) -> Message {
        let Some((span, uri)) = string_field(msg.raw(), &["params", "uri"]) else {
            return msg;
        };
        if !self.catalog.is_shared(&uri) {
            return msg;
        }
        let Some(s) = self.servers.get(up.0 as usize) else {
            return msg;
        };
        respliced(&msg, span, &uri::disambiguate(&s.setup.prefix, &uri)).unwrap_or(msg)
    }

    fn relabel(&self, up: UpstreamId, msg: Message) -> Message {
        let name = self.name(up);
        let edited = match string_field(msg.raw(), &["params", "logger"]) {
            Some((span, l)) => {
                let q = rewrite::quote(&format!("{name}/{l}"));
                Some(rewrite::splice(msg.raw(), &[(span, q.as_bytes())]))
            }
            None => rewrite::set_member(
                msg.raw(),
                &["params"],
                "logger",
                rewrite::quote(name).as_bytes(),
            ),
        };
        match edited.and_then(|b| Message::parse(Bytes::from(b)).ok()) {
            Some(m) => m,
            None => msg,
        }
    }
}
