//! Proves the test bed works with no milter involved: a private Postfix
//! relays a message byte for byte to the sink, a private clamd detects EICAR
//! over a hand-written zINSTREAM exchange, and the tools later tests call
//! are installed.

use crate::common;
use crate::common::clamd::{self, Clamd, ClamdOptions};
use crate::common::postfix::{Postfix, PostfixOptions};
use crate::common::smtp::Stage;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

#[test]
fn postfix_relays_a_message_unchanged_to_the_sink() {
    let pf = Postfix::start(PostfixOptions::default());
    // Dot-stuffing, an 8-bit line, a long line and a line that is only "."
    // must all survive the round trip.
    let long = "x".repeat(900);
    let raw = format!(
        "From: Alice <alice@so.bacgiang.gov.vn>\r\n\
         To: Bob <bob@example.test>\r\n\
         Subject: testbed self-test\r\n\
         Message-ID: <selftest-1@so.bacgiang.gov.vn>\r\n\
         Date: Mon, 1 Jan 2024 00:00:00 +0700\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         \r\n\
         Xin chào, công văn số 12.\r\n\
         .leading dot\r\n\
         .\r\n\
         ..two dots\r\n\
         {long}\r\n\
         last line\r\n"
    );
    let out = pf.send(
        "alice@so.bacgiang.gov.vn",
        &["bob@example.test", "carol@example.test"],
        raw.as_bytes(),
    );
    assert_eq!(out.stage, Stage::EndOfData, "{out:?}");
    assert_eq!(out.code(), 250, "{}", out.text());
    assert!(out.accepted());
    let queue_id = out.queue_id().expect("queue id in the 250 reply");

    let msgs = pf.wait_delivered_messages(1, Duration::from_secs(30));
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    assert_eq!(m.mail_from, "alice@so.bacgiang.gov.vn");
    assert_eq!(m.rcpts, ["bob@example.test", "carol@example.test"]);
    // Postfix prepends exactly its Received: header; everything after it is
    // the message as sent.
    let received_end = find(&m.data, b"\r\nFrom: ").expect("original headers") + 2;
    assert!(m.data.starts_with(b"Received: from "));
    assert!(
        String::from_utf8_lossy(&m.data[..received_end]).contains(&queue_id),
        "Received: header names the queue id"
    );
    assert_eq!(
        String::from_utf8_lossy(&m.data[received_end..]),
        raw,
        "message changed on the way"
    );
    assert_eq!(common::body_of(&m.data), common::body_of(raw.as_bytes()));
    assert_eq!(
        common::header_values(&m.data, "subject"),
        ["testbed self-test"]
    );

    let log = pf.wait_log("status=sent", Duration::from_secs(10));
    assert!(log.contains(&queue_id), "log mentions {queue_id}:\n{log}");
}

#[test]
fn postfix_refusals_are_outcomes_and_instances_run_side_by_side() {
    let small = Postfix::start(PostfixOptions {
        message_size_limit: 1000,
        ..Default::default()
    });
    let other = Postfix::start(PostfixOptions::default());
    assert_ne!(small.smtp_addr(), other.smtp_addr());

    let big = format!("Subject: big\r\n\r\n{}\r\n", "y".repeat(5000));
    let out = small.send("a@example.test", &["b@example.test"], big.as_bytes());
    assert_eq!(out.stage, Stage::EndOfData);
    assert_eq!(out.code(), 552, "{}", out.text());
    assert!(!out.accepted());

    let out = other.send("a@example.test", &["b@example.test"], big.as_bytes());
    assert!(out.accepted(), "{}", out.text());
    other.wait_delivered(1, Duration::from_secs(30));
    small.assert_nothing_delivered(Duration::from_millis(500));
}

#[test]
fn postfix_applies_virtual_aliases() {
    let pf = Postfix::start(PostfixOptions {
        virtual_aliases: vec![(
            "alice@so.bacgiang.gov.vn".into(),
            "alice.private@gmail.test".into(),
        )],
        ..Default::default()
    });
    let out = pf.send(
        "x@example.test",
        &["alice@so.bacgiang.gov.vn"],
        b"Subject: fwd\r\n\r\nhi\r\n",
    );
    assert!(out.accepted(), "{}", out.text());
    let msgs = pf.wait_delivered_messages(1, Duration::from_secs(30));
    assert_eq!(msgs[0].rcpts, ["alice.private@gmail.test"]);
}

/// Writes clamd's zINSTREAM protocol by hand (independent of any client
/// crate): command, u32 big-endian length-prefixed chunks, zero terminator.
fn instream<S: Read + Write>(mut s: S, data: &[u8], chunk: usize) -> String {
    s.write_all(b"zINSTREAM\0").unwrap();
    for c in data.chunks(chunk) {
        s.write_all(&(c.len() as u32).to_be_bytes()).unwrap();
        s.write_all(c).unwrap();
    }
    s.write_all(&[0, 0, 0, 0]).unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).unwrap();
    assert_eq!(reply.last(), Some(&0), "zINSTREAM replies end with NUL");
    reply.pop();
    String::from_utf8(reply).unwrap()
}

#[test]
fn clamd_detects_eicar_and_passes_clean_data_then_stops() {
    let mut c = Clamd::start(ClamdOptions {
        tcp: true,
        ..Default::default()
    });
    let sock = c.socket_path();

    let mut eicar_mail = b"Some text before\r\n".to_vec();
    eicar_mail.extend_from_slice(&clamd::eicar());
    let reply = instream(UnixStream::connect(&sock).unwrap(), &eicar_mail, 7);
    assert!(reply.starts_with("stream: "), "{reply}");
    assert!(reply.ends_with(" FOUND"), "{reply}");
    assert!(reply.contains("Eicar-Test-Signature"), "{reply}");

    let reply = instream(
        UnixStream::connect(&sock).unwrap(),
        b"a perfectly clean buffer",
        4096,
    );
    assert_eq!(reply, "stream: OK");

    // Same over TCP, with the real test executable.
    let exe = std::fs::read(clamd::CLAM_EXE).unwrap();
    let tcp = TcpStream::connect(c.tcp_addr()).unwrap();
    let reply = instream(tcp, &exe, 65536);
    assert!(reply.ends_with(" FOUND"), "{reply}");
    // ... and inside an archive, via the harness helper.
    let zip = std::fs::read(format!("{}/clam.zip", clamd::TESTFILES_DIR)).unwrap();
    assert!(c.scan(&zip).unwrap().ends_with(" FOUND"));

    c.stop();
    assert!(!c.is_running());
    assert!(UnixStream::connect(&sock).is_err(), "clamd stopped");
    assert!(TcpStream::connect(c.tcp_addr()).is_err(), "clamd stopped");

    c.restart();
    assert!(c.is_running());
    assert_eq!(c.scan(b"clean again").unwrap(), "stream: OK");
}

#[test]
fn clamd_reports_stream_size_limit_as_error() {
    let c = Clamd::start(ClamdOptions {
        stream_max_length: "1M".into(),
        ..Default::default()
    });
    let reply = c.scan(&vec![b'a'; 2 * 1024 * 1024]).unwrap();
    assert!(reply.ends_with("ERROR"), "{reply}");
}

#[test]
fn tools_used_by_later_tests_are_installed() {
    for tool in [
        "miltertest",
        "swaks",
        "clamav-milter",
        "clamdscan",
        "zip",
        "7z",
        "promtool",
        "python3",
    ] {
        assert!(
            common::which(tool).is_some(),
            "`{tool}` missing — {}",
            common::INSTALL_HINT
        );
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
