//! End-to-end tests of the milter session: `run_session` on an in-memory duplex or
//! a real TCP listener, driven by `MilterClient` playing Postfix or Sendmail, with
//! a small test filter that records what it saw.

use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use congvu_milter::message::{Connection, Envelope, Message};
use congvu_milter::milter::budget::MemoryBudget;
use congvu_milter::milter::client::{
    ClientError, MilterClient, Offer, Stage, StageMacros, split_message,
};
use congvu_milter::milter::codec::{Command, Family, Reply, actions, macro_stage, protocol};
use congvu_milter::milter::session::{SessionConfig, SessionEnd, SessionStats, run_session};
use congvu_milter::milter::{BoxFuture, Filter};
use congvu_milter::verdict::{Action, HeaderEdit, Reason, SmtpReply, Verdict};
use tokio::io::DuplexStream;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Generous bound for anything that should happen "now"; only failures wait it out.
const PATIENCE: Duration = Duration::from_secs(10);

/// Records what the session hands it and decides by simple markers:
/// - connect from host `refused.test`: reject (554 5.7.1);
/// - sender `blocked@x.test`: reject at MAIL with a `%` in the text;
/// - body past `body_limit` bytes: tempfail at BODY;
/// - header `X-Test-Reject`: reject at EOM;
/// - header `X-Test-Quarantine`: quarantine at EOM;
/// - otherwise accept, adding `X-Congvu: checked` and deleting `X-Remove-Me`.
struct TestFilter {
    body_limit: usize,
    eom_delay: Duration,
    connects: Mutex<Vec<Connection>>,
    decided: Mutex<Vec<Message>>,
    aborted: Mutex<Vec<Message>>,
}

impl TestFilter {
    fn new() -> Arc<Self> {
        TestFilter::with(usize::MAX, Duration::ZERO)
    }

    fn with(body_limit: usize, eom_delay: Duration) -> Arc<Self> {
        Arc::new(TestFilter {
            body_limit,
            eom_delay,
            connects: Mutex::new(Vec::new()),
            decided: Mutex::new(Vec::new()),
            aborted: Mutex::new(Vec::new()),
        })
    }

    fn decided(&self) -> Vec<Message> {
        self.decided.lock().unwrap().clone()
    }

    fn aborted(&self) -> Vec<Message> {
        self.aborted.lock().unwrap().clone()
    }
}

fn reason(rule: &str) -> Reason {
    Reason {
        rule: rule.into(),
        article: "Điều 4".into(),
        detail: String::new(),
        path: Vec::new(),
    }
}

impl Filter for TestFilter {
    fn connect(&self, conn: &Connection) -> Option<Verdict> {
        self.connects.lock().unwrap().push(conn.clone());
        (conn.hostname == "refused.test").then(|| Verdict {
            action: Action::Reject,
            reply: Some(SmtpReply::new(554, "5.7.1", "go away")),
            headers: vec![],
            reasons: vec![reason("connect")],
        })
    }

    fn mail(&self, msg: &Message) -> Option<Verdict> {
        (msg.envelope.sender == "blocked@x.test").then(|| Verdict {
            action: Action::Reject,
            reply: Some(SmtpReply::new(550, "5.7.1", "sender 100% blocked")),
            headers: vec![],
            reasons: vec![reason("sender")],
        })
    }

    fn body_chunk(&self, msg: &Message, chunk_len: usize) -> Option<Verdict> {
        (msg.body_len() + chunk_len > self.body_limit)
            .then(|| Verdict::tempfail("size", "body too large"))
    }

    fn end_of_message(&self, msg: Message) -> BoxFuture<'static, Verdict> {
        let verdict = if msg.header_values("X-Test-Reject").next().is_some() {
            Verdict {
                action: Action::Reject,
                reply: Some(SmtpReply {
                    code: 550,
                    enhanced: "5.7.1".into(),
                    lines: vec!["rejected".into(), "50% of the reason".into()],
                }),
                headers: vec![],
                reasons: vec![reason("header")],
            }
        } else if msg.header_values("X-Test-Quarantine").next().is_some() {
            Verdict {
                action: Action::Quarantine,
                reply: None,
                headers: vec![HeaderEdit::Add {
                    name: "X-Congvu".into(),
                    value: "held".into(),
                }],
                reasons: vec![reason("executable")],
            }
        } else {
            Verdict {
                action: Action::Accept,
                reply: None,
                headers: vec![
                    HeaderEdit::Add {
                        name: "X-Congvu".into(),
                        value: "checked".into(),
                    },
                    HeaderEdit::Delete {
                        name: "X-Remove-Me".into(),
                        index: 1,
                    },
                ],
                reasons: vec![],
            }
        };
        self.decided.lock().unwrap().push(msg);
        let delay = self.eom_delay;
        Box::pin(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            verdict
        })
    }

    fn aborted(&self, msg: &Message) {
        self.aborted.lock().unwrap().push(msg.clone());
    }
}

fn test_config() -> SessionConfig {
    SessionConfig {
        idle_timeout: PATIENCE,
        progress_interval: Duration::from_millis(50),
        ..SessionConfig::default()
    }
}

struct Harness {
    client: MilterClient<DuplexStream>,
    session: JoinHandle<SessionStats>,
    shutdown: CancellationToken,
}

impl Harness {
    /// A session on an in-memory pipe; nothing sent yet.
    fn start(filter: Arc<TestFilter>, config: SessionConfig) -> Harness {
        Harness::start_on_pipe(filter, config, 256 * 1024)
    }

    /// The same on a pipe that holds at most `pipe_bytes` unread in each direction.
    fn start_on_pipe(filter: Arc<TestFilter>, config: SessionConfig, pipe_bytes: usize) -> Harness {
        let (mta_end, milter_end) = tokio::io::duplex(pipe_bytes);
        let shutdown = CancellationToken::new();
        let session = tokio::spawn(run_session(
            milter_end,
            filter,
            config,
            7,
            "test-peer".to_owned(),
            shutdown.clone(),
        ));
        Harness {
            client: MilterClient::new(mta_end).with_timeout(PATIENCE),
            session,
            shutdown,
        }
    }

    /// Negotiated with `offer`, connected from client.test [192.0.2.7]:40000,
    /// HELO done, with the connection macros Postfix would send.
    async fn ready(filter: Arc<TestFilter>, config: SessionConfig, offer: Offer) -> Harness {
        let mut h = Harness::start(filter, config);
        h.client.negotiate(offer).await.unwrap();
        h.client
            .macros(
                b'C',
                &[
                    ("j", "mx.bacgiang.gov.vn"),
                    ("{daemon_name}", "smtpd"),
                    ("{client_addr}", "192.0.2.7"),
                    ("{client_port}", "40000"),
                ],
            )
            .await
            .unwrap();
        let reply = h
            .client
            .connect(
                "client.test",
                Family::Inet(Ipv4Addr::new(192, 0, 2, 7), 40000),
            )
            .await
            .unwrap();
        assert!(matches!(reply, None | Some(Reply::Continue)), "{reply:?}");
        h.client.macros(b'H', &[]).await.unwrap();
        let reply = h.client.helo("client.test").await.unwrap();
        assert!(matches!(reply, None | Some(Reply::Continue)), "{reply:?}");
        h
    }

