//! TLS for both listeners: the rustls server configuration (TLS 1.2+, optional mTLS with
//! `WebPkiClientVerifier`) and the accept step that yields one stream type for plain and
//! TLS connections.

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

/// A byte stream a frontend can speak on, plain or TLS.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// An accepted connection.
pub struct Accepted {
    pub stream: Box<dyn Stream>,
    /// A client certificate was presented and verified (mTLS).
    pub client_cert: bool,
}

/// Builds the acceptor from PEM files.
pub fn acceptor(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<TlsAcceptor, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("reading {}: {e}", cert.display()))?;
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("reading {}: {e}", key.display()))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
        .map_err(|e| e.to_string())?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca)
                .map_err(|e| format!("reading {}: {e}", ca.display()))?
            {
                let c = c.map_err(|e| format!("reading {}: {e}", ca.display()))?;
                roots.add(c).map_err(|e| format!("client CA: {e}"))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("client CA: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("TLS certificate: {e}"))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Runs the TLS handshake when TLS is on (10 s bound).
pub async fn accept(tcp: TcpStream, tls: Option<&TlsAcceptor>) -> Result<Accepted, String> {
    let _ = tcp.set_nodelay(true);
    let Some(tls) = tls else {
        return Ok(Accepted {
            stream: Box::new(tcp),
            client_cert: false,
        });
    };
    let stream = match tokio::time::timeout(Duration::from_secs(10), tls.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(format!("TLS handshake failed: {e}")),
        Err(_) => return Err("TLS handshake timed out".into()),
    };
    let client_cert = stream
        .get_ref()
        .1
        .peer_certificates()
        .is_some_and(|c| !c.is_empty());
    Ok(Accepted {
        stream: Box::new(stream),
        client_cert,
    })
}
