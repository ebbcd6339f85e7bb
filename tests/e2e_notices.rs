//! `[notices]` through real Postfix: the milter's Postfix holds or refuses, and
//! the notice goes by SMTP to a second, plain Postfix (the `relay`), whose sink
//! stands for the official's mailbox. One per mailbox and rule per interval;
//! a refused forward whose signals name no mailbox gets no notice, logged.

use std::time::Duration;

use crate::common;
use crate::common::mail::crlf;
use crate::common::postfix::{Postfix, PostfixOptions};
use crate::daemon_support::Daemon;

const WAIT: Duration = Duration::from_secs(30);
const OFFICIAL: &str = "ngocnt_stttt@bacgiang.gov.vn";

/// The relay the notices go to, the milter with notices on, and its Postfix.
fn bed(extra_policy: &str) -> (Postfix, Daemon, Postfix) {
    let relay = Postfix::start(PostfixOptions::default());
    let daemon = Daemon::start(&format!(
        "{extra_policy}\n[clamav]\nenabled = false\n[notices]\nenabled = true\nrelay = \"{}\"\ninterval = \"1h\"\nfrom = \"postmaster@bacgiang.gov.vn\"\n",
        relay.smtp_addr()
    ));
    let front = Postfix::start(PostfixOptions::with_milter(daemon.milter_socket()));
    (relay, daemon, front)
}

fn body_text(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let (_, body) = text.split_once("\r\n\r\n").expect("a body");
    let joined: String = body.split_whitespace().collect();
    let bytes = base64_simd::STANDARD
        .decode_to_vec(joined.as_bytes())
        .unwrap_or_else(|e| panic!("base64 body: {e}\n{text}"));
    String::from_utf8(bytes).unwrap()
}

fn metric(daemon: &Daemon, result: &str) -> u64 {
    let (_, text) = daemon.http_get("/metrics");
    let line = format!("congvu_milter_notices_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&line))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{line} not in\n{text}"))
}

#[test]
fn a_quarantine_gives_the_recipient_one_notice_per_interval() {
    let (relay, daemon, front) = bed("[rules.executable]\naction = \"quarantine\"\n");
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/messages/fail-double-extension.eml"
    );
    let msg = std::fs::read(path).unwrap();
    for _ in 0..2 {
        let out = front.send("partner@example.org", &[OFFICIAL], &msg);
        assert!(out.accepted(), "{}", out.text());
    }
    let got = relay.wait_delivered_messages(1, WAIT);
    assert_eq!(got[0].rcpts, vec![OFFICIAL.to_owned()]);
    assert_eq!(got[0].mail_from, "postmaster@bacgiang.gov.vn");
    let text = body_text(&got[0].data);
    assert!(
        text.contains("tạm giữ") && text.contains("held for review"),
        "{text}"
    );
    assert!(text.contains("executable (Điều 4 khoản 7)"), "{text}");
    assert!(text.contains("partner@example.org"), "{text}");
    // The second hold of the same rule for the same mailbox: no second notice.
    let limited = common::poll(WAIT, || {
        (metric(&daemon, "rate_limited") == 1).then_some(())
    });
    assert!(limited.is_some(), "{}", daemon.log());
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(relay.delivered().len(), 1, "one notice only");
    assert_eq!(metric(&daemon, "sent"), 1);
    assert_eq!(front.queue_ids("hold").len(), 2);
}

#[test]
fn a_refused_forward_tells_the_mailbox_its_signals_name() {
    let (relay, daemon, front) = bed("");
    let forwarded = crlf(&format!(
        "Delivered-To: {OFFICIAL}\nFrom: Doi tac <partner@example.org>\nTo: {OFFICIAL}\nSubject: Ke hoach thang 12\nMessage-ID: <plan-12@example.org>\n\nNoi dung.\n"
    ));
    let out = front.send(
        "partner@example.org",
        &["ngoc.nguyen@gmail.com"],
        &forwarded,
    );
    assert!(!out.accepted(), "the forward is refused: {}", out.text());
    let got = relay.wait_delivered_messages(1, WAIT);
    assert_eq!(got[0].rcpts, vec![OFFICIAL.to_owned()]);
    let text = body_text(&got[0].data);
    assert!(text.contains("tự động chuyển tiếp"), "{text}");
    assert!(text.contains("automatically forwards"), "{text}");

    // No signal names a mailbox (an alias forward seen only by its envelope):
    // refused, no notice, logged.
    let plain =
        crlf("From: Doi tac <partner@example.org>\nTo: someone@gmail.com\nSubject: x\n\nx\n");
    let out = front.send("partner@example.org", &["ngoc.nguyen@gmail.com"], &plain);
    assert!(!out.accepted(), "{}", out.text());
    let logged = common::poll(WAIT, || {
        daemon
            .log()
            .contains("the forwarding signals name no mailbox")
            .then_some(())
    });
    assert!(logged.is_some(), "{}", daemon.log());
    assert_eq!(metric(&daemon, "no_mailbox"), 1);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(relay.delivered().len(), 1, "one notice only");
}
