//! Slow and stalled API clients, over raw TCP: headers or a body trickled
//! one byte at a time are cut at the configured timeouts, and an idle
//! kept-alive connection is closed; a request that is slow on the server's
//! side (a provider that takes its time) is still answered in full.

use std::time::{Duration, Instant};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::{
    fake_gitlab::{Behavior, FakeGitlab},
    harness::{API_KEY, Gatehouse, Options, pat_body},
};

fn short_timeouts() -> Options {
    Options::lax()
        .arg("--client-header-timeout")
        .arg("1s")
        .arg("--client-body-timeout")
        .arg("1s")
        .arg("--client-idle-timeout")
        .arg("2s")
}

async fn connect(g: &Gatehouse) -> TcpStream {
    TcpStream::connect(g.base.trim_start_matches("http://")).await.unwrap()
}

/// Sends `at_once`, then `trickled` one byte every 100 ms, while reading
/// what the server answers; returns the answer and how long after the
/// first byte the server closed the connection (`None`: still open after
/// everything was sent and 2 s more).
async fn trickle(stream: TcpStream, at_once: &[u8], trickled: &[u8]) -> (String, Option<Duration>) {
    let (mut reader, mut writer) = stream.into_split();
    let started = Instant::now();
    let reading = tokio::spawn(async move {
        let mut answer = Vec::new();
        let _ = reader.read_to_end(&mut answer).await;
        (String::from_utf8_lossy(&answer).into_owned(), started.elapsed())
    });
    let _ = writer.write_all(at_once).await;
    for byte in trickled {
        if reading.is_finished() || writer.write_all(std::slice::from_ref(byte)).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    match tokio::time::timeout(Duration::from_secs(2), reading).await {
        Ok(done) => {
            let (answer, closed) = done.unwrap();
            (answer, Some(closed))
        }
        Err(_) => (String::new(), None),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_headers_are_cut() {
    let g = Gatehouse::start(short_timeouts()).await;
    // 30 s of headers at this pace.
    let head = format!("GET /api/v1/health HTTP/1.1\r\nHost: gatehouse\r\nX-Slow: {}\r\n\r\n", "a".repeat(240));
    let (answer, closed) = trickle(connect(&g).await, b"", head.as_bytes()).await;
    let closed = closed.expect("the connection was still open");
    assert!(closed < Duration::from_secs(5), "cut only after {closed:?}");
    assert!(!answer.contains("200 OK"), "{answer}");
    assert!(g.logs().contains("--client-header-timeout"), "the log says why");
    // The server itself is fine.
    assert_eq!(g.get("/api/v1/health").await.status, 200);
    g.finish(&[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_bodies_are_answered_408_and_cut() {
    let g = Gatehouse::start(short_timeouts()).await;
    let hook = format!("/api/v1/hooks/{}", uuid::Uuid::new_v4());
    let cases = [
        (hook.as_str(), String::new()),
        ("/api/v1/providers/gitlab-pat/verify", format!("Authorization: Bearer {API_KEY}\r\n")),
    ];
    for (path, auth) in cases {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: gatehouse\r\n{auth}Content-Type: application/json\r\nContent-Length: 300\r\n\r\n"
        );
        let (answer, closed) = trickle(connect(&g).await, head.as_bytes(), &[b' '; 300]).await;
        let closed = closed.unwrap_or_else(|| panic!("{path}: the connection was still open; answer: {answer}"));
        assert!(closed < Duration::from_secs(5), "{path}: cut only after {closed:?}");
        assert!(answer.starts_with("HTTP/1.1 408"), "{path}: {answer}");
        assert!(
            answer.contains("\"code\":\"request_timeout\"") && answer.contains("--client-body-timeout"),
            "{answer}"
        );
        assert!(answer.to_ascii_lowercase().contains("cache-control: no-store"), "{answer}");
    }
    g.finish(&[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed() {
    let g = Gatehouse::start(short_timeouts()).await;
    // Never a byte.
    let mut stream = connect(&g).await;
    let started = Instant::now();
    let mut nothing = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(8), stream.read_to_end(&mut nothing)).await;
    assert!(read.is_ok(), "an idle connection stayed open");
    let closed = started.elapsed();
    assert!(closed >= Duration::from_millis(1500) && closed < Duration::from_secs(5), "closed after {closed:?}");

    // Idle after an answer: kept alive for a while, not forever.
    let mut stream = connect(&g).await;
    stream.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: gatehouse\r\n\r\n").await.unwrap();
    let mut first = vec![0u8; 1024];
    let n = stream.read(&mut first).await.unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    let started = Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(8), stream.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "a kept-alive idle connection stayed open");
    assert!(started.elapsed() >= Duration::from_millis(1500), "closed too early: {:?}", started.elapsed());
    g.finish(&[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_answer_is_not_an_idle_connection() {
    let fake = FakeGitlab::start().await;
    let user = fake.add_user("jane", false);
    let slow = fake.pat(user);
    fake.set_behavior(&slow, Behavior::Hang);
    let g = Gatehouse::start(
        Options::lax()
            .arg("--client-idle-timeout")
            .arg("1s")
            .arg("--client-header-timeout")
            .arg("1s")
            .arg("--http-timeout")
            .arg("3s"),
    )
    .await;
    let started = Instant::now();
    let r = g.post("/api/v1/providers/gitlab-pat/verify", pat_body(&slow, &fake.url)).await;
    assert_eq!((r.status, r.code()), (504, "upstream_timeout"), "{}", r.body);
    assert!(started.elapsed() >= Duration::from_secs(2), "answered after {:?}", started.elapsed());
    g.finish(&fake.all_tokens());
}