    async fn finish(self) -> SessionStats {
        drop(self.client);
        tokio::time::timeout(PATIENCE, self.session)
            .await
            .expect("session ends")
            .expect("session task does not panic")
    }

    async fn ended(self) -> (MilterClient<DuplexStream>, SessionStats) {
        let stats = tokio::time::timeout(PATIENCE, self.session)
            .await
            .expect("session ends on its own")
            .expect("session task does not panic");
        (self.client, stats)
    }
}

fn envelope(sender: &str, rcpts: &[&str]) -> Envelope {
    Envelope {
        sender: sender.into(),
        sender_params: vec!["SIZE=1234".into(), "BODY=8BITMIME".into()],
        recipients: rcpts.iter().map(|r| (*r).to_owned()).collect(),
    }
}

fn macros(queue_id: &str) -> StageMacros {
    // As Postfix: no queue id yet at MAIL and RCPT; `i` from DATA on.
    StageMacros::new()
        .with(b'M', "{auth_type}", "PLAIN")
        .with(b'M', "{auth_authen}", "alice")
        .with(b'M', "{mail_addr}", "alice@so.bacgiang.gov.vn")
        .with(b'R', "{rcpt_addr}", "bob@x.test")
        .with(b'T', "i", queue_id)
        .with(b'L', "i", queue_id)
        .with(b'N', "i", queue_id)
        .with(b'B', "i", queue_id)
        .with(b'E', "i", queue_id)
}

/// A body of `len` bytes with CRLF lines, 8-bit bytes and a NUL.
fn body_of(len: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(len + 100);
    let mut i = 0u32;
    while body.len() < len {
        body.extend_from_slice(format!("line {i} ").as_bytes());
        body.extend_from_slice(&[0xC4, 0x90, 0xE1, 0xBB, 0x81, 0x00, b'%']);
        body.extend_from_slice(b"\r\n");
        i += 1;
    }
    body
}

fn eml(extra_headers: &str, body: &[u8]) -> Vec<u8> {
    let mut eml = format!(
        "From: Alice <alice@so.bacgiang.gov.vn>\r\n\
         To: bob@x.test\r\n\
         Subject: first part\r\n\tsecond part\r\n\
         {extra_headers}\r\n"
    )
    .into_bytes();
    eml.extend_from_slice(body);
    eml
}

/// Nothing more arrives from the milter: no stray reply is left in the pipe.
async fn assert_nothing_pending(client: &mut MilterClient<DuplexStream>) {
    let stray = client
        .reply_within(Duration::from_millis(100))
        .await
        .expect("connection still open");
    assert_eq!(stray, None, "stray reply from the milter");
}

#[tokio::test]
async fn negotiates_with_postfix_offer_and_requests_macros() {
    let mut h = Harness::start(TestFilter::new(), test_config());
    let neg = h.client.negotiate(Offer::POSTFIX_3_7).await.unwrap();
    assert_eq!(neg.version, 6);
    assert_eq!(
        neg.actions,
        actions::ADDHDRS | actions::CHGHDRS | actions::QUARANTINE | actions::SETSYMLIST
    );
    for bit in [
        protocol::NOUNKNOWN,
        protocol::NODATA,
        protocol::NR_CONN,
        protocol::NR_HELO,
        protocol::NR_RCPT,
        protocol::NR_DATA,
        protocol::NR_UNKN,
        protocol::NR_EOH,
        protocol::NR_HDR,
        protocol::NR_BODY,
    ] {
        assert_ne!(neg.protocol & bit, 0, "bit {bit:#x} requested");
    }
    for bit in [
        protocol::NOCONNECT,
        protocol::NOHELO,
        protocol::NOMAIL,
        protocol::NORCPT,
        protocol::NOHDRS,
        protocol::NOEOH,
        protocol::NOBODY,
        protocol::NR_MAIL,
        protocol::SKIP,
    ] {
        assert_eq!(neg.protocol & bit, 0, "bit {bit:#x} not requested");
    }
    assert_eq!(
        neg.macro_list(macro_stage::CONNECT),
        Some("j {daemon_name} {client_addr} {client_port} {client_name}")
    );
    assert_eq!(
        neg.macro_list(macro_stage::MAIL),
        Some("i {auth_type} {auth_authen} {mail_addr}")
    );
    assert_eq!(neg.macro_list(macro_stage::RCPT), Some("i {rcpt_addr}"));
    for stage in [macro_stage::DATA, macro_stage::EOH, macro_stage::EOM] {
        assert_eq!(neg.macro_list(stage), Some("i"));
    }
    assert_eq!(neg.macro_list(macro_stage::HELO), None);
    h.client.quit().await.unwrap();
    let stats = tokio::time::timeout(PATIENCE, h.session)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stats.end, SessionEnd::Quit);
}

#[tokio::test]
async fn full_message_with_postfix_offer() {
    let filter = TestFilter::new();
    let mut h = Harness::ready(filter.clone(), test_config(), Offer::POSTFIX_3_7).await;
    // Two body chunks of 65535 bytes and a partial one.
    let body = body_of(150_000);
    let raw = eml("X-Remove-Me: yes\r\n", &body);
    let outcome = h
        .client
        .send_message(
            &envelope("alice@so.bacgiang.gov.vn", &["bob@x.test", "carol@y.test"]),
            &raw,
            &macros("4AbCdE1"),
        )
        .await
        .unwrap();
    assert_eq!(outcome.stage, Stage::Eom);
    assert_eq!(outcome.reply, Reply::Accept);
    assert_eq!(
        outcome.edits,
        vec![
            Reply::AddHeader {
                name: "X-Congvu".into(),
                value: "checked".into()
            },
            Reply::ChangeHeader {
                index: 1,
                name: "X-Remove-Me".into(),
                value: String::new()
            },
        ]
    );
    assert_nothing_pending(&mut h.client).await;

    let seen = filter.decided();
    assert_eq!(seen.len(), 1);
    let msg = &seen[0];
    // Connection facts and connection macros.
    assert_eq!(msg.connection.id, 7);
    assert_eq!(msg.connection.hostname, "client.test");
    assert_eq!(
        msg.connection.addr,
        Some(Ipv4Addr::new(192, 0, 2, 7).into())
    );
    assert_eq!(msg.connection.port, 40000);
    assert_eq!(msg.connection.helo.as_deref(), Some("client.test"));
    assert_eq!(msg.macro_value("j"), Some("mx.bacgiang.gov.vn"));
    assert_eq!(msg.macro_value("client_addr"), Some("192.0.2.7"));
    // Envelope.
    assert_eq!(msg.envelope.sender, "alice@so.bacgiang.gov.vn");
    assert_eq!(
        msg.envelope.sender_params,
        vec!["SIZE=1234", "BODY=8BITMIME"]
    );
    assert_eq!(msg.envelope.declared_size(), Some(1234));
    assert_eq!(msg.envelope.recipients, vec!["bob@x.test", "carol@y.test"]);
    // Macros of each stage.
    assert_eq!(msg.queue_id(), Some("4AbCdE1"));
    assert_eq!(msg.auth_login(), Some("alice"));
    assert_eq!(msg.macro_value("auth_type"), Some("PLAIN"));
    assert_eq!(msg.macro_value("rcpt_addr"), Some("bob@x.test"));
    // Headers: the folded one as Postfix sent it, and reassembled with CRLF in raw.
    assert_eq!(
        msg.header_values("Subject").collect::<Vec<_>>(),
        vec!["first part\n\tsecond part"]
    );
    let head_len = msg.body_offset.expect("headers ended");
    let head = String::from_utf8(msg.raw[..head_len].to_vec()).unwrap();
    assert!(
        head.contains("\r\nSubject: first part\r\n\tsecond part\r\nX-Remove-Me: yes\r\n\r\n"),
        "{head:?}"
    );
    assert!(head.starts_with("From: Alice <alice@so.bacgiang.gov.vn>\r\n"));
    // Body byte for byte.
    assert_eq!(msg.body().len(), body.len());
    assert!(msg.body() == &body[..], "body differs");
    assert!(
        filter.aborted().is_empty(),
        "the trailing ABORT is not an abort"
    );

    let stats = h.finish().await;
    assert_eq!(stats.messages, 1);
    assert_eq!(stats.aborted, 0);
    assert_eq!(stats.end, SessionEnd::PeerClosed);
}

