//! Test support: spawn the built router binary and talk to it over real pipes.
//!
//! Everything here is synchronous and bounded: every wait has a timeout, so a broken
//! router fails a test instead of hanging it. Peers installed by `scripts/setup-peers`
//! are found under `target/peers` (or `$MCP_ROUTER_PEERS`); when one is missing, a test
//! fails under `CI=true` and is skipped (with a message) elsewhere. `MCP_ROUTER_BIN`
//! runs the tests against another router binary (e.g. an older build, to check that a
//! regression test fails without its fix); the test peers still come from this build.

#![allow(dead_code)]

pub mod gateway;
pub mod mcpb_peer;
pub mod tls_proxy;
pub mod ws_bridge;
pub mod ws_peer;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const WAIT: Duration = Duration::from_secs(20);

/// The router under test: this build's, or `$MCP_ROUTER_BIN`.
pub fn router_bin() -> PathBuf {
    std::env::var_os("MCP_ROUTER_BIN")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_mcp-router")))
}

/// Where this build put its binaries (the test gateway, the examples).
pub fn built_bin_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mcp-router"))
        .parent()
        .expect("a bin dir")
        .to_path_buf()
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn py_script(name: &str) -> PathBuf {
    repo_root().join("tests/e2e/support/py").join(name)
}

/// The system Python (standard library only scripts).
pub fn python() -> String {
    std::env::var("MCP_ROUTER_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Where `scripts/setup-peers` installed the peers.
pub fn peers_dir() -> PathBuf {
    std::env::var_os("MCP_ROUTER_PEERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/peers"))
}

/// Returns `Some(path)` if the peer exists; otherwise fails under CI, skips elsewhere.
pub fn require_peer(path: PathBuf, what: &str) -> Option<PathBuf> {
    if path.exists() {
        return Some(path);
    }
    let msg = format!(
        "{what} not found at {} — run scripts/setup-peers",
        path.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}");
    }
    eprintln!("SKIP: {msg}");
    None
}

/// The venv Python with the official `mcp` SDK.
pub fn sdk_python() -> Option<PathBuf> {
    require_peer(
        peers_dir().join("venv/bin/python"),
        "the Python mcp SDK venv",
    )
}

/// `node_modules/@modelcontextprotocol/server-everything/dist/index.js`.
pub fn server_everything() -> Option<PathBuf> {
    require_peer(
        peers_dir().join("node/node_modules/@modelcontextprotocol/server-everything/dist/index.js"),
        "@modelcontextprotocol/server-everything",
    )
}

/// A running router with piped stdio.
pub struct RouterProc {
    pub child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    pub dir: tempfile::TempDir,
}

pub struct Spawn<'a> {
    pub args: Vec<String>,
    pub env: Vec<(&'a str, String)>,
}

