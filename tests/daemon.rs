//! The daemon as a whole: the real binary, driven over its milter socket by the
//! in-repo client playing Postfix; signals, policy reloads, hostile peers, the
//! metrics endpoint, and the command line (`check-config`, `scan`).

use std::time::Duration;

use crate::daemon_support::{self, Daemon, assert_delivered};
use congvu_milter::message::Envelope;
use congvu_milter::milter::client::{MessageOutcome, MilterClient, Offer, Stage, StageMacros};
use congvu_milter::milter::codec::{Family, Reply, protocol};
use tokio::io::AsyncWriteExt;

const TIMEOUT: Duration = Duration::from_secs(20);

fn envelope(sender: &str, rcpts: &[&str], size: Option<usize>) -> Envelope {
    Envelope {
        sender: sender.to_owned(),
        sender_params: size.map(|s| vec![format!("SIZE={s}")]).unwrap_or_default(),
        recipients: rcpts.iter().map(|r| r.to_string()).collect(),
    }
}

fn plain_message(body_bytes: usize) -> Vec<u8> {
    let mut m = b"From: a@example.org\r\nTo: b@bacgiang.gov.vn\r\nSubject: test\r\n\r\n".to_vec();
    let line = b"0123456789012345678901234567890123456789012345678901234567890123456789\r\n";
    while m.len() < body_bytes {
        m.extend_from_slice(line);
    }
    m
}

fn with_attachment() -> Vec<u8> {
    b"From: a@example.org\r\nTo: b@bacgiang.gov.vn\r\nSubject: report\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b1\r\nContent-Type: text/plain; name=\"bao-cao.txt\"\r\nContent-Disposition: attachment; filename=\"bao-cao.txt\"\r\n\r\nso lieu quy 3\r\n--b1--\r\n".to_vec()
}

async fn client(daemon: &Daemon) -> MilterClient<tokio::net::TcpStream> {
    daemon.milter_client(Offer::POSTFIX_3_7).await
}

/// Sends one message from a@example.org to b@bacgiang.gov.vn with queue id `qid`.
async fn send<S>(c: &mut MilterClient<S>, raw: &[u8], qid: &str) -> MessageOutcome
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    c.send_message(
        &envelope("a@example.org", &["b@bacgiang.gov.vn"], None),
        raw,
        &macros(qid),
    )
    .await
    .expect("the milter answers")
}

fn macros(queue_id: &str) -> StageMacros {
    StageMacros::new()
        .with(b'T', "i", queue_id)
        .with(b'E', "i", queue_id)
}