#[tokio::test]
async fn sendmail_offer_works_the_same() {
    let filter = TestFilter::new();
    let mut h = Harness::ready(filter.clone(), test_config(), Offer::SENDMAIL_8_17).await;
    let outcome = h
        .client
        .send_message(
            &envelope("a@x.test", &["b@y.test"]),
            &eml("", b"hi\r\n"),
            &macros("Q1"),
        )
        .await
        .unwrap();
    assert_eq!(outcome.reply, Reply::Accept);
    assert_eq!(filter.decided()[0].body(), b"hi\r\n");
    assert_nothing_pending(&mut h.client).await;
}

#[tokio::test]
async fn reduced_offer_still_works_with_replies_everywhere() {
    let filter = TestFilter::new();
    let mut h = Harness::start(filter.clone(), test_config());
    let neg = h.client.negotiate(Offer::REDUCED).await.unwrap();
    assert_eq!(neg.actions, actions::ADDHDRS);
    assert_eq!(neg.protocol, 0);
    assert!(neg.macros.is_empty(), "no SETSYMLIST offered");
    // No NR_* offered: every step must be answered with CONTINUE.
    let c = &mut h.client;
    let ip = Family::Inet(Ipv4Addr::new(192, 0, 2, 9), 25);
    assert_eq!(
        c.connect("client.test", ip).await.unwrap(),
        Some(Reply::Continue)
    );
    assert_eq!(c.helo("client.test").await.unwrap(), Some(Reply::Continue));
    assert_eq!(
        c.mail(&["<a@x.test>"]).await.unwrap(),
        Some(Reply::Continue)
    );
    assert_eq!(
        c.rcpt(&["<b@y.test>"]).await.unwrap(),
        Some(Reply::Continue)
    );
    assert_eq!(c.data().await.unwrap(), Some(Reply::Continue));
    assert_eq!(
        c.header("X-Remove-Me", "x").await.unwrap(),
        Some(Reply::Continue)
    );
    assert_eq!(c.eoh().await.unwrap(), Some(Reply::Continue));
    assert_eq!(c.body(b"body\r\n").await.unwrap(), None);
    assert_eq!(c.unknown("FOO").await.unwrap(), Some(Reply::Continue));
    let eom = c.eom().await.unwrap();
    // Only ADDHDRS was granted: the delete is dropped, the add goes out.
    assert_eq!(
        eom.edits,
        vec![Reply::AddHeader {
            name: "X-Congvu".into(),
            value: "checked".into()
        }]
    );
    assert_eq!(eom.reply, Reply::Accept);
    c.abort().await.unwrap();

    // Quarantine was not granted: the message is tempfailed, not delivered unseen.
    let outcome = c
        .send_message(
            &envelope("a@x.test", &["b@y.test"]),
            &eml("X-Test-Quarantine: 1\r\n", b"x\r\n"),
            &StageMacros::new(),
        )
        .await
        .unwrap();
    assert_eq!(outcome.reply, Reply::Tempfail);
    assert!(outcome.edits.is_empty());
    assert_nothing_pending(c).await;
    let stats = h.finish().await;
    assert_eq!(stats.messages, 2);
    assert_eq!(stats.dropped_edits, 2);
}

#[tokio::test]
async fn old_protocol_version_is_answered_with_that_version() {
    let mut h = Harness::start(TestFilter::new(), test_config());
    let neg = h
        .client
        .negotiate(Offer {
            version: 4,
            ..Offer::POSTFIX_3_7
        })
        .await
        .unwrap();
    assert_eq!(neg.version, 4);
    let mut h2 = Harness::start(TestFilter::new(), test_config());
    let err = h2
        .client
        .negotiate(Offer {
            version: 1,
            ..Offer::POSTFIX_3_7
        })
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Closed(_)), "{err}");
    let (_, stats) = h2.ended().await;
    assert!(stats.is_protocol_error(), "{stats:?}");
}

#[tokio::test]
async fn quarantine_is_sent_at_end_of_message_then_accept() {
    let mut h = Harness::ready(TestFilter::new(), test_config(), Offer::POSTFIX_3_7).await;
    let outcome = h
        .client
        .send_message(
            &envelope("a@x.test", &["b@y.test"]),
            &eml("X-Test-Quarantine: 1\r\n", b"x\r\n"),
            &macros("Q2"),
        )
        .await
        .unwrap();
    assert_eq!(
        outcome.edits,
        vec![
            Reply::AddHeader {
                name: "X-Congvu".into(),
                value: "held".into()
            },
            Reply::Quarantine("executable (Điều 4)".into()),
        ]
    );
    assert_eq!(outcome.reply, Reply::Accept);
}

#[tokio::test]
async fn several_messages_per_connection_keep_connection_facts_only() {
    let filter = TestFilter::new();
    let mut h = Harness::ready(filter.clone(), test_config(), Offer::POSTFIX_3_7).await;
    for (n, qid) in ["Q1", "Q2", "Q3"].iter().enumerate() {
        let outcome = h
            .client
            .send_message(
                &envelope(&format!("s{n}@x.test"), &[&format!("r{n}@y.test")]),
                &eml(&format!("X-N: {n}\r\n"), format!("body {n}\r\n").as_bytes()),
                &macros(qid),
            )
            .await
            .unwrap();
        assert_eq!(outcome.reply, Reply::Accept, "message {n}");
    }
    // A fourth, rejected by header, on the same connection.
    let outcome = h
        .client
        .send_message(
            &envelope("s@x.test", &["r@y.test"]),
            &eml("X-Test-Reject: 1\r\n", b"x\r\n"),
            &macros("Q4"),
        )
        .await
        .unwrap();
    assert_eq!(
        outcome.reply,
        Reply::ReplyCode("550-5.7.1 rejected\r\n550 5.7.1 50% of the reason".into())
    );
    let seen = filter.decided();
    assert_eq!(seen.len(), 4);
    for (n, msg) in seen.iter().take(3).enumerate() {
        assert_eq!(msg.envelope.sender, format!("s{n}@x.test"));
        assert_eq!(msg.envelope.recipients, vec![format!("r{n}@y.test")]);
        assert_eq!(msg.queue_id(), Some(["Q1", "Q2", "Q3"][n]));
        assert_eq!(
            msg.header_values("X-N").collect::<Vec<_>>(),
            vec![n.to_string()]
        );
        assert_eq!(msg.headers.len(), 4, "no headers carried over");
        assert_eq!(msg.body(), format!("body {n}\r\n").as_bytes());
        assert_eq!(msg.connection.hostname, "client.test");
        assert_eq!(msg.macro_value("j"), Some("mx.bacgiang.gov.vn"));
    }
    assert!(filter.aborted().is_empty());
    let stats = h.finish().await;
    assert_eq!(stats.messages, 4);
}

