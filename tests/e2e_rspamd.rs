//! congvu-milter and rspamd chained in one Postfix, set up as
//! contrib/rspamd/README.md tells an admin: its `postconf -e` lines (with the
//! test bed's addresses in place of the Debian ones) and contrib/rspamd/local.d
//! as rspamd's local configuration, on Debian's rspamd and a real clamd.
//!
//! Shows, by each filter's own counters: a message congvu-milter refuses never
//! reaches rspamd's scanner; mail congvu-milter accepts is scored by rspamd,
//! which adds its headers, marks spam (`X-Spam: Yes`) or refuses it; and with
//! rspamd down, mail still flows, checked by congvu-milter.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common;
use crate::common::clamd::{Clamd, ClamdOptions};
use crate::common::mail::crlf;
use crate::common::postfix::{Postfix, PostfixOptions};
use crate::common::rspamd::{self, Rspamd};
use crate::daemon_support::Daemon;

const SENDER: &str = "sender@example.org";
const RCPT: &str = "user@bacgiang.gov.vn";
const WAIT: Duration = Duration::from_secs(30);

/// The milter addresses contrib/rspamd/README.md's lines name, as Debian has them.
const README_CONGVU_MILTER: &str = "unix:/congvu-milter/milter.sock";
const README_RSPAMD_MILTER: &str = "inet:127.0.0.1:11332";

/// rspamd's test patterns (GTUBE): the standard one scores the reject action,
/// the `YJS` one (`enable_test_patterns`, set by the test bed) add header.
const GTUBE_REJECT: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";
const GTUBE_ADD_HEADER: &str =
    "YJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The settings of every `postconf -e 'NAME = VALUE'` line in the "Postfix
