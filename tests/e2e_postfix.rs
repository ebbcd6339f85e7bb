//! End to end through a real Postfix: SMTP client → Postfix (smtpd_milters →
//! congvu-milter) → the test bed's sink, with a real clamd behind the milter.
//! Asserts what the SMTP client sees (the milter's own reply text) and what
//! arrives behind Postfix, one case per rule, and that the offline `scan` command
//! gives the same verdict as the daemon on every message fixture.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common;
use crate::common::clamd::{Clamd, ClamdOptions, eicar};
use crate::common::mail::crlf;
use crate::common::postfix::{Postfix, PostfixOptions};
use crate::daemon_support::Daemon;

const SENDER: &str = "sender@example.org";
const LOCAL_RCPT: &str = "user@bacgiang.gov.vn";
const WAIT: Duration = Duration::from_secs(30);

/// A milter (with a real clamd unless `clamav` is false) and a Postfix in front.
struct Bed {
    clamd: Option<Clamd>,
    daemon: Daemon,
    postfix: Postfix,
}

fn bed(extra_policy: &str, clamav: bool) -> Bed {
    let clamd = clamav.then(|| Clamd::start(ClamdOptions::default()));
    let clamav_section = match &clamd {
        Some(c) => format!(
            "[clamav]\nenabled = true\nendpoints = [\"unix:{}\"]\nprobe_interval = \"1s\"\n",
            c.socket_path().display()
        ),
        None => "[clamav]\nenabled = false\n".into(),
    };
    let daemon = Daemon::start(&format!("{extra_policy}\n{clamav_section}"));
    let postfix = Postfix::start(PostfixOptions::with_milter(daemon.milter_socket()));
    Bed {
        clamd,
        daemon,
        postfix,
    }
}