/// Sends the steps of a message up to `upto` (1 = MAIL ... 7 = two body chunks).
async fn steps_upto(c: &mut MilterClient<DuplexStream>, upto: usize, tag: &str) {
    let steps = [
        Command::Mail {
            args: vec![format!("<{tag}@x.test>")],
        },
        Command::Rcpt {
            args: vec!["<b@y.test>".into()],
        },
        Command::Data,
        Command::Header {
            name: "Subject".into(),
            value: tag.into(),
        },
        Command::Eoh,
        Command::Body(bytes::Bytes::from_static(b"chunk one\r\n")),
        Command::Body(bytes::Bytes::from_static(b"chunk two\r\n")),
    ];
    for cmd in steps.into_iter().take(upto) {
        // Postfix's offer includes NR_BODY, which the milter takes: only MAIL
        // gets a reply among these steps.
        let expects_reply = matches!(cmd, Command::Mail { .. });
        c.send_command(cmd).await.unwrap();
        if expects_reply {
            assert_eq!(c.read_reply("step").await.unwrap(), Reply::Continue);
        }
    }
}

#[tokio::test]
async fn abort_in_every_stage_resets_the_message_only() {
    let filter = TestFilter::new();
    let mut h = Harness::ready(filter.clone(), test_config(), Offer::POSTFIX_3_7).await;
    // ABORT before any MAIL (after HELO, as for STARTTLS): nothing to abort.
    h.client.abort().await.unwrap();
    for upto in 1..=7 {
        steps_upto(&mut h.client, upto, &format!("abort{upto}")).await;
        h.client.abort().await.unwrap();
        h.client.abort().await.unwrap(); // duplicates happen
    }
    // A complete message after all that still works and starts clean (its
    // replies also prove the ABORTs before it were processed).
    let outcome = h
        .client
        .send_message(
            &envelope("after@x.test", &["b@y.test"]),
            &eml("", b"fine\r\n"),
            &macros("Q9"),
        )
        .await
        .unwrap();
    assert_eq!(outcome.reply, Reply::Accept);
    let msg = &filter.decided()[0];
    assert_eq!(msg.envelope.recipients, vec!["b@y.test"]);
    assert_eq!(msg.body(), b"fine\r\n");
    assert_eq!(msg.connection.hostname, "client.test");
    assert_eq!(msg.macro_value("client_addr"), Some("192.0.2.7"));
    let aborted = filter.aborted();
    assert_eq!(aborted.len(), 7);
    for (i, msg) in aborted.iter().enumerate() {
        assert_eq!(msg.envelope.sender, format!("abort{}@x.test", i + 1));
    }
    assert_eq!(aborted[3].headers.len(), 1);
    assert_eq!(aborted[6].body(), b"chunk one\r\nchunk two\r\n");
    let stats = h.finish().await;
    assert_eq!(stats.aborted, 7);
    assert_eq!(stats.messages, 1);
}

#[tokio::test]
async fn unknown_smtp_command_gets_no_reply_under_nr_unkn() {
    let filter = TestFilter::new();
    let mut h = Harness::ready(filter.clone(), test_config(), Offer::POSTFIX_3_7).await;
    // The client honours NOUNKNOWN and does not send it...
    assert_eq!(h.client.unknown("FOO").await.unwrap(), None);
    // ...but an MTA that sends it anyway must not get a reply (NR_UNKN).
    h.client
        .send_command(Command::Macro {
            stage: b'U',
            pairs: vec![],
        })
        .await
        .unwrap();
    h.client
        .send_command(Command::Unknown("XYZZY".into()))
        .await
        .unwrap();
    assert_nothing_pending(&mut h.client).await;
    let outcome = h
        .client
        .send_message(
            &envelope("a@x.test", &["b@y.test"]),
            &eml("", b"x\r\n"),
            &macros("Q1"),
        )
        .await
        .unwrap();
    assert_eq!(outcome.reply, Reply::Accept);
}

