//! How loadgen talks to a system under test: the same scenarios over stdio, Streamable
//! HTTP or WebSocket. Blocking I/O everywhere, so the client's own cost stays small and
//! constant.

use std::time::Duration;

/// Makes the request line for an id.
pub type Make = dyn Fn(u64) -> String + Sync;

/// One connection (or process) under test.
pub trait Transport {
    /// The process whose memory is reported (the child for stdio).
    fn pid(&self) -> Option<u32>;
    /// Sends a request and returns its response.
    fn call(&mut self, line: &str) -> anyhow::Result<String>;
    /// Sends a notification.
    fn notify(&mut self, line: &str) -> anyhow::Result<()>;
    /// Sends `total` requests (`make(id)` for ids `first_id..`), keeping `window` in flight;
    /// returns how many came back as errors.
    fn pipeline(
        &mut self,
        make: &Make,
        first_id: u64,
        window: usize,
        total: usize,
    ) -> anyhow::Result<usize>;
    /// Ends the session cleanly.
    fn finish(self: Box<Self>) -> anyhow::Result<()>;
}

/// A stream that carries many messages in flight (stdio, WebSocket).
pub trait Stream {
    /// Queues one message (may buffer).
    fn write(&mut self, line: String) -> anyhow::Result<()>;
    fn flush(&mut self) -> anyhow::Result<()>;
    /// The next response (notifications and server requests are skipped).
    fn read_response(&mut self) -> anyhow::Result<String>;
}

/// Keeps `window` requests in flight on one stream until `total` were answered; returns
/// how many came back as errors.
pub fn pipeline<S: Stream>(
    s: &mut S,
    make: &Make,
    first_id: u64,
    window: usize,
    total: usize,
) -> anyhow::Result<usize> {
    let mut sent = 0;
    let mut errors = 0;
    while sent < window.min(total) {
        s.write(make(first_id + sent as u64))?;
        sent += 1;
    }
    s.flush()?;
    for _ in 0..total {
        if !s.read_response()?.contains("\"result\"") {
            errors += 1;
        }
        if sent < total {
            s.write(make(first_id + sent as u64))?;
            s.flush()?;
            sent += 1;
        }
    }
    Ok(errors)
}

/// `(VmRSS, VmHWM)` of a process, in KiB.
pub fn memory_kib(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

/// Connect/read timeout for network transports: generous, a benchmark must not hang forever.
pub const NET_TIMEOUT: Duration = Duration::from_secs(60);
