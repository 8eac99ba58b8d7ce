//! TLS client configuration (rustls) from `tls:` settings: the platform's roots plus
//! Mozilla's, plus a configured CA bundle; minimum version; cipher suites by IANA name;
//! SPKI pinning; a client certificate for mTLS; verification on unless turned off
//! explicitly (then a warning is logged at start and every certificate is accepted, but
//! pins, when configured, are still enforced). One `ClientConfig` serves reqwest (HTTP,
//! SSE, the OAuth2 token endpoint) and tokio-tungstenite (WebSocket).
//!
//! Also owns [`explain`], which turns rustls/webpki failure texts into what to change.
//! Does not own: which settings apply to which upstream (the config merges them), any
//! socket or handshake (the transports do those).

use std::sync::Arc;

use base64::Engine as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{ring as ring_provider, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    SupportedCipherSuite,
};

use crate::config::TlsConfig;

/// Builds the client configuration; the error says which file or setting is wrong.
/// `alpn`: the application protocols to offer (HTTP: h2 and http/1.1; WebSocket: none).
pub fn client_config(tls: &TlsConfig, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, String> {
    let tls13_only = tls.min_version == "1.3";
    let provider = Arc::new(CryptoProvider {
        cipher_suites: cipher_suites(&tls.cipher_suites, tls13_only)?,
        ..ring_provider::default_provider()
    });
    let versions: &[&rustls::SupportedProtocolVersion] = if tls13_only {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    let verifier: Arc<dyn ServerCertVerifier> = if tls.verify {
        let roots = roots(tls)?;
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| format!("TLS setup failed: {e}"))?
    } else {
        Arc::new(AcceptAnything(provider.clone()))
    };
    let verifier: Arc<dyn ServerCertVerifier> = if tls.pinned_spki_sha256.is_empty() {
        verifier
    } else {
        Arc::new(Pinned {
            inner: verifier,
            pins: parse_pins(&tls.pinned_spki_sha256)?,
        })
    };
    // `dangerous()` only means "a verifier of our own": it is the WebPki one (optionally
    // wrapped by the pin check) unless `verify: false` was chosen.
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match (&tls.client_cert, &tls.client_key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert_path), Some(key_path)) => {
            let certs = read_certs(cert_path, "tls.client_cert")?;
            let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| {
                format!(
                    "tls.client_key {}: not a PEM private key (PKCS#8, PKCS#1 or SEC1): {e}",
                    key_path.display()
                )
            })?;
            builder.with_client_auth_cert(certs, key).map_err(|e| {
                format!(
                    "tls.client_cert {} / tls.client_key {}: unusable as a client certificate: {e}",
                    cert_path.display(),
                    key_path.display()
                )
            })?
        }
        (Some(_), None) => {
            return Err("tls.client_cert is set but tls.client_key is not: set both".into())
        }
        (None, Some(_)) => {
            return Err("tls.client_key is set but tls.client_cert is not: set both".into())
        }
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// `cipher_suites` by IANA name → the ring provider's suites (empty = all of them).
/// Checks that at least one suite is usable with the allowed versions, because rustls would
/// otherwise fail every handshake with a far less helpful message.
fn cipher_suites(names: &[String], tls13_only: bool) -> Result<Vec<SupportedCipherSuite>, String> {
    use ring_provider::cipher_suite as cs;
    if names.is_empty() {
        return Ok(ring_provider::ALL_CIPHER_SUITES.to_vec());
    }
    let mut suites = Vec::with_capacity(names.len());
    for name in names {
        let suite = match name.as_str() {
            "TLS_AES_128_GCM_SHA256" => cs::TLS13_AES_128_GCM_SHA256,
            "TLS_AES_256_GCM_SHA384" => cs::TLS13_AES_256_GCM_SHA384,
            "TLS_CHACHA20_POLY1305_SHA256" => cs::TLS13_CHACHA20_POLY1305_SHA256,
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => {
                cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            }
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => {
                cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
            }
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => {
                cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            }
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => {
                cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
            }
            other => {
                return Err(format!(
                    "tls.cipher_suites: unknown cipher suite '{other}' (known: {})",
                    crate::config::CIPHER_SUITES.join(", ")
                ))
            }
        };
        if !suites.contains(&suite) {
            suites.push(suite);
        }
    }
    if tls13_only && !suites.iter().any(|s| s.tls13().is_some()) {
        return Err(
            "tls.cipher_suites lists only TLS 1.2 suites, but tls.min_version is 1.3, so no \
             suite is usable: add a TLS 1.3 suite (TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, \
             TLS_CHACHA20_POLY1305_SHA256) or set tls.min_version: \"1.2\""
                .into(),
        );
    }
    Ok(suites)
}

