//! What the client has been shown: the names of tools and prompts (prefixed, each mapped
//! back to its server and original name), the resource URIs each server lists, and the
//! servers' URI templates; and the merge of one page from each server into the router's
//! page.
//!
//! A merged list is spliced, never rebuilt: each item is the server's bytes with only
//! its `name` (tools, prompts) or, for a URI two servers both list, its `uri` replaced;
//! descriptions, schemas, annotations and `_meta` stay byte for byte. No I/O; the tables
//! only grow with what servers list (names stay stable for the whole session).

use foldhash::HashMap;

use super::names::{self, Names};
use super::ops::ListKind;
use super::uri;
use crate::config::ItemFilter;
use crate::wire::rewrite::{self, Span};

/// One server's page of a list, as it answered.
pub struct Page<'a> {
    pub server: usize,
    pub prefix: &'a str,
    pub filter: &'a ItemFilter,
    /// The whole reply (a result, or an error that contributes nothing).
    pub reply: &'a [u8],
}

/// One item of a page: (page index, the item's span, its key's span and text).
type Item = (usize, Span, Option<(Span, String)>);

/// The names and URIs shown so far.
#[derive(Debug, Default)]
pub struct Catalog {
    tools: Names,
    prompts: Names,
    /// URI → the servers that list it, in the order they were seen.
    uris: HashMap<String, Vec<usize>>,
    /// (server, uriTemplate), first seen first.
    templates: Vec<(usize, String)>,
}

impl Catalog {
    fn names(&mut self, kind: ListKind) -> Option<&mut Names> {
        match kind {
            ListKind::Tools => Some(&mut self.tools),
            ListKind::Prompts => Some(&mut self.prompts),
            _ => None,
        }
    }

