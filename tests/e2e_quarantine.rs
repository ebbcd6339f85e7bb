//! `congvu-milter quarantine` against real Postfix instances: the mailbox
//! instance in front and the outbound instance behind it, both with the milter
//! (as deployed), an executable held by the `quarantine` action; list, show,
//! release (plain and requeued), delete, expire, the quarantine log, and a
//! second release of the same message.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::common;
use crate::common::postfix::{Postfix, PostfixOptions};
use crate::daemon_support::Daemon;

const SENDER: &str = "partner@example.org";
const RCPT: &str = "user@bacgiang.gov.vn";
const WAIT: Duration = Duration::from_secs(30);
const HOLD: &str = "[rules.executable]\naction = \"quarantine\"\n[clamav]\nenabled = false\n";

fn exe_message() -> Vec<u8> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/messages/fail-double-extension.eml");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The policy the command reads: the quarantine log in a temporary directory.
struct Cli {
    dir: tempfile::TempDir,
    instances: Vec<PathBuf>,
}

impl Cli {
    fn new(retention: &str, instances: &[&Postfix]) -> Cli {
        let dir = tempfile::tempdir().unwrap();
        let policy = format!(
            "{HOLD}[quarantine]\nretention = \"{retention}\"\nlog = \"{}\"\n",
            dir.path().join("quarantine.log").display()
        );
        std::fs::write(dir.path().join("policy.toml"), policy).unwrap();
        Cli {
            dir,
            instances: instances.iter().map(|p| p.dir().to_path_buf()).collect(),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_congvu-milter"));
        cmd.arg("quarantine").args(args);
        cmd.arg("--config").arg(self.dir.path().join("policy.toml"));
        for dir in &self.instances {
            cmd.arg("--postfix-config").arg(dir);
        }
        cmd.env("SUDO_USER", "admin.vpub");
        cmd.output().expect("run congvu-milter quarantine")
    }

    /// Runs and returns stdout, asserting success.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "quarantine {args:?}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn list_json(&self) -> Vec<serde_json::Value> {
        self.ok(&["list", "--json"])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("quarantine.log")).unwrap_or_default()
    }
}

fn instance_name(pf: &Postfix) -> String {
    pf.dir().display().to_string()
}

/// Sends the executable to `pf` and waits until it sits in its hold queue.
fn hold_one(pf: &Postfix) -> String {
    let out = pf.send(SENDER, &[RCPT], &exe_message());
    assert!(out.accepted(), "{}", out.text());
    let qid = out.queue_id().expect("queue id");
    wait_held(pf, &qid);
    qid
}

fn wait_held(pf: &Postfix, qid: &str) {
    let held = common::poll(WAIT, || {
        pf.queue_ids("hold").iter().any(|q| q == qid).then_some(())
    });
    assert!(
        held.is_some(),
        "{}",
        pf.failure_report(&format!("{qid} not on hold"))
    );
}

/// The milter, the outbound instance relaying to its sink, and the mailbox
/// instance relaying to the outbound one.
fn two_instances(extra_main_cf: &[&str]) -> (Daemon, Postfix, Postfix) {
    let daemon = Daemon::start(HOLD);
    let mut out_opts = PostfixOptions::with_milter(daemon.milter_socket());
    out_opts.myhostname = "out.bacgiang.gov.vn".into();
    let outbound = Postfix::start(out_opts);
    let mut box_opts = PostfixOptions::with_milter(daemon.milter_socket());
    box_opts.myhostname = "mail.bacgiang.gov.vn".into();
    box_opts.extra_main_cf = vec![format!(
        "relayhost = [127.0.0.1]:{}",
        outbound.smtp_addr().port()
    )];
    box_opts
        .extra_main_cf
        .extend(extra_main_cf.iter().map(|s| s.to_string()));
    let mailbox = Postfix::start(box_opts);
    (daemon, outbound, mailbox)
}

