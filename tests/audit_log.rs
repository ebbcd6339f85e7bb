//! The audit record as the real daemon writes it: through a real Postfix, one
//! line per message for accepted, refused and deferred mail, with Postfix's queue
//! id, the Message-ID and the SHA-256 of each attachment and archive entry equal
//! to what `sha256sum` gives for the saved file; and the SASL login Postfix
//! sends in `{auth_authen}` (driven over the milter socket: the test bed's
//! Postfix has no SASL).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::common;
use crate::common::postfix::{Postfix, PostfixOptions};
use crate::daemon_support::{Daemon, assert_delivered};
use congvu_milter::message::Envelope;
use congvu_milter::milter::client::{Offer, StageMacros};

const SENDER: &str = "sender@example.org";
const LOCAL_RCPT: &str = "user@bacgiang.gov.vn";
const WAIT: Duration = Duration::from_secs(30);

fn audit_policy(dir: &Path) -> (PathBuf, String) {
    let file = dir.join("audit.jsonl");
    let policy = format!(
        "[audit]\nenabled = true\nfile = \"{}\"\n\n[rules.encrypted_archive]\naction = \"tempfail\"\n",
        file.display()
    );
    (file, policy)
}

pub(crate) fn fixture(rel: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/archives")
        .join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The records in `file` once there are `n` of them.
fn records(file: &Path, n: usize) -> Vec<Value> {
    common::poll(WAIT, || {
        let text = std::fs::read_to_string(file).ok()?;
        (text.lines().count() >= n).then_some(text)
    })
    .unwrap_or_else(|| panic!("fewer than {n} audit records in {}", file.display()))
    .lines()
    .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
    .collect()
}

/// Each entry of a zip with its bytes, as `unzip` would save them.
fn zip_entries(zip: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    (0..archive.len())
        .filter_map(|i| {
            let mut entry = archive.by_index(i).unwrap();
            if entry.is_dir() {
                return None;
            }
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            Some((entry.name().unwrap().to_string(), data))
        })
        .collect()
}

#[test]
fn every_message_through_postfix_gets_one_record_with_the_hashes_of_its_files() {
    let dir = common::temp_dir("audit");
    let (file, policy) = audit_policy(dir.path());
    let daemon = Daemon::start(&policy);
    let postfix = Postfix::start(PostfixOptions::with_milter(daemon.milter_socket()));

    let plain = fixture("plain.zip");
    let exe = fixture("exe-in.zip");
    let encrypted = fixture("zipcrypto.zip");
    let send = |name: &str, data: &[u8]| {
        let raw = common::mail::with_attachment(SENDER, LOCAL_RCPT, name, "application/zip", data);
        postfix.send(SENDER, &[LOCAL_RCPT], &raw)
    };
    let accepted = send("plain.zip", &plain);
    assert!(accepted.accepted(), "{}", accepted.text());
    let rejected = send("ho so.zip", &exe);
    assert_eq!(rejected.code(), 550, "{}", rejected.text());
    let deferred = send("mat.zip", &encrypted);
    assert_eq!(deferred.code(), 451, "{}", deferred.text());

    let got = records(&file, 3);
    assert_eq!(got.len(), 3, "one record per message: {got:#?}");
    let expected = [
        ("accept", "plain.zip", &plain, &accepted),
        ("reject", "ho so.zip", &exe, &rejected),
        ("tempfail", "mat.zip", &encrypted, &deferred),
    ];
    let log = postfix.log();
    for (record, (action, name, data, smtp)) in got.iter().zip(expected) {
        assert_eq!(record["audit"], 1);
        assert_eq!(record["action"], action, "{record:#}");
        assert_eq!(record["sender"], SENDER);
        assert_eq!(
            record["recipients"],
            serde_json::json!([{"address": LOCAL_RCPT, "local": true}])
        );
        assert_eq!(record["direction"], "incoming");
        assert_eq!(record["client_addr"], "127.0.0.1");
        assert_eq!(
            record["message_id"],
            format!("<test-{}@example.org>", data.len())
        );
        let queue_id = record["queue_id"].as_str().expect("a queue id");
        assert!(
            log.contains(&format!("{queue_id}: ")),
            "queue id {queue_id} not in Postfix's log"
        );
        if let Some(q) = smtp.queue_id() {
            assert_eq!(q, queue_id);
        }
        let time = record["time"].as_str().unwrap();
        assert!(time.ends_with('Z') && time.len() == 24, "{time}");

        // The attachment: what sha256sum gives for the saved file.
        let files = record["files"].as_array().unwrap();
        assert_eq!(files[0]["path"], serde_json::json!([name]));
        assert_eq!(files[0]["size"], data.len());
        assert_eq!(files[0]["type"], "application/zip");
        assert_eq!(files[0]["sha256"], sha256_hex(data));
        assert_eq!(record["files_omitted"], 0);
        assert_eq!(record["signed_documents"], serde_json::json!([]));
    }

    // Entries: each one's hash is that of its unpacked bytes.
    for (record, zip) in got.iter().zip([&plain, &exe]) {
        let files = &record["files"].as_array().unwrap()[1..];
        let entries = zip_entries(zip);
        assert_eq!(files.len(), entries.len(), "{record:#}");
        for (listed, (entry, bytes)) in files.iter().zip(&entries) {
            assert_eq!(listed["path"][1], entry.as_str());
            assert_eq!(listed["sha256"], sha256_hex(bytes), "{entry}");
        }
    }
    let exe_entry = got[1]["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"][1] == "clam.exe")
        .expect("the executable is listed");
    assert_eq!(exe_entry["type"], "application/x-msdownload");
    assert_eq!(got[1]["violations"][0]["rule"], "executable");
    assert_eq!(got[1]["violations"][0]["path"], exe_entry["path"]);
    assert_eq!(exe_entry["path"][0], "ho so.zip");
    assert!(got[1]["reply"].as_str().unwrap().starts_with("550 "));
    assert_eq!(got[0]["reply"], Value::Null);
    // An encrypted entry's bytes were not read: no hash.
    assert_eq!(got[2]["files"][1]["sha256"], Value::Null, "{:#}", got[2]);
    assert_eq!(got[2]["violations"][0]["rule"], "encrypted_archive");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sasl_login_and_instance_postfix_sends_are_recorded() {
    let dir = common::temp_dir("audit-sasl");
    let (file, policy) = audit_policy(dir.path());
    let daemon = Daemon::start(&format!("mode = \"monitor\"\n{policy}"));
    let mut c = daemon.milter_client(Offer::POSTFIX_3_7).await;
    let raw = common::mail::with_attachment(
        "ngocnt_stttt@bacgiang.gov.vn",
        "a@gmail.com",
        "ho so.zip",
        "application/zip",
        &fixture("exe-in.zip"),
    );
    let envelope = Envelope {
        sender: "ngocnt_stttt@bacgiang.gov.vn".into(),
        sender_params: Vec::new(),
        recipients: vec!["a@gmail.com".into()],
    };
    let macros = StageMacros::new()
        .with(b'M', "{auth_authen}", "ngocnt_stttt")
        .with(b'M', "{daemon_name}", "submission")
        .with(b'T', "i", "4AuditQ1")
        .with(b'E', "i", "4AuditQ1");
    let out = c.send_message(&envelope, &raw, &macros).await.unwrap();
    assert_delivered(&out.reply);
    let got = records(&file, 1);
    let record = &got[0];
    assert_eq!(record["sasl_login"], "ngocnt_stttt", "{record:#}");
    assert_eq!(record["instance"], "submission");
    assert_eq!(record["queue_id"], "4AuditQ1");
    assert_eq!(record["client_addr"], "192.0.2.7");
    assert_eq!(record["direction"], "outgoing");
    assert_eq!(record["recipients"][0]["local"], false);
    // Monitor mode: delivered with a tag, and what enforcing would have done.
    assert_eq!(record["action"], "tag");
    assert_eq!(record["monitor_action"], "reject");
}

#[tokio::test(flavor = "multi_thread")]
async fn after_logrotate_moves_the_file_a_reload_starts_a_new_one() {
    let dir = common::temp_dir("audit-rotate");
    let (file, policy) = audit_policy(dir.path());
    let daemon = Daemon::start(&policy);
    let mut c = daemon.milter_client(Offer::POSTFIX_3_7).await;
    let envelope = Envelope {
        sender: SENDER.into(),
        sender_params: Vec::new(),
        recipients: vec![LOCAL_RCPT.into()],
    };
    let raw = common::mail::crlf("From: a@example.org\nSubject: x\n\nhello\n");
    let send_as = |qid: &'static str| StageMacros::new().with(b'T', "i", qid).with(b'E', "i", qid);
    let out = c
        .send_message(&envelope, &raw, &send_as("4Before"))
        .await
        .unwrap();
    assert_delivered(&out.reply);
    records(&file, 1);
    let rotated = dir.path().join("audit.jsonl.1");
    std::fs::rename(&file, &rotated).unwrap();
    assert!(daemon.reload_raw());
    let out = c
        .send_message(&envelope, &raw, &send_as("4After"))
        .await
        .unwrap();
    assert_delivered(&out.reply);
    let new = records(&file, 1);
    let old = records(&rotated, 1);
    assert_eq!((old.len(), new.len()), (1, 1));
    assert_eq!(old[0]["queue_id"], "4Before");
    assert_eq!(new[0]["queue_id"], "4After");
}
