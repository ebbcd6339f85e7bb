//! The metrics as Prometheus sees them: known messages through a real Postfix
//! move each counter by exactly what they should, and `/readyz` follows clamd
//! going away and coming back.

use std::path::Path;
use std::time::Duration;

use crate::common;
use crate::common::clamd::{Clamd, ClamdOptions, eicar};
use crate::common::metric_value as value;
use crate::common::postfix::{Postfix, PostfixOptions};
use crate::daemon_support::Daemon;

const SENDER: &str = "sender@example.org";
const RCPT: &str = "user@bacgiang.gov.vn";

fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(rel),
    )
    .unwrap()
}

fn attach(name: &str, data: &[u8]) -> Vec<u8> {
    common::mail::with_attachment(SENDER, RCPT, name, "application/octet-stream", data)
}

/// Asserts that each series moved by exactly its expected amount.
fn assert_moved(delta: &dyn Fn(&str) -> f64, expect: &[(&str, f64)], after: &str) {
    let wrong: Vec<String> = expect
        .iter()
        .filter(|(s, want)| (delta(s) - want).abs() > f64::EPSILON)
        .map(|(s, want)| format!("{s}: moved by {}, expected {want}", delta(s)))
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}\n{after}");
}

#[test]
fn counters_move_by_exactly_what_the_messages_cause_and_readyz_follows_clamd() {
    let mut clamd = Clamd::start(ClamdOptions::default());
    let endpoint = format!("unix:{}", clamd.socket_path().display());
    let daemon = Daemon::start(&format!(
        "[clamav]\nenabled = true\nendpoints = [\"{endpoint}\"]\nprobe_interval = \"1s\"\n"
    ));
    let postfix = Postfix::start(PostfixOptions::with_milter(daemon.milter_socket()));
    let (_, before) = daemon.http_get("/metrics");
    assert_eq!(daemon.http_get("/readyz").0, 200);

    let send = |raw: &[u8], from: &str| postfix.send(from, &[RCPT], raw).code();
    // 1. A clean attachment: accepted, one clean scan.
    assert_eq!(send(&attach("bao-cao.txt", b"so lieu\r\n"), SENDER), 250);
    // 2. An executable: refused by the cheap rules, never sent to clamd.
    assert_eq!(
        send(&fixture("messages/fail-double-extension.eml"), SENDER),
        550
    );
    // 3. EICAR: refused by clamd.
    assert_eq!(send(&attach("ghi-chu.txt", &eicar()), SENDER), 554);
    // 4. A ZipCrypto archive: refused as encrypted.
    assert_eq!(
        send(
            &attach("mat-khau.zip", &fixture("archives/zipcrypto.zip")),
            SENDER
        ),
        550
    );
    // 5. Gmail auto-forwarding into the province.
    let fwd = b"X-Forwarded-To: user@bacgiang.gov.vn\r\nX-Forwarded-For: someone@gmail.com user@bacgiang.gov.vn\r\nFrom: friend@example.org\r\nTo: someone@gmail.com\r\nSubject: hi\r\n\r\nhi\r\n";
    assert_eq!(
        send(fwd, "someone+caf_=user=bacgiang.gov.vn@gmail.com"),
        550
    );
    // 6. An S/MIME-signed message: accepted and counted as signed.
    assert_eq!(
        send(&fixture("messages/pass-smime-signed.eml"), SENDER),
        250
    );

    let (_, after) = daemon.http_get("/metrics");
    let delta = |series: &str| value(&after, series) - value(&before, series);
    let expect = [
        ("congvu_milter_messages_total{action=\"accept\"}", 2.0),
        ("congvu_milter_messages_total{action=\"reject\"}", 4.0),
        ("congvu_milter_messages_total{action=\"tempfail\"}", 0.0),
        (
            "congvu_milter_verdicts_total{action=\"reject\",article=\"Điều 4 khoản 7\",rule=\"executable\"}",
            1.0,
        ),
        (
            "congvu_milter_verdicts_total{action=\"reject\",article=\"Điều 4 khoản 7\",rule=\"encrypted_archive\"}",
            1.0,
        ),
        (
            "congvu_milter_verdicts_total{action=\"reject\",article=\"Điều 4 khoản 6\",rule=\"virus\"}",
            1.0,
        ),
        (
            "congvu_milter_verdicts_total{action=\"reject\",article=\"Điều 4 khoản 4\",rule=\"forwarding\"}",
            1.0,
        ),
        (
            "congvu_milter_encrypted_archives_total{format=\"zip\"}",
            1.0,
        ),
        ("congvu_milter_signed_messages_total{kind=\"smime\"}", 1.0),
        (
            "congvu_milter_forwarding_blocks_total{direction=\"inbound\",public_provider=\"yes\",signal=\"gmail_caf_sender\"}",
            1.0,
        ),
        (
            &format!(
                "congvu_milter_clamd_scans_total{{endpoint=\"{endpoint}\",result=\"infected\"}}"
            ),
            1.0,
        ),
        (
            "congvu_milter_attachments_total{type=\"executable_pe\"}",
            1.0,
        ),
        ("congvu_milter_decision_duration_seconds_count", 6.0),
    ];
    assert_moved(&delta, &expect, &after);
    // The clean attachment and the S/MIME parts were scanned clean; nothing else.
    assert!(
        delta(&format!(
            "congvu_milter_clamd_scans_total{{endpoint=\"{endpoint}\",result=\"clean\"}}"
        )) >= 2.0
    );

    // clamd goes away: not ready; back: ready.
    clamd.stop();
    let unready = common::poll(Duration::from_secs(15), || {
        (daemon.http_get("/readyz").0 == 503).then_some(())
    });
    assert!(
        unready.is_some(),
        "/readyz must turn 503 when clamd is down"
    );
    let (_, m) = daemon.http_get("/metrics");
    assert_eq!(
        value(
            &m,
            &format!("congvu_milter_clamd_endpoint_up{{endpoint=\"{endpoint}\"}}")
        ),
        0.0
    );
    clamd.restart();
    let ready = common::poll(Duration::from_secs(15), || {
        (daemon.http_get("/readyz").0 == 200).then_some(())
    });
    assert!(ready.is_some(), "/readyz must turn 200 when clamd is back");
    assert_eq!(daemon.http_get("/healthz").0, 200);
}

