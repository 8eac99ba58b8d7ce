//! Tests for the TLS client configuration: every option builds, bad settings are named,
//! and real handshakes (in memory, client ↔ rustls server) check pinning, mTLS and cipher
//! suite restriction. Certificates are made with rcgen per test.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConnection, RootCertStore, ServerConfig, ServerConnection};

use super::*;

/// A CA, a server certificate for `localhost` and a client certificate, all signed by it,
/// written as PEM files into a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
    ca: CertificateDer<'static>,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: Vec<u8>,
    server_spki: Vec<u8>,
}

impl Pki {
    fn new() -> Self {
        let ca_key = KeyPair::generate().expect("ca key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("ca cert");

        let server_key = KeyPair::generate().expect("server key");
        let server = CertificateParams::new(vec!["localhost".to_string()])
            .expect("server params")
            .signed_by(&server_key, &ca, &ca_key)
            .expect("server cert");

        let client_key = KeyPair::generate().expect("client key");
        let client = CertificateParams::new(vec!["router".to_string()])
            .expect("client params")
            .signed_by(&client_key, &ca, &ca_key)
            .expect("client cert");

        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, body: &str| {
            let mut f = std::fs::File::create(dir.path().join(name)).expect("create");
            f.write_all(body.as_bytes()).expect("write");
        };
        write("ca.pem", &ca.pem());
        write("client.pem", &client.pem());
        write("client.key", &client_key.serialize_pem());
        Self {
            ca: ca.der().clone(),
            server_chain: vec![server.der().clone()],
            server_key: server_key.serialize_der(),
            server_spki: server_key.public_key_der(),
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Client settings trusting the test CA.
    fn tls(&self) -> TlsConfig {
        TlsConfig {
            ca_cert_path: Some(self.path("ca.pem")),
            ..TlsConfig::default()
        }
    }

    fn with_client_cert(&self, mut tls: TlsConfig) -> TlsConfig {
        tls.client_cert = Some(self.path("client.pem"));
        tls.client_key = Some(self.path("client.key"));
        tls
    }

    fn server(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
        mtls: bool,
    ) -> ServerConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .expect("versions");
        let builder = if mtls {
            let mut roots = RootCertStore::empty();
            roots.add(self.ca.clone()).expect("root");
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        builder
            .with_single_cert(
                self.server_chain.clone(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone())),
            )
            .expect("server config")
    }
}

/// Runs a handshake in memory. Returns the client side's error when there is one (that is
/// what users see), else the server's.
fn handshake(
    client: Arc<ClientConfig>,
    server: ServerConfig,
) -> Result<(ClientConnection, ServerConnection), String> {
    let name = ServerName::try_from("localhost").expect("name");
    let mut c = ClientConnection::new(client, name).map_err(|e| e.to_string())?;
    let mut s = ServerConnection::new(Arc::new(server)).map_err(|e| e.to_string())?;
    let mut server_error = None;
    for _ in 0..20 {
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).expect("client write");
        }
        if !buf.is_empty() {
            let mut rd = &buf[..];
            while !rd.is_empty() {
                s.read_tls(&mut rd).expect("server read");
            }
            if let Err(e) = s.process_new_packets() {
                server_error.get_or_insert(e.to_string());
            }
        }
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).expect("server write");
        }
        if !buf.is_empty() {
            let mut rd = &buf[..];
            while !rd.is_empty() {
                c.read_tls(&mut rd).expect("client read");
            }
            c.process_new_packets().map_err(|e| e.to_string())?;
        }
        if let Some(e) = server_error {
            return Err(e);
        }
        if !c.is_handshaking() && !s.is_handshaking() && !c.wants_write() && !s.wants_write() {
            return Ok((c, s));
        }
    }
    Err("handshake did not finish".into())
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn every_option_builds() {
    let pki = Pki::new();
    assert!(client_config(&TlsConfig::default(), &[]).is_ok());
    for suite in crate::config::CIPHER_SUITES {
        let tls = TlsConfig {
            min_version: "1.2".into(),
            cipher_suites: vec![suite.to_string()],
            ..TlsConfig::default()
        };
        assert!(client_config(&tls, &[]).is_ok(), "{suite}");
    }
    let all = TlsConfig {
        verify: false,
        min_version: "1.2".into(),
        cipher_suites: vec!["TLS_AES_128_GCM_SHA256".into()],
        pinned_spki_sha256: vec![b64(&sha256(&pki.server_spki))],
        ..pki.with_client_cert(pki.tls())
    };
    let config = client_config(&all, &[b"h2", b"http/1.1"]).expect("all options");
    assert_eq!(
        config.alpn_protocols,
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    );
    assert!(config.client_auth_cert_resolver.has_certs());
}