fn fixture(rel: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn with_attachment(name: &str, content_type: &str, data: &[u8]) -> Vec<u8> {
    common::mail::with_attachment(SENDER, LOCAL_RCPT, name, content_type, data)
}

fn body_of(message: &[u8]) -> &[u8] {
    common::body_of(message)
}

#[test]
fn ordinary_mail_is_delivered_unchanged_with_a_clean_status() {
    let bed = bed("", true);
    let mut raw = crlf(
        "From: sender@example.org\nTo: user@bacgiang.gov.vn\nSubject: bao cao\nX-Virus-Status: Clean\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b1\"\n\n--b1\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nKính gửi anh chị,\n.leading dot line\n\n--b1\nContent-Type: text/csv; name=\"so-lieu.csv\"\nContent-Disposition: attachment; filename=\"so-lieu.csv\"\n\nthang,so\n1,2\n--b1--\n",
    );
    raw.extend_from_slice(b"");
    let out = bed.postfix.send(SENDER, &[LOCAL_RCPT], &raw);
    assert!(out.accepted(), "{}", out.text());
    let got = bed.postfix.wait_delivered(1, WAIT);
    assert_eq!(body_of(&got[0]), body_of(&raw), "body changed on the way");
    let status = common::header_values(&got[0], "X-Virus-Status");
    assert_eq!(
        status,
        vec!["Clean".to_string()],
        "the forged header is replaced by ours"
    );
    assert_eq!(
        common::header_values(&got[0], "X-Virus-Scanned"),
        vec!["ClamAV using congvu-milter".to_string()]
    );
    let qid = out.queue_id().expect("Postfix queue id");
    // The verdict line: a timestamp (no journal here), then the queue id first,
    // with the SMTP client's address (the test bed's client is on loopback), and
    // the milter connection only at the end.
    let log = bed.daemon.log();
    let line = log
        .lines()
        .find(|l| l.contains(&format!("{qid}: accept")))
        .unwrap_or_else(|| panic!("no verdict line for {qid}:\n{log}"));
    let (stamp, rest) = line.split_once(' ').expect("timestamp");
    assert!(stamp.ends_with('Z'), "an RFC 3339 timestamp first: {line}");
    assert!(rest.starts_with(&format!("{qid}: accept ")), "{line}");
    assert!(rest.contains(" client=127.0.0.1 "), "{line}");
    assert!(!rest.contains("peer="), "{line}");
    assert!(rest.contains(" conn="), "{line}");

    // Without attachments, scan = "attachments" gives clamd nothing to see.
    let plain = crlf(
        "From: sender@example.org\nTo: user@bacgiang.gov.vn\nSubject: hop\nX-Virus-Status: Clean\n\nHop luc 9 gio.\n",
    );
    let out = bed.postfix.send(SENDER, &[LOCAL_RCPT], &plain);
    assert!(out.accepted(), "{}", out.text());
    let got = bed.postfix.wait_delivered(2, WAIT);
    assert_eq!(
        common::header_values(&got[1], "X-Virus-Status"),
        vec!["No attachments".to_string()]
    );
}

#[test]
fn message_over_the_cap_gets_the_milters_552() {
    let bed = bed(
        "[limits]\nmax_message_size = \"1 MiB\"\nmax_attachments_size = \"600 KiB\"\n",
        false,
    );
    let big = with_attachment(
        "data.bin",
        "application/octet-stream",
        &vec![7u8; 1_500_000],
    );
    let out = bed.postfix.send(SENDER, &[LOCAL_RCPT], &big);
    assert_eq!(out.code(), 552, "{}", out.text());
    assert!(out.text().contains("5.3.4"), "{}", out.text());
    assert!(
        out.text().contains("Dieu 10"),
        "the milter's own text: {}",
        out.text()
    );
    bed.postfix.assert_nothing_delivered(Duration::from_secs(1));
}

#[test]
fn attachments_over_15_mib_are_refused_under_it_pass() {
    let bed = bed("", false);
    let over = with_attachment(
        "lon.bin",
        "application/octet-stream",
        &vec![1u8; 16 * 1024 * 1024],
    );
    let out = bed.postfix.send(SENDER, &[LOCAL_RCPT], &over);
    assert_eq!(out.code(), 552, "{}", out.text());
    assert!(out.text().contains("vuot qua 15 MiB"), "{}", out.text());
    let under = with_attachment(
        "vua.bin",
        "application/octet-stream",
        &vec![1u8; 14 * 1024 * 1024],
    );
    let out = bed.postfix.send(SENDER, &[LOCAL_RCPT], &under);
    assert!(out.accepted(), "{}", out.text());
}

#[test]
fn executable_attachment_is_refused_naming_file_and_article() {
    let bed = bed("", true);
    let out = bed.postfix.send(
        SENDER,
        &[LOCAL_RCPT],
        &fixture("messages/fail-double-extension.eml"),
    );
    assert_eq!(out.code(), 550, "{}", out.text());
    let text = out.text();
    assert!(text.contains("5.7.1"), "{text}");
    assert!(text.contains("hoso.pdf.exe"), "{text}");
    assert!(text.contains("Dieu 4 khoan 7"), "{text}");
    bed.postfix.assert_nothing_delivered(Duration::from_secs(1));
}

/// Files carried inside PDF, RTF, HTML (data: URI, smuggling), BinHex and a
/// message sent as octet-stream, and CHM, with ClamAV off: a new executable
/// has no signature yet, so policy alone must refuse it; the same carriers
/// holding a text file are delivered.
#[test]
fn carried_executables_are_refused_without_clamav() {
    let bed = bed("", false);
    let refused = [
        ("exe-in.pdf", "setup.exe"),
        ("exe-in-objstm.pdf", "setup.exe"),
        ("exe-in.rtf", "setup.exe"),
        ("exe-in-data-uri.html", "setup.exe"),
        ("exe-in-smuggling.html", "setup.exe"),
        ("exe-in.hqx", "setup.exe"),
        ("exe-in.eml", "setup.exe"),
        ("clam.chm", "clam.chm"),
    ];
    for (name, file) in refused {
        let msg = with_attachment(
            name,
            "application/octet-stream",
            &fixture(&format!("carriers/{name}")),
        );
        let out = bed.postfix.send(SENDER, &[LOCAL_RCPT], &msg);
        let text = out.text();
        assert_eq!(out.code(), 550, "{name}: {text}");
        assert!(text.contains("la tep thuc thi"), "{name}: {text}");
        assert!(text.contains(file), "{name}: {text}");
    }
    bed.postfix.assert_nothing_delivered(Duration::from_secs(1));
    for name in [
        "plain-in.pdf",
        "plain-in.rtf",
        "plain-in.html",
        "plain-in.hqx",
        "plain-in.eml",
    ] {
        let msg = with_attachment(
            name,
            "application/octet-stream",
            &fixture(&format!("carriers/{name}")),
        );
        let out = bed.postfix.send(SENDER, &[LOCAL_RCPT], &msg);
        assert!(out.accepted(), "{name}: {}", out.text());
    }
}

/// The same carriers with clamd on: what carries a program is refused
/// (by policy, or by clamd's signature for the ClamAV test file), what
/// carries text is delivered.
#[test]
fn carriers_with_clamav_on() {
    let bed = bed("", true);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/carriers");
    let mut problems = Vec::new();
    let mut sent = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let refused = name.starts_with("exe-") || name.starts_with("renamed-exe-");
        if !(refused || name.starts_with("plain-")) {
            continue;
        }
        sent += 1;
        let msg = with_attachment(
            &name,
            "application/octet-stream",
            &fixture(&format!("carriers/{name}")),
        );
        let out = bed.postfix.send(SENDER, &[LOCAL_RCPT], &msg);
        if refused != (out.code() >= 500) {
            problems.push(format!("{name}: {} {}", out.code(), out.text()));
        }
    }
    assert!(sent >= 15, "fixtures present");
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn virus_is_refused_with_its_signature_and_clamd_down_defers() {
    let mut bed = bed("", true);
    let infected = with_attachment("ghi-chu.txt", "text/plain", &eicar());
    let out = bed.postfix.send(SENDER, &[LOCAL_RCPT], &infected);
    assert_eq!(out.code(), 554, "{}", out.text());
    assert!(out.text().contains("Eicar"), "{}", out.text());

    bed.clamd.as_mut().expect("clamd").stop();
    let clean = with_attachment("ghi-chu.txt", "text/plain", b"khong co gi\r\n");
    let out = bed.postfix.send(SENDER, &[LOCAL_RCPT], &clean);
    assert_eq!(out.code(), 451, "nothing passes unscanned: {}", out.text());
    assert!(out.text().contains("4.7.1"), "{}", out.text());
    bed.postfix.assert_nothing_delivered(Duration::from_secs(1));

    bed.clamd.as_mut().expect("clamd").restart();
    let accepted = common::poll(WAIT, || {
        let out = bed.postfix.send(SENDER, &[LOCAL_RCPT], &clean);
        out.accepted().then_some(())
    });
    assert!(accepted.is_some(), "mail flows again once clamd is back");
}

#[test]
fn automatic_forwarding_into_an_official_mailbox_is_refused() {
    let bed = bed("", false);
    // Gmail auto-forward: envelope sender with +caf_=, X-Forwarded-* headers.
    let raw = crlf(
        "Delivered-To: someone@gmail.com\nX-Forwarded-To: user@bacgiang.gov.vn\nX-Forwarded-For: someone@gmail.com user@bacgiang.gov.vn\nFrom: Friend <friend@example.org>\nTo: someone@gmail.com\nSubject: hello\nMessage-ID: <fwd1@example.org>\n\nhi\n",
    );
    let out = bed.postfix.send(
        "someone+caf_=user=bacgiang.gov.vn@gmail.com",
        &[LOCAL_RCPT],
        &raw,
    );
    assert_eq!(out.code(), 550, "{}", out.text());
    assert!(out.text().contains("Dieu 4 khoan 4"), "{}", out.text());
    let log = bed.daemon.log();
    assert!(
        log.contains("gmail_caf_sender"),
        "signal named in the log:\n{log}"
    );
}

#[test]
fn sighup_through_postfix_new_policy_judges_broken_one_is_refused() {
    let bed = bed("", false);
    let msg = with_attachment("chuong-trinh.bat", "text/plain", b"echo hi\r\n");
    assert_eq!(bed.postfix.send(SENDER, &[LOCAL_RCPT], &msg).code(), 550);
    // The admins allow .bat (a policy change), and the same mail now passes.
    let allow_bat =
        "[clamav]\nenabled = false\n[attachments]\nexecutable_extensions = [\"exe\", \"com\"]\n";
    assert!(bed.daemon.reload_with(allow_bat));
    assert!(bed.postfix.send(SENDER, &[LOCAL_RCPT], &msg).accepted());
    // A broken edit is refused: .bat still passes under the policy in force.
    std::fs::write(bed.daemon.policy_path(), "[attachments\n").unwrap();
    assert!(!bed.daemon.reload_raw());
    assert!(bed.postfix.send(SENDER, &[LOCAL_RCPT], &msg).accepted());
}

/// Every message fixture: the daemon behind Postfix and `scan` agree.
#[test]
fn scan_and_daemon_agree_on_every_message_fixture() {
    let bed = bed("", true);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/messages");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    files.sort();
    assert!(files.len() >= 15, "fixtures present");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_congvu-milter"))
        .args([
            "scan", "--json", "--from", SENDER, "--rcpt", LOCAL_RCPT, "--config",
        ])
        .arg(bed.daemon.policy_path())
        .args(&files)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let offline: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        offline.len(),
        files.len(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut disagreements = Vec::new();
    for (file, report) in files.iter().zip(&offline) {
        let raw = std::fs::read(file).unwrap();
        let raw = if raw.windows(2).any(|w| w == b"\r\n") {
            raw
        } else {
            crlf(&String::from_utf8_lossy(&raw))
        };
        let smtp = bed.postfix.send(SENDER, &[LOCAL_RCPT], &raw);
        let daemon_action = match smtp.code() {
            200..=299 => "accept",
            400..=499 => "tempfail",
            _ => "reject",
        };
        let scan_action = report["action"].as_str().unwrap_or("?");
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        if daemon_action != scan_action {
            disagreements.push(format!(
                "{name}: daemon {daemon_action} ({}), scan {scan_action}",
                smtp.text()
            ));
        }
        let expected = if name.starts_with("pass-") {
            "accept"
        } else {
            "reject"
        };
        if scan_action != expected {
            disagreements.push(format!(
                "{name}: expected {expected}, scan says {scan_action}"
            ));
        }
    }
    assert!(disagreements.is_empty(), "{disagreements:#?}");
}

/// Every archive fixture, attached to a message: the daemon behind Postfix and
/// `scan` agree, documents and plain archives pass, executables and encrypted
/// archives are refused.
#[test]
fn scan_and_daemon_agree_on_every_archive_fixture() {
    let bed = bed("", true);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/archives");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            !p.extension()
                .is_some_and(|x| x == "sh" || x == "py" || x == "md")
        })
        .collect();
    files.sort();
    assert!(files.len() >= 40, "fixtures present");
    let tmp = tempfile::tempdir().unwrap();
    let mut messages = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let msg = with_attachment(
            &name,
            "application/octet-stream",
            &std::fs::read(f).unwrap(),
        );
        let path = tmp.path().join(format!("{i:03}.eml"));
        std::fs::write(&path, &msg).unwrap();
        messages.push((name, path, msg));
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_congvu-milter"))
        .args([
            "scan", "--json", "--from", SENDER, "--rcpt", LOCAL_RCPT, "--config",
        ])
        .arg(bed.daemon.policy_path())
        .args(messages.iter().map(|(_, p, _)| p))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let offline: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        offline.len(),
        messages.len(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let must_pass = [
        "budget.xlsx",
        "report.docx",
        "minutes.odt",
        "plain.zip",
        "plain.7z",
        "google.com!bacgiang.gov.vn!1704067200!1704153599.zip",
        "rar5-plain.rar",
        "rar3-subdirs.rar",
        "rar5-subdirs.rar",
        "plain.cab",
        "plain.iso",
        "embedded-objects.docx",
        "embedded-objects.doc",
        "embedded-objects.ppt",
        "plain.msg",
    ];
    let mut problems = Vec::new();
    for ((name, _, msg), report) in messages.iter().zip(&offline) {
        let smtp = bed.postfix.send(SENDER, &[LOCAL_RCPT], msg);
        let daemon_action = match smtp.code() {
            200..=299 => "accept",
            400..=499 => "tempfail",
            _ => "reject",
        };
        let scan_action = report["action"].as_str().unwrap_or("?");
        if daemon_action != scan_action {
            problems.push(format!(
                "{name}: daemon {daemon_action} ({}), scan {scan_action}",
                smtp.text()
            ));
        }
        let rules: Vec<&str> = report["reasons"]
            .as_array()
            .map(|a| a.iter().filter_map(|r| r["rule"].as_str()).collect())
            .unwrap_or_default();
        if must_pass.contains(&name.as_str()) && scan_action != "accept" {
            problems.push(format!("{name}: must pass, got {scan_action} {rules:?}"));
        }
        if (name.starts_with("exe-in") || name.contains("encrypted") || name.starts_with("zip"))
            && name != "zip64.zip"
            && scan_action != "reject"
        {
            problems.push(format!("{name}: must be refused, got {scan_action}"));
        }
        // An executable inside each format the filter opens is found as one
        // (xar is not opened: uninspectable).
        if name.starts_with("exe-in") && !name.ends_with(".xar") && !rules.contains(&"executable") {
            problems.push(format!("{name}: no executable found: {rules:?}"));
        }
        let encrypted =
            name.contains("encrypted") || name == "zip-aes.zip" || name == "zipcrypto.zip";
        if encrypted && !rules.contains(&"encrypted_archive") {
            problems.push(format!("{name}: not refused as encrypted: {rules:?}"));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn quarantine_action_puts_the_message_on_hold() {
    let bed = bed(
        "[rules.encrypted_archive]\naction = \"quarantine\"\n",
        false,
    );
    let msg = with_attachment(
        "mat-khau.zip",
        "application/zip",
        &fixture("archives/zipcrypto.zip"),
    );
    let out = bed.postfix.send(SENDER, &[LOCAL_RCPT], &msg);
    assert!(out.accepted(), "{}", out.text());
    let qid = out.queue_id().expect("queue id").to_owned();
    let held = common::poll(WAIT, || {
        bed.postfix.queue_ids("hold").contains(&qid).then_some(())
    });
    assert!(held.is_some(), "message {qid} should sit in the hold queue");
    bed.postfix.assert_nothing_delivered(Duration::from_secs(1));
}

#[test]
fn monitor_mode_delivers_and_tags_what_it_would_refuse() {
    let bed = bed("mode = \"monitor\"\n", false);
    let out = bed.postfix.send(
        SENDER,
        &[LOCAL_RCPT],
        &fixture("messages/fail-double-extension.eml"),
    );
    assert!(out.accepted(), "{}", out.text());
    let got = bed.postfix.wait_delivered(1, WAIT);
    let tags = common::header_values(&got[0], "X-Congvu-Policy");
    assert_eq!(tags.len(), 1, "{tags:?}");
    assert!(tags[0].starts_with("executable ("), "{tags:?}");
    assert!(bed.daemon.log().contains("rules=executable"));
}

/// What carries files is opened by the policy itself, clamd off: an exe in an
/// opaque S/MIME signature, in an Outlook .msg and packaged into a .docx is
/// refused naming where it sits; an encrypted message is refused as
/// uninspectable with its reason; a clean opaque-signed message is delivered
/// unchanged.
#[test]
fn carriers_are_opened_by_the_policy_without_clamd() {
    let bed = bed("", false);
    let cases = [
        (
            fixture("messages/fail-smime-opaque-exe-ber.eml"),
            "\"smime.p7m > hoso.pdf.exe\" la tep thuc thi",
        ),
        (
            with_attachment(
                "thu.msg",
                "application/vnd.ms-outlook",
                &fixture("archives/exe-in.msg"),
            ),
            "\"thu.msg > hoso.pdf.exe\" la tep thuc thi",
        ),
        (
            with_attachment(
                "bao-cao.docx",
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                &fixture("archives/exe-in-package.docx"),
            ),
            "\"bao-cao.docx > word/embeddings/oleObject1.bin > hoso.pdf.exe\" la tep thuc thi",
        ),
        (
            fixture("messages/fail-pgp-encrypted.eml"),
            "khong the kiem tra: PGP/MIME encrypted message",
        ),
        (
            fixture("messages/fail-smime-encrypted.eml"),
            "khong the kiem tra: S/MIME encrypted message",
        ),
    ];
    for (message, expected) in &cases {
        let out = bed.postfix.send(SENDER, &[LOCAL_RCPT], message);
        assert_eq!(out.code(), 550, "{}", out.text());
        assert!(out.text().contains(expected), "{}", out.text());
    }
    bed.postfix.assert_nothing_delivered(Duration::from_secs(1));

    let clean = fixture("messages/pass-smime-opaque-signed.eml");
    let out = bed.postfix.send(SENDER, &[LOCAL_RCPT], &clean);
    assert!(out.accepted(), "{}", out.text());
    let got = bed.postfix.wait_delivered(1, WAIT);
    assert_eq!(body_of(&got[0]), body_of(&clean), "body changed on the way");
}

/// Documents with macros are delivered with the rule in `X-Congvu-Policy` by
/// default (a docm, an OLE2 .xls, an ODF text with Basic, a docm inside a
/// zip); an ordinary docx, xlsx and odt are delivered untagged. With
/// `[rules.macro_document] action = "reject"` the same documents are refused
/// naming the file.
#[test]
fn macro_documents_are_tagged_by_default_and_refused_when_configured() {
    let macro_documents = [
        ("bao-cao.docm", "documents/macros.docm", "bao-cao.docm"),
        ("so-lieu.xls", "documents/macros.xls", "so-lieu.xls"),
        ("bien-ban.odt", "documents/macros.odt", "bien-ban.odt"),
        (
            "ho-so.zip",
            "documents/macros-in.zip",
            "ho-so.zip > macros.docm",
        ),
    ];
    let plain = ["plain.docx", "plain.xlsx", "plain.odt"];

    let tagging = bed("", false);
    let mut sent = 0;
    for (name, fixture_path, shown) in macro_documents {
        let msg = with_attachment(name, "application/octet-stream", &fixture(fixture_path));
        let out = tagging.postfix.send(SENDER, &[LOCAL_RCPT], &msg);
        assert!(out.accepted(), "{name}: {}", out.text());
        sent += 1;
        let got = tagging.postfix.wait_delivered(sent, WAIT);
        let tags = common::header_values(&got[sent - 1], "X-Congvu-Policy");
        assert_eq!(tags.len(), 1, "{name}: {tags:?}");
        assert!(tags[0].starts_with("macro_document ("), "{name}: {tags:?}");
        for step in shown.split(" > ") {
            assert!(tags[0].contains(&format!("\"{step}\"")), "{name}: {tags:?}");
        }
    }
    for name in plain {
        let msg = with_attachment(
            name,
            "application/octet-stream",
            &fixture(&format!("documents/{name}")),
        );
        let out = tagging.postfix.send(SENDER, &[LOCAL_RCPT], &msg);
        assert!(out.accepted(), "{name}: {}", out.text());
        sent += 1;
        let got = tagging.postfix.wait_delivered(sent, WAIT);
        let tags = common::header_values(&got[sent - 1], "X-Congvu-Policy");
        assert!(tags.is_empty(), "{name}: {tags:?}");
    }
    drop(tagging);

    let refusing = bed("[rules.macro_document]\naction = \"reject\"\n", false);
    for (name, fixture_path, shown) in macro_documents {
        let msg = with_attachment(name, "application/octet-stream", &fixture(fixture_path));
        let out = refusing.postfix.send(SENDER, &[LOCAL_RCPT], &msg);
        assert_eq!(out.code(), 550, "{name}: {}", out.text());
        assert!(
            out.text()
                .contains(&format!("Tai lieu \"{shown}\" chua macro")),
            "{name}: {}",
            out.text()
        );
    }
    refusing
        .postfix
        .assert_nothing_delivered(Duration::from_secs(1));
}