/// The trust roots: Mozilla's and the platform's, plus `ca_cert_path`.
fn roots(tls: &TlsConfig) -> Result<RootCertStore, String> {
    let mut roots = base_roots().clone();
    if let Some(path) = &tls.ca_cert_path {
        for cert in read_certs(path, "tls.ca_cert_path")? {
            roots.add(cert).map_err(|e| {
                format!(
                    "tls.ca_cert_path {}: unusable certificate: {e}",
                    path.display()
                )
            })?;
        }
    }
    Ok(roots)
}

/// Every certificate of a PEM file; `setting` names the key in errors.
fn read_certs(
    path: &std::path::Path,
    setting: &str,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{setting} {}: cannot be read: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| {
            format!(
                "{setting} {}: not a PEM certificate bundle: {e}",
                path.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "{setting} {}: holds no certificate",
            path.display()
        ));
    }
    Ok(certs)
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

/// SHA-256 over the certificate's DER SubjectPublicKeyInfo: what `pinned_spki_sha256`
/// holds. Pinning the key rather than the certificate survives renewals with the same key.
pub fn spki_sha256(cert: &CertificateDer<'_>) -> Result<[u8; 32], String> {
    let parsed = webpki::EndEntityCert::try_from(cert)
        .map_err(|e| format!("the server's certificate cannot be parsed: {e:?}"))?;
    let digest = ring::digest::digest(&ring::digest::SHA256, &parsed.subject_public_key_info());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    Ok(out)
}

/// Each pin as base64 (standard or URL-safe, padded or not, optionally `sha256/`-prefixed
/// as curl and HPKP write them) or hex.
fn parse_pins(pins: &[String]) -> Result<Vec<[u8; 32]>, String> {
    pins.iter()
        .enumerate()
        .map(|(i, pin)| {
            parse_pin(pin).ok_or_else(|| {
                format!(
                    "tls.pinned_spki_sha256[{i}] '{pin}': not a SHA-256 hash in base64 (44 \
                     characters) or hex (64 characters)"
                )
            })
        })
        .collect()
}

fn parse_pin(pin: &str) -> Option<[u8; 32]> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let pin = pin.trim();
    let pin = pin
        .strip_prefix("sha256//")
        .or_else(|| pin.strip_prefix("sha256/"))
        .unwrap_or(pin);
    let bytes = if pin.len() == 64 && pin.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..32)
            .map(|i| u8::from_str_radix(&pin[2 * i..2 * i + 2], 16).ok())
            .collect::<Option<Vec<u8>>>()?
    } else {
        [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(pin).ok())?
    };
    bytes.try_into().ok()
}