impl RouterProc {
    /// Starts `mcp-router <args>` in a fresh temp dir (also its HOME, so no user config
    /// file is picked up).
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> RouterProc {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, args, env)
    }

    pub fn start_in(dir: tempfile::TempDir, args: &[&str], env: &[(&str, &str)]) -> RouterProc {
        let mut cmd = Command::new(router_bin());
        cmd.args(args)
            .env("HOME", dir.path())
            .env_remove("MCP_ROUTER_CONFIG")
            .env("MCP_LOGGING_FORMAT", "text");
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self::start_cmd(dir, cmd)
    }

    /// Starts any stdio program the same way (e.g. an MCP server spoken to directly, for
    /// what it answers without the router in between).
    pub fn start_program(program: &Path, args: &[&str], env: &[(&str, &str)]) -> RouterProc {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cmd = Command::new(program);
        cmd.args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self::start_cmd(dir, cmd)
    }

    fn start_cmd(dir: tempfile::TempDir, mut cmd: Command) -> RouterProc {
        cmd.current_dir(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {:?}: {e}", cmd.get_program()));
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let err_buf = Arc::new(Mutex::new(String::new()));
        capture_stderr(stderr, err_buf.clone(), "router");
        RouterProc {
            stdin: child.stdin.take(),
            child,
            lines,
            stderr: err_buf,
            dir,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).expect("write to router");
        stdin.flush().expect("flush");
    }

    pub fn send(&mut self, v: &Value) {
        let mut line = serde_json::to_vec(v).unwrap();
        line.push(b'\n');
        self.send_raw(&line);
    }

    /// The next line from the router's stdout, parsed.
    pub fn recv(&self, timeout: Duration) -> Option<Value> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => Some(serde_json::from_str(&line).unwrap_or_else(|e| {
                panic!("router wrote a non-JSON line on stdout ({e}): {line:.200}")
            })),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => None,
        }
    }

    pub fn recv_line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// Waits for the response with `id`, returning it and anything else seen before it.
    pub fn response(&self, id: &Value) -> (Value, Vec<Value>) {
        let (line, others) = self.response_line(id);
        (serde_json::from_str(&line).unwrap(), others)
    }

    /// Waits for the response with `id`, returning its line as written (byte for byte)
    /// and anything else seen before it.
    pub fn response_line(&self, id: &Value) -> (String, Vec<Value>) {
        let deadline = Instant::now() + WAIT;
        let mut others = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(line) = self.recv_line(left) else {
                panic!(
                    "no response with id {id} within {WAIT:?}; saw {others:?}\nstderr:\n{}",
                    self.stderr()
                );
            };
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("a non-JSON line on stdout ({e}): {line:.200}"));
            if v.get("id") == Some(id) && v.get("method").is_none() {
                return (line, others);
            }
            others.push(v);
        }
    }

    pub fn request(&mut self, id: Value, method: &str, params: Value) -> Value {
        self.send(&json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}));
        self.response(&id).0
    }

    /// Sends a request and returns its response and what arrived before it.
    pub fn response_with(&mut self, id: &Value, method: &str) -> (Value, Vec<Value>) {
        self.send(&json!({"jsonrpc":"2.0","id":id,"method":method,"params":{}}));
        self.response(id)
    }

    pub fn initialize(&mut self, version: &str) -> Value {
        let r = self.request(
            json!(0),
            "initialize",
            json!({"protocolVersion":version,"capabilities":{},"clientInfo":{"name":"e2e","version":"1"}}),
        );
        self.send(&json!({"jsonrpc":"2.0","method":"notifications/initialized"}));
        r
    }

    pub fn close_stdin(&mut self) {
        self.stdin.take();
    }

    /// The router's stdin, to write from another thread (dropping it closes stdin).
    pub fn take_stdin(&mut self) -> ChildStdin {
        self.stdin.take().expect("stdin open")
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return Some(s);
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until the router's log contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.stderr().contains(needle))
    }
}

impl Drop for RouterProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Collects a child's stderr into `sink` (echoed with `[prefix]` when E2E_ECHO_STDERR is set).
pub fn capture_stderr(
    stderr: impl Read + Send + 'static,
    sink: Arc<Mutex<String>>,
    prefix: &'static str,
) {
    thread::spawn(move || {
        let mut r = BufReader::new(stderr);
        let mut buf = String::new();
        while let Ok(n) = r.read_line(&mut buf) {
            if n == 0 {
                break;
            }
            if std::env::var_os("E2E_ECHO_STDERR").is_some() {
                eprint!("[{prefix}] {buf}");
            }
            sink.lock().unwrap().push_str(&buf);
            buf.clear();
        }
    });
}

/// Runs a router that must refuse to start: exit code 1, nothing on stdout (the
/// protocol channel); returns what it said on stderr.
pub fn start_error(cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().expect("run mcp-router");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(out.stdout.is_empty(), "nothing but protocol on stdout");
    err
}

/// Fails, showing the offending lines, if `secret` appears anywhere in `log`.
pub fn assert_no_secret(log: &str, secret: &str) {
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(secret)).collect();
    assert!(
        lines.is_empty(),
        "a secret appeared in the log:\n{}",
        lines.join("\n")
    );
}

pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Lines of a file (empty if it does not exist yet).
pub fn read_lines(path: &Path) -> Vec<String> {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    s.lines().map(str::to_owned).collect()
}

/// How many lines of the record file at `path` start with `prefix` (the test servers'
/// `--record`: one line per request they saw).
pub fn recorded(path: &Path, prefix: &str) -> usize {
    read_lines(path)
        .iter()
        .filter(|l| l.starts_with(prefix))
        .count()
}