#[test]
fn list_show_release_through_two_instances_and_a_second_release() {
    let (_daemon, outbound, mailbox) = two_instances(&[]);
    let cli = Cli::new("30d", &[&mailbox, &outbound]);
    let qid = hold_one(&mailbox);

    let listed = cli.ok(&["list"]);
    println!("$ congvu-milter quarantine list\n{listed}");
    let row = listed
        .lines()
        .find(|l| l.contains(&qid))
        .unwrap_or_else(|| panic!("{qid} not listed:\n{listed}"));
    for want in [
        instance_name(&mailbox).as_str(),
        SENDER,
        RCPT,
        "executable",
        "Dieu 4 khoan 7",
        "hoso.pdf.exe",
    ] {
        assert!(row.contains(want), "{want} missing from {row}");
    }
    let json = cli.list_json();
    assert_eq!(json.len(), 1, "{json:?}");
    assert_eq!(json[0]["queue_id"], qid.as_str());
    assert_eq!(json[0]["instance"], instance_name(&mailbox).as_str());
    assert_eq!(json[0]["rule"], "executable");
    assert_eq!(json[0]["file"], "hoso.pdf.exe");

    let id = format!("{}:{qid}", instance_name(&mailbox));
    let shown = cli.ok(&["show", &id]);
    println!("$ congvu-milter quarantine show {id}\n{shown}");
    assert!(
        shown.contains("violation:  executable (Dieu 4 khoan 7)"),
        "{shown}"
    );
    assert!(shown.contains("file:     hoso.pdf.exe"), "{shown}");
    assert!(shown.contains("Subject:"), "headers are shown:\n{shown}");

    // A release needs a reason.
    let out = cli.run(&["release", &id]);
    assert_eq!(out.status.code(), Some(2));
    assert!(mailbox.queue_ids("hold").contains(&qid));

    let released = cli.ok(&[
        "release",
        &id,
        "--reason",
        "ho so hop le, da xac minh voi nguoi gui",
    ]);
    println!("$ congvu-milter quarantine release {id} --reason ...\n{released}");
    assert!(released.contains(&format!("{id}: released")), "{released}");

    // The outbound hop judges the message afresh and holds it again for the
    // same finding (the documented double release).
    let again = common::poll(WAIT, || {
        cli.list_json()
            .into_iter()
            .find(|o| o["instance"] == instance_name(&outbound).as_str())
    })
    .unwrap_or_else(|| {
        panic!(
            "{}",
            outbound.failure_report("not held on the outbound hop")
        )
    });
    assert_eq!(again["rule"], "executable");
    outbound.assert_nothing_delivered(Duration::from_millis(500));
    let out_id = format!(
        "{}:{}",
        instance_name(&outbound),
        again["queue_id"].as_str().unwrap()
    );
    cli.ok(&[
        "release",
        &out_id,
        "--reason",
        "second hop of the same release",
    ]);
    let got = outbound.wait_delivered_messages(1, WAIT);
    assert_eq!(got[0].rcpts, vec![RCPT.to_owned()]);
    assert!(cli.list_json().is_empty());

    // Released by someone else meanwhile: a clear message, nothing done.
    let out = cli.run(&["release", &id, "--reason", "again"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not on hold") && err.contains("someone else"),
        "{err}"
    );
    let out = cli.run(&["delete", &id, "--reason", "again"]);
    assert_eq!(out.status.code(), Some(1));

    let log = cli.log();
    println!("quarantine.log:\n{log}");
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(lines[0].contains("user=admin.vpub action=release"), "{log}");
    assert!(lines[0].contains(&format!("queue_id={qid}")), "{log}");
    assert!(lines[0].contains("rule=executable"), "{log}");
    assert!(
        lines[0].contains("reason=\"ho so hop le, da xac minh voi nguoi gui\""),
        "{log}"
    );
}

#[test]
fn delete_by_filter_and_expire() {
    let (_daemon, outbound, mailbox) = two_instances(&[]);
    let cli = Cli::new("2s", &[&mailbox, &outbound]);
    let first = hold_one(&mailbox);
    let second = hold_one(&mailbox);

    // Neither ids nor a filter: refused, nothing deleted.
    let out = cli.run(&["delete", "--reason", "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("name the messages"));
    assert_eq!(cli.list_json().len(), 2);

    // A filter that matches nothing deletes nothing.
    let out = cli.ok(&["delete", "--rule", "virus", "--reason", "x"]);
    assert!(out.is_empty(), "{out}");
    assert_eq!(cli.list_json().len(), 2);

    let deleted = cli.ok(&[
        "delete",
        &first,
        "--sender",
        "example.org",
        "--reason",
        "spam",
    ]);
    assert!(deleted.contains(&format!("{first}: deleted")), "{deleted}");
    assert!(!mailbox.queue_ids("hold").contains(&first));
    assert!(mailbox.queue_ids("hold").contains(&second));

    // Younger than the retention: expire keeps it; older: deleted.
    assert!(cli.ok(&["expire"]).is_empty());
    assert!(mailbox.queue_ids("hold").contains(&second));
    std::thread::sleep(Duration::from_secs(3));
    let expired = cli.ok(&["expire"]);
    assert!(expired.contains(&format!("{second}: deleted")), "{expired}");
    assert!(cli.list_json().is_empty());
    outbound.assert_nothing_delivered(Duration::from_millis(500));

    let log = cli.log();
    assert!(
        log.lines().next().unwrap().contains("action=delete"),
        "{log}"
    );
    assert!(
        log.lines().nth(1).unwrap().contains("action=expire"),
        "{log}"
    );
    assert!(
        log.contains("reason=\"expired: held longer than [quarantine] retention (2s)\""),
        "{log}"
    );
}

/// Held longer than half of `maximal_queue_lifetime`: the release requeues the
/// message (postsuper -r), which pickup gives a new queue id; the log names it.
#[test]
fn a_long_held_message_is_requeued_with_a_new_queue_id() {
    let (_daemon, outbound, mailbox) =
        two_instances(&["maximal_queue_lifetime = 4s", "bounce_queue_lifetime = 4s"]);
    let cli = Cli::new("30d", &[&mailbox]);
    let qid = hold_one(&mailbox);
    std::thread::sleep(Duration::from_secs(3));
    let released = cli.ok(&["release", &qid, "--reason", "cleared"]);
    println!("{released}");
    assert!(released.contains("released and requeued"), "{released}");
    let log = cli.log();
    let new_id = log
        .split("new_queue_id=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("{log}"));
    assert_ne!(new_id, "unknown", "{log}\n{}", mailbox.log());
    assert_ne!(new_id, qid);
    let pickup = mailbox.log();
    let line = pickup
        .lines()
        .find(|l| l.contains(&format!("orig_id={qid}")))
        .unwrap_or_else(|| panic!("{pickup}"));
    assert!(line.contains(&format!("{new_id}: uid=")), "{line}");
    // Passed on to the outbound hop, which holds it for the same finding.
    let held = common::poll(WAIT, || {
        (!outbound.queue_ids("hold").is_empty()).then_some(())
    });
    assert!(
        held.is_some(),
        "{}",
        outbound.failure_report("requeued message not passed on")
    );
}