#[test]
fn only_tls12_suites_with_min_13_is_refused() {
    let tls = TlsConfig {
        cipher_suites: vec!["TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384".into()],
        ..TlsConfig::default()
    };
    let err = client_config(&tls, &[]).expect_err("no usable suite");
    assert!(err.contains("only TLS 1.2 suites"), "{err}");
    assert!(err.contains("min_version"), "{err}");
}

#[test]
fn unknown_suite_and_bad_pins_name_the_setting() {
    let tls = TlsConfig {
        cipher_suites: vec!["TLS_RSA_WITH_RC4_128_MD5".into()],
        ..TlsConfig::default()
    };
    let err = client_config(&tls, &[]).expect_err("unknown suite");
    assert!(err.contains("tls.cipher_suites") && err.contains("TLS_RSA_WITH_RC4_128_MD5"));
    for bad in ["not-a-pin", "abcd", &"0".repeat(63), &b64(&[1u8; 31])] {
        let tls = TlsConfig {
            pinned_spki_sha256: vec![bad.to_string()],
            ..TlsConfig::default()
        };
        let err = client_config(&tls, &[]).expect_err(bad);
        assert!(err.contains("tls.pinned_spki_sha256[0]"), "{err}");
    }
}

#[test]
fn client_cert_errors_name_the_file() {
    let pki = Pki::new();
    let missing = pki.path("nope.pem");
    let tls = TlsConfig {
        client_cert: Some(missing.clone()),
        client_key: Some(pki.path("client.key")),
        ..TlsConfig::default()
    };
    let err = client_config(&tls, &[]).expect_err("missing cert");
    assert!(err.contains("tls.client_cert") && err.contains(&missing.display().to_string()));
    let tls = TlsConfig {
        client_cert: Some(pki.path("client.pem")),
        client_key: Some(pki.path("client.pem")),
        ..TlsConfig::default()
    };
    let err = client_config(&tls, &[]).expect_err("cert as key");
    assert!(err.contains("tls.client_key"), "{err}");
    let tls = TlsConfig {
        client_cert: Some(pki.path("client.pem")),
        ..TlsConfig::default()
    };
    assert!(client_config(&tls, &[])
        .expect_err("half")
        .contains("client_key"));
}

#[test]
fn spki_pin_matches_the_key_and_parses_in_every_form() {
    let pki = Pki::new();
    let expected = sha256(&pki.server_spki);
    let got = spki_sha256(&pki.server_chain[0]).expect("spki");
    assert_eq!(got.to_vec(), expected);
    let unpadded = b64(&expected).trim_end_matches('=').to_string();
    for form in [
        b64(&expected),
        hex(&expected),
        hex(&expected).to_uppercase(),
        format!("sha256//{}", b64(&expected)),
        unpadded,
    ] {
        assert_eq!(
            parse_pin(&form).map(|p| p.to_vec()),
            Some(expected.clone()),
            "{form}"
        );
    }
}

#[test]
fn handshake_with_ca_and_matching_pin() {
    let pki = Pki::new();
    let tls = TlsConfig {
        pinned_spki_sha256: vec![hex(&[0u8; 32]), b64(&sha256(&pki.server_spki))],
        ..pki.tls()
    };
    let client = client_config(&tls, &[]).expect("client");
    handshake(client, pki.server(&[&rustls::version::TLS13], false)).expect("handshake");
}

#[test]
fn handshake_fails_on_pin_mismatch_and_names_the_presented_pin() {
    let pki = Pki::new();
    for verify in [true, false] {
        let tls = TlsConfig {
            verify,
            pinned_spki_sha256: vec![b64(&[7u8; 32])],
            ..pki.tls()
        };
        let client = client_config(&tls, &[]).expect("client");
        let err = handshake(client, pki.server(&[&rustls::version::TLS13], false))
            .expect_err("pin mismatch");
        assert!(err.contains("pin mismatch"), "{err}");
        assert!(err.contains(&b64(&sha256(&pki.server_spki))), "{err}");
        assert!(err.contains("tls.pinned_spki_sha256"), "{err}");
        assert!(explain(&err, "gateway.tls").is_some_and(|x| x.contains("pinned_spki_sha256")));
    }
}