/// settings" section of contrib/rspamd/README.md, in order.
fn readme_settings() -> Vec<(String, String)> {
    let path = repo("contrib/rspamd/README.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let settings: Vec<(String, String)> = text
        .lines()
        .skip_while(|l| *l != "## Postfix settings")
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .filter_map(|l| l.trim().strip_prefix("postconf -e '")?.strip_suffix('\''))
        .map(|s| {
            let (name, value) = s
                .split_once('=')
                .unwrap_or_else(|| panic!("not NAME = VALUE: {s}"));
            (name.trim().to_string(), value.trim().to_string())
        })
        .collect();
    assert!(
        settings.iter().any(|(n, _)| n == "smtpd_milters"),
        "{} has no `postconf -e 'smtpd_milters = ...'` line",
        path.display()
    );
    settings
}

/// Postfix options from the README's lines, pointed at this test's milters.
fn postfix_options(congvu_milter: &str, rspamd_milter: &str) -> PostfixOptions {
    let mut opts = PostfixOptions::default();
    for (name, value) in readme_settings() {
        match name.as_str() {
            "smtpd_milters" => {
                let congvu_at = value.find(README_CONGVU_MILTER);
                let rspamd_at = value.find(README_RSPAMD_MILTER);
                assert!(
                    matches!((congvu_at, rspamd_at), (Some(c), Some(r)) if c < r),
                    "the README's smtpd_milters must name {README_CONGVU_MILTER} first, then \
                     {README_RSPAMD_MILTER}: {value}"
                );
                opts.milter = Some(
                    value
                        .replace(README_CONGVU_MILTER, congvu_milter)
                        .replace(README_RSPAMD_MILTER, rspamd_milter),
                );
            }
            "milter_default_action" => opts.milter_default_action = value,
            _ => opts.extra_main_cf.push(format!("{name} = {value}")),
        }
    }
    opts
}

/// Postfix → congvu-milter (with clamd unless `clamav` is false) → rspamd.
struct Chain {
    _clamd: Option<Clamd>,
    daemon: Daemon,
    rspamd: Rspamd,
    postfix: Postfix,
}

fn chain(clamav: bool) -> Chain {
    let clamd = clamav.then(|| Clamd::start(ClamdOptions::default()));
    let policy = match &clamd {
        Some(c) => format!(
            "[clamav]\nenabled = true\nendpoints = [\"unix:{}\"]\n",
            c.socket_path().display()
        ),
        None => String::new(),
    };
    let daemon = Daemon::start(&policy);
    let rspamd = Rspamd::start(&repo("contrib/rspamd/local.d"));
    let postfix = Postfix::start(postfix_options(
        &daemon.milter_socket(),
        &rspamd.milter_socket(),
    ));
    Chain {
        _clamd: clamd,
        daemon,
        rspamd,
        postfix,
    }
}

/// A plain-text message with one small text attachment (for clamd).
fn message(subject: &str, body: &str) -> Vec<u8> {
    crlf(&format!(
        "From: {SENDER}\nTo: {RCPT}\nSubject: {subject}\nMessage-ID: <{}@example.org>\nDate: Sun, 06 Dec 2026 09:00:00 +0700\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b1\"\n\n--b1\nContent-Type: text/plain; charset=utf-8\n\n{body}\n--b1\nContent-Type: text/plain; name=\"so-lieu.txt\"\nContent-Disposition: attachment; filename=\"so-lieu.txt\"\n\nthang 11: 42\n--b1--\n",
        subject.replace(' ', "-")
    ))
}

fn header(message: &[u8], name: &str) -> Option<String> {
    common::header_values(message, name).into_iter().next()
}

#[test]
fn local_d_files_pass_rspamadm_configtest_and_a_broken_one_does_not() {
    let local_d = repo("contrib/rspamd/local.d");
    let (ok, out) = rspamd::configtest(&local_d);
    assert!(
        ok,
        "rspamadm configtest with contrib/rspamd/local.d:\n{out}"
    );

    // The same files with one broken: rspamadm must be reading them.
    let broken = tempfile::tempdir().expect("temp dir");
    for entry in std::fs::read_dir(&local_d).expect("read contrib/rspamd/local.d") {
        let entry = entry.expect("dir entry");
        std::fs::copy(entry.path(), broken.path().join(entry.file_name())).expect("copy");
    }
    let actions = broken.path().join("actions.conf");
    let mut text = std::fs::read_to_string(&actions).expect("read actions.conf");
    text.push_str("reject = ;\n");
    std::fs::write(&actions, text).expect("write actions.conf");
    let (ok, out) = rspamd::configtest(broken.path());
    assert!(!ok, "configtest passed a broken actions.conf:\n{out}");
    assert!(out.contains("actions.conf"), "{out}");
}

#[test]
fn refused_mail_never_reaches_rspamd_and_accepted_mail_is_scored_by_both() {
    let chain = chain(true);
    let (postfix, rspamd, daemon) = (&chain.postfix, &chain.rspamd, &chain.daemon);
    let (_, congvu_before) = daemon.http_get("/metrics");
    let scanned_before = rspamd.scanned();
    let action_before = |a: &str| rspamd.action_count(a);
    let (no_action_before, add_header_before, reject_before) = (
        action_before("no action"),
        action_before("add header"),
        action_before("reject"),
    );

    // 1. An executable: congvu-milter's 550, rspamd's scanner never sees it.
    let exe = std::fs::read(repo("fixtures/messages/fail-double-extension.eml")).unwrap();
    let out = postfix.send(SENDER, &[RCPT], &exe);
    assert_eq!(out.code(), 550, "{}", out.text());
    assert!(out.text().contains("Dieu 4 khoan 7"), "{}", out.text());
    assert_eq!(
        rspamd.scanned(),
        scanned_before,
        "rspamd scanned a message congvu-milter refused"
    );

    // 2. Ordinary mail: through both, delivered with both filters' headers.
    let out = postfix.send(SENDER, &[RCPT], &message("bao cao", "Kinh gui anh chi."));
    assert!(out.accepted(), "{}", out.text());
    let got = postfix.wait_delivered(1, WAIT);
    let delivered = &got[0];
    let result = header(delivered, "X-Spamd-Result")
        .unwrap_or_else(|| panic!("no X-Spamd-Result:\n{}", String::from_utf8_lossy(delivered)));
    assert!(result.starts_with("default: False ["), "{result}");
    assert_eq!(
        header(delivered, "X-Rspamd-Action").as_deref(),
        Some("no action")
    );
    for h in ["X-Rspamd-Server", "X-Rspamd-Queue-Id"] {
        assert!(header(delivered, h).is_some(), "no {h}");
    }
    assert_eq!(header(delivered, "X-Spam"), None);
    assert_eq!(
        header(delivered, "X-Virus-Scanned").as_deref(),
        Some("ClamAV using congvu-milter")
    );

    // 3. Spam congvu-milter has no rule against: rspamd refuses it.
    let out = postfix.send(SENDER, &[RCPT], &message("gtube", GTUBE_REJECT));
    assert_eq!(out.code(), 554, "rspamd's reject: {}", out.text());
    assert!(out.text().contains("5.7.1"), "{}", out.text());

    // 4. Likely spam: delivered, marked for the mailbox's spam folder. (A test
    // pattern ends the scan before the rules run, so only the proxy's
    // spam_header is added, not milter_headers' lines.)
    let out = postfix.send(SENDER, &[RCPT], &message("quang cao", GTUBE_ADD_HEADER));
    assert!(out.accepted(), "{}", out.text());
    let got = postfix.wait_delivered(2, WAIT);
    assert_eq!(header(&got[1], "X-Spam").as_deref(), Some("Yes"));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        postfix.delivered().len(),
        2,
        "the refused spam was delivered"
    );

    // rspamd counted the three messages congvu-milter passed, not the fourth.
    let scans = common::poll(WAIT, || {
        (rspamd.scanned() >= scanned_before + 3).then_some(())
    });
    assert!(
        scans.is_some(),
        "{}",
        rspamd.failure_report("fewer than 3 scans")
    );
    std::thread::sleep(Duration::from_millis(300));
    let stat = rspamd.stat();
    assert_eq!(
        rspamd.scanned() - scanned_before,
        3,
        "rspamd must scan exactly the 3 messages congvu-milter accepted: {stat}"
    );
    assert_eq!(
        rspamd.action_count("no action") - no_action_before,
        1,
        "{stat}"
    );
    assert_eq!(
        rspamd.action_count("add header") - add_header_before,
        1,
        "{stat}"
    );
    assert_eq!(rspamd.action_count("reject") - reject_before, 1, "{stat}");

    // congvu-milter counted all four: three accepted, one refused.
    let (_, congvu_after) = daemon.http_get("/metrics");
    let moved = |series: &str| {
        common::metric_value(&congvu_after, series) - common::metric_value(&congvu_before, series)
    };
    assert_eq!(
        moved("congvu_milter_messages_total{action=\"accept\"}"),
        3.0,
        "{congvu_after}"
    );
    assert_eq!(
        moved("congvu_milter_messages_total{action=\"reject\"}"),
        1.0,
        "{congvu_after}"
    );
    assert_eq!(
        moved(
            "congvu_milter_verdicts_total{action=\"reject\",article=\"Điều 4 khoản 7\",rule=\"executable\"}"
        ),
        1.0,
        "{congvu_after}"
    );
}

#[test]
fn with_rspamd_down_mail_still_flows_checked_by_congvu_milter() {
    let mut chain = chain(false);
    chain.rspamd.stop();
    let postfix = &chain.postfix;

    let out = postfix.send(SENDER, &[RCPT], &message("bao cao", "Kinh gui anh chi."));
    assert!(
        out.accepted(),
        "rspamd's default_action = accept must let mail through: {}",
        out.text()
    );
    let got = postfix.wait_delivered(1, WAIT);
    assert_eq!(header(&got[0], "X-Spamd-Result"), None);

    let exe = std::fs::read(repo("fixtures/messages/fail-double-extension.eml")).unwrap();
    let out = postfix.send(SENDER, &[RCPT], &exe);
    assert_eq!(out.code(), 550, "{}", out.text());
    assert!(out.text().contains("Dieu 4 khoan 7"), "{}", out.text());
    postfix.wait_log("connect to Milter service", WAIT);
}
