//! TLS client configuration (rustls) from `tls:` settings: the platform's roots plus
//! Mozilla's, plus a configured CA bundle; minimum version; verification on unless turned
//! off explicitly (then a warning is logged at start and every certificate is accepted).
//! One `ClientConfig` serves reqwest (HTTP, SSE) and tokio-tungstenite (WebSocket).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::TlsConfig;

/// Builds the client configuration; the error says which file or setting is wrong.
/// `alpn`: the application protocols to offer (HTTP: h2 and http/1.1; WebSocket: none).
pub fn client_config(tls: &TlsConfig, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if tls.min_version == "1.3" {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    let mut config = if tls.verify {
        let mut roots = base_roots().clone();
        if let Some(path) = &tls.ca_cert_path {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("tls.ca_cert_path {}: cannot be read: {e}", path.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| {
                    format!(
                        "tls.ca_cert_path {}: not a PEM certificate bundle: {e}",
                        path.display()
                    )
                })?;
            if certs.is_empty() {
                return Err(format!(
                    "tls.ca_cert_path {}: holds no certificate",
                    path.display()
                ));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| {
                    format!(
                        "tls.ca_cert_path {}: unusable certificate: {e}",
                        path.display()
                    )
                })?;
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnything(provider)))
            .with_no_client_auth()
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Mozilla's roots plus the platform's, loaded once: reading the platform's store costs
/// milliseconds, and start-up builds more than one client.
fn base_roots() -> &'static RootCertStore {
    static ROOTS: std::sync::OnceLock<RootCertStore> = std::sync::OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        // Platform roots are a bonus (corporate CAs); a machine without them still works.
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        roots
    })
}

/// `tls.verify: false`: accepts any certificate (signatures are still checked, so the
/// handshake itself is sound; who is on the other end is not).
#[derive(Debug)]
struct AcceptAnything(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