/// Wraps the normal verifier (or the verify-off one) and additionally requires the leaf's
/// SPKI hash to be one of the pins. The chain is checked first, so a wrong CA is reported
/// as such rather than as a pin mismatch.
#[derive(Debug)]
struct Pinned {
    inner: Arc<dyn ServerCertVerifier>,
    pins: Vec<[u8; 32]>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let presented = spki_sha256(end_entity).map_err(|e| {
            rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(
                Arc::new(PinError(e)),
            )))
        })?;
        if self.pins.contains(&presented) {
            return Ok(verified);
        }
        let presented = base64::engine::general_purpose::STANDARD.encode(presented);
        Err(rustls::Error::InvalidCertificate(CertificateError::Other(
            rustls::OtherError(Arc::new(PinError(format!(
                "certificate pin mismatch: the server's key has SPKI SHA-256 {presented}, which \
                 is not in tls.pinned_spki_sha256; if the server's key changed on purpose, add \
                 this value to tls.pinned_spki_sha256"
            )))),
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn root_hint_subjects(&self) -> Option<&[rustls::DistinguishedName]> {
        self.inner.root_hint_subjects()
    }
}

/// A pin failure as rustls carries it. `Debug` prints the text alone because rustls shows
/// the `Debug` form inside its own message (`invalid peer certificate: Other(…)`).
struct PinError(String);

impl std::fmt::Debug for PinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Display for PinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PinError {}

/// `tls.verify: false`: accepts any certificate (signatures are still checked, so the
/// handshake itself is sound; who is on the other end is not).
#[derive(Debug)]
struct AcceptAnything(Arc<CryptoProvider>);

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

/// What to do about a TLS failure, from the error's text (rustls's and webpki's, as they
/// reach us through reqwest, tungstenite or io errors: the typed error is usually gone by
/// then). `setting_prefix` is where the settings live, e.g. `gateway.tls`. `None` when the
/// text is not a TLS failure we know.
pub fn explain(error_text: &str, setting_prefix: &str) -> Option<String> {
    let text = error_text.to_ascii_lowercase();
    let has = |needles: &[&str]| {
        needles
            .iter()
            .any(|n| text.contains(&n.to_ascii_lowercase()))
    };
    let p = setting_prefix;
    // Order matters: the more specific causes first (a pin text also says "certificate").
    if has(&["pin mismatch"]) {
        Some(format!(
            "the server's key does not match {p}.pinned_spki_sha256: if the key changed on \
             purpose, add the presented value to {p}.pinned_spki_sha256"
        ))
    } else if has(&["UnknownIssuer", "unknown issuer"]) {
        Some(format!(
            "the server's certificate is signed by an unknown issuer: set {p}.ca_cert_path to \
             the CA that signed it"
        ))
    } else if has(&["NotValidForName", "not valid for name"]) {
        Some(format!(
            "the server's certificate is not valid for the host name in the URL: connect with a \
             name the certificate lists, or have the certificate reissued for this name \
             ({p}.verify: false would turn off all checks, not just this one)"
        ))
    } else if has(&["NotValidYet", "not valid yet"]) {
        Some(
            "the server's certificate is not valid yet: check this machine's clock and the \
             server's certificate dates"
                .into(),
        )
    } else if has(&["Expired"]) {
        Some(
            "the server's certificate has expired: the server must renew it (check this \
             machine's clock too)"
                .into(),
        )
    } else if has(&["CertificateRequired", "certificate required"]) {
        Some(format!(
            "the server requires a client certificate: set {p}.client_cert and client_key \
             (auth.type: mtls)"
        ))
    } else if has(&[
        "UnknownCA",
        "unknown ca",
        "BadCertificate",
        "bad certificate",
    ]) {
        Some(format!(
            "the server rejected our client certificate: check that {p}.client_cert is signed \
             by a CA the server trusts and matches {p}.client_key"
        ))
    } else if has(&[
        "ProtocolVersion",
        "protocol version",
        "TlsVersion",
        "SupportedVersionsExtensionRequired",
    ]) {
        Some(format!(
            "the server and this router share no TLS version: if the server only speaks TLS \
             1.2, set {p}.min_version: \"1.2\""
        ))
    } else if has(&[
        "HandshakeFailure",
        "handshake failure",
        "NoCipherSuitesInCommon",
    ]) {
        Some(format!(
            "the TLS handshake failed (often no common cipher suite or version): check \
             {p}.cipher_suites and {p}.min_version"
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
