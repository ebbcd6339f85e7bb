//! The MIME walk and the attachment rules on whole messages: the fixtures in
//! fixtures/messages/ (built by make-messages.py), big messages built here, and
//! hostile structures that must return without a panic.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use congvu_milter::inspect::{Inspection, Signature, inspect_message};
use congvu_milter::policy::{LimitsSection, Policy};
use congvu_milter::rules::attachments::evaluate;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/messages")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn b64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = |i: usize| chunk.get(i).copied().unwrap_or(0) as u32;
        let n = b(0) << 16 | b(1) << 8 | b(2);
        for (k, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if k <= chunk.len() {
                out.push(ALPHABET[(n >> shift & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn inspect(raw: &[u8]) -> Inspection {
    inspect_message(raw, &LimitsSection::default())
}

/// (rule, file) of every violation.
fn violations(raw: &[u8]) -> Vec<(String, String)> {
    let inspection = inspect(raw);
    evaluate(&inspection, &Policy::default())
        .into_iter()
        .map(|v| {
            (
                v.rule.name.to_owned(),
                v.var("file").unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn expect(name: &str, expected: &[(&str, &str)]) {
    let got = violations(&fixture(name));
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(r, f)| (r.to_string(), f.to_string()))
        .collect();
    assert_eq!(got, expected, "{name}");
}

// --- must pass ----------------------------------------------------------------

#[test]
fn passing_fixtures_have_no_violations() {
    for name in [
        "pass-plain-text.eml",
        "pass-alternative-inline-image.eml",
        "pass-com-txt.eml",
        "pass-dmarc-report.eml",
        "pass-smime-signed.eml",
        "pass-pgp-inline-signed.eml",
    ] {
        expect(name, &[]);
    }
}

#[test]
fn plain_text_has_no_attachments() {
    let i = inspect(&fixture("pass-plain-text.eml"));
    assert!(i.files.is_empty());
    assert_eq!(i.attachments_size, 0);
    assert!(i.scan_parts.is_empty());
    assert!(i.problems.is_empty());
    assert_eq!(i.signed, None);
}

#[test]
fn inline_image_counts_and_body_alternatives_do_not() {
    let i = inspect(&fixture("pass-alternative-inline-image.eml"));
    assert_eq!(i.files.len(), 1);
    assert_eq!(i.files[0].name.as_deref(), Some("logo.png"));
    let png_size = 8 + 256 * 8;
    assert_eq!(i.files[0].size, png_size);
    assert_eq!(i.attachments_size, png_size);
    assert_eq!(i.scan_parts.len(), 1);
    assert_eq!(i.scan_parts[0].data.len() as u64, png_size);
    // root, text, related, html, image
    assert_eq!(i.parts, 5);
}

#[test]
fn dmarc_report_is_a_zip_not_a_com() {
    let i = inspect(&fixture("pass-dmarc-report.eml"));
    assert_eq!(
        i.files[0].name.as_deref(),
        Some("yahoo.com!bacgiang.gov.vn!1700000000!1700086400.zip")
    );
}

#[test]
fn signatures_are_recognised() {
    assert_eq!(
        inspect(&fixture("pass-smime-signed.eml")).signed,
        Some(Signature::Smime)
    );
    assert_eq!(
        inspect(&fixture("pass-pgp-inline-signed.eml")).signed,
        Some(Signature::OpenPgp)
    );
    let pgp_mime = b"Content-Type: multipart/signed; protocol=\"application/pgp-signature\"; boundary=b\r\n\r\n--b\r\n\r\nhi\r\n--b\r\nContent-Type: application/pgp-signature\r\n\r\nsig\r\n--b--\r\n";
    assert_eq!(inspect(pgp_mime).signed, Some(Signature::OpenPgp));
    let opaque = b"Content-Type: application/pkcs7-mime; smime-type=signed-data; name=smime.p7m\r\nContent-Transfer-Encoding: base64\r\n\r\nMIIB\r\n";
    assert_eq!(inspect(opaque).signed, Some(Signature::Smime));
}

// --- must fail ------------------------------------------------------------------

#[test]
fn executable_by_double_extension() {
    expect(
        "fail-double-extension.eml",
        &[("executable", "hoso.pdf.exe")],
    );
}

#[test]
fn executable_by_name_with_trailing_dot() {
    expect("fail-trailing-dot.eml", &[("executable", "A.EXE.")]);
}

#[test]
fn right_to_left_override_is_deceptive() {
    expect(
        "fail-rtlo-name.eml",
        &[
            ("deceptive_name", "hoso<U+202E>fdp.exe"),
            ("executable", "hoso<U+202E>fdp.exe"),
        ],
    );
}

#[test]
fn rfc2231_continuation_name() {
    expect("fail-rfc2231-name.eml", &[("executable", "ho so.exe")]);
}

#[test]
fn rfc2047_encoded_name() {
    expect("fail-rfc2047-name.eml", &[("executable", "hồ sơ.exe")]);
}

#[test]
fn executable_by_content_under_a_pdf_name() {
    expect("fail-exe-renamed-pdf.eml", &[("executable", "hoso.pdf")]);
    let v = evaluate(
        &inspect(&fixture("fail-exe-renamed-pdf.eml")),
        &Policy::default(),
    );
    assert_eq!(v[0].detail, "\"hoso.pdf\": PE executable");
    assert_eq!(v[0].rule.article, "Điều 4 khoản 7");
}

#[test]
fn executable_four_attached_messages_deep() {
    expect(
        "fail-nested-4-deep.eml",
        &[("executable", "level2.eml > … > setup.exe")],
    );
    let i = inspect(&fixture("fail-nested-4-deep.eml"));
    let exe = i
        .files
        .iter()
        .find(|f| f.name.as_deref() == Some("setup.exe"))
        .unwrap();
    assert_eq!(
        exe.path,
        [
            "level2.eml",
            "level3.eml",
            "level4.eml",
            "level5.eml",
            "setup.exe"
        ]
    );
    // Only the attached message counts toward the size, once.
    let top = i.files.iter().find(|f| f.path.len() == 1).unwrap();
    assert_eq!(i.attachments_size, top.size);
    // The scanner gets decoded leaves of the attached messages, the exe included.
    assert!(i.scan_parts.iter().any(|p| p.data.starts_with(b"MZ")));
}

#[test]
fn uuencoded_executable_in_the_body() {
    expect("fail-uuencoded-exe.eml", &[("executable", "setup.exe")]);
    let i = inspect(&fixture("fail-uuencoded-exe.eml"));
    assert!(
        i.attachments_size > 0,
        "a uuencoded file counts as an attachment"
    );
}

#[test]
fn executable_inside_tnef() {
    expect(
        "fail-tnef-winmail.eml",
        &[("executable", "winmail.dat > cai-dat.exe")],
    );
}

#[test]
fn missing_closing_boundary() {
    expect(
        "fail-no-closing-boundary.eml",
        &[("executable", "setup.exe")],
    );
}

#[test]
fn broken_base64_decodes_as_far_as_it_goes() {
    expect("fail-broken-base64.eml", &[("executable", "hoso.doc")]);
}

#[test]
fn unknown_charsets() {
    expect("fail-bad-charset.eml", &[("executable", "setup.exe")]);
}

#[test]

fn executable_inside_zip() {
    expect(
        "fail-exe-in-zip.eml",
        &[("executable", "ho so.zip > ho so/setup.exe")],
    );
}

// --- size (Điều 10) ---------------------------------------------------------------

/// A message with attachments of these decoded sizes (deterministic bytes).
fn message_with_attachments(sizes: &[usize]) -> Vec<u8> {
    let mut m = b"From: a@x.test\r\nSubject: big\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"=_big\"\r\n\r\n--=_big\r\nContent-Type: text/plain\r\n\r\nbody text is not counted\r\n".to_vec();
    for (i, &size) in sizes.iter().enumerate() {
        let data: Vec<u8> = (0..size).map(|j| (j * 7 + i) as u8).collect();
        let encoded = b64(&data);
        m.extend_from_slice(
            format!(
                "--=_big\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"data{i}.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            )
            .as_bytes(),
        );
        for line in encoded.as_bytes().chunks(76) {
            m.extend_from_slice(line);
            m.extend_from_slice(b"\r\n");
        }
    }
    m.extend_from_slice(b"--=_big--\r\n");
    m
}

const MIB: usize = 1024 * 1024;

#[test]
fn attachments_over_15_mib_fail() {
    let raw = message_with_attachments(&[8 * MIB, 8 * MIB]);
    let i = inspect(&raw);
    assert_eq!(i.attachments_size, 16 * MIB as u64);
    let v = evaluate(&i, &Policy::default());
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].rule.name, "attachment_size");
    assert_eq!(v[0].rule.article, "Điều 10");
    assert_eq!(v[0].var("size"), Some("16 MiB"));
    assert_eq!(v[0].var("limit"), Some("15 MiB"));
}

#[test]
fn attachments_of_14_mib_pass() {
    let raw = message_with_attachments(&[14 * MIB]);
    let i = inspect(&raw);
    assert_eq!(i.attachments_size, 14 * MIB as u64);
    assert!(evaluate(&i, &Policy::default()).is_empty());
}

#[test]
fn attached_message_counts_once() {
    let inner = message_with_attachments(&[6 * MIB]);
    let mut raw = b"From: a@x.test\r\nContent-Type: multipart/mixed; boundary=outer\r\n\r\n--outer\r\nContent-Type: text/plain\r\n\r\nfwd\r\n--outer\r\nContent-Type: message/rfc822\r\n\r\n".to_vec();
    raw.extend_from_slice(&inner);
    raw.extend_from_slice(b"\r\n--outer--\r\n");
    let i = inspect(&raw);
    assert_eq!(i.attachments_size, inner.len() as u64);
    assert!(i.attachments_size < 9 * MIB as u64);
}

// --- hostile --------------------------------------------------------------------

fn quick(raw: &[u8]) -> Inspection {
    let start = Instant::now();
    let i = inspect(raw);
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "took {:?}",
        start.elapsed()
    );
    i
}

#[test]
fn ten_thousand_parts_hit_the_limit() {
    let mut raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n".to_vec();
    for i in 0..10_000 {
        raw.extend_from_slice(
            format!(
                "--b\r\nContent-Type: application/octet-stream; name=\"f{i}.txt\"\r\n\r\nx\r\n"
            )
            .as_bytes(),
        );
    }
    raw.extend_from_slice(b"--b--\r\n");
    let i = quick(&raw);
    assert_eq!(i.parts, 10_000);
    assert_eq!(i.problems, ["more than 10000 MIME parts"]);
    let v = evaluate(&i, &Policy::default());
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].rule.name, "uninspectable");
    assert_eq!(v[0].var("limit"), Some("more than 10000 MIME parts"));
}

fn nested_messages(levels: usize, with_multipart: bool) -> Vec<u8> {
    let mut raw = Vec::new();
    for n in 0..levels {
        if with_multipart {
            raw.extend_from_slice(
                format!("Subject: {n}\r\nContent-Type: multipart/mixed; boundary=\"l{n}\"\r\n\r\n--l{n}\r\nContent-Type: message/rfc822\r\n\r\n").as_bytes(),
            );
        } else {
            raw.extend_from_slice(b"Subject: s\r\nContent-Type: message/rfc822\r\n\r\n");
        }
    }
    raw.extend_from_slice(
        b"Content-Type: application/octet-stream; name=\"deep.exe\"\r\n\r\nMZ\r\n",
    );
    if with_multipart {
        for n in (0..levels).rev() {
            raw.extend_from_slice(format!("\r\n--l{n}--\r\n").as_bytes());
        }
    }
    raw
}

#[test]
fn hundred_deep_message_nesting_is_inspected() {
    let i = quick(&nested_messages(100, true));
    assert!(i.problems.is_empty(), "{:?}", i.problems);
    let exe = i
        .files
        .iter()
        .find(|f| f.name.as_deref() == Some("deep.exe"))
        .unwrap();
    assert_eq!(exe.path.len(), 101);
    let v = evaluate(&i, &Policy::default());
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].var("file"), Some("(attached message) > … > deep.exe"));
}

#[test]
fn nesting_past_the_limit_is_uninspectable() {
    let i = quick(&nested_messages(101, false));
    assert_eq!(i.problems, ["attached messages nested deeper than 100"]);
    // 200,000 levels: this aborts mail-parser 0.11 (stack overflow on drop).
    let i = quick(&nested_messages(200_000, false));
    assert_eq!(i.problems, ["attached messages nested deeper than 100"]);
}

#[test]
fn deep_multipart_nesting_is_bounded() {
    let mut raw = Vec::new();
    for n in 0..5000 {
        raw.extend_from_slice(
            format!("Content-Type: multipart/mixed; boundary=\"m{n}\"\r\n\r\n--m{n}\r\n")
                .as_bytes(),
        );
    }
    raw.extend_from_slice(b"\r\nx\r\n");
    let i = quick(&raw);
    assert_eq!(i.problems, ["MIME structure nested deeper than 232 levels"]);
}

#[test]
fn encoded_nested_messages_stay_small() {
    // A base64 message/rfc822 holding 3,000 inline levels: mail-parser 0.11 copies
    // the decoded buffer once per level (690 MB for this 300 KB message).
    let mut inner = b"Subject: s\r\n".to_vec();
    for _ in 0..3000 {
        inner.extend_from_slice(b"Subject: s\r\nContent-Type: message/rfc822\r\n\r\n");
    }
    inner.extend_from_slice(b"Content-Type: text/plain\r\n\r\n");
    inner.extend(std::iter::repeat_n(b'x', 100_000));
    let encoded = b64(&inner);
    let mut raw =
        b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n".to_vec();
    raw.extend_from_slice(encoded.as_bytes());
    let i = quick(&raw);
    assert_eq!(i.problems, ["attached messages nested deeper than 100"]);
}

#[test]
fn one_megabyte_header_line() {
    let mut raw = b"Subject: ".to_vec();
    raw.extend(std::iter::repeat_n(b'a', 1024 * 1024));
    raw.extend_from_slice(b"\r\nContent-Type: multipart/mixed; boundary=b; name=\"");
    raw.extend(std::iter::repeat_n(b'n', 1024 * 1024));
    raw.extend_from_slice(b".exe\"\r\n\r\n--b\r\nContent-Disposition: attachment; filename=\"");
    raw.extend(std::iter::repeat_n(b'=', 1024 * 1024));
    raw.extend_from_slice(b".exe\"\r\n\r\nMZ\r\n--b--\r\n");
    let i = quick(&raw);
    assert_eq!(i.files.len(), 1);
    let v = evaluate(&i, &Policy::default());
    assert_eq!(v[0].rule.name, "executable");
}

#[test]
fn garbage_never_panics() {
    let cases: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"\r\n\r\n".to_vec(),
        b"no headers at all".to_vec(),
        b"Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n".to_vec(),
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b".to_vec(),
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b--".to_vec(),
        b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!!".to_vec(),
        b"Content-Type: application/ms-tnef\r\n\r\nx\x9f>\"\x01\x00\x02\x10\x80\x01\x00\xff\xff\xff\xff".to_vec(),
        b"Content-Type: text/plain\r\n\r\nbegin 644 a.exe\r\nM\r\n".to_vec(),
        b"Content-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 a.exe\r\n".to_vec(),
        b"Content-Type: ;;;;==\"\r\nContent-Disposition: attachment; filename*0*=''%; filename*99999999999=x\r\n\r\n".to_vec(),
        (0..=255u8).cycle().take(100_000).collect(),
    ];
    for raw in cases {
        let i = quick(&raw);
        let _ = evaluate(&i, &Policy::default());
    }
}

