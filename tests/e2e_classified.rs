//! Classified documents through a real Postfix (Điều 15 khoản 2): a stamped
//! document bound for a mailbox outside the state network lands in Postfix's
//! hold queue (the rule's default action, `postqueue -j` shows it held); the
//! same message between state mailboxes, and the false-positive document to
//! anyone, are delivered. `congvu-milter quarantine list` names the rule and
//! the document of the held message.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common;
use crate::common::mail::with_attachment;
use crate::common::postfix::{Postfix, PostfixOptions};
use crate::daemon_support::Daemon;

const SENDER: &str = "vanthu@bacgiang.gov.vn";
const WAIT: Duration = Duration::from_secs(30);

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/classified")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The queue entries `postqueue -j` lists for the instance, as JSON lines.
fn postqueue_json(postfix: &Postfix) -> String {
    let out = Command::new("postqueue")
        .arg("-c")
        .arg(postfix.dir())
        .arg("-j")
        .output()
        .expect("postqueue runs");
    assert!(
        out.status.success(),
        "postqueue -j: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn stamped_document_to_an_outside_mailbox_is_held() {
    // The shipped default: no [rules.classified] table in this policy.
    let daemon = Daemon::start("[clamav]\nenabled = false\n");
    let postfix = Postfix::start(PostfixOptions::with_milter(daemon.milter_socket()));

    let outside = ["canbo@bacgiang.gov.vn", "ban.be@gmail.com"];
    let msg = with_attachment(
        SENDER,
        outside[1],
        "ke-hoach.pdf",
        "application/pdf",
        &fixture("toi-mat.pdf"),
    );
    let out = postfix.send(SENDER, &outside, &msg);
    assert!(out.accepted(), "{}", out.text());
    let qid = out.queue_id().expect("queue id").to_owned();
    let held = common::poll(WAIT, || {
        let json = postqueue_json(&postfix);
        json.lines()
            .any(|l| {
                l.contains(&format!("\"queue_id\": \"{qid}\""))
                    && l.contains("\"queue_name\": \"hold\"")
            })
            .then_some(json)
    });
    assert!(
        held.is_some(),
        "message {qid} should be in the hold queue: {}",
        postqueue_json(&postfix)
    );

    // Between state mailboxes, and running text to anyone: delivered.
    let state = ["canbo@bacgiang.gov.vn", "vanthu@hanoi.gov.vn"];
    let out = postfix.send(SENDER, &state, &msg);
    assert!(out.accepted(), "{}", out.text());
    let plain = with_attachment(
        SENDER,
        outside[1],
        "luat.pdf",
        "application/pdf",
        &fixture("not-a-stamp.pdf"),
    );
    let out = postfix.send(SENDER, &outside, &plain);
    assert!(out.accepted(), "{}", out.text());
    let delivered = postfix.wait_delivered(2, WAIT);
    assert_eq!(
        delivered.len(),
        2,
        "{}",
        postfix.failure_report("two deliveries")
    );
    assert_eq!(postfix.queue_ids("hold"), std::slice::from_ref(&qid));

    // The operator finds it with the rule and the document that carries the stamp.
    let list = Command::new(env!("CARGO_BIN_EXE_congvu-milter"))
        .args(["quarantine", "list", "--json", "--config"])
        .arg(&daemon.policy_path)
        .arg("--postfix-config")
        .arg(postfix.dir())
        .output()
        .expect("congvu-milter quarantine list runs");
    let stdout = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.status.success(),
        "quarantine list: {}",
        String::from_utf8_lossy(&list.stderr)
    );
    let held: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert_eq!(held.len(), 1, "{stdout}");
    assert_eq!(held[0]["queue_id"], qid.as_str(), "{stdout}");
    assert_eq!(held[0]["rule"], "classified", "{stdout}");
    assert_eq!(held[0]["article"], "Dieu 15 khoan 2", "{stdout}");
    assert!(
        held[0]["file"]
            .as_str()
            .unwrap_or("")
            .contains("ke-hoach.pdf"),
        "{stdout}"
    );
}