    /// The router's page: every server's items (filtered, renamed) in server order;
    /// `next` is the router's cursor for the following page, if any server has one.
    pub fn merge(
        &mut self,
        kind: ListKind,
        sep: &str,
        pages: &[Page],
        next: Option<&str>,
        stateless: bool,
    ) -> Vec<u8> {
        let key = kind.items_key();
        let field = kind.key_field();
        // Items of every page: (page index, item span, key span, key).
        let mut items: Vec<Item> = Vec::new();
        for (p, page) in pages.iter().enumerate() {
            let Some(spans) = rewrite::elements(page.reply, &["result", key]) else {
                continue;
            };
            for span in spans {
                let item = &page.reply[span.clone()];
                let named = rewrite::find(item, &[field]).and_then(|s| {
                    let text = rewrite::string_at(item, s.clone())?.into_owned();
                    Some((s, text))
                });
                if let Some((_, text)) = &named {
                    if !page.filter.allows(text) {
                        continue;
                    }
                    if kind == ListKind::Resources {
                        let listed = self.uris.entry(text.clone()).or_default();
                        if !listed.contains(&page.server) {
                            listed.push(page.server);
                        }
                    }
                    if kind == ListKind::Templates
                        && !self
                            .templates
                            .iter()
                            .any(|(s, t)| *s == page.server && t == text)
                    {
                        self.templates.push((page.server, text.clone()));
                    }
                }
                items.push((p, span, named));
            }
        }
        let mut out = Vec::with_capacity(pages.iter().map(|p| p.reply.len()).sum::<usize>() + 64);
        out.extend_from_slice(b"{");
        rewrite::quote_into(&mut out, key);
        out.extend_from_slice(b":[");
        for (i, (p, span, named)) in items.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            let page = &pages[p];
            let item = &page.reply[span];
            let renamed = named.and_then(|(s, text)| {
                let shown = match kind {
                    ListKind::Tools | ListKind::Prompts => {
                        let names = self.names(kind)?;
                        names.insert(page.server, page.prefix, sep, &text)
                    }
                    ListKind::Resources if self.uris.get(&text).is_some_and(|v| v.len() > 1) => {
                        uri::disambiguate(page.prefix, &text)
                    }
                    // A template two servers list: shown per server like a URI, so what
                    // the client makes of it names the server (`restore` routes it).
                    ListKind::Templates
                        if self.templates.iter().filter(|(_, t)| *t == text).count() > 1 =>
                    {
                        uri::disambiguate(page.prefix, &text)
                    }
                    _ => return None,
                };
                Some((s, shown))
            });
            match renamed {
                Some((s, shown)) => {
                    let q = rewrite::quote(&shown);
                    out.extend_from_slice(&rewrite::splice(item, &[(s, q.as_bytes())]));
                }
                None => out.extend_from_slice(item),
            }
        }
        out.push(b']');
        if let Some(next) = next {
            out.extend_from_slice(br#","nextCursor":"#);
            rewrite::quote_into(&mut out, next);
        }
        // The rest of the result (2026-07-28: resultType, ttlMs, cacheScope) as the first
        // server that answered wrote it, the shortest ttl of all.
        let mut ttl: Option<u64> = None;
        let mut extra: Vec<(String, Vec<u8>)> = Vec::new();
        for page in pages {
            let Some(members) = rewrite::members(page.reply, &["result"]) else {
                continue;
            };
            for (name, span) in members {
                let value = &page.reply[span];
                if name == "ttlMs" {
                    if let Ok(t) = serde_json::from_slice::<u64>(value) {
                        ttl = Some(ttl.map_or(t, |x| x.min(t)));
                    }
                    continue;
                }
                if name == key || name == "nextCursor" || name == "_meta" {
                    continue;
                }
                if !extra.iter().any(|(n, _)| *n == name) {
                    extra.push((name, value.to_vec()));
                }
            }
        }
        if stateless {
            // Required on the 2026-07-28 wire; a handshake-era server behind the router
            // does not write them.
            ttl.get_or_insert(0);
            for (name, value) in [
                ("resultType", &b"\"complete\""[..]),
                ("cacheScope", b"\"private\""),
            ] {
                if !extra.iter().any(|(n, _)| n == name) {
                    extra.push((name.to_owned(), value.to_vec()));
                }
            }
        }
        for (name, value) in extra {
            out.push(b',');
            rewrite::quote_into(&mut out, &name);
            out.push(b':');
            out.extend_from_slice(&value);
        }
        if let Some(t) = ttl {
            out.extend_from_slice(format!(r#","ttlMs":{t}"#).as_bytes());
        }
        out.push(b'}');
        out
    }

    /// Whether more than one server lists `uri` (it is shown per server).
    pub fn is_shared(&self, uri: &str) -> bool {
        self.uris.get(uri).is_some_and(|v| v.len() > 1)
    }

    /// Collisions of names found by the last merges, for the log.
    pub fn take_collisions(&mut self) -> Vec<names::Collision> {
        let mut all = self.tools.take_collisions();
        all.extend(self.prompts.take_collisions());
        all
    }

    /// The server and original name behind a tool or prompt name the client used.
    /// `prefixes` is asked for only when the name was never listed (the common case
    /// of a listed name costs no allocation).
    pub fn resolve_name<'a, 'p>(
        &'a self,
        kind: ListKind,
        shown: &'a str,
        sep: &str,
        prefixes: impl FnOnce() -> Vec<&'p str>,
    ) -> Option<(usize, &'a str)> {
        let names = match kind {
            ListKind::Tools => &self.tools,
            ListKind::Prompts => &self.prompts,
            _ => return None,
        };
        if let Some((s, original)) = names.resolve(shown) {
            return Some((s, original));
        }
        names::split_prefixed(shown, sep, &prefixes())
    }

    /// The server a resource URI belongs to, and the URI to send it when the client used
    /// the disambiguated form. `resources` says which servers have resources at all.
    pub fn resolve_uri(
        &self,
        shown: &str,
        prefixes: &[&str],
        resources: &[usize],
    ) -> Option<(usize, Option<String>)> {
        if let Some((prefix, original)) = uri::restore(shown) {
            if let Some(s) = prefixes.iter().position(|p| *p == prefix) {
                return Some((s, Some(original.to_owned())));
            }
        }
        if let Some(servers) = self.uris.get(shown) {
            if let Some(s) = servers.first() {
                return Some((*s, None));
            }
        }
        if let Some((s, _)) = self
            .templates
            .iter()
            .find(|(_, t)| uri::matches_template(t, shown))
        {
            return Some((*s, None));
        }
        match resources {
            [only] => Some((*only, None)),
            _ => None,
        }
    }
}