#[test]
fn replies_name_the_file() {
    let policy = Policy::default();
    let msg = congvu_milter::message::Message::default();
    for (name, start) in [
        (
            "fail-rfc2231-name.eml",
            "550 5.7.1 Tep dinh kem \"ho so.exe\" la tep thuc thi",
        ),
        (
            "fail-tnef-winmail.eml",
            "550 5.7.1 Tep dinh kem \"winmail.dat > cai-dat.exe\"",
        ),
        (
            "fail-rtlo-name.eml",
            "550 5.7.1 Ten tep \"hoso<U+202E>fdp.exe\" chua ky tu dao chieu",
        ),
    ] {
        let v = evaluate(&inspect(&fixture(name)), &policy);
        let reply = policy.judge(&v[0], &msg).unwrap().reply.unwrap().render();
        assert!(reply.starts_with(start), "{name}: {reply}");
    }
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    const FRAGMENTS: &[&[u8]] = &[
        b"Content-Type: multipart/mixed; boundary=b\r\n",
        b"Content-Type: multipart/digest; boundary=\"b\"\r\n",
        b"Content-Type: message/rfc822\r\n",
        b"Content-Type: application/ms-tnef\r\n",
        b"Content-Type: text/plain; name*0*=utf-8''a%2; name*1=.exe\r\n",
        b"Content-Disposition: attachment; filename=\"=?utf-8?B?YS5leGU=?=\"\r\n",
        b"Content-Transfer-Encoding: base64\r\n",
        b"Content-Transfer-Encoding: quoted-printable\r\n",
        b"Content-Transfer-Encoding: x-uuencode\r\n",
        b" folded\r\n",
        b"\r\n",
        b"\n",
        b"--b\r\n",
        b"--b--\r\n",
        b"TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAA\r\n",
        b"begin 644 x.exe\r\n#86)C\r\n`\r\nend\r\n",
        b"x\x9f>\"\x01\x00\x02\x02\x90\x06\x00\x0e\x00\x00\x00",
        b"=?utf-8?Q?=E1=BB?=",
        b"From x Mon\r\n",
        b"MZ",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn never_panics(
            picks in prop::collection::vec(0..FRAGMENTS.len(), 0..80),
            noise in prop::collection::vec(any::<u8>(), 0..32),
        ) {
            let mut raw: Vec<u8> = picks.iter().flat_map(|&i| FRAGMENTS[i].iter().copied()).collect();
            raw.extend(noise);
            let limits = LimitsSection {
                max_mime_parts: 50,
                max_message_depth: 5,
                ..Default::default()
            };
            let i = inspect_message(&raw, &limits);
            prop_assert!(i.parts <= 50);
            let _ = evaluate(&i, &Policy::default());
        }
    }
}

