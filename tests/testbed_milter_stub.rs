//! Proves the test bed's milter wiring with a 40-line stand-in milter (not
//! the project's): `smtpd_milters` reaches it, its header edit shows up at
//! the sink, its multi-line reject reaches the SMTP client verbatim, an
//! unreachable milter gives `milter_default_action`, and the async helpers
//! don't block a current-thread tokio runtime that also serves the milter.

use crate::common;
use crate::common::postfix::{Postfix, PostfixOptions};
use crate::common::smtp::Stage;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Copy)]
enum AtEom {
    /// Add `X-Testbed-Stub: yes`, then continue.
    AddHeader,
    /// Reply with a two-line 550.
    Reject,
}

/// Starts the stub on 127.0.0.1:random; returns its `inet:` address and the
/// command codes it received.
async fn start_stub(at_eom: AtEom) -> (String, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("inet:{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let (conn, _) = listener.accept().await.unwrap();
            tokio::spawn(serve(conn, at_eom, s2.clone()));
        }
    });
    (addr, seen)
}

async fn send(s: &mut TcpStream, code: u8, payload: &[u8]) -> std::io::Result<()> {
    let mut pkt = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
    pkt.push(code);
    pkt.extend_from_slice(payload);
    s.write_all(&pkt).await
}

async fn serve(mut s: TcpStream, at_eom: AtEom, seen: Arc<Mutex<Vec<u8>>>) -> std::io::Result<()> {
    loop {
        let mut len = [0u8; 4];
        if s.read_exact(&mut len).await.is_err() {
            return Ok(());
        }
        let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut buf).await?;
        seen.lock().unwrap().push(buf[0]);
        match buf[0] {
            // Version 6, may add headers, no protocol options.
            b'O' => {
                send(
                    &mut s,
                    b'O',
                    &[6u32, 0x01, 0].map(u32::to_be_bytes).concat(),
                )
                .await?
            }
            b'D' | b'A' => {}
            b'Q' => return Ok(()),
            b'E' => match at_eom {
                AtEom::AddHeader => {
                    send(&mut s, b'h', b"X-Testbed-Stub\0yes\0").await?;
                    send(&mut s, b'c', b"").await?;
                }
                AtEom::Reject => {
                    let reply = b"550-5.7.1 stub says no\r\n550 5.7.1 second line\0";
                    send(&mut s, b'y', reply).await?;
                }
            },
            _ => send(&mut s, b'c', b"").await?,
        }
    }
}

const MSG: &[u8] = b"From: a@example.test\r\nTo: b@example.test\r\nSubject: stub\r\n\r\nhello\r\n";

#[tokio::test]
async fn milter_header_edit_reaches_the_sink() {
    let (addr, seen) = start_stub(AtEom::AddHeader).await;
    let pf = Postfix::start(PostfixOptions::with_milter(addr));
    let out = pf
        .send_async("a@example.test", &["b@example.test"], MSG)
        .await;
    assert!(out.accepted(), "{}", out.text());
    let msgs = pf.wait_delivered_async(1, Duration::from_secs(30)).await;
    assert_eq!(common::header_values(&msgs[0], "X-Testbed-Stub"), ["yes"]);
    assert!(msgs[0].ends_with(b"\r\n\r\nhello\r\n"));
    let seen = seen.lock().unwrap().clone();
    for code in [b'O', b'C', b'H', b'M', b'R', b'T', b'L', b'N', b'B', b'E'] {
        assert!(
            seen.contains(&code),
            "{:?} not seen in {:?}",
            code as char,
            seen
        );
    }
}

#[tokio::test]
async fn milter_multi_line_reject_reaches_the_client() {
    let (addr, _) = start_stub(AtEom::Reject).await;
    let pf = Postfix::start(PostfixOptions::with_milter(addr));
    let out = pf
        .send_async("a@example.test", &["b@example.test"], MSG)
        .await;
    assert_eq!(out.stage, Stage::EndOfData);
    assert_eq!(out.code(), 550);
    assert_eq!(out.text(), "550-5.7.1 stub says no\n550 5.7.1 second line");
    assert_eq!(out.reply.enhanced().as_deref(), Some("5.7.1"));
    pf.assert_nothing_delivered(Duration::from_millis(500));
}

#[test]
fn unreachable_milter_gives_the_default_action() {
    let port = common::free_port(); // nobody listens there
    let pf = Postfix::start(PostfixOptions::with_milter(format!(
        "inet:127.0.0.1:{port}"
    )));
    let out = pf.send("a@example.test", &["b@example.test"], MSG);
    assert!(!out.accepted());
    assert_eq!(out.code(), 451, "{out:?}");
    pf.wait_log("connect to Milter service", Duration::from_secs(10));
    pf.assert_nothing_delivered(Duration::from_millis(500));
}
