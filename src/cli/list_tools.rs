//! `mcp-router config check --list-tools`: start every configured server briefly, exactly
//! as the router would (same specs, same core, same aggregation), ask for the tools and
//! prompts the client would see, print their names, and stop everything.
//!
//! Speaks to the core as a client session of its own (no stdio); never leaves a server
//! running: the upstreams are stopped and awaited (bounded) before it returns.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::run::aggregate_setup;
use crate::config::Config;
use crate::router::{self, ClientDecision, Core, Limits, SessionId};
use crate::upstream;
use crate::wire::Message;

/// What the client would see.
#[derive(Debug, Default)]
pub struct Listing {
    pub tools: Vec<String>,
    pub prompts: Vec<String>,
    /// Servers that could not be asked, with why.
    pub problems: Vec<String>,
    /// Names two servers would share, and how each was resolved.
    pub collisions: Vec<String>,
}

/// Starts the servers, lists, stops them.
pub fn list(cfg: &Config) -> anyhow::Result<Listing> {
    let specs = upstream::spec::from_config(cfg).map_err(anyhow::Error::msg)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let timeout = cfg.local.request_timeout.min(Duration::from_secs(20));
    let limits = Limits {
        request_timeout: timeout,
        max_queued_requests: cfg.local.max_queued_requests,
    };
    rt.block_on(async move {
        let mut resolved = Vec::with_capacity(specs.len());
        for spec in specs {
            resolved.push(spec.resolve().await.map_err(anyhow::Error::msg)?);
        }
        let core = Arc::new(Core::new(limits));
        let names: Vec<String> = resolved.iter().map(|s| s.name.clone()).collect();
        if names.len() > 1 {
            core.aggregate(aggregate_setup(cfg, &names));
        }
        let tracker = TaskTracker::new();
        let stop = CancellationToken::new();
        for spec in resolved {
            let port = core.port(core.add_upstream(&spec.name));
            upstream::spawn(spec, port, stop.clone(), &tracker).map_err(anyhow::Error::msg)?;
        }
        tracker.spawn(router::timer::run(core.clone(), stop.clone()));
        let (tx, mut rx) = mpsc::channel(256);
        let session = core.open_session(tx);
        let mut ask = Asker {
            core: &core,
            session,
            rx: &mut rx,
            timeout,
        };
        let mut listing = ask.listing().await;
        if let Ok(l) = listing.as_mut() {
            l.collisions = core.name_collisions();
        }
        core.close_session(session);
        stop.cancel();
        tracker.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await;
        listing
    })
}

struct Asker<'a> {
    core: &'a Arc<Core>,
    session: SessionId,
    rx: &'a mut mpsc::Receiver<Bytes>,
    timeout: Duration,
}

impl Asker<'_> {
    async fn listing(&mut self) -> anyhow::Result<Listing> {
        let mut out = Listing::default();
        let init = self
            .request(
                "initialize",
                serde_json::json!({
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "mcp-router config check", "version": env!("CARGO_PKG_VERSION")},
                }),
            )
            .await?;
        if let Some(e) = init.get("error") {
            anyhow::bail!(
                "initialize failed: {}",
                e["message"].as_str().unwrap_or("?")
            );
        }
        self.send(&serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        let caps = init["result"]["capabilities"].clone();
        if caps.get("tools").is_some() {
            out.tools = self.names("tools/list", "tools", &mut out.problems).await?;
        }
        if caps.get("prompts").is_some() {
            out.prompts = self
                .names("prompts/list", "prompts", &mut out.problems)
                .await?;
        }
        Ok(out)
    }

    async fn names(
        &mut self,
        method: &str,
        key: &str,
        problems: &mut Vec<String>,
    ) -> anyhow::Result<Vec<String>> {
        let mut names = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let params = match &cursor {
                Some(c) => serde_json::json!({"cursor": c}),
                None => serde_json::json!({}),
            };
            let reply = self.request(method, params).await?;
            if let Some(e) = reply.get("error") {
                problems.push(format!(
                    "{method}: {}",
                    e["message"].as_str().unwrap_or("?")
                ));
                break;
            }
            let r = &reply["result"];
            for item in r[key].as_array().into_iter().flatten() {
                if let Some(n) = item["name"].as_str() {
                    names.push(n.to_owned());
                }
            }
            match r["nextCursor"].as_str() {
                Some(c) if names.len() < 100_000 => cursor = Some(c.to_owned()),
                _ => break,
            }
        }
        Ok(names)
    }

    fn send(&self, v: &Value) -> ClientDecision {
        match Message::parse(Bytes::from(v.to_string())) {
            Ok(m) => self.core.from_client(self.session, m, Instant::now()),
            Err(_) => ClientDecision::Drop,
        }
    }

    /// One request and its reply (notifications and server requests meanwhile are not
    /// for us and are skipped).
    async fn request(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        let id = format!("check-{method}");
        let msg =
            serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        if let ClientDecision::Reply(b) = self.send(&msg) {
            return Ok(serde_json::from_slice(&b)?);
        }
        let deadline = tokio::time::Instant::now() + self.timeout + Duration::from_secs(1);
        loop {
            let got = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .with_context(|| format!("no answer to {method} within {:?}", self.timeout))?;
            let Some(bytes) = got else {
                anyhow::bail!("the router stopped before answering {method}");
            };
            let Ok(v) = serde_json::from_slice::<Value>(&bytes) else {
                continue;
            };
            if v.get("method").is_none() && v["id"] == Value::String(id.clone()) {
                return Ok(v);
            }
        }
    }
}
