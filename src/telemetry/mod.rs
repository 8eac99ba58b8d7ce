//! Observability: structured logs now; metrics and the health endpoint join here.

pub mod logging;
pub mod redact;