#[test]
fn verify_off_with_matching_pin_accepts_an_untrusted_ca() {
    let pki = Pki::new();
    let tls = TlsConfig {
        verify: false,
        pinned_spki_sha256: vec![hex(&sha256(&pki.server_spki))],
        ..TlsConfig::default()
    };
    let client = client_config(&tls, &[]).expect("client");
    handshake(client, pki.server(&[&rustls::version::TLS13], false)).expect("handshake");
}

#[test]
fn unknown_ca_is_explained() {
    let pki = Pki::new();
    let client = client_config(&TlsConfig::default(), &[]).expect("client");
    let err = handshake(client, pki.server(&[&rustls::version::TLS13], false))
        .expect_err("unknown issuer");
    let hint = explain(&err, "gateway.tls").expect("explained");
    assert!(hint.contains("gateway.tls.ca_cert_path"), "{hint}");
}

#[test]
fn client_certificate_is_presented_when_the_server_requires_one() {
    let pki = Pki::new();
    let client = client_config(&pki.with_client_cert(pki.tls()), &[]).expect("client");
    let (_, server) =
        handshake(client, pki.server(&[&rustls::version::TLS13], true)).expect("mtls handshake");
    assert_eq!(server.peer_certificates().map(<[_]>::len), Some(1));

    // Without one, the server refuses, and the text the client gets is explained.
    let client = client_config(&pki.tls(), &[]).expect("client");
    let err = handshake(client, pki.server(&[&rustls::version::TLS13], true))
        .expect_err("no client cert");
    let hint = explain(&err, "gateway.tls").expect("explained");
    assert!(hint.contains("gateway.tls.client_cert"), "{err} → {hint}");
}

#[test]
fn cipher_suite_restriction_is_negotiated() {
    let pki = Pki::new();
    let tls = TlsConfig {
        cipher_suites: vec!["TLS_AES_256_GCM_SHA384".into()],
        ..pki.tls()
    };
    let client = client_config(&tls, &[]).expect("client");
    let (c, _) = handshake(client, pki.server(&[&rustls::version::TLS13], false)).expect("tls13");
    assert_eq!(
        c.negotiated_cipher_suite().map(|s| s.suite()),
        Some(rustls::CipherSuite::TLS13_AES_256_GCM_SHA384)
    );

    // TLS 1.2 against a 1.2-only server (rcgen's default key is ECDSA P-256).
    let tls = TlsConfig {
        min_version: "1.2".into(),
        cipher_suites: vec!["TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256".into()],
        ..pki.tls()
    };
    let client = client_config(&tls, &[]).expect("client");
    let (c, _) = handshake(client, pki.server(&[&rustls::version::TLS12], false)).expect("tls12");
    assert_eq!(
        c.negotiated_cipher_suite().map(|s| s.suite()),
        Some(rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256)
    );
    assert_eq!(c.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
}

#[test]
fn min_version_13_against_a_12_server_is_explained() {
    let pki = Pki::new();
    let client = client_config(&pki.tls(), &[]).expect("client");
    let err = handshake(client, pki.server(&[&rustls::version::TLS12], false))
        .expect_err("version mismatch");
    let hint = explain(&err, "gateway.tls").expect("explained");
    assert!(hint.contains("gateway.tls.min_version"), "{err} → {hint}");
}

#[test]
fn explain_maps_each_known_failure() {
    let cases = [
        ("invalid peer certificate: UnknownIssuer", "unknown issuer: set gw.tls.ca_cert_path"),
        (
            "invalid peer certificate: certificate not valid for name \"a\"; certificate is only valid for b",
            "host name",
        ),
        ("invalid peer certificate: NotValidForName", "host name"),
        ("invalid peer certificate: certificate expired: verification time 5", "expired"),
        ("invalid peer certificate: Expired", "expired"),
        ("received fatal alert: CertificateRequired", "set gw.tls.client_cert and client_key (auth.type: mtls)"),
        ("received fatal alert: UnknownCA", "rejected our client certificate"),
        ("received fatal alert: ProtocolVersion", "gw.tls.min_version"),
        ("peer is incompatible: SupportedVersionsExtensionRequired", "gw.tls.min_version"),
        ("received fatal alert: HandshakeFailure", "gw.tls.cipher_suites"),
        ("certificate pin mismatch: …", "gw.tls.pinned_spki_sha256"),
    ];
    for (text, want) in cases {
        let got = explain(text, "gw.tls").unwrap_or_default();
        assert!(got.contains(want), "{text} → {got}");
    }
    assert_eq!(explain("connection refused", "gw.tls"), None);
}
