//! The one end-to-end test binary: the real `mcp-router` binary against real peers.
//! Each capability has its own file under `tests/e2e/`.

#[path = "e2e/support/mod.rs"]
mod support;

#[path = "e2e/aggregate.rs"]
mod aggregate;
#[path = "e2e/chaos.rs"]
mod chaos;
#[path = "e2e/cli.rs"]
mod cli;
#[path = "e2e/detect.rs"]
mod detect;
#[path = "e2e/gateway.rs"]
mod gateway;
#[path = "e2e/http.rs"]
mod http;
#[path = "e2e/interop.rs"]
mod interop;
#[path = "e2e/list_tools.rs"]
mod list_tools;
#[path = "e2e/pool.rs"]
mod pool;
#[path = "e2e/reconnect.rs"]
mod reconnect;
#[path = "e2e/resilience.rs"]
mod resilience;
#[path = "e2e/stdio.rs"]
mod stdio;
#[path = "e2e/tls.rs"]
mod tls;
#[path = "e2e/ws.rs"]
mod ws;