/// Whether a process exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// The fault server's command line, as words after `--`.
pub fn fault_server(extra: &[&str]) -> Vec<String> {
    let mut v = vec![python(), py_script("fault_server.py").display().to_string()];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// A server process listening on a loopback port; killed (and reaped) on drop.
pub struct NetServer {
    child: Child,
    pub port: u16,
}

impl NetServer {
    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for NetServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits until something accepts connections on `port`.
pub fn wait_for_port(port: u16) {
    assert!(
        wait_until(Duration::from_secs(20), || std::net::TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "nothing listens on port {port}"
    );
}

/// Starts `command` (quiet) and waits for it to listen on `port`.
pub fn net_server(command: &mut Command, port: u16) -> NetServer {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start a test server");
    wait_for_port(port);
    NetServer { child, port }
}

/// The Python SDK test server over a network transport (`streamable-http`, `sse`) on `port`.
pub fn sdk_net_server(py: &Path, transport: &str, port: u16, flags: &[&str]) -> NetServer {
    net_server(
        Command::new(py)
            .arg(py_script("sdk_server.py"))
            .args(["--transport", transport, "--port", &port.to_string()])
            .args(flags),
        port,
    )
}

impl RouterProc {
    /// Closes stdin and expects a clean exit (code 0) within 10 s.
    pub fn finish_ok(&mut self) {
        self.close_stdin();
        let code = self
            .wait_exit(Duration::from_secs(10))
            .and_then(|s| s.code());
        assert_eq!(
            code,
            Some(0),
            "router did not exit cleanly: {}",
            self.stderr()
        );
    }
}

/// How a test ends the router.
#[derive(Clone, Copy, Debug)]
pub enum Stop {
    /// The client closes stdin (it is done).
    Stdin,
    /// `kill -<name>` (e.g. "TERM").
    Signal(&'static str),
}

impl RouterProc {
    /// Writes `requests` (from another thread: a router may stop reading its stdin),
    /// lets the router try to forward them, ends it with `stop`, and expects it to exit
    /// within `limit` with exactly one reply for every request (an error is fine).
    /// Returns how long the exit took.
    pub fn flood_then_stop(&mut self, requests: &[Value], stop: Stop, limit: Duration) -> Duration {
        let ids: Vec<Value> = requests.iter().map(|r| r["id"].clone()).collect();
        let mut bytes = Vec::new();
        for r in requests {
            serde_json::to_writer(&mut bytes, r).unwrap();
            bytes.push(b'\n');
        }
        let mut stdin = self.take_stdin();
        let feeder = thread::spawn(move || {
            let _ = stdin.write_all(&bytes).and_then(|()| stdin.flush());
            stdin
        });
        assert!(
            wait_until(WAIT, || feeder.is_finished()),
            "the router stopped reading its stdin: {}",
            self.stderr()
        );
        let stdin = feeder.join().unwrap();
        // Time to forward what it can, and to get stuck on what it cannot.
        thread::sleep(Duration::from_millis(500));
        let t0 = Instant::now();
        match stop {
            Stop::Stdin => drop(stdin),
            Stop::Signal(sig) => {
                self.signal(sig);
                // Kept open: the signal alone must end it.
                self.stdin = Some(stdin);
            }
        }
        let exited = self.wait_exit(limit);
        let took = t0.elapsed();
        assert!(
            exited.is_some(),
            "the router did not exit within {limit:?} of {stop:?}; stderr:\n{}",
            self.stderr()
        );
        let mut replies: std::collections::HashMap<String, usize> = Default::default();
        while let Some(v) = self.recv(Duration::from_secs(2)) {
            if v.get("method").is_none() {
                *replies.entry(v["id"].to_string()).or_default() += 1;
            }
        }
        for id in &ids {
            let n = replies.remove(&id.to_string()).unwrap_or(0);
            assert_eq!(
                n,
                1,
                "{n} replies for request {id}; stderr:\n{}",
                self.stderr()
            );
        }
        assert!(
            replies.is_empty(),
            "replies for ids never sent: {replies:?}"
        );
        took
    }
}

/// The ids of a batch reply's members, in order (fails the test if `v` is no array).
pub fn batch_ids(v: &Value) -> Vec<&Value> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected a batch reply (an array): {v}"))
        .iter()
        .map(|m| &m["id"])
        .collect()
}
