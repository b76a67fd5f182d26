//! The egress policy end to end. Every test that would reach a target if
//! the host failed to refuse it runs inside a loopback-only network
//! namespace (`netns`), where names resolve through the test's own
//! /etc/hosts: the SSRF corpus, the narrow `--allow-network`, the
//! environment's proxy variables and `--egress-proxy`.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    fake_gitlab::FakeGitlab,
    harness::{Gatehouse, Options, Reply, connect_pat, pat_body},
    netns,
    tls::{TlsFront, tls_front},
};

/// What the namespace's /etc/hosts says: one name per kind of address a
/// hostile base URL may hide behind.
const HOSTS: &[(&str, &str)] = &[
    ("gitlab.corp.test", "127.0.0.1"),
    ("metadata.corp.test", "169.254.169.254"),
    ("imds6.corp.test", "fd00:ec2::254"),
    ("internal.corp.test", "10.0.4.7"),
    ("nat64.corp.test", "64:ff9b::a00:407"),
    ("bench.corp.test", "198.18.0.10"),
    ("mixed.corp.test", "140.82.112.3"),
    ("mixed.corp.test", "10.0.4.7"),
];

/// The resolved addresses of HOSTS, none of which a denial may show.
const RESOLVED: &[&str] =
    &["127.0.0.1", "169.254", "fd00:ec2", "10.0.4.7", "64:ff9b", "a00:407", "198.18", "140.82", "::1"];

