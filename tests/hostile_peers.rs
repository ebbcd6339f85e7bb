//! Hostile peers against the real daemon: the `[milter]` caps and the
//! `[metrics]` bounds as the policy sets them (the session-level behaviour is
//! in milter_session.rs, the HTTP timing in src/server/http.rs).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::daemon_support::{Daemon, assert_delivered, free_port};
use congvu_milter::message::Envelope;
use congvu_milter::milter::client::{MilterClient, Offer, StageMacros};
use congvu_milter::milter::codec::{Command, Reply};

const TIMEOUT: Duration = Duration::from_secs(20);
const HEADER_TIMEOUT: Duration = Duration::from_millis(500);
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(3);
const MAX_HTTP_CONNECTIONS: usize = 2;

/// The daemon with small caps and timeouts, scanning off.
fn start_daemon() -> Daemon {
    let dir = tempfile::tempdir().expect("temp dir");
    let (milter_port, metrics_port) = (free_port(), free_port());
    let policy_path = dir.path().join("policy.toml");
    let policy = format!(
        "[milter]\n\
         listen = [\"inet:127.0.0.1:{milter_port}\"]\n\
         max_recipients = 2\n\
         max_headers = 20\n\
         max_macro_bytes = \"8 KiB\"\n\
         write_timeout = \"1s\"\n\
         \n\
         [metrics]\n\
         listen = \"127.0.0.1:{metrics_port}\"\n\
         max_connections = {MAX_HTTP_CONNECTIONS}\n\
         header_timeout = \"{}ms\"\n\
         connection_timeout = \"{}s\"\n\
         \n\
         [clamav]\n\
         enabled = false\n",
        HEADER_TIMEOUT.as_millis(),
        CONNECTION_TIMEOUT.as_secs(),
    );
    std::fs::write(&policy_path, policy).expect("write policy");
    Daemon::start_with(dir, milter_port, metrics_port, policy_path)
}

async fn client(daemon: &Daemon) -> MilterClient<tokio::net::TcpStream> {
    daemon.milter_client(Offer::POSTFIX_3_7).await
}

fn envelope(rcpts: &[&str]) -> Envelope {
    Envelope {
        sender: "a@example.org".into(),
        sender_params: Vec::new(),
        recipients: rcpts.iter().map(|r| (*r).to_owned()).collect(),
    }
}

const MESSAGE: &[u8] =
    b"From: a@example.org\r\nTo: b@bacgiang.gov.vn\r\nSubject: test\r\n\r\nhello\r\n";

fn macros(qid: &str) -> StageMacros {
    StageMacros::new().with(b'T', "i", qid).with(b'E', "i", qid)
}

fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn milter_caps_from_the_policy_refuse_messages_and_close_macro_floods() {
    let daemon = start_daemon();
    let mut c = client(&daemon).await;
    // Three recipients with max_recipients = 2.
    let out = c
        .send_message(
            &envelope(&[
                "b@bacgiang.gov.vn",
                "c@bacgiang.gov.vn",
                "d@bacgiang.gov.vn",
            ]),
            MESSAGE,
            &macros("R3"),
        )
        .await
        .unwrap();
    assert!(
        matches!(&out.reply, Reply::ReplyCode(t) if t.starts_with("550 5.5.3 ")),
        "{:?}",
        out.reply
    );
    // 21 header fields with max_headers = 20.
    let mut many = String::new();
    for i in 0..21 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    let raw = format!("{many}\r\nbody\r\n");
    let out = c
        .send_message(
            &envelope(&["b@bacgiang.gov.vn"]),
            raw.as_bytes(),
            &macros("H21"),
        )
        .await
        .unwrap();
    assert!(
        matches!(&out.reply, Reply::ReplyCode(t) if t.starts_with("552 5.3.4 ")),
        "{:?}",
        out.reply
    );
    // Within the caps, mail flows on the same connection.
    let out = c
        .send_message(
            &envelope(&["b@bacgiang.gov.vn", "c@bacgiang.gov.vn"]),
            MESSAGE,
            &macros("OK"),
        )
        .await
        .unwrap();
    assert_delivered(&out.reply);
    // Judged as the registry's rules and reported like every verdict: the one
    // log line per message names the rule and the key, the metrics count it.
    let log = daemon.log();
    assert!(log.contains("rules=too_many_recipients"), "{log}");
    assert!(log.contains("[milter] max_recipients"), "{log}");
    assert!(log.contains("H21: reject"), "{log}");
    assert!(log.contains("rules=too_many_headers"), "{log}");
    let metrics = daemon.http_get("/metrics").1;
    for rule in ["too_many_recipients", "too_many_headers"] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("congvu_milter_verdicts_total{")
                    && l.contains(&format!("rule=\"{rule}\""))
                    && l.contains("action=\"reject\"")
                    && l.ends_with(" 1")),
            "{rule} not counted:\n{metrics}"
        );
    }

    // A peer that floods macros is cut off and counted as a protocol error.
    let before = counter(
        &daemon.http_get("/metrics").1,
        "congvu_milter_protocol_errors_total",
    );
    let mut flood = client(&daemon).await;
    let value = "v".repeat(200);
    for packet in 0..1000 {
        let pairs = (0..10)
            .map(|i| (format!("{{m{packet}_{i}}}"), value.clone()))
            .collect();
        if flood
            .send_command(Command::Macro { stage: b'C', pairs })
            .await
            .is_err()
        {
            break;
        }
    }
    assert!(flood.is_closed_within(TIMEOUT).await);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let after = counter(
            &daemon.http_get("/metrics").1,
            "congvu_milter_protocol_errors_total",
        );
        if after > before {
            break;
        }
        assert!(Instant::now() < deadline, "protocol error not counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(daemon.log().contains("max_macro_bytes"));
}

/// Connects to the metrics port and sends `bytes`, then nothing more.
fn stalled(daemon: &Daemon, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", daemon.metrics_port)).unwrap();
    s.write_all(bytes).unwrap();
    s
}

/// How long until the server closes `s` (reads EOF or an error), at most `wait`.
fn closed_after(s: &mut TcpStream, wait: Duration) -> Option<Duration> {
    let started = Instant::now();
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None;
            }
            Err(_) => return Some(started.elapsed()),
        }
    }
}

#[test]
fn metrics_peers_that_stall_are_closed_and_cannot_hold_the_endpoint() {
    let daemon = start_daemon();
    // The endpoint is up (the milter port answered first).
    let deadline = Instant::now() + TIMEOUT;
    while TcpStream::connect(("127.0.0.1", daemon.metrics_port)).is_err() {
        assert!(Instant::now() < deadline, "metrics endpoint never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(HEADER_TIMEOUT * 2);

    // Half a request line, then silence: closed after the header timeout.
    let mut half = stalled(&daemon, b"GET /metr");
    let took = closed_after(&mut half, TIMEOUT).expect("closed");
    assert!(
        took >= HEADER_TIMEOUT - Duration::from_millis(100) && took < CONNECTION_TIMEOUT,
        "closed after {took:?}"
    );

    // Every slot held by a stalled peer: a scrape waits for a slot to free up,
    // which the header timeout brings, rather than for ever.
    let holders: Vec<TcpStream> = (0..MAX_HTTP_CONNECTIONS + 3)
        .map(|_| stalled(&daemon, b"GET / HTTP/1.1\r\nHost:"))
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    let (status, body) = daemon.http_get("/metrics");
    let took = started.elapsed();
    assert_eq!(status, 200);
    assert!(body.contains("congvu_milter_build_info"), "{body}");
    assert!(took < CONNECTION_TIMEOUT, "a scrape waited {took:?}");
    drop(holders);
}
