//! The test gateway (`tests/gateway`, binary `mcp-test-gateway`) as a process the tests
//! start, kill and restart on the same ports, plus the certificates for its TLS modes.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;

/// `target/<profile>/mcp-test-gateway`, next to the router binary (the workspace build
/// makes both).
pub fn gateway_bin() -> PathBuf {
    let path = built_bin_dir().join("mcp-test-gateway");
    assert!(
        path.exists(),
        "{} is missing: build the workspace (`cargo test --workspace` or `cargo build -p mcp-test-gateway`)",
        path.display()
    );
    path
}

/// A running test gateway.
pub struct GatewayProc {
    child: Child,
    args: Vec<String>,
    pub ws: Option<String>,
    pub tcp: Option<String>,
    pub oauth: Option<String>,
    pub log: Arc<Mutex<String>>,
}

impl GatewayProc {
    /// Starts `mcp-test-gateway ARGS` (listeners on port 0) and waits for its ready line.
    pub fn start(args: &[String]) -> GatewayProc {
        let log = Arc::new(Mutex::new(String::new()));
        Self::spawn(args.to_vec(), log).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts the process; an error when it exits (e.g. its port is still taken) or does
    /// not print its ready line in time.
    fn spawn(args: Vec<String>, log: Arc<Mutex<String>>) -> Result<GatewayProc, String> {
        let mut child = Command::new(gateway_bin())
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mcp-test-gateway");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let stderr = child.stderr.take().expect("stderr");
        capture_stderr(stderr, log.clone(), "gateway");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = stdout.read_line(&mut line);
            let _ = tx.send(line);
            // Keep draining so the gateway never blocks on a full pipe.
            let mut rest = Vec::new();
            let _ = stdout.read_to_end(&mut rest);
        });
        let line = rx.recv_timeout(WAIT).unwrap_or_default();
        if !line.starts_with("ready") {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "mcp-test-gateway did not get ready (first line {line:?}); log: {}",
                log.lock().unwrap()
            ));
        }
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")).map(str::to_owned))
        };
        Ok(GatewayProc {
            ws: field("ws"),
            tcp: field("tcp"),
            oauth: field("oauth"),
            child,
            args,
            log,
        })
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.ws.as_ref().expect("ws listener"))
    }

    pub fn wss_url(&self, path: &str) -> String {
        let port = self
            .ws
            .as_ref()
            .expect("ws listener")
            .rsplit(':')
            .next()
            .unwrap()
            .to_owned();
        format!("wss://localhost:{port}{path}")
    }

    pub fn tcp_url(&self) -> String {
        format!("tcp://{}", self.tcp.as_ref().expect("tcp listener"))
    }

    pub fn tcps_url(&self) -> String {
        let port = self
            .tcp
            .as_ref()
            .expect("tcp listener")
            .rsplit(':')
            .next()
            .unwrap()
            .to_owned();
        format!("tcps://localhost:{port}")
    }

    pub fn token_url(&self) -> String {
        format!(
            "http://{}/token",
            self.oauth.as_ref().expect("oauth listener")
        )
    }

    /// Sends `sig` (`STOP`: frozen — it reads and answers nothing, its sockets stay open;
    /// `CONT`: thawed).
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// SIGKILL: no close frames, no goodbye.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM: the gateway says "Server shutting down" on its WebSocket connections.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    /// Starts again on the same ports with other arguments (e.g. other fault switches);
    /// `args` name the listeners as the first start did (their addresses are replaced by
    /// the ports in use).
    pub fn restart_with(&mut self, args: &[String]) {
        self.args = args.to_vec();
        self.restart();
    }

    /// Starts again on the same ports, with the same arguments.
    pub fn restart(&mut self) {
        self.kill();
        let mut args = self.args.clone();
        for (flag, addr) in [
            ("--ws", &self.ws),
            ("--tcp", &self.tcp),
            ("--oauth", &self.oauth),
        ] {
            if let (Some(addr), Some(i)) = (addr, args.iter().position(|a| a == flag)) {
                args[i + 1] = addr.clone();
            }
        }
        // The old listener's port may take a moment to be free again.
        let mut last = String::new();
        for _ in 0..50 {
            match Self::spawn(args.clone(), self.log.clone()) {
                Ok(g) => {
                    *self = g;
                    return;
                }
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the gateway did not restart: {last}");
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// How many times the log contains `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.log().matches(needle).count()
    }
}

impl Drop for GatewayProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Certificates for TLS tests: a CA, a server certificate for localhost/127.0.0.1 and a
/// client certificate, all signed by the CA, written as PEM files in `dir`.
pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A CA that signed nothing here (for "unknown issuer").
    pub other_ca: PathBuf,
    /// The server certificate's DER (to compute pins).
    pub server_der: Vec<u8>,
}

impl Pki {
    /// The gateway's TLS flags (`mtls`: also require client certificates from our CA).
    pub fn gateway_args(&self, mtls: bool) -> Vec<String> {
        let mut args = vec![
            "--tls-cert".to_owned(),
            self.server_cert.display().to_string(),
            "--tls-key".to_owned(),
            self.server_key.display().to_string(),
        ];
        if mtls {
            args.extend(["--client-ca".to_owned(), self.ca.display().to_string()]);
        }
        args
    }
}

pub fn pki(dir: &Path) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .unwrap()
        .signed_by(&server_key, &ca, &ca_key)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = CertificateParams::new(vec!["mcp-router-client".into()])
        .unwrap()
        .signed_by(&client_key, &ca, &ca_key)
        .unwrap();
    let other_key = KeyPair::generate().unwrap();
    let mut other_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    other_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let other = other_params.self_signed(&other_key).unwrap();
    let write = |name: &str, pem: String| {
        let p = dir.join(name);
        std::fs::write(&p, pem).unwrap();
        p
    };
    Pki {
        ca: write("ca.pem", ca.pem()),
        server_cert: write("server.pem", server.pem()),
        server_key: write("server.key", server_key.serialize_pem()),
        client_cert: write("client.pem", client.pem()),
        client_key: write("client.key", client_key.serialize_pem()),
        other_ca: write("other-ca.pem", other.pem()),
        server_der: server.der().to_vec(),
    }
}