/// Counts the connections a port receives (on IPv4 and IPv6 loopback).
async fn counting_listener() -> (u16, Arc<AtomicUsize>) {
    let v4 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = v4.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let listeners = [Some(v4), tokio::net::TcpListener::bind(("::1", port)).await.ok()];
    for listener in listeners.into_iter().flatten() {
        let count = count.clone();
        tokio::spawn(async move {
            while let Ok((_tcp, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    (port, count)
}

async fn assert_denied(g: &Gatehouse, token: &str, base: &str) -> Reply {
    let r = g.post("/api/v1/providers/gitlab-pat/verify", pat_body(token, base)).await;
    assert_eq!((r.status, r.code()), (403, "egress_denied"), "{base}: {}", r.body);
    let c = g.post("/api/v1/integrations", connect_pat(token, base)).await;
    assert_eq!((c.status, c.code()), (403, "egress_denied"), "{base}: {}", c.body);
    r
}

#[test]
#[cfg_attr(not(gatehouse_netns), ignore = "needs user and network namespaces (unshare -rnm) and iproute2")]
fn ssrf_targets_are_refused() {
    netns::isolated("egress::ssrf_targets_are_refused", HOSTS, || async {
        let (port, connections) = counting_listener().await;
        let token = "glpat-egress-test-0123456789".to_string();
        let g = Gatehouse::start(Options::strict()).await;
        let literals = [
            format!("https://127.0.0.1:{port}"),
            format!("https://127.1:{port}"),
            format!("https://2130706433:{port}"),
            format!("https://0x7f.0.0.1:{port}"),
            format!("https://[::1]:{port}"),
            format!("https://[::ffff:127.0.0.1]:{port}"),
            format!("https://[::127.0.0.1]:{port}"),
            format!("https://[64:ff9b::7f00:1]:{port}"),
            format!("https://[2002:7f00:1::1]:{port}"),
            format!("https://0.0.0.0:{port}"),
            format!("https://[::]:{port}"),
            "https://169.254.169.254".into(),
            "https://[::ffff:169.254.169.254]".into(),
            "https://[fd00:ec2::254]".into(),
            "https://169.254.170.2".into(),
            "https://100.100.100.200".into(),
            "https://10.0.0.1".into(),
            "https://100.64.0.1".into(),
            "https://192.0.0.1".into(),
            "https://198.18.0.1".into(),
            "https://240.0.0.1".into(),
            "https://[fd12:3456::1]".into(),
        ];
        for base in &literals {
            assert_denied(&g, &token, base).await;
        }
        // A literal the caller typed may be named back; what a name
        // resolved to may not.
        let r = assert_denied(&g, &token, "https://[64:ff9b::a9fe:a9fe]").await;
        assert!(r.body["detail"].as_str().unwrap().contains("169.254.169.254"), "{}", r.body);
        let names = [
            format!("https://localhost:{port}"),
            format!("https://gitlab.corp.test:{port}"),
            "https://metadata.corp.test".into(),
            "https://imds6.corp.test".into(),
            "https://internal.corp.test".into(),
            "https://nat64.corp.test".into(),
            "https://bench.corp.test".into(),
            "https://mixed.corp.test".into(),
        ];
        for base in &names {
            let r = assert_denied(&g, &token, base).await;
            let detail = r.body["detail"].as_str().unwrap();
            let name = url::Url::parse(base).unwrap().host_str().unwrap().to_string();
            assert!(detail.contains(&name) && detail.contains("--allow-network"), "{detail}");
            for address in RESOLVED {
                assert!(!detail.contains(address), "{base}: the denial tells the resolved address: {detail}");
            }
        }
        let logs = g.logs();
        assert!(logs.contains("egress denied after resolution") && logs.contains("10.0.4.7"), "the debug log names it");
        assert_eq!(g.get("/api/v1/integrations").await.body["integrations"], json!([]));
        g.finish(std::slice::from_ref(&token));
        assert_eq!(connections.load(Ordering::SeqCst), 0, "a refused target was connected to");
    });
}

#[test]
#[cfg_attr(not(gatehouse_netns), ignore = "needs user and network namespaces (unshare -rnm) and iproute2")]
fn private_networks_never_open_metadata_and_allow_network_opens_one_network() {
    netns::isolated(
        "egress::private_networks_never_open_metadata_and_allow_network_opens_one_network",
        HOSTS,
        || async {
            let fake = FakeGitlab::start().await;
            let token = fake.pat(fake.add_user("jane", false));
            let fake_port = url::Url::parse(&fake.url).unwrap().port().unwrap();
            let by_name = format!("http://gitlab.corp.test:{fake_port}");

            let g = Gatehouse::start(Options::lax()).await;
            for base in [
                "https://metadata.corp.test",
                "https://imds6.corp.test",
                "https://169.254.169.254",
                "https://[::ffff:a9fe:a9fe]",
                "https://[64:ff9b::6464:64c8]",
                "https://100.100.100.200",
                "https://169.254.170.23",
                "https://0.0.0.0",
                "https://198.18.0.1",
            ] {
                assert_denied(&g, &token, base).await;
            }
            let v = g.post("/api/v1/providers/gitlab-pat/verify", pat_body(&token, &by_name)).await;
            assert_eq!((v.status, &v.body["valid"]), (200, &json!(true)), "{}", v.body);
            g.finish(&fake.all_tokens());

            // One network: the fake's loopback address, and nothing else.
            let narrow = Options::strict().arg("--allow-network").arg("127.0.0.1/32").arg("--allow-http");
            let g = Gatehouse::start(narrow).await;
            let v = g.post("/api/v1/providers/gitlab-pat/verify", pat_body(&token, &by_name)).await;
            assert_eq!((v.status, &v.body["valid"]), (200, &json!(true)), "{}", v.body);
            let c = g.post("/api/v1/integrations", connect_pat(&token, &fake.url)).await;
            assert_eq!(c.status, 201, "{}", c.body);
            for base in [
                format!("http://127.0.0.2:{fake_port}"),
                format!("http://[::1]:{fake_port}"),
                // localhost is 127.0.0.1 and ::1; one refused address refuses the name.
                format!("http://localhost:{fake_port}"),
                "http://internal.corp.test".into(),
                "http://mixed.corp.test".into(),
                "http://metadata.corp.test".into(),
            ] {
                assert_denied(&g, &token, &base).await;
            }
            g.finish(&fake.all_tokens());
        },
    );
}

#[test]
#[cfg_attr(not(gatehouse_netns), ignore = "needs user and network namespaces (unshare -rnm) and iproute2")]
fn the_environment_proxy_is_ignored() {
    netns::isolated("egress::the_environment_proxy_is_ignored", HOSTS, || async {
        let proxy = ConnectProxy::start(None).await;
        let fake = FakeGitlab::start().await;
        let token = fake.pat(fake.add_user("jane", false));
        let fake_port = url::Url::parse(&fake.url).unwrap().port().unwrap();
        let mut options = Options::lax();
        for var in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"] {
            options = options.env(var, &proxy.url());
        }
        let g = Gatehouse::start(options).await;
        let base = format!("http://gitlab.corp.test:{fake_port}");
        let c = g.post("/api/v1/integrations", connect_pat(&token, &base)).await;
        assert_eq!(c.status, 201, "{}", c.body);
        let id = c.body["id"].as_str().unwrap().to_string();
        let user = g.get_proxied(&format!("/api/v1/integrations/{id}/proxy/api/v4/user")).await;
        assert_eq!(user.status, 200, "{}", user.body);
        assert_eq!(proxy.connections.load(Ordering::SeqCst), 0, "the environment's proxy was used");
        g.finish(&fake.all_tokens());
    });
}

#[test]
#[cfg_attr(not(gatehouse_netns), ignore = "needs user and network namespaces (unshare -rnm) and iproute2")]
fn the_egress_proxy_is_asked_for_checked_addresses_only() {
    netns::isolated("egress::the_egress_proxy_is_asked_for_checked_addresses_only", HOSTS, || async {
        let password = "proxy-pass-5f4dcc3b5aa765d61d83".to_string();
        let proxy = ConnectProxy::start(Some(("gatehouse", &password))).await;
        let fake = FakeGitlab::start().await;
        let token = fake.pat(fake.add_user("jane", false));
        let dir = tempfile::tempdir().unwrap();
        let TlsFront { port, ca_file, sni } = tls_front(&fake, dir.path(), &["gitlab.corp.test"]).await;

        // Loopback opened for the TLS front; the proxy URL (with its
        // password) from the environment, not the command line.
        let options = Options::strict()
            .arg("--allow-network")
            .arg("127.0.0.0/8")
            .arg("--ca-bundle")
            .arg(ca_file.to_str().unwrap())
            .env("GATEHOUSE_EGRESS_PROXY", &format!("http://gatehouse:{password}@127.0.0.1:{}", proxy.addr.port()));
        let g = Gatehouse::start(options).await;
        let base = format!("https://gitlab.corp.test:{port}");
        let v = g.post("/api/v1/providers/gitlab-pat/verify", pat_body(&token, &base)).await;
        assert_eq!((v.status, &v.body["valid"]), (200, &json!(true)), "{}", v.body);
        let c = g.post("/api/v1/integrations", connect_pat(&token, &base)).await;
        assert_eq!(c.status, 201, "{}", c.body);
        let id = c.body["id"].as_str().unwrap().to_string();
        let user = g.get_proxied(&format!("/api/v1/integrations/{id}/proxy/api/v4/user")).await;
        assert_eq!((user.status, &user.body["username"]), (200, &json!("jane")), "{}", user.body);

        let asked = proxy.requests();
        assert!(!asked.is_empty(), "nothing went through the egress proxy");
        for (line, auth) in &asked {
            assert_eq!(
                line,
                &format!("CONNECT 127.0.0.1:{port} HTTP/1.1"),
                "the proxy must be given the checked address"
            );
            use base64::Engine;
            let expected = base64::engine::general_purpose::STANDARD.encode(format!("gatehouse:{password}"));
            assert_eq!(auth.as_deref(), Some(format!("Basic {expected}").as_str()));
        }
        let names = sni.lock().unwrap().clone();
        assert!(!names.is_empty() && names.iter().all(|n| n == "gitlab.corp.test"), "TLS names the host: {names:?}");

        // Refused before the proxy is asked anything.
        for base in [
            "https://metadata.corp.test",
            "https://internal.corp.test",
            "https://nat64.corp.test",
            "https://mixed.corp.test",
            "https://[::ffff:169.254.169.254]",
            "https://10.0.4.7",
        ] {
            assert_denied(&g, &token, base).await;
        }
        assert_eq!(proxy.requests().len(), asked.len(), "the proxy was asked for a refused target");
        let mut secrets = fake.all_tokens();
        secrets.push(password.clone());
        g.finish(&secrets);
    });
}

/// A request line the proxy got, and its `Proxy-Authorization`.
type Asked = (String, Option<String>);

/// A small HTTP CONNECT proxy on loopback: records each request line and
/// `Proxy-Authorization`, asks for credentials when it has some (407), and
/// tunnels to loopback addresses only.
struct ConnectProxy {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<Asked>>>,
}

impl ConnectProxy {
    async fn start(credentials: Option<(&str, &str)>) -> Self {
        use base64::Engine;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let log = Arc::new(Mutex::new(Vec::new()));
        let expected = credentials.map(|(user, pass)| {
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}")))
        });
        let (count, seen) = (connections.clone(), log.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let (seen, expected) = (seen.clone(), expected.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
                        if client.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let head = String::from_utf8_lossy(&head).to_string();
                    let line = head.lines().next().unwrap_or_default().to_string();
                    let auth = head
                        .lines()
                        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("proxy-authorization")))
                        .map(|(_, v)| v.trim().to_string());
                    seen.lock().unwrap().push((line.clone(), auth.clone()));
                    if expected.is_some() && auth != expected {
                        let _ = client.write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n").await;
                        return;
                    }
                    let target = line.strip_prefix("CONNECT ").and_then(|rest| rest.split(' ').next());
                    let Some(target) =
                        target.and_then(|t| t.parse::<SocketAddr>().ok()).filter(|t| t.ip().is_loopback())
                    else {
                        let _ = client.write_all(b"HTTP/1.1 403 Forbidden\r\n\r\n").await;
                        return;
                    };
                    let Ok(mut upstream) = tokio::net::TcpStream::connect(target).await else {
                        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                        return;
                    };
                    let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await;
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                });
            }
        });
        Self { addr, connections, log }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> Vec<Asked> {
        self.log.lock().unwrap().clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_url_shapes_are_checked() {
    let g = Gatehouse::start(Options::strict()).await;
    let token = "glpat-egress-test-abcdefghij".to_string();
    for base in [
        "http://gitlab.example.com",
        "ftp://gitlab.example.com",
        "gitlab.example.com",
        "https://user:pass@gitlab.example.com",
        "https://gitlab.example.com/?x=1",
    ] {
        let r = g.post("/api/v1/integrations", connect_pat(&token, base)).await;
        assert_eq!((r.status, r.code()), (400, "invalid_base_url"), "{base}: {}", r.body);
    }
    let r = g.post("/api/v1/integrations", connect_pat(&token, "http://gitlab.example.com")).await;
    assert!(r.body["detail"].as_str().unwrap().contains("--allow-http"));
    assert_eq!(g.get("/api/v1/integrations").await.body["integrations"], json!([]));
    g.finish(&[token]);
}
