//! The audit records of two real hosts read back by `congvu-milter report` and
//! `trace`: a submission instance (its own daemon and audit file) relaying to an
//! outbound hop (its own daemon and audit file) that delivers to the sink. Mail
//! of known kinds from mailboxes named by the agency convention (Điều 6): clean
//! ones, an executable and an encrypted archive refused at the first hop, incoming
//! mail delivered locally, an alias forward to gmail refused at the outbound hop.
//! The CSV by agency counts each message once although both hosts logged it; a
//! file sent twice is traced by its hash and its name on both hosts; a malformed
//! line and a truncated record appended to a log are reported, never fatal.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_json::Value;

use crate::audit_log::{fixture, sha256_hex};
use crate::audit_report::{run, stdout};
use crate::common;
use crate::common::mail::{self, crlf};
use crate::common::postfix::{Postfix, PostfixOptions};
use crate::daemon_support::Daemon;

const STTTT: &str = "ngocnt_stttt@bacgiang.gov.vn";
const BAODAI: &str = "hongnt_baodai_lucnam@bacgiang.gov.vn";
/// A mailbox of the provincial People's Committee office, forwarded to gmail by
/// a virtual alias on the submission host (how Zimbra account forwarding works).
const FORWARDED: &str = "tuan_vpubnd@bacgiang.gov.vn";
const GMAIL: &str = "tuan.vpubnd@gmail.com";
const LOCAL: &str = "lan_stttt@bacgiang.gov.vn";
const PARTNER: &str = "partner@example.org";
const WAIT: Duration = Duration::from_secs(60);

/// One host: its daemon writing `audit.jsonl` in its own directory, its Postfix
/// sending its role (`submission`, `outbound`) as `{daemon_name}`.
struct Host {
    daemon: Daemon,
    audit: PathBuf,
    postfix: Postfix,
}

fn start_daemon(dir: &Path) -> (Daemon, PathBuf) {
    let audit = dir.join("audit.jsonl");
    let daemon = Daemon::start(&format!(
        "[audit]\nenabled = true\nfile = \"{}\"\n\n[forwarding]\ninternal_daemon_names = [\"outbound\"]\n",
        audit.display()
    ));
    (daemon, audit)
}

/// The outbound hop, then the submission host relaying to it; mail for the local
/// domain is delivered on the submission host (the `discard` transport stands in
/// for the mailbox store) and never reaches the outbound hop.
fn two_hosts(dir: &Path) -> (Host, Host) {
    std::fs::create_dir_all(dir.join("out")).unwrap();
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let (daemon, audit) = start_daemon(&dir.join("out"));
    let mut opts = PostfixOptions::with_milter(daemon.milter_socket());
    opts.myhostname = "out.bacgiang.gov.vn".into();
    opts.extra_main_cf = vec!["milter_macro_daemon_name = outbound".into()];
    let outbound = Host {
        postfix: Postfix::start(opts),
        daemon,
        audit,
    };
    let (daemon, audit) = start_daemon(&dir.join("sub"));
    let mut opts = PostfixOptions::with_milter(daemon.milter_socket());
    opts.myhostname = "mail.bacgiang.gov.vn".into();
    opts.virtual_aliases = vec![(FORWARDED.into(), GMAIL.into())];
    opts.extra_main_cf = vec![
        "milter_macro_daemon_name = submission".into(),
        format!(
            "relayhost = [127.0.0.1]:{}",
            outbound.postfix.smtp_addr().port()
        ),
        "transport_maps = inline:{bacgiang.gov.vn=discard:}".into(),
    ];
    let submission = Host {
        postfix: Postfix::start(opts),
        daemon,
        audit,
    };
    (submission, outbound)
}

fn text_message(from: &str, to: &str, id: &str) -> Vec<u8> {
    crlf(&format!(
        "From: {from}\nTo: {to}\nSubject: Giay moi hop\nMessage-ID: <{id}>\nDate: Sun, 06 Dec 2026 09:00:00 +0700\n\nNoi dung.\n"
    ))
}

/// The records of `host` once there are exactly `n` of them.
fn records(host: &Host, n: usize) -> Vec<Value> {
    let text = common::poll(WAIT, || {
        let text = std::fs::read_to_string(&host.audit).ok()?;
        // Whole lines only: a record being written has no newline yet.
        (text.matches('\n').count() >= n).then_some(text)
    })
    .unwrap_or_else(|| {
        panic!(
            "fewer than {n} audit records in {}:\n{}\n{}",
            host.audit.display(),
            std::fs::read_to_string(&host.audit).unwrap_or_default(),
            host.postfix.failure_report("waiting for audit records")
        )
    });
    let got: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(got.len(), n, "{}", host.daemon.log());
    got
}

