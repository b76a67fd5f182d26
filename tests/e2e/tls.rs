//! HTTPS upstreams: the fake GitLab behind TLS with a certificate from a
//! private CA made for the test. Without `--ca-bundle` the host refuses the
//! certificate (`upstream_unreachable`); with it, the same token verifies.
//! The host runs without `--allow-http`: only https reaches the fake.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
};

use serde_json::json;
use tokio_rustls::rustls::{
    self,
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
};

use crate::{
    fake_gitlab::FakeGitlab,
    harness::{Gatehouse, Options, connect_pat, pat_body},
};

/// A TLS front for the fake GitLab, with a certificate from a private CA.
pub struct TlsFront {
    pub port: u16,
    /// The CA's PEM, for --ca-bundle.
    pub ca_file: PathBuf,
    /// The server name (SNI) each handshake asked for.
    pub sni: Arc<Mutex<Vec<String>>>,
}

/// A private CA (its PEM written to a file) and a TLS front for `fake`
/// with a certificate for `names`.
pub async fn tls_front(fake: &FakeGitlab, dir: &std::path::Path, names: &[&str]) -> TlsFront {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "Gatehouse test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let config = Arc::new(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let upstream = fake.url.trim_start_matches("http://").to_string();
    let sni = Arc::new(Mutex::new(Vec::new()));
    let seen = sni.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (config, upstream, seen) = (config.clone(), upstream.clone(), seen.clone());
            tokio::spawn(async move {
                let acceptor = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
                let Ok(start) = acceptor.await else { return };
                let name = start.client_hello().server_name().unwrap_or_default().to_string();
                seen.lock().unwrap().push(name);
                // A refused handshake just closes the connection.
                let Ok(mut tls) = start.into_stream(config).await else { return };
                let Ok(mut plain) = tokio::net::TcpStream::connect(&upstream).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    TlsFront { port, ca_file, sni }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_ca_needs_the_ca_bundle() {
    let fake = FakeGitlab::start().await;
    let token = fake.pat(fake.add_user("jane", false));
    let dir = tempfile::tempdir().unwrap();
    let TlsFront { port, ca_file, .. } = tls_front(&fake, dir.path(), &["127.0.0.1", "localhost"]).await;
    let https = format!("https://127.0.0.1:{port}");

    // Loopback allowed (the fake lives there), plain http not.
    let strict_tls = || Options::strict().arg("--allow-private-networks");
    let g = Gatehouse::start(strict_tls()).await;
    let r = g.post("/api/v1/integrations", connect_pat(&token, &https)).await;
    assert_eq!((r.status, r.code()), (502, "upstream_unreachable"), "{}", r.body);
    assert!(r.body["advice"].as_str().unwrap().contains("--ca-bundle"), "{}", r.body);
    let r = g.post("/api/v1/integrations", connect_pat(&token, &fake.url)).await;
    assert_eq!((r.status, r.code()), (400, "invalid_base_url"), "plain http stays refused: {}", r.body);
    assert_eq!(fake.hits("/api/v4/personal_access_tokens/self"), 0, "nothing got through");
    g.finish(&fake.all_tokens());

    let g = Gatehouse::start(strict_tls().arg("--ca-bundle").arg(ca_file.to_str().unwrap())).await;
    for base in [https.clone(), format!("https://localhost:{port}")] {
        let v = g.post("/api/v1/providers/gitlab-pat/verify", pat_body(&token, &base)).await;
        assert_eq!((v.status, &v.body["valid"]), (200, &json!(true)), "{base}: {}", v.body);
    }
    let c = g.post("/api/v1/integrations", connect_pat(&token, &https)).await;
    assert_eq!(c.status, 201, "{}", c.body);
    assert_eq!(c.body["base_url"], https);
    g.finish(&fake.all_tokens());
}
