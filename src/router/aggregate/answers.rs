//! Settling fan-out requests when several servers are aggregated: the client's answer
//! once every part is in (the merged `initialize`, `server/discover`, list page, or the
//! end of a listen stream), what each server said about itself, and what a part that
//! settles after its answer still means. Part of [`Aggregate`]; no I/O.

use bytes::Bytes;

use super::catalog::Page;
use super::{
    cursor, merge, string_field, Aggregate, Era, LateEffects, ListKind, OpKind, Part, Ready,
    SUBSCRIPTION_ID,
};
use crate::router::UpstreamId;
use crate::wire::rewrite;

impl Aggregate {
    /// The client's answer for a fan-out request whose parts are in.
    pub fn complete(&mut self, ready: Ready) -> Bytes {
        let id = &ready.client_id;
        match ready.kind {
            OpKind::Initialize => {
                for (up, part) in &ready.parts {
                    self.record_initialize(*up, part);
                }
                let client_version = self
                    .hello
                    .as_ref()
                    .and_then(|h| string_field(h.raw(), &["params", "protocolVersion"]))
                    .map(|(_, v)| v)
                    .unwrap_or_else(|| "2025-11-25".into());
                let agreed: Vec<&str> = self
                    .servers
                    .iter()
                    .filter_map(|s| s.info.as_ref()?.version.as_deref())
                    .collect();
                let version = merge::common_version(&client_version, agreed.into_iter());
                let result =
                    merge::initialize_result(&version, self.capabilities(), self.instructions());
                merge::result(id, result.to_string().as_bytes())
            }
            OpKind::Discover => {
                for (up, part) in &ready.parts {
                    self.record(*up, part);
                }
                let result = merge::discover_result(self.capabilities(), self.instructions());
                merge::result(id, result.to_string().as_bytes())
            }
            OpKind::List(kind) => {
                let mut next: Vec<(&str, String)> = Vec::new();
                let mut pages = Vec::with_capacity(ready.parts.len());
                let mut order: Vec<&(UpstreamId, Part)> = ready.parts.iter().collect();
                order.sort_by_key(|(up, _)| *up);
                for (up, part) in order {
                    let Some(s) = self.servers.get(up.0 as usize) else {
                        continue;
                    };
                    let reply = part.bytes();
                    if let Some((_, c)) = string_field(reply, &["result", "nextCursor"]) {
                        next.push((s.setup.name.as_str(), c.into_owned()));
                    }
                    let filter = match kind {
                        ListKind::Tools => &s.setup.tools,
                        ListKind::Prompts => &s.setup.prompts,
                        _ => &s.setup.resources,
                    };
                    pages.push(Page {
                        server: up.0 as usize,
                        prefix: &s.setup.prefix,
                        filter,
                        reply,
                    });
                }
                let packed = (!next.is_empty()).then(|| {
                    let refs: Vec<(&str, &str)> =
                        next.iter().map(|(n, c)| (*n, c.as_str())).collect();
                    cursor::pack(&refs)
                });
                let stateless = self.client_era == Era::Stateless;
                let body =
                    self.catalog
                        .merge(kind, &self.sep, &pages, packed.as_deref(), stateless);
                for c in self.catalog.take_collisions() {
                    let line = format!(
                        "'{}' is both {}'s '{}' and {}'s '{}': the second is shown as '{}'",
                        c.name,
                        self.name(UpstreamId(c.kept.0 as u32)),
                        c.kept.1,
                        self.name(UpstreamId(c.renamed.0 as u32)),
                        c.renamed.1,
                        c.renamed.2
                    );
                    tracing::warn!("name collision: {line}");
                    self.collisions.push(line);
                }
                merge::result(id, &body)
            }
            OpKind::Listen => {
                // Every server ended its stream: so does the router's.
                self.listen = None;
                let body = format!(
                    r#"{{"resultType":"complete","_meta":{{"{SUBSCRIPTION_ID}":{}}}}}"#,
                    id.as_json()
                );
                merge::result(id, body.as_bytes())
            }
            OpKind::SetLevel | OpKind::Background | OpKind::Probe => merge::result(id, b"{}"),
        }
    }

    pub(super) fn record_initialize(&mut self, up: UpstreamId, part: &Part) -> bool {
        let info = match part {
            Part::Reply(b) => merge::parse_initialize(b),
            Part::Failed(_) => None,
        };
        if info.is_none() {
            tracing::warn!(upstream = %self.name(up), "server not initialized: its tools, prompts and resources are left out until it answers");
        }
        let ok = info.is_some();
        if let Some(s) = self.servers.get_mut(up.0 as usize) {
            s.era = ok.then_some(Era::Handshake);
            s.info = info;
        }
        if ok && self.client_era == Era::Stateless {
            self.bridged.push(up);
        }
        ok
    }

    /// Records what a server said in a `server/discover` answer or, when it speaks only
    /// the handshake era, in the `initialize` the router sent it instead. `true` when
    /// the server is now usable.
    pub(super) fn record(&mut self, up: UpstreamId, part: &Part) -> bool {
        let Part::Reply(bytes) = part else {
            return false;
        };
        if let Some(info) = merge::parse_discover(bytes) {
            if info.supported.iter().any(|v| v == "2026-07-28") {
                if let Some(s) = self.servers.get_mut(up.0 as usize) {
                    s.info = Some(info);
                    s.era = Some(Era::Stateless);
                }
                return true;
            }
            if rewrite::find(bytes, &["result", "protocolVersion"]).is_some() {
                return self.record_initialize(up, part);
            }
        }
        false
    }

    pub(super) fn capabilities(&self) -> serde_json::Map<String, serde_json::Value> {
        merge::union_capabilities(self.servers.iter().filter_map(|s| s.info.as_ref()))
    }

    pub(super) fn instructions(&self) -> Option<String> {
        merge::joined_instructions(
            self.servers
                .iter()
                .filter_map(|s| Some((s.setup.name.as_str(), s.info.as_ref()?))),
        )
    }

    /// A part that settled after its request was answered.
    pub fn late(&mut self, kind: OpKind, up: UpstreamId, part: &Part) -> LateEffects {
        let mut out = LateEffects::default();
        let ready = match kind {
            OpKind::Initialize | OpKind::Background => self.record_initialize(up, part),
            OpKind::Discover | OpKind::Probe => self.record(up, part),
            _ => false,
        };
        if !ready {
            return out;
        }
        tracing::info!(upstream = %self.name(up), "server ready after the client's handshake; announcing its lists");
        if self.client_era == Era::Handshake {
            out.initialized = self.initialized.clone();
        }
        out.to_client = self.list_changed(up);
        out
    }
}
