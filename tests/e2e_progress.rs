//! A slow clamd behind the milter, with Postfix's `milter_content_timeout`
//! lowered below the scan time: the milter's progress replies keep the message
//! alive. Without them (a progress interval longer than Postfix's timeout) the
//! same message times out, which shows the test can fail.
//!
//! The slow clamd is a fake (a real clamd does not stall on demand): it reads a
//! whole INSTREAM, waits, then answers `stream: OK`.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use crate::common;
use crate::common::postfix::{Postfix, PostfixOptions};
use crate::daemon_support::Daemon;

/// A clamd that answers every scan after `delay`, and PING at once.
fn slow_clamd(delay: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            std::thread::spawn(move || {
                let mut command = Vec::new();
                let mut byte = [0u8; 1];
                while s.read_exact(&mut byte).is_ok() && byte[0] != 0 {
                    command.push(byte[0]);
                }
                if command.ends_with(b"PING") {
                    let _ = s.write_all(b"PONG\0");
                    return;
                }
                // INSTREAM: u32 length-prefixed chunks until a zero length.
                loop {
                    let mut len = [0u8; 4];
                    if s.read_exact(&mut len).is_err() {
                        return;
                    }
                    let n = u32::from_be_bytes(len) as usize;
                    if n == 0 {
                        break;
                    }
                    let mut chunk = vec![0u8; n];
                    if s.read_exact(&mut chunk).is_err() {
                        return;
                    }
                }
                std::thread::sleep(delay);
                let _ = s.write_all(b"stream: OK\0");
            });
        }
    });
    port
}

fn message() -> Vec<u8> {
    b"From: a@example.org\r\nTo: user@bacgiang.gov.vn\r\nSubject: cham\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nxem tep\r\n--b\r\nContent-Type: text/plain; name=\"a.txt\"\r\nContent-Disposition: attachment; filename=\"a.txt\"\r\n\r\nnoi dung\r\n--b--\r\n".to_vec()
}

fn run(progress_interval: &str) -> (common::smtp::SmtpOutcome, Postfix, Daemon) {
    let port = slow_clamd(Duration::from_secs(5));
    let daemon = Daemon::start(&format!(
        "[clamav]\nenabled = true\nendpoints = [\"tcp:127.0.0.1:{port}\"]\nscan_timeout = \"20s\"\n"
    ));
    // The test policy sends progress every second; set the interval under test.
    let text = std::fs::read_to_string(daemon.policy_path())
        .unwrap()
        .replace(
            "progress_interval = \"1s\"",
            &format!("progress_interval = \"{progress_interval}\""),
        );
    std::fs::write(daemon.policy_path(), text).unwrap();
    assert!(daemon.reload_raw());
    let mut opts = PostfixOptions::with_milter(daemon.milter_socket());
    opts.milter_content_timeout = Some(Duration::from_secs(2));
    let postfix = Postfix::start(opts);
    let out = postfix.send("a@example.org", &["user@bacgiang.gov.vn"], &message());
    (out, postfix, daemon)
}

#[test]
fn progress_replies_keep_a_slow_scan_alive() {
    let (out, postfix, daemon) = run("1s");
    assert!(out.accepted(), "{}\n{}", out.text(), daemon.log());
    let got = postfix.wait_delivered(1, Duration::from_secs(30));
    assert_eq!(
        common::header_values(&got[0], "X-Virus-Status"),
        vec!["Clean".to_string()]
    );
}

#[test]
fn without_progress_replies_postfix_times_out() {
    let (out, postfix, _daemon) = run("60s");
    assert_eq!(out.code(), 451, "{}", out.text());
    let log = postfix.wait_log("milter", Duration::from_secs(10));
    assert!(log.contains("timeout") || log.contains("time"), "{log}");
}
