//! Điều 4 khoản 4 through two real Postfix instances, as deployed: the mailbox
//! instance expands a virtual alias (how Zimbra account forwarding works) and
//! relays the forwarded copy to an outbound instance whose smtpd runs
//! congvu-milter; the milter there refuses the automatic forward, while a manual
//! forward by the same user to the same address goes through. In both scopes.

use std::time::Duration;

use crate::common;
use crate::common::mail::crlf;
use crate::common::postfix::{Postfix, PostfixOptions};
use crate::daemon_support::Daemon;

const USER: &str = "ngocnt_stttt@bacgiang.gov.vn";
const WAIT: Duration = Duration::from_secs(30);

/// The milter, the outbound instance (smtpd_milters → milter, relaying to its
/// sink), and the mailbox instance in front (also with the milter, relaying to
/// the outbound instance), with `USER` forwarded to `target` by a virtual alias.
struct TwoInstances {
    daemon: Daemon,
    outbound: Postfix,
    mailbox: Postfix,
}

fn two_instances(target: &str, scope: &str) -> TwoInstances {
    let daemon = Daemon::start(&format!(
        "[forwarding]\nscope = \"{scope}\"\ninternal_daemon_names = [\"outbound\"]\n"
    ));
    let mut out_opts = PostfixOptions::with_milter(daemon.milter_socket());
    out_opts.myhostname = "out.bacgiang.gov.vn".into();
    out_opts.extra_main_cf = vec!["milter_macro_daemon_name = outbound".into()];
    let outbound = Postfix::start(out_opts);
    let mut box_opts = PostfixOptions::with_milter(daemon.milter_socket());
    box_opts.myhostname = "mail.bacgiang.gov.vn".into();
    box_opts.virtual_aliases = vec![(USER.into(), target.into())];
    box_opts.extra_main_cf = vec![
        "milter_macro_daemon_name = mailbox".into(),
        format!("relayhost = [127.0.0.1]:{}", outbound.smtp_addr().port()),
    ];
    let mailbox = Postfix::start(box_opts);
    TwoInstances {
        daemon,
        outbound,
        mailbox,
    }
}

/// An ordinary message from outside to the user, which the alias forwards.
fn incoming() -> Vec<u8> {
    crlf(&format!(
        "From: Doi tac <partner@example.org>\nTo: {USER}\nSubject: Ke hoach thang 12\nMessage-ID: <plan-12@example.org>\nDate: Mon, 30 Nov 2026 09:00:00 +0700\n\nNoi dung ke hoach.\n"
    ))
}

/// The user's own Forward of that message, written in their mail client.
fn manual_forward(target: &str) -> Vec<u8> {
    crlf(&format!(
        "From: Nguyen Thi Ngoc <{USER}>\nTo: {target}\nSubject: Fwd: Ke hoach thang 12\nMessage-ID: <fwd-77@bacgiang.gov.vn>\nDate: Mon, 30 Nov 2026 10:00:00 +0700\n\n---------- Forwarded message ---------\nFrom: Doi tac <partner@example.org>\nSubject: Ke hoach thang 12\n\nNoi dung ke hoach.\n"
    ))
}

/// Mail for `target` that reached the outbound instance's sink.
fn delivered_to(bed: &TwoInstances, target: &str) -> usize {
    bed.outbound
        .delivered()
        .iter()
        .filter(|m| m.rcpts.iter().any(|r| r == target))
        .count()
}

fn check(target: &str, scope: &str, refused: bool) {
    let bed = two_instances(target, scope);
    // The alias-forwarded copy.
    let out = bed
        .mailbox
        .send("partner@example.org", &[USER], &incoming());
    assert!(
        out.accepted(),
        "the mailbox instance takes the mail: {}",
        out.text()
    );
    if refused {
        // The outbound instance refuses the forwarded copy with the milter's reply.
        let log = bed.mailbox.wait_log("Dieu 4 khoan 4", WAIT);
        assert!(log.contains("550 5.7.1"), "{log}");
        let daemon_log = bed.daemon.log();
        assert!(
            daemon_log.contains("forwarding signal fired")
                && daemon_log.contains("foreign_sender_internal_client"),
            "the signal is logged by name:\n{daemon_log}"
        );
        assert!(daemon_log.contains("rules=forwarding"), "{daemon_log}");
        assert_eq!(
            delivered_to(&bed, target),
            0,
            "the forwarded copy must not leave"
        );
    } else {
        let arrived = common::poll(WAIT, || (delivered_to(&bed, target) == 1).then_some(()));
        assert!(
            arrived.is_some(),
            "scope {scope}: {target} is out of scope, the copy passes"
        );
    }

    // The same user's manual forward to the same address always goes through.
    let before = delivered_to(&bed, target);
    let out = bed.mailbox.send(USER, &[target], &manual_forward(target));
    assert!(out.accepted(), "{}", out.text());
    let arrived = common::poll(WAIT, || {
        (delivered_to(&bed, target) == before + 1).then_some(())
    });
    assert!(
        arrived.is_some(),
        "manual forward must pass; mailbox log:\n{}\ndaemon log:\n{}",
        bed.mailbox.log(),
        bed.daemon.log()
    );
}

#[test]
fn alias_forward_to_gmail_is_refused_at_the_outbound_hop_scope_all() {
    check("ngoc.nguyen@gmail.com", "all", true);
}

#[test]
fn alias_forward_to_gmail_is_refused_at_the_outbound_hop_scope_public() {
    check("ngoc.nguyen@gmail.com", "public", true);
}

#[test]
fn alias_forward_to_a_private_company_is_refused_only_in_scope_all() {
    check("ngoc@congty-abc.example", "all", true);
    check("ngoc@congty-abc.example", "public", false);
}