#[tokio::test]
async fn garbage_bytes_close_the_connection_with_a_protocol_error() {
    let mut h = Harness::start(TestFilter::new(), test_config());
    h.client.send_raw(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let (mut client, stats) = h.ended().await;
    assert!(stats.is_protocol_error(), "{stats:?}");
    assert!(client.is_closed_within(PATIENCE).await);
}

#[tokio::test]
async fn unknown_command_code_closes_the_connection() {
    let mut h = Harness::ready(TestFilter::new(), test_config(), Offer::POSTFIX_3_7).await;
    h.client.send_raw(&[0, 0, 0, 3, b'z', 1, 2]).await.unwrap();
    let (_, stats) = h.ended().await;
    match &stats.end {
        SessionEnd::ProtocolError(why) => assert!(why.contains("'z'"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn command_before_negotiation_is_a_protocol_error() {
    let mut h = Harness::start(TestFilter::new(), test_config());
    h.client
        .send_command(Command::Helo("x".into()))
        .await
        .unwrap();
    let (_, stats) = h.ended().await;
    assert!(stats.is_protocol_error(), "{stats:?}");
}

#[tokio::test]
async fn oversized_frame_is_refused_without_waiting_for_its_payload() {
    let filter = TestFilter::new();
    let config = SessionConfig {
        max_frame_size: 4096,
        ..test_config()
    };
    let mut h = Harness::ready(filter.clone(), config, Offer::POSTFIX_3_7).await;
    steps_upto(&mut h.client, 3, "big").await;
    // Announce a 1 GiB header and send only its first bytes: the session must
    // give up on the header alone.
    let mut frame = (1u32 << 30).to_be_bytes().to_vec();
    frame.extend_from_slice(b"LSubject\0");
    h.client.send_raw(&frame).await.unwrap();
    let (mut client, stats) = h.ended().await;
    match &stats.end {
        SessionEnd::ProtocolError(why) => assert!(why.contains("above the cap"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(client.is_closed_within(PATIENCE).await);
    assert_eq!(filter.aborted().len(), 1, "message in progress is aborted");
}

#[tokio::test]
async fn zero_length_frame_is_a_protocol_error() {
    let mut h = Harness::ready(TestFilter::new(), test_config(), Offer::POSTFIX_3_7).await;
    h.client.send_raw(&[0, 0, 0, 0]).await.unwrap();
    let (_, stats) = h.ended().await;
    match &stats.end {
        SessionEnd::ProtocolError(why) => assert!(why.contains("length 0"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn one_mib_header_is_accepted_by_default() {
    let filter = TestFilter::new();
    let mut h = Harness::ready(filter.clone(), test_config(), Offer::POSTFIX_3_7).await;
    steps_upto(&mut h.client, 3, "huge").await;
    let value = "v".repeat(1024 * 1024 - 16);
    h.client.header("X-Huge", &value).await.unwrap();
    h.client.eoh().await.unwrap();
    let eom = h.client.eom().await.unwrap();
    assert_eq!(eom.reply, Reply::Accept);
    assert_eq!(
        filter.decided()[0]
            .header_values("X-Huge")
            .next()
            .map(str::len),
        Some(value.len())
    );
}

#[tokio::test]
async fn truncated_frame_then_hang_up_ends_quietly_and_aborts() {
    let filter = TestFilter::new();
    let mut h = Harness::ready(filter.clone(), test_config(), Offer::POSTFIX_3_7).await;
    steps_upto(&mut h.client, 6, "cut").await;
    // Half a BODY frame, then the MTA goes away.
    h.client
        .send_raw(&[0, 0, 0, 100, b'B', b'p', b'a', b'r'])
        .await
        .unwrap();
    let stats = h.finish().await;
    assert_eq!(stats.end, SessionEnd::PeerClosed);
    let aborted = filter.aborted();
    assert_eq!(aborted.len(), 1);
    assert_eq!(aborted[0].envelope.sender, "cut@x.test");
    assert_eq!(aborted[0].body(), b"chunk one\r\n");
}

#[tokio::test]
async fn hang_up_mid_message_calls_aborted() {
    let filter = TestFilter::new();
    let mut h = Harness::ready(filter.clone(), test_config(), Offer::POSTFIX_3_7).await;
    steps_upto(&mut h.client, 4, "gone").await;
    let stats = h.finish().await;
    assert_eq!(stats.end, SessionEnd::PeerClosed);
    assert_eq!(stats.aborted, 1);
    assert_eq!(filter.aborted()[0].envelope.sender, "gone@x.test");
    assert!(filter.decided().is_empty());
}

#[tokio::test]
async fn body_verdict_stops_buffering_and_is_repeated_to_stubborn_mtas() {
    let filter = TestFilter::with(100_000, Duration::ZERO);
    // An MTA that wants a reply to every body chunk (no NR_BODY in its offer).
    let offer = Offer {
        protocol: Offer::POSTFIX_3_7.protocol & !protocol::NR_BODY,
        ..Offer::POSTFIX_3_7
    };
    let mut h = Harness::ready(filter.clone(), test_config(), offer).await;
    let outcome = h
        .client
        .send_message(
            &envelope("a@x.test", &["b@y.test"]),
            &eml("", &body_of(200_000)),
            &macros("Q1"),
        )
        .await
        .unwrap();
    assert_eq!(outcome.stage, Stage::Body);
    let Reply::ReplyCode(text) = &outcome.reply else {
        panic!("{:?}", outcome.reply);
    };
    assert!(text.starts_with("451 4.7.1 "), "{text}");
    assert!(filter.decided().is_empty(), "end_of_message never ran");
    assert!(
        filter.aborted().is_empty(),
        "a decided message is not aborted"
    );

    // An MTA that keeps sending after the refusal gets the same answer again.
    steps_upto(&mut h.client, 5, "stubborn").await;
    let big = vec![b'x'; 65535];
    assert_eq!(
        h.client.body_chunk(&big).await.unwrap(),
        Some(Reply::Continue)
    );
    let again = h.client.body_chunk(&big).await.unwrap();
    assert!(matches!(again, Some(Reply::ReplyCode(ref t)) if t.starts_with("451 ")));
    let again = h.client.body_chunk(b"more").await.unwrap();
    assert!(matches!(again, Some(Reply::ReplyCode(ref t)) if t.starts_with("451 ")));
    let eom = h.client.eom().await.unwrap();
    assert!(matches!(eom.reply, Reply::ReplyCode(ref t) if t.starts_with("451 ")));
    assert!(eom.edits.is_empty());
    h.client.abort().await.unwrap();

    // The connection goes on normally.
    let outcome = h
        .client
        .send_message(
            &envelope("a@x.test", &["b@y.test"]),
            &eml("", b"small\r\n"),
            &macros("Q3"),
        )
        .await
        .unwrap();
    assert_eq!(outcome.reply, Reply::Accept);
    let stats = h.finish().await;
    assert_eq!(stats.messages, 3);
}

#[tokio::test]
async fn slow_decision_sends_progress_replies() {
    let filter = TestFilter::with(usize::MAX, Duration::from_millis(400));
    let config = SessionConfig {
        progress_interval: Duration::from_millis(40),
        ..test_config()
    };
    let mut h = Harness::ready(filter, config, Offer::POSTFIX_3_7).await;
    let outcome = h
        .client
        .send_message(
            &envelope("a@x.test", &["b@y.test"]),
            &eml("", b"x\r\n"),
            &macros("Q1"),
        )
        .await
        .unwrap();
    assert_eq!(outcome.reply, Reply::Accept);
    assert!(
        outcome.progress >= 1,
        "got {} progress replies",
        outcome.progress
    );
    let stats = h.finish().await;
    assert_eq!(u64::from(outcome.progress), stats.progress_sent);
}

#[tokio::test]
async fn mail_verdict_answers_mail_with_percent_intact() {
    let filter = TestFilter::new();
    let mut h = Harness::ready(filter.clone(), test_config(), Offer::POSTFIX_3_7).await;
    let outcome = h
        .client
        .send_message(
            &envelope("blocked@x.test", &["b@y.test"]),
            &eml("", b"x\r\n"),
            &macros("Q1"),
        )
        .await
        .unwrap();
    assert_eq!(outcome.stage, Stage::Mail);
    assert_eq!(
        outcome.reply,
        Reply::ReplyCode("550 5.7.1 sender 100% blocked".into())
    );
    assert_nothing_pending(&mut h.client).await;
}

#[tokio::test]
async fn connect_refusal_is_sent_at_connect_without_nr_conn() {
    let mut h = Harness::start(TestFilter::new(), test_config());
    h.client.negotiate(Offer::REDUCED).await.unwrap();
    let reply = h
        .client
        .connect("refused.test", Family::Unknown)
        .await
        .unwrap();
    assert_eq!(reply, Some(Reply::ReplyCode("554 5.7.1 go away".into())));
}

#[tokio::test]
async fn connect_refusal_answers_each_mail_under_nr_conn() {
    let filter = TestFilter::new();
    let mut h = Harness::start(filter.clone(), test_config());
    h.client.negotiate(Offer::POSTFIX_3_7).await.unwrap();
    let reply = h
        .client
        .connect("refused.test", Family::Unix("/run/x".into()))
        .await
        .unwrap();
    assert_eq!(reply, None);
    assert_nothing_pending(&mut h.client).await;
    for _ in 0..2 {
        let outcome = h
            .client
            .send_message(
                &envelope("a@x.test", &["b@y.test"]),
                &eml("", b"x\r\n"),
                &macros("Q1"),
            )
            .await
            .unwrap();
        assert_eq!(outcome.stage, Stage::Mail);
        assert_eq!(outcome.reply, Reply::ReplyCode("554 5.7.1 go away".into()));
    }
    assert!(filter.decided().is_empty());
    let conns = filter.connects.lock().unwrap().clone();
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0].addr, None);
}

#[tokio::test]
async fn quit_nc_resets_to_before_connect() {
    let filter = TestFilter::new();
    let mut h = Harness::ready(filter.clone(), test_config(), Offer::POSTFIX_3_7).await;
    steps_upto(&mut h.client, 2, "half").await;
    h.client.send_command(Command::QuitNc).await.unwrap();
    h.client.macros(b'C', &[("j", "mx2.test")]).await.unwrap();
    h.client
        .connect(
            "other.test",
            Family::Inet6("2001:db8::5".parse().unwrap(), 2525),
        )
        .await
        .unwrap();
    let outcome = h
        .client
        .send_message(
            &envelope("a@x.test", &["b@y.test"]),
            &eml("", b"x\r\n"),
            &StageMacros::new(),
        )
        .await
        .unwrap();
    assert_eq!(outcome.reply, Reply::Accept);
    assert_eq!(filter.aborted().len(), 1);
    let msg = &filter.decided()[0];
    assert_eq!(msg.connection.hostname, "other.test");
    assert_eq!(msg.connection.port, 2525);
    assert_eq!(msg.connection.helo, None);
    assert_eq!(msg.macro_value("j"), Some("mx2.test"));
    assert_eq!(
        msg.macro_value("client_addr"),
        None,
        "old connection macros gone"
    );
}

#[tokio::test]
async fn shutdown_closes_idle_sessions_and_lets_messages_finish() {
    // Idle between messages: closes at once.
    let h = Harness::ready(TestFilter::new(), test_config(), Offer::POSTFIX_3_7).await;
    h.shutdown.cancel();
    let (mut client, stats) = h.ended().await;
    assert_eq!(stats.end, SessionEnd::Shutdown);
    assert!(client.is_closed_within(PATIENCE).await);

    // Mid-message: the message is finished, then the session closes.
    let filter = TestFilter::new();
    let mut h = Harness::ready(filter.clone(), test_config(), Offer::POSTFIX_3_7).await;
    steps_upto(&mut h.client, 6, "late").await;
    h.shutdown.cancel();
    assert_nothing_pending(&mut h.client).await;
    let eom = h.client.eom().await.unwrap();
    assert_eq!(eom.reply, Reply::Accept);
    let (mut client, stats) = h.ended().await;
    assert_eq!(stats.end, SessionEnd::Shutdown);
    assert_eq!(stats.messages, 1);
    assert!(client.is_closed_within(PATIENCE).await);
    assert_eq!(filter.decided()[0].envelope.sender, "late@x.test");
}

#[tokio::test]
async fn split_message_matches_what_the_session_reassembles() {
    let raw = b"Subject: a\n\tb\nX: 1\n\nline\nline2\n";
    let (headers, body) = split_message(raw, false);
    assert_eq!(headers[0], ("Subject".into(), "a\n\tb".into()));
    let filter = TestFilter::new();
    let mut h = Harness::ready(filter.clone(), test_config(), Offer::POSTFIX_3_7).await;
    h.client
        .send_message(&envelope("a@x.test", &["b@y.test"]), raw, &macros("Q"))
        .await
        .unwrap();
    let msg = &filter.decided()[0];
    assert_eq!(
        &msg.raw[..],
        b"Subject: a\r\n\tb\r\nX: 1\r\n\r\nline\r\nline2\r\n"
    );
    assert_eq!(msg.body(), &body[..]);
}

/// A listener like the daemon's: one task per connection, stats reported back.
async fn listen(
    filter: Arc<TestFilter>,
    config: SessionConfig,
) -> (
    std::net::SocketAddr,
    mpsc::UnboundedReceiver<(u64, SessionStats)>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut next_id = 1u64;
        while let Ok((stream, peer)) = listener.accept().await {
            let (filter, config, tx) = (filter.clone(), config.clone(), tx.clone());
            let id = next_id;
            next_id += 1;
            tokio::spawn(async move {
                let stats = run_session(
                    stream,
                    filter,
                    config,
                    id,
                    peer.to_string(),
                    CancellationToken::new(),
                )
                .await;
                let _ = tx.send((id, stats));
            });
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn idle_peer_is_dropped_while_another_connection_is_served() {
    let filter = TestFilter::new();
    let config = SessionConfig {
        idle_timeout: Duration::from_millis(300),
        ..test_config()
    };
    let (addr, mut done) = listen(filter.clone(), config).await;
    let addr = addr.to_string();

    let mut idle = MilterClient::connect_tcp(&addr, PATIENCE).await.unwrap();
    idle.negotiate(Offer::POSTFIX_3_7).await.unwrap();

    let mut busy = MilterClient::connect_tcp(&addr, PATIENCE).await.unwrap();
    busy.negotiate(Offer::POSTFIX_3_7).await.unwrap();
    busy.connect("busy.test", Family::Inet(Ipv4Addr::LOCALHOST, 1))
        .await
        .unwrap();
    // Keep the busy connection working (never idle for long) until the milter
    // drops the idle one.
    let mut sent = 0;
    loop {
        let outcome = busy
            .send_message(
                &envelope("a@x.test", &["b@y.test"]),
                &eml("", b"x\r\n"),
                &macros("Q1"),
            )
            .await
            .unwrap();
        assert_eq!(outcome.reply, Reply::Accept);
        sent += 1;
        if idle.is_closed_within(Duration::from_millis(20)).await {
            break;
        }
        assert!(sent < 10_000, "idle connection never dropped");
    }
    let (id, stats) = tokio::time::timeout(PATIENCE, done.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(id, 1);
    assert_eq!(stats.end, SessionEnd::IdleTimeout);

    // ...while the busy one keeps being served and ends with its QUIT.
    let outcome = busy
        .send_message(
            &envelope("c@x.test", &["d@y.test"]),
            &eml("", b"y\r\n"),
            &macros("Q2"),
        )
        .await
        .unwrap();
    assert_eq!(outcome.reply, Reply::Accept);
    busy.quit().await.unwrap();
    let (id, stats) = tokio::time::timeout(PATIENCE, done.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(id, 2);
    assert_eq!(stats.end, SessionEnd::Quit);
    assert_eq!(stats.messages, sent + 1);
    assert_eq!(filter.decided().len() as u64, sent + 1);
}

#[tokio::test]
async fn unix_socket_client_works() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("milter.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let filter = TestFilter::new();
    let server_filter = filter.clone();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        run_session(
            stream,
            server_filter,
            test_config(),
            1,
            "unix".into(),
            CancellationToken::new(),
        )
        .await
    });
    let mut c = MilterClient::connect_unix(&path, PATIENCE).await.unwrap();
    c.negotiate(Offer::POSTFIX_3_7).await.unwrap();
    c.connect("localhost", Family::Unix(path.display().to_string()))
        .await
        .unwrap();
    let outcome = c
        .send_message(
            &envelope("a@x.test", &["b@y.test"]),
            &eml("", b"x\r\n"),
            &macros("Q1"),
        )
        .await
        .unwrap();
    assert_eq!(outcome.reply, Reply::Accept);
    c.quit().await.unwrap();
    let stats = tokio::time::timeout(PATIENCE, server)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stats.end, SessionEnd::Quit);
}

// Hostile peers: caps on what a peer sends, and peers that stop reading.

/// The SMTP text of a refusal reply.
fn reply_code_text(reply: &Reply) -> &str {
    match reply {
        Reply::ReplyCode(text) => text,
        other => panic!("not a reply with text: {other:?}"),
    }
}

/// After a refusal at an early step, the rest of the message (end of headers, a
/// large body chunk, end of message) gets the same refusal and nothing more is
/// buffered.
async fn rest_of_message_is_refused(
    client: &mut MilterClient<DuplexStream>,
    budget: &MemoryBudget,
    refused: &Reply,
) {
    assert_eq!(client.eoh().await.unwrap(), Some(refused.clone()));
    assert_eq!(
        client.body_chunk(&[b'x'; 60_000]).await.unwrap(),
        Some(refused.clone())
    );
    assert_eq!(budget.used(), 0, "nothing more was buffered");
    assert_eq!(client.eom().await.unwrap().reply, *refused);
}

#[tokio::test]
async fn too_many_recipients_refuse_the_message_and_keep_nothing_more() {
    let filter = TestFilter::new();
    let budget = MemoryBudget::new(1 << 30);
    let config = SessionConfig {
        max_recipients: 3,
        memory_budget: Some(budget.clone()),
        ..test_config()
    };
    // Postfix: no reply at RCPT, so the refusal answers end of message.
    let mut h = Harness::ready(filter.clone(), config.clone(), Offer::POSTFIX_3_7).await;
    let outcome = h
        .client
        .send_message(
            &envelope(
                "a@x.test",
                &["r1@y.test", "r2@y.test", "r3@y.test", "r4@y.test"],
            ),
            &eml("", &body_of(100_000)),
            &macros("Q1"),
        )
        .await
        .unwrap();
    assert_eq!(outcome.stage, Stage::Eom);
    let text = reply_code_text(&outcome.reply);
    assert!(
        text.starts_with("550 5.5.3 Too many recipients: more than 3"),
        "{text}"
    );
    assert!(filter.decided().is_empty(), "the filter never decided it");
    assert!(filter.aborted().is_empty(), "a refused message is no abort");
    // Three recipients are fine, on the same connection.
    let outcome = h
        .client
        .send_message(
            &envelope("a@x.test", &["r1@y.test", "r2@y.test", "r3@y.test"]),
            &eml("", b"ok\r\n"),
            &macros("Q2"),
        )
        .await
        .unwrap();
    assert_eq!(outcome.reply, Reply::Accept);
    assert_eq!(filter.decided()[0].envelope.recipients.len(), 3);
    let stats = h.finish().await;
    assert_eq!(stats.messages, 2);
    assert_eq!(budget.used(), 0);

    // An MTA that wants a reply at every step gets the refusal at the recipient
    // past the cap, and again at every later step; nothing is buffered meanwhile.
    let mut h = Harness::ready(filter.clone(), config, Offer::REDUCED).await;
    assert_eq!(
        h.client.mail(&["<b@x.test>"]).await.unwrap(),
        Some(Reply::Continue)
    );
    for i in 0..3 {
        let rcpt = format!("<r{i}@y.test>");
        assert_eq!(
            h.client.rcpt(&[&rcpt]).await.unwrap(),
            Some(Reply::Continue)
        );
    }
    assert!(budget.used() > 0, "recipients are charged to the budget");
    let refused = h.client.rcpt(&["<r4@y.test>"]).await.unwrap().unwrap();
    assert!(reply_code_text(&refused).starts_with("550 5.5.3 "));
    assert_eq!(budget.used(), 0, "the refused message holds nothing");
    assert_eq!(
        h.client.rcpt(&["<r5@y.test>"]).await.unwrap(),
        Some(refused.clone())
    );
    assert_eq!(h.client.data().await.unwrap(), Some(refused.clone()));
    assert_eq!(
        h.client.header("Subject", "x").await.unwrap(),
        Some(refused.clone())
    );
    rest_of_message_is_refused(&mut h.client, &budget, &refused).await;
    assert_eq!(filter.decided().len(), 1, "only the message of three");
}

#[tokio::test]
async fn too_many_headers_refuse_the_message_and_keep_nothing_more() {
    let filter = TestFilter::new();
    let budget = MemoryBudget::new(1 << 30);
    let config = SessionConfig {
        max_headers: 5,
        memory_budget: Some(budget.clone()),
        ..test_config()
    };
    // eml() writes From, To and Subject: three more make six.
    let six = eml("X-A: 1\r\nX-B: 2\r\nX-C: 3\r\n", b"body\r\n");
    let five = eml("X-A: 1\r\nX-B: 2\r\n", b"body\r\n");
    let mut h = Harness::ready(filter.clone(), config.clone(), Offer::POSTFIX_3_7).await;
    let outcome = h
        .client
        .send_message(&envelope("a@x.test", &["b@y.test"]), &six, &macros("Q1"))
        .await
        .unwrap();
    assert_eq!(outcome.stage, Stage::Eom);
    let text = reply_code_text(&outcome.reply);
    assert!(
        text.starts_with("552 5.3.4 Too many header fields: more than 5"),
        "{text}"
    );
    assert!(filter.decided().is_empty());
    let outcome = h
        .client
        .send_message(&envelope("a@x.test", &["b@y.test"]), &five, &macros("Q2"))
        .await
        .unwrap();
    assert_eq!(outcome.reply, Reply::Accept);
    assert_eq!(filter.decided()[0].headers.len(), 5);
    h.finish().await;

    // With a reply at every step: refused at the sixth header, nothing kept.
    let mut h = Harness::ready(filter.clone(), config, Offer::REDUCED).await;
    steps_upto_reduced(&mut h.client).await;
    for i in 0..5 {
        assert_eq!(
            h.client.header(&format!("X-{i}"), "v").await.unwrap(),
            Some(Reply::Continue)
        );
    }
    assert!(budget.used() > 0, "header bytes are charged to the budget");
    let refused = h.client.header("X-5", "v").await.unwrap().unwrap();
    assert!(reply_code_text(&refused).starts_with("552 5.3.4 "));
    assert_eq!(budget.used(), 0);
    for i in 6..50 {
        assert_eq!(
            h.client.header(&format!("X-{i}"), "v").await.unwrap(),
            Some(refused.clone())
        );
    }
    rest_of_message_is_refused(&mut h.client, &budget, &refused).await;
}

/// MAIL, one RCPT and DATA under an offer that wants a reply at every step.
async fn steps_upto_reduced(c: &mut MilterClient<DuplexStream>) {
    assert_eq!(
        c.mail(&["<a@x.test>"]).await.unwrap(),
        Some(Reply::Continue)
    );
    assert_eq!(
        c.rcpt(&["<b@y.test>"]).await.unwrap(),
        Some(Reply::Continue)
    );
    assert_eq!(c.data().await.unwrap(), Some(Reply::Continue));
}

#[tokio::test]
async fn header_and_recipient_bytes_are_charged_to_the_memory_budget() {
    let filter = TestFilter::new();
    let budget = MemoryBudget::new(64 * 1024);
    let config = SessionConfig {
        memory_budget: Some(budget.clone()),
        ..test_config()
    };
    let mut h = Harness::ready(filter.clone(), config, Offer::POSTFIX_3_7).await;
    // One 30 KiB header takes about 90 KiB of budget: more than there is.
    let big_header = format!("X-Big: {}\r\n", "h".repeat(30 * 1024));
    let outcome = h
        .client
        .send_message(
            &envelope("a@x.test", &["b@y.test"]),
            &eml(&big_header, b"x\r\n"),
            &macros("Q1"),
        )
        .await
        .unwrap();
    assert!(
        reply_code_text(&outcome.reply).starts_with("451 4.7.1 "),
        "{:?}",
        outcome.reply
    );
    // So does one 30 KiB recipient.
    let long_rcpt = format!("{}@y.test", "r".repeat(30 * 1024));
    let outcome = h
        .client
        .send_message(
            &envelope("a@x.test", &[&long_rcpt]),
            &eml("", b"x\r\n"),
            &macros("Q2"),
        )
        .await
        .unwrap();
    assert!(
        reply_code_text(&outcome.reply).starts_with("451 4.7.1 "),
        "{:?}",
        outcome.reply
    );
    assert!(filter.decided().is_empty());
    // Both gave their share back: an ordinary message goes through.
    let outcome = h
        .client
        .send_message(
            &envelope("a@x.test", &["b@y.test"]),
            &eml("", b"x\r\n"),
            &macros("Q3"),
        )
        .await
        .unwrap();
    assert_eq!(outcome.reply, Reply::Accept);
    h.finish().await;
    assert_eq!(budget.used(), 0);
}

#[tokio::test]
async fn a_macro_flood_closes_the_connection_as_a_protocol_error() {
    let filter = TestFilter::new();
    let config = SessionConfig {
        max_macro_bytes: 16 * 1024,
        ..test_config()
    };
    let mut h = Harness::ready(filter.clone(), config, Offer::POSTFIX_3_7).await;
    steps_upto(&mut h.client, 2, "flood").await;
    // Distinct names, 10 macros of 100 bytes a packet: past 16 KiB by the 15th.
    let value = "v".repeat(100);
    let mut sent = 0;
    for packet in 0..10_000 {
        let pairs: Vec<(String, String)> = (0..10)
            .map(|i| (format!("{{flood_{packet}_{i}}}"), value.clone()))
            .collect();
        if h.client
            .send_command(Command::Macro { stage: b'R', pairs })
            .await
            .is_err()
        {
            break;
        }
        sent += 1;
    }
    let (mut client, stats) = h.ended().await;
    match &stats.end {
        SessionEnd::ProtocolError(why) => assert!(why.contains("max_macro_bytes"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(sent < 10_000, "the peer could go on flooding");
    assert!(client.is_closed_within(PATIENCE).await);
    assert_eq!(
        filter.aborted().len(),
        1,
        "the message in progress is aborted"
    );
}

#[tokio::test]
async fn macros_sent_again_for_every_message_replace_rather_than_add_up() {
    let filter = TestFilter::new();
    // The smallest cap the policy allows.
    let config = SessionConfig {
        max_macro_bytes: 8 * 1024,
        ..test_config()
    };
    let mut h = Harness::ready(filter.clone(), config, Offer::POSTFIX_3_7).await;
    h.client
        .macros(
            b'H',
            &[
                ("{tls_version}", "TLSv1.3"),
                ("{cipher}", "TLS_AES_256_GCM_SHA384"),
                ("{cert_subject}", &"CN=client.test,O=Example".repeat(10)),
                ("{cert_issuer}", &"CN=Example CA,O=Example".repeat(10)),
            ],
        )
        .await
        .unwrap();
    for i in 0..200 {
        let qid = format!("Q{i}");
        let outcome = h
            .client
            .send_message(
                &envelope("a@x.test", &["b@y.test", "c@y.test"]),
                &eml("", b"x\r\n"),
                &macros(&qid),
            )
            .await
            .unwrap();
        assert_eq!(outcome.reply, Reply::Accept, "message {i}");
    }
    let stats = h.finish().await;
    assert_eq!(stats.messages, 200);
    assert_eq!(stats.end, SessionEnd::PeerClosed);
}

#[tokio::test]
async fn a_peer_that_does_not_read_the_end_of_message_replies_is_dropped() {
    let filter = TestFilter::new();
    let write_timeout = Duration::from_millis(300);
    let config = SessionConfig {
        write_timeout,
        ..test_config()
    };
    // A pipe that holds 32 unread bytes: less than the end-of-message replies.
    let mut h = Harness::start_on_pipe(filter.clone(), config, 32);
    h.client.negotiate(Offer::POSTFIX_3_7).await.unwrap();
    steps_upto(&mut h.client, 7, "deaf").await;
    // EOB, and then never read.
    h.client.send_command(Command::Eob).await.unwrap();
    let sent_at = tokio::time::Instant::now();
    let stats = tokio::time::timeout(PATIENCE, &mut h.session)
        .await
        .expect("the session ends on its own")
        .expect("no panic");
    let took = sent_at.elapsed();
    assert_eq!(stats.end, SessionEnd::WriteTimeout);
    assert!(
        took >= write_timeout - Duration::from_millis(50) && took < write_timeout * 4,
        "ended after {took:?}"
    );
    assert_eq!(filter.decided().len(), 1, "it was decided, just not taken");
}

#[tokio::test]
async fn a_frame_flood_whose_replies_are_never_read_ends_within_the_write_timeout() {
    let filter = TestFilter::new();
    let write_timeout = Duration::from_millis(300);
    let config = SessionConfig {
        write_timeout,
        ..test_config()
    };
    // Small socket buffers on both ends (accepted sockets inherit the
    // listener's), so that unread replies pile up soon.
    let listener = tokio::net::TcpSocket::new_v4().unwrap();
    listener.set_send_buffer_size(4096).unwrap();
    listener.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = listener.listen(8).unwrap();
    let addr = listener.local_addr().unwrap();
    let session = tokio::spawn(async move {
        let (stream, peer) = listener.accept().await.unwrap();
        let cancel = CancellationToken::new();
        run_session(stream, filter, config, 1, peer.to_string(), cancel).await
    });
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(addr).await.unwrap();
    let mut client = MilterClient::new(stream).with_timeout(PATIENCE);
    // Every step gets a reply under this offer.
    client.negotiate(Offer::REDUCED).await.unwrap();
    let mut stream = client.into_inner();
    // HELO after HELO, each answered with CONTINUE that nobody reads.
    let mut frames = bytes::BytesMut::new();
    for _ in 0..10_000 {
        congvu_milter::milter::codec::encode_command(
            &Command::Helo("x".into()),
            &mut frames,
            1 << 20,
        )
        .unwrap();
    }
    let started = tokio::time::Instant::now();
    let flood = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let mut sent = 0usize;
        while stream.write_all(&frames).await.is_ok() {
            sent += frames.len();
        }
        sent
    });
    let stats = tokio::time::timeout(PATIENCE, session)
        .await
        .expect("the session ends on its own")
        .expect("no panic");
    let took = started.elapsed();
    assert_eq!(stats.end, SessionEnd::WriteTimeout);
    assert!(took < write_timeout * 5, "ended after {took:?}");
    let sent = tokio::time::timeout(PATIENCE, flood)
        .await
        .expect("the flood stops once the session is gone")
        .unwrap();
    assert!(sent > 0);
}