/// Signed documents are counted by format through the daemon, each where it
/// sits (an attachment, or inside a zip); a plain document and a signed
/// message's absence move nothing; a macro document is counted under its rule.
#[test]
fn signed_documents_are_counted_by_format() {
    let daemon = Daemon::start("[clamav]\nenabled = false\n");
    let postfix = Postfix::start(PostfixOptions::with_milter(daemon.milter_socket()));
    let (_, before) = daemon.http_get("/metrics");
    for (name, rel) in [
        ("quyet-dinh.pdf", "documents/signed.pdf"),
        ("cong-van.docx", "documents/signed.docx"),
        ("to-trinh.odt", "documents/signed.odt"),
        ("bien-ban.docx", "documents/plain.docx"),
        ("bien-ban.pdf", "documents/plain.pdf"),
        ("so-lieu.xlsm", "documents/macros.xlsm"),
    ] {
        let out = postfix.send(SENDER, &[RCPT], &attach(name, &fixture(rel)));
        assert_eq!(out.code(), 250, "{name}: {}", out.text());
    }
    let (_, after) = daemon.http_get("/metrics");
    let delta = |series: &str| value(&after, series) - value(&before, series);
    let expect = [
        ("congvu_milter_signed_documents_total{format=\"pdf\"}", 1.0),
        (
            "congvu_milter_signed_documents_total{format=\"ooxml\"}",
            1.0,
        ),
        ("congvu_milter_signed_documents_total{format=\"odf\"}", 1.0),
        ("congvu_milter_signed_messages_total{kind=\"smime\"}", 0.0),
        (
            "congvu_milter_verdicts_total{action=\"accept\",article=\"Điều 4 khoản 6\",rule=\"macro_document\"}",
            1.0,
        ),
        ("congvu_milter_messages_total{action=\"accept\"}", 6.0),
    ];
    assert_moved(&delta, &expect, &after);
}
