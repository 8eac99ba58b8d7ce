//! A TLS front for the tests: a test CA (rcgen) signs a certificate for 127.0.0.1 and
//! localhost; the proxy terminates TLS and forwards the bytes to a plain backend port, so
//! any test server (HTTP, WebSocket) is reachable over `https://` / `wss://`. It keeps
//! everything clients sent (decrypted) so tests can check headers.

use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::ServerConfig;

pub struct TlsProxy {
    pub port: u16,
    /// The CA's certificate, PEM: what a client must trust.
    pub ca_pem: String,
    /// Everything clients sent, decrypted.
    pub seen: Arc<Mutex<Vec<u8>>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl TlsProxy {
    pub fn start(backend_port: u16) -> TlsProxy {
        let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "mcp-router test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        let config = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                port_tx.send(listener.local_addr().unwrap().port()).unwrap();
                let serve = async {
                    loop {
                        let Ok((tcp, _)) = listener.accept().await else {
                            return;
                        };
                        let (acceptor, seen) = (acceptor.clone(), seen2.clone());
                        tokio::spawn(async move {
                            let Ok(tls) = acceptor.accept(tcp).await else {
                                return;
                            };
                            let Ok(backend) =
                                tokio::net::TcpStream::connect(("127.0.0.1", backend_port)).await
                            else {
                                return;
                            };
                            let (mut cr, mut cw) = tokio::io::split(tls);
                            let (mut br, mut bw) = backend.into_split();
                            let up = async {
                                let mut buf = vec![0u8; 65536];
                                while let Ok(n) = cr.read(&mut buf).await {
                                    if n == 0 || bw.write_all(&buf[..n]).await.is_err() {
                                        break;
                                    }
                                    seen.lock().unwrap().extend_from_slice(&buf[..n]);
                                }
                                let _ = bw.shutdown().await;
                            };
                            let down = async {
                                let _ = tokio::io::copy(&mut br, &mut cw).await;
                                let _ = cw.shutdown().await;
                            };
                            tokio::join!(up, down);
                        });
                    }
                };
                tokio::select! {
                    _ = serve => {}
                    _ = stop_rx => {}
                }
            });
        });
        TlsProxy {
            port: port_rx.recv().unwrap(),
            ca_pem: ca.pem(),
            seen,
            _stop: stop_tx,
        }
    }

    pub fn seen_text(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }
}