/// A message of named base64 attachments.
fn message_with_files(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut m = b"From: a@x.test\r\nSubject: files\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"=_f\"\r\n\r\n".to_vec();
    for (name, data) in files {
        m.extend_from_slice(
            format!(
                "--=_f\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            )
            .as_bytes(),
        );
        for line in b64(data).as_bytes().chunks(76) {
            m.extend_from_slice(line);
            m.extend_from_slice(b"\r\n");
        }
    }
    m.extend_from_slice(b"--=_f--\r\n");
    m
}

#[test]
fn a_tagged_rule_never_hides_another_rules_refusal() {
    use congvu_milter::message::Message;
    use congvu_milter::pipeline::decide;
    use congvu_milter::policy::LoadedPolicy;
    use congvu_milter::verdict::{Action, MAX_REASONS};

    let archives = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/archives");
    let encrypted = std::fs::read(archives.join("zipcrypto.zip")).unwrap();
    let exe = std::fs::read(archives.join("clam.exe")).unwrap();
    let mut files: Vec<(String, Vec<u8>)> = (0..24)
        .map(|i| (format!("hoso-{i}.zip"), encrypted.clone()))
        .collect();
    files.push(("setup.exe".into(), exe));
    let msg = Message::from_eml(&message_with_files(&files));
    let loaded = LoadedPolicy::from_text(
        "[clamav]\nenabled = false\n[rules.encrypted_archive]\naction = \"tag\"\n",
        std::path::Path::new("tag.toml"),
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let verdict = runtime.block_on(decide(&msg, &loaded.policy, None)).verdict;
    assert_eq!(verdict.action, Action::Reject, "{verdict:?}");
    let reply = verdict.reply.unwrap().render();
    assert!(reply.contains("setup.exe"), "{reply}");
    assert_eq!(verdict.reasons.len(), MAX_REASONS);
    assert!(verdict.reasons.iter().any(|r| r.rule == "executable"));
}

#[test]
fn forged_policy_tags_are_deleted_and_ours_added_after() {
    use congvu_milter::message::Message;
    use congvu_milter::pipeline::decide;
    use congvu_milter::policy::LoadedPolicy;
    use congvu_milter::verdict::{Action, HeaderEdit};

    let raw = b"From: a@x.test\r\nX-Congvu-Policy: none (checked)\r\nSubject: s\r\nx-congvu-policy: none\r\n\r\nhi\r\n";
    let clean = Message::from_eml(raw);
    let policy = LoadedPolicy::from_text(
        "[clamav]\nenabled = false\n",
        std::path::Path::new("p.toml"),
    )
    .unwrap()
    .policy;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let verdict = runtime.block_on(decide(&clean, &policy, None)).verdict;
    assert_eq!(verdict.action, Action::Accept);
    let deleted = |index| HeaderEdit::Delete {
        name: "X-Congvu-Policy".into(),
        index,
    };
    assert_eq!(verdict.headers, vec![deleted(2), deleted(1)]);

    // A tagged message: the forged tags go first, then ours is added.
    let files = vec![("setup.exe".to_string(), b"MZ".to_vec())];
    let mut tagged = b"X-Congvu-Policy: none\r\n".to_vec();
    tagged.extend(message_with_files(&files));
    let monitor = LoadedPolicy::from_text(
        "mode = \"monitor\"\n[clamav]\nenabled = false\n",
        std::path::Path::new("m.toml"),
    )
    .unwrap()
    .policy;
    let verdict = runtime
        .block_on(decide(&Message::from_eml(&tagged), &monitor, None))
        .verdict;
    assert_eq!(verdict.action, Action::Accept);
    assert_eq!(verdict.headers[0], deleted(1));
    assert!(
        matches!(&verdict.headers[1], HeaderEdit::Add { name, value } if name == "X-Congvu-Policy" && value.starts_with("executable")),
        "{:?}",
        verdict.headers
    );
}
