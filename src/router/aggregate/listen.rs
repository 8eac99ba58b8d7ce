//! `subscriptions/listen` (2026-07-28) when several servers are aggregated: one stream for
//! the client made of every server's, acknowledged by the router, each frame carrying the
//! client's subscription id; the router's own changes (a server coming or going, a
//! handshake-era server's `list_changed`) go on it too. Part of [`Aggregate`]; no I/O.

use bytes::Bytes;

use super::{id_of, Aggregate, Listen, SUBSCRIPTION_ID};
use crate::router::UpstreamId;
use crate::wire::{rewrite, Id, Message};

impl Aggregate {
    /// The client opened a listen stream (`parts`: each server's listen request): the
    /// acknowledgement the router sends at once, echoing what the client asked for (the
    /// router relays every server's changes, and its own).
    pub fn start_listen(&mut self, client: &Message, parts: Vec<(UpstreamId, Id)>) -> Bytes {
        let id = id_of(client);
        let asked = rewrite::find(client.raw(), &["params", "notifications"])
            .map_or(&b"{}"[..], |s| &client.raw()[s]);
        let mut out = br#"{"jsonrpc":"2.0","method":"notifications/subscriptions/acknowledged","params":{"notifications":"#.to_vec();
        out.extend_from_slice(asked);
        out.extend_from_slice(
            format!(r#","_meta":{{"{SUBSCRIPTION_ID}":{}}}}}}}"#, id.as_json()).as_bytes(),
        );
        self.listen = Some(Listen { id, parts });
        Bytes::from(out)
    }

    /// The client ended listen stream `id`.
    pub fn end_listen(&mut self, id: &Id) -> bool {
        if self.listen.as_ref().is_some_and(|l| l.id == *id) {
            self.listen = None;
            return true;
        }
        false
    }

    /// A change notification the client should get on its listen stream (2026-07-28),
    /// or `None` when it has none open.
    pub(super) fn on_listen(&self, method: &str) -> Option<Bytes> {
        let l = self.listen.as_ref()?;
        Some(Bytes::from(format!(
            r#"{{"jsonrpc":"2.0","method":"{method}","params":{{"_meta":{{"{SUBSCRIPTION_ID}":{}}}}}}}"#,
            l.id.as_json()
        )))
    }

    pub(super) fn stateless_frame(&self, up: UpstreamId, msg: Message) -> Option<Message> {
        let method = msg.method().unwrap_or("");
        let sub = rewrite::find(msg.raw(), &["params", "_meta", SUBSCRIPTION_ID]);
        let Some(span) = sub else {
            // Outside any listen stream: a change is relayed on the client's stream; a
            // log or progress notification belongs to a request and passes.
            if method.ends_with("/list_changed") {
                let b = self.on_listen(method)?;
                return Message::parse(b).ok();
            }
            return Some(if method == "notifications/message" {
                self.relabel(up, msg)
            } else {
                msg
            });
        };
        let l = self.listen.as_ref()?;
        let theirs = std::str::from_utf8(&msg.raw()[span.clone()]).ok()?;
        if !l
            .parts
            .iter()
            .any(|(u, id)| *u == up && id.as_json() == theirs)
        {
            return None;
        }
        if method == "notifications/subscriptions/acknowledged" {
            return None;
        }
        Message::parse(Bytes::from(rewrite::splice(
            msg.raw(),
            &[(span, l.id.as_json().as_bytes())],
        )))
        .ok()
    }
}
