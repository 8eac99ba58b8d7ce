//! Network plumbing shared by the network upstreams: TLS client configuration and
//! credentials. No protocol knowledge here, and no routing.

pub mod credentials;
pub mod tls;
