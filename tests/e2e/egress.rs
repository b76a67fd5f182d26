//! The default egress policy: internal addresses and plain http refused
//! before any connector runs.

use serde_json::json;

use crate::harness::{Gatehouse, Options, connect_pat, pat_body};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_targets_are_refused_by_default() {
    let g = Gatehouse::start(Options::strict()).await;
    let token = "glpat-egress-test-0123456789".to_string();
    for base in
        ["https://127.0.0.1:9", "https://169.254.169.254", "https://localhost", "https://[::1]:443", "https://10.0.0.1"]
    {
        let r = g.post("/api/v1/providers/gitlab-pat/verify", pat_body(&token, base)).await;
        assert_eq!((r.status, r.code()), (403, "egress_denied"), "{base}: {}", r.body);
        let r = g.post("/api/v1/integrations", connect_pat(&token, base)).await;
        assert_eq!((r.status, r.code()), (403, "egress_denied"), "{base}");
    }
    g.finish(&[token]);
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