fn reply_text(reply: &Reply) -> String {
    match reply {
        Reply::ReplyCode(t) => t.clone(),
        other => format!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn ordinary_mail_is_accepted_and_logged_with_its_queue_id() {
    let daemon = Daemon::start("");
    let mut c = client(&daemon).await;
    let out = c
        .send_message(
            &envelope("a@example.org", &["b@bacgiang.gov.vn"], Some(300)),
            &plain_message(300),
            &macros("4XyzQ1"),
        )
        .await
        .unwrap();
    assert_eq!(out.stage, Stage::Eom);
    assert_delivered(&out.reply);
    c.quit().await.unwrap();
    let log = daemon.log();
    let line = log
        .lines()
        .find(|l| l.contains("4XyzQ1: accept"))
        .unwrap_or_else(|| panic!("no verdict line for the queue id in:\n{log}"));
    assert!(line.contains("sender=<a@example.org>"), "{line}");
    assert!(line.contains("recipients=b@bacgiang.gov.vn"), "{line}");
    assert!(line.contains("client=192.0.2.7"), "{line}");
    // Started with a soft limit of 256 below the hard one; the daemon raised it.
    let (soft, hard) = daemon.open_files_limit();
    assert_eq!(soft, hard, "the soft open-files limit was not raised");
}

#[tokio::test(flavor = "multi_thread")]
async fn declared_size_over_the_cap_is_refused_at_mail() {
    let daemon = Daemon::start(
        "[limits]\nmax_message_size = \"100 KiB\"\nmax_attachments_size = \"50 KiB\"\n",
    );
    let mut c = client(&daemon).await;
    let out = c
        .send_message(
            &envelope("a@example.org", &["b@bacgiang.gov.vn"], Some(200_000)),
            &plain_message(1000),
            &StageMacros::new(),
        )
        .await
        .unwrap();
    assert_eq!(out.stage, Stage::Mail);
    let text = reply_text(&out.reply);
    assert!(text.starts_with("552 5.3.4 "), "{text}");
    assert!(text.contains("Dieu 10"), "{text}");
    // The connection id stands in for the queue id, which Postfix has not assigned yet.
    assert!(daemon.log().contains("conn-"), "{}", daemon.log());
}

/// A body without SIZE= that crosses the 100 KiB cap is refused with 552 at
/// `refused_at`, nothing of it stays held, and the next message on the same
/// connection is judged afresh.
async fn streamed_body_over_the_cap_is_refused(offer: Offer, refused_at: Stage) {
    let daemon = Daemon::start(
        "[limits]\nmax_message_size = \"100 KiB\"\nmax_attachments_size = \"50 KiB\"\n",
    );
    let mut c = daemon.milter_client(offer).await;
    let out = send(&mut c, &plain_message(300_000), "BIGQ1").await;
    assert_eq!(out.stage, refused_at);
    assert!(
        reply_text(&out.reply).starts_with("552 5.3.4 "),
        "{:?}",
        out.reply
    );
    let (_, metrics) = daemon.http_get("/metrics");
    assert!(
        metrics.contains("congvu_milter_buffered_bytes 0"),
        "nothing is held after the refusal: {metrics}"
    );
    let out = send(&mut c, &plain_message(1000), "SMALLQ2").await;
    assert_delivered(&out.reply);
}

/// Postfix offers NR_BODY, which the milter takes (the body streams without a
/// reply per chunk): the refusal, decided at the chunk that crossed the cap,
/// is the EOM reply.
#[tokio::test(flavor = "multi_thread")]
async fn streamed_body_over_the_cap_is_refused_at_end_of_message() {
    streamed_body_over_the_cap_is_refused(Offer::POSTFIX_3_7, Stage::Eom).await;
}

/// An MTA that does not offer NR_BODY gets the refusal at the chunk that crossed
/// the cap, and sends no more of the body.
#[tokio::test(flavor = "multi_thread")]
async fn streamed_body_over_the_cap_is_refused_at_the_chunk_without_nr_body() {
    let offer = Offer {
        protocol: Offer::POSTFIX_3_7.protocol & !protocol::NR_BODY,
        ..Offer::POSTFIX_3_7
    };
    streamed_body_over_the_cap_is_refused(offer, Stage::Body).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_loads_a_good_policy_and_refuses_a_broken_one() {
    let daemon = Daemon::start("");
    let msg = plain_message(60_000);
    let send = |qid: &'static str| {
        let msg = msg.clone();
        let daemon = &daemon;
        async move {
            let mut c = client(daemon).await;
            let out = c
                .send_message(
                    &envelope("a@example.org", &["b@bacgiang.gov.vn"], None),
                    &msg,
                    &macros(qid),
                )
                .await
                .unwrap();
            out.reply
        }
    };
    assert!(matches!(send("Q1").await, Reply::Accept | Reply::Continue));

    assert!(daemon.reload_with(
        "[limits]\nmax_message_size = \"50 KiB\"\nmax_attachments_size = \"10 KiB\"\n"
    ));
    assert!(reply_text(&send("Q2").await).starts_with("552 5.3.4"));

    // A broken file is refused; the 50 KiB policy stays in force.
    std::fs::write(daemon.policy_path(), "[limits\nmax_message_size = ").unwrap();
    assert!(!daemon.reload_raw());
    assert!(reply_text(&send("Q3").await).starts_with("552 5.3.4"));
    let log = daemon.log();
    assert!(log.contains("syntax error"), "{log}");

    // So is a file with a bad value.
    std::fs::write(
        daemon.policy_path(),
        daemon_support::policy_text(
            daemon.milter_port,
            daemon.metrics_port,
            "[limits]\nmax_message_size = \"lots\"\n",
        ),
    )
    .unwrap();
    assert!(!daemon.reload_raw());
    assert!(reply_text(&send("Q4").await).starts_with("552 5.3.4"));

    let (_, metrics) = daemon.http_get("/metrics");
    assert!(
        metrics.contains("congvu_milter_policy_reloads_total{result=\"success\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("congvu_milter_policy_reloads_total{result=\"failure\"} 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_peers_do_not_disturb_the_others() {
    let daemon = Daemon::start("");
    // An idle peer that never speaks.
    let _idle = tokio::net::TcpStream::connect(daemon.milter_addr())
        .await
        .unwrap();
    // A peer that sends garbage.
    let mut garbage = tokio::net::TcpStream::connect(daemon.milter_addr())
        .await
        .unwrap();
    garbage.write_all(b"\xff\xff\xff\xffGARBAGE").await.unwrap();
    // A peer that announces a zero-length frame.
    let mut zero = tokio::net::TcpStream::connect(daemon.milter_addr())
        .await
        .unwrap();
    zero.write_all(&[0, 0, 0, 0]).await.unwrap();
    // A peer that hangs up mid-frame.
    let mut cut = tokio::net::TcpStream::connect(daemon.milter_addr())
        .await
        .unwrap();
    cut.write_all(&[0, 0, 0, 20, b'O', 0, 0]).await.unwrap();
    drop(cut);

    // Meanwhile, ordinary mail flows on other connections.
    for qid in ["OK1", "OK2", "OK3"] {
        let mut c = client(&daemon).await;
        let out = c
            .send_message(
                &envelope("a@example.org", &["b@bacgiang.gov.vn"], None),
                &plain_message(2000),
                &macros(qid),
            )
            .await
            .unwrap();
        assert!(
            matches!(out.reply, Reply::Accept | Reply::Continue),
            "{:?}",
            out.reply
        );
    }
    // The garbage and zero-length peers were cut off.
    for s in [&mut garbage, &mut zero] {
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(TIMEOUT, tokio::io::AsyncReadExt::read(s, &mut buf))
            .await
            .expect("closed in time")
            .unwrap_or(0);
        assert_eq!(n, 0, "connection should have been closed");
    }
    let (_, metrics) = daemon.http_get("/metrics");
    let errors: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("congvu_milter_protocol_errors_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(errors >= 2, "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn health_and_metrics_endpoints_answer() {
    let daemon = Daemon::start("[clamav]\nenabled = false\n");
    assert_eq!(daemon.http_get("/healthz").0, 200);
    assert_eq!(daemon.http_get("/readyz").0, 200);
    let mut c = client(&daemon).await;
    send(&mut c, &plain_message(100), "M1").await;
    let (status, body) = daemon.http_get("/metrics");
    assert_eq!(status, 200);
    assert!(
        body.contains("congvu_milter_messages_total{action=\"accept\"} 1"),
        "{body}"
    );
    assert!(body.contains("congvu_milter_build_info{version="), "{body}");
}

#[test]
fn sigterm_stops_the_daemon_cleanly_and_unix_sockets_are_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("milter.sock");
    let metrics_port = daemon_support::free_port();
    let policy = format!(
        "[milter]\nlisten = [\"unix:{}\"]\nsocket_mode = \"0666\"\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n",
        sock.display()
    );
    // A stale socket file left by a crash.
    let stale = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    drop(stale);
    assert!(sock.exists());
    let policy_path = dir.path().join("p.toml");
    std::fs::write(&policy_path, policy).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_congvu-milter"))
        .args(["check-config", "--config"])
        .arg(&policy_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_congvu-milter"))
        .args(["serve", "--config"])
        .arg(&policy_path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(std::time::Instant::now() < deadline, "no unix socket");
        std::thread::sleep(Duration::from_millis(50));
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o666
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(!sock.exists(), "socket file removed at exit");
}

#[test]
fn check_config_reports_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[milter]\nlisten = [\"inet:127.0.0.1:8891\"]\nlissen = 1\n[limits]\nmax_message_size = \"25 parsecs\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_congvu-milter"))
        .args(["check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:3: error: milter.lissen"), "{err}");
    assert!(
        err.contains("bad.toml:5: error: limits.max_message_size"),
        "{err}"
    );

    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/config/congvu-milter.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_congvu-milter"))
        .args(["check-config", "--config", shipped])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // serve refuses the same broken file.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_congvu-milter"))
        .args(["serve", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn scan_prints_json_verdicts_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.toml");
    std::fs::write(&policy, "[limits]\nmax_message_size = \"100 KiB\"\nmax_attachments_size = \"50 KiB\"\n[clamav]\nenabled = false\n").unwrap();
    let small = dir.path().join("small.eml");
    let big = dir.path().join("big.eml");
    std::fs::write(&small, plain_message(100)).unwrap();
    std::fs::write(&big, plain_message(200_000)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_congvu-milter"))
        .args(["scan", "--json", "--config"])
        .arg(&policy)
        .arg(&small)
        .arg(&big)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "one message is refused");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["action"], "accept");
    assert_eq!(lines[1]["action"], "reject");
    assert!(lines[1]["reply"].as_str().unwrap().starts_with("552 5.3.4"));
    assert_eq!(lines[1]["reasons"][0]["rule"], "message_size");
    assert_eq!(lines[1]["reasons"][0]["article"], "Điều 10");
}

#[tokio::test(flavor = "multi_thread")]
async fn clamd_unreachable_means_tempfail_and_not_ready() {
    // Mail without attachments has nothing to scan in `attachments` mode; this one
    // carries a small text file.
    let daemon = Daemon::start(
        "[clamav]\nenabled = true\nendpoints = [\"unix:/nonexistent/clamd.sock\"]\nprobe_interval = \"1s\"\n",
    );
    let mut c = client(&daemon).await;
    let out = send(&mut c, &with_attachment(), "TF1").await;
    let text = reply_text(&out.reply);
    assert!(text.starts_with("451 4.7.1"), "{text}");
    let (status, body) = daemon.http_get("/readyz");
    assert_eq!(status, 503, "{body}");
    let (_, metrics) = daemon.http_get("/metrics");
    assert!(
        metrics.contains(
            "congvu_milter_clamd_endpoint_up{endpoint=\"unix:/nonexistent/clamd.sock\"} 0"
        ),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_budget_defers_new_messages_and_frees_itself() {
    let daemon = Daemon::start(
        "[limits]\nmax_message_size = \"1 MiB\"\nmax_attachments_size = \"500 KiB\"\nmax_buffered_bytes = \"3 MiB\"\n",
    );
    let chunk = vec![b'x'; 60_000];
    // Session A holds 600 KB of body without finishing its message.
    let mut a = client(&daemon).await;
    a.mail(&["<a@example.org>"]).await.unwrap();
    a.rcpt(&["<b@bacgiang.gov.vn>"]).await.unwrap();
    a.header("Subject", "held").await.unwrap();
    a.eoh().await.unwrap();
    for _ in 0..10 {
        let r = a.body_chunk(&chunk).await.unwrap();
        assert!(matches!(r, None | Some(Reply::Continue)), "{r:?}");
    }
    // Each body byte counts three times: A holds 1.8 MB of the 3 MiB budget, and
    // session B's 600 KB message would take it past: deferred.
    let mut b = client(&daemon).await;
    let out = b
        .send_message(
            &envelope("c@example.org", &["d@bacgiang.gov.vn"], None),
            &plain_message(600_000),
            &macros("BUDGET1"),
        )
        .await
        .unwrap();
    assert_eq!(out.stage, Stage::Eom);
    assert!(
        reply_text(&out.reply).starts_with("451 4.7.1"),
        "{:?}",
        out.reply
    );
    // A finishes; its bytes come back and B's retry goes through.
    let eom = a.eom().await.unwrap();
    assert_delivered(&eom.reply);
    a.abort().await.unwrap();
    let out = b
        .send_message(
            &envelope("c@example.org", &["d@bacgiang.gov.vn"], None),
            &plain_message(600_000),
            &macros("BUDGET2"),
        )
        .await
        .unwrap();
    assert_delivered(&out.reply);
    let (_, metrics) = daemon.http_get("/metrics");
    assert!(
        metrics.contains("congvu_milter_memory_budget_deferrals_total 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_carry_the_verdict_fields() {
    let daemon = Daemon::start("[log]\nformat = \"json\"\n");
    let mut c = client(&daemon).await;
    send(&mut c, &plain_message(200), "JSONQ1").await;
    let log = daemon.log();
    let line = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["queue_id"] == "JSONQ1")
        .unwrap_or_else(|| panic!("no JSON verdict line in:\n{log}"));
    assert_eq!(line["action"], "accept");
    assert_eq!(line["sender"], "<a@example.org>");
    assert_eq!(line["recipients"], "b@bacgiang.gov.vn");
    assert!(line["elapsed_ms"].is_u64());
}

#[tokio::test(flavor = "multi_thread")]
async fn several_listeners_serve_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("m.sock");
    let port = daemon_support::free_port();
    let metrics_port = daemon_support::free_port();
    let policy_path = dir.path().join("p.toml");
    std::fs::write(
        &policy_path,
        format!(
            "[milter]\nlisten = [\"inet:127.0.0.1:{port}\", \"unix:{}\"]\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n[clamav]\nenabled = false\n",
            sock.display()
        ),
    )
    .unwrap();
    let daemon = Daemon::start_with(dir, port, metrics_port, policy_path);
    let mut tcp = client(&daemon).await;
    let out = send(&mut tcp, &plain_message(100), "TCP1").await;
    assert_delivered(&out.reply);
    let mut unix = MilterClient::connect_unix(&sock, TIMEOUT).await.unwrap();
    unix.negotiate(Offer::SENDMAIL_8_17).await.unwrap();
    unix.connect("localhost", Family::Unix("/run/x".into()))
        .await
        .unwrap();
    let out = send(&mut unix, &plain_message(100), "UNIX1").await;
    assert_delivered(&out.reply);
    let log = daemon.log();
    assert!(
        log.contains("TCP1: accept") && log.contains("UNIX1: accept"),
        "{log}"
    );
}

/// Under systemd's journal (`JOURNAL_STREAM` set) the daemon leaves the time to
/// the journal and marks each line with its syslog priority (`<4>` warning,
/// `<6>` info), so `journalctl -p warning` selects warnings; elsewhere each line
/// starts with its time.
#[test]
fn log_lines_follow_the_journal_when_there_is_one() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.toml");
    // max_message_size too small for its attachments: a warning at start.
    std::fs::write(
        &policy,
        format!(
            "[milter]\nlisten = [\"inet:127.0.0.1:{}\"]\n[metrics]\nlisten = \"\"\n\
             [clamav]\nenabled = false\n\
             [limits]\nmax_message_size = \"1 MiB\"\nmax_attachments_size = \"600 KiB\"\n",
            daemon_support::free_port()
        ),
    )
    .expect("policy");
    let first_lines = |journal: bool| -> Vec<String> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_congvu-milter"));
        cmd.args(["serve", "--config"])
            .arg(&policy)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if journal {
            cmd.env("JOURNAL_STREAM", "8:12345");
        } else {
            cmd.env_remove("JOURNAL_STREAM");
        }
        let mut child = cmd.spawn().expect("start congvu-milter");
        let mut lines = Vec::new();
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        while lines.len() < 2 {
            let mut line = String::new();
            if stderr.read_line(&mut line).expect("read") == 0 {
                break;
            }
            lines.push(line.trim_end().to_owned());
        }
        let _ = child.kill();
        let _ = child.wait();
        lines
    };
    let journal = first_lines(true);
    assert!(journal[0].starts_with("<4>WARN "), "{journal:?}");
    assert!(journal[1].starts_with("<6>listening "), "{journal:?}");
    let plain = first_lines(false);
    let (stamp, rest) = plain[1].split_once(' ').expect("time first");
    assert!(stamp.ends_with('Z') && stamp.contains('T'), "{plain:?}");
    assert!(rest.starts_with("listening "), "{plain:?}");
    assert!(plain[0].contains(" WARN "), "{plain:?}");
}