/// (instance, queue id, Message-ID) of each JSON trace hit, sorted.
fn trace_hits(out: &Output) -> Vec<(String, String, String)> {
    let mut hits: Vec<(String, String, String)> = stdout(out)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
            (s("instance"), s("queue_id"), s("message_id"))
        })
        .collect();
    hits.sort();
    hits
}

#[test]
fn report_and_trace_on_the_logs_of_the_submission_host_and_the_outbound_hop() {
    let dir = common::temp_dir("audit-e2e");
    let (submission, outbound) = two_hosts(dir.path());
    let zip = fixture("plain.zip");
    let sha256 = sha256_hex(&zip);
    // Each message from `from` to `to` alone, with its own Message-ID.
    let send_text = |from: &str, to: &str, id: &str| {
        let raw = text_message(from, to, id);
        submission.postfix.send(from, &[to], &raw)
    };
    let send_zip = |from: &str, to: &str, id: &str, name: &str, data: &[u8]| {
        let raw = mail::with_attachment_and_id(from, to, id, name, "application/zip", data);
        submission.postfix.send(from, &[to], &raw)
    };

    // Outgoing and clean: logged on both hosts, counted once.
    let clean = send_text(STTTT, PARTNER, "clean-1@bacgiang.gov.vn");
    assert!(clean.accepted(), "{}", clean.text());
    // The same file twice, by two agencies.
    let name = "ke hoach 2027.zip";
    let first_copy = send_zip(
        STTTT,
        "a@congty-abc.example",
        "hoso-1@bacgiang.gov.vn",
        name,
        &zip,
    );
    assert!(first_copy.accepted(), "{}", first_copy.text());
    let second_copy = send_zip(
        BAODAI,
        "b@congty-xyz.example",
        "hoso-2@bacgiang.gov.vn",
        name,
        &zip,
    );
    assert!(second_copy.accepted(), "{}", second_copy.text());
    // Refused at the first hop.
    let exe_zip = fixture("exe-in.zip");
    let exe = send_zip(
        BAODAI,
        PARTNER,
        "exe-1@bacgiang.gov.vn",
        "ho so.zip",
        &exe_zip,
    );
    assert_eq!(exe.code(), 550, "{}", exe.text());
    let encrypted_zip = fixture("zipcrypto.zip");
    let encrypted = send_zip(
        STTTT,
        PARTNER,
        "mat-1@bacgiang.gov.vn",
        "mat.zip",
        &encrypted_zip,
    );
    assert_eq!(encrypted.code(), 550, "{}", encrypted.text());
    // Incoming, delivered on the submission host: counted for the recipient.
    let incoming = send_text(PARTNER, LOCAL, "in-1@example.org");
    assert!(incoming.accepted(), "{}", incoming.text());
    // Incoming for a mailbox forwarded to gmail: the forwarded copy is refused
    // at the outbound hop (Điều 4 khoản 4), and the submission host bounces it
    // to the sender through the outbound hop.
    let forwarded = send_text(PARTNER, FORWARDED, "plan-12@example.org");
    assert!(forwarded.accepted(), "{}", forwarded.text());

    // Submission: all seven. Outbound: the three relayed clean ones, the refused
    // forward, and the bounce.
    let sub = records(&submission, 7);
    let out = records(&outbound, 5);
    outbound.postfix.wait_delivered(4, WAIT);
    for (host, recs) in [("submission", &sub), ("outbound", &out)] {
        assert!(recs.iter().all(|r| r["instance"] == host), "{recs:#?}");
    }
    let queue_id = |r: &Value| r["queue_id"].as_str().unwrap().to_owned();
    assert_eq!(queue_id(&sub[1]), first_copy.queue_id().unwrap());
    assert_eq!(queue_id(&sub[2]), second_copy.queue_id().unwrap());
    let bounce = out
        .iter()
        .find(|r| r["sender"] == "")
        .unwrap_or_else(|| panic!("no bounce among {out:#?}"));
    assert_eq!(bounce["recipients"][0]["address"], PARTNER);
    let refused_forward = out
        .iter()
        .find(|r| r["action"] == "reject")
        .unwrap_or_else(|| panic!("no refusal among {out:#?}"));
    assert_eq!(refused_forward["violations"][0]["rule"], "forwarding");
    assert_eq!(refused_forward["message_id"], "<plan-12@example.org>");
    let relayed = |id: &str| {
        out.iter()
            .find(|r| r["message_id"] == id)
            .map(queue_id)
            .unwrap_or_else(|| panic!("{id} not logged by the outbound hop"))
    };
    let out_first = relayed("<hoso-1@bacgiang.gov.vn>");
    let out_second = relayed("<hoso-2@bacgiang.gov.vn>");
    let out_log = outbound.postfix.log();
    for q in [&out_first, &out_second] {
        assert!(out_log.contains(&format!("{q}: ")), "{q} not in {out_log}");
    }

    let sub_log = submission.audit.to_str().unwrap();
    let out_log_file = outbound.audit.to_str().unwrap();
    let report = || {
        run(&[
            "report",
            "--log",
            sub_log,
            out_log_file,
            "--by",
            "agency",
            "--format",
            "csv",
        ])
    };
    // Merged: the three clean messages relayed by the outbound hop carry the same
    // Message-ID, sender and recipients on both hosts. The forwarded copy does
    // not merge with its original (the alias changed the recipient) and counts
    // under "(khong ro)": neither its sender nor its recipient is a local mailbox,
    // like the bounce. Known limit (README "Reports"): a message whose recipients
    // split between local delivery and the outbound hop is logged with different
    // recipient sets and counted on both hosts; none is sent here.
    // No documents among these attachments (zips of text and programs): the
    // signed-document columns are 0, 0 and empty.
    let expected = "agency,messages,accepted,refused,quarantined,tempfailed,would_refuse,\
                    documents,signed_documents,signed_share,\
                    refused_encrypted_archive,refused_executable,refused_forwarding\n\
                    (khong ro),2,1,1,0,0,0,0,0,,0,0,1\n\
                    baodai_lucnam,2,1,1,0,0,0,0,0,,0,1,0\n\
                    stttt,4,3,1,0,0,0,0,0,,1,0,0\n\
                    vpubnd,1,1,0,0,0,0,0,0,,0,0,0\n";
    let clean_run = report();
    assert_eq!(stdout(&clean_run), expected);
    let err = String::from_utf8_lossy(&clean_run.stderr);
    assert!(
        err.contains("12 records read, 3 duplicates merged"),
        "{err}"
    );
    assert!(!err.contains("malformed"), "{err}");

    // A malformed record and one cut short by a crash mid-write (no newline).
    let log = std::fs::read(&outbound.audit).unwrap();
    let first_record = &log[..log.iter().position(|&b| b == b'\n').unwrap()];
    let mut damage = b"{\"audit\":1,\"time\":\"2026-12-06T02:00:00.000Z\",\"host\":7}\n\
                       smtpd[42]: not an audit line\n"
        .to_vec();
    damage.extend_from_slice(&first_record[..first_record.len() / 2]);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&outbound.audit)
        .unwrap();
    std::io::Write::write_all(&mut file, &damage).unwrap();
    drop(file);
    let damaged_run = report();
    assert_eq!(stdout(&damaged_run), expected);
    let err = String::from_utf8_lossy(&damaged_run.stderr);
    assert!(
        err.contains("2 malformed or truncated audit lines skipped"),
        "{err}"
    );
    assert!(err.contains(&format!("{out_log_file}:6:")), "{err}");
    assert!(err.contains("1 lines skipped: not audit records"), "{err}");
    assert!(
        err.contains("12 records read, 3 duplicates merged"),
        "{err}"
    );

    // The file sent twice, on both hosts, by its hash (any case) and by its name.
    let mut expected_hits = vec![
        (
            "outbound".to_owned(),
            out_first,
            "<hoso-1@bacgiang.gov.vn>".to_owned(),
        ),
        (
            "outbound".to_owned(),
            out_second,
            "<hoso-2@bacgiang.gov.vn>".to_owned(),
        ),
        (
            "submission".to_owned(),
            first_copy.queue_id().unwrap(),
            "<hoso-1@bacgiang.gov.vn>".to_owned(),
        ),
        (
            "submission".to_owned(),
            second_copy.queue_id().unwrap(),
            "<hoso-2@bacgiang.gov.vn>".to_owned(),
        ),
    ];
    expected_hits.sort();
    let by_hash = run(&[
        "trace",
        "--log",
        sub_log,
        out_log_file,
        "--sha256",
        &sha256.to_uppercase(),
        "--format",
        "json",
    ]);
    assert_eq!(trace_hits(&by_hash), expected_hits);
    let by_name = run(&[
        "trace",
        "--log",
        sub_log,
        out_log_file,
        "--name",
        "KE HOACH *.zip",
        "--format",
        "json",
    ]);
    assert_eq!(trace_hits(&by_name), expected_hits);
    // A name inside an archive: the executable, refused at the first hop only.
    let by_inner_name = run(&["trace", "--log", sub_log, out_log_file, "--name", "*.exe"]);
    let text = stdout(&by_inner_name);
    let heads: Vec<&str> = text.lines().filter(|l| !l.starts_with(' ')).collect();
    assert_eq!(heads.len(), 1, "{text}");
    assert!(heads[0].contains(&exe_queue_id(&sub)), "{text}");
    assert!(heads[0].ends_with(" reject"), "{text}");

    common::finish_dir(dir);
}

fn exe_queue_id(sub: &[Value]) -> String {
    sub.iter()
        .find(|r| r["message_id"] == "<exe-1@bacgiang.gov.vn>")
        .and_then(|r| r["queue_id"].as_str())
        .expect("the executable's record has a queue id")
        .to_owned()
}
