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
    rules_and_files(&inspect(raw))
}

/// (rule, file) of every violation the attachment rules find in `inspection`.
pub(crate) fn rules_and_files(inspection: &Inspection) -> Vec<(String, String)> {
    evaluate(inspection, &Policy::default())
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
fn multipart_whose_boundary_matches_no_delimiter_is_walked_by_the_delimiters_it_has() {
    // The exe under a PDF's name, found by content once the parts are walked.
    expect("fail-boundary-mismatch.eml", &[("executable", "hoso.pdf")]);
}

#[test]
fn multipart_without_any_delimiter_is_read_as_text() {
    expect(
        "fail-multipart-no-delimiter.eml",
        &[("executable", "setup.exe")],
    );
}

#[test]
fn broken_base64_decodes_as_far_as_it_goes() {
    expect("fail-broken-base64.eml", &[("executable", "hoso.doc")]);
}

#[test]
fn base64_skips_what_is_outside_its_alphabet() {
    // One `_` at the start of the body: skipped as readers skip it, the exe is seen.
    expect("fail-base64-underscore.eml", &[("executable", "hoso.doc")]);
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

// --- hostile headers and nesting: caps, not time --------------------------------
//
// Each of these inputs once made the inspection quadratic in the message (issue 13).
// No test here measures time: each asserts the cap that now turns the input into
// `uninspectable` (with the limit named for the reply), or that it is read in full.

/// A multipart message of `parts`, each with the given headers and body `x`.
fn parts_with_headers(parts: usize, headers: &str) -> Vec<u8> {
    let mut raw =
        b"From: a@x.test\r\nContent-Type: multipart/mixed; boundary=\"=_h\"\r\n\r\n".to_vec();
    for _ in 0..parts {
        raw.extend_from_slice(format!("--=_h\r\n{headers}\r\nx\r\n").as_bytes());
    }
    raw.extend_from_slice(b"--=_h--\r\n");
    raw
}

/// The `limit` of the message-level `uninspectable` violation, if there is one.
fn limit_named(i: &Inspection) -> Option<String> {
    evaluate(i, &Policy::default())
        .iter()
        .find(|v| v.rule.name == "uninspectable" && v.var("file") == Some("(message)"))
        .and_then(|v| v.var("limit").map(str::to_owned))
}

#[test]
fn an_encoded_word_that_never_closes_is_uninspectable() {
    // The message of issue 13: 20 parts, each a 96 KB filename="=?a?B?xx=?a?B?xx…"
    // (4.5 s of CPU before the search was made linear).
    let name = "=?a?B?xx".repeat(12_000);
    let raw = parts_with_headers(
        20,
        &format!("Content-Disposition: attachment; filename=\"{name}\"\r\n"),
    );
    let i = inspect(&raw);
    assert_eq!(i.parts, 21);
    assert_eq!(
        limit_named(&i).as_deref(),
        Some("a header parameter longer than 16384 bytes")
    );
}

#[test]
fn repeated_content_headers_are_uninspectable() {
    // 40,000 Content-Disposition fields naming different files: the names were
    // compared pairwise.
    let fields: String = (0..40_000)
        .map(|i| format!("Content-Disposition: attachment; filename=f{i}.pdf\r\n"))
        .collect();
    let i = inspect(&parts_with_headers(1, &fields));
    assert_eq!(
        limit_named(&i).as_deref(),
        Some("more than 64 Content-* header fields in one MIME part")
    );
    // Under the field cap, past the names cap.
    let fields: String = (0..20)
        .map(|i| format!("Content-Type: application/pdf; name=f{i}.pdf\r\n"))
        .collect();
    let i = inspect(&parts_with_headers(1, &fields));
    assert_eq!(
        limit_named(&i).as_deref(),
        Some("more than 16 file names for one MIME part")
    );
    // The same name again and again is one name, and no problem.
    let fields = "Content-Disposition: attachment; filename=a.pdf\r\n".repeat(60);
    let i = inspect(&parts_with_headers(1, &fields));
    assert!(i.problems.is_empty(), "{:?}", i.problems);
    assert!(i.alt_names.is_empty());
}

#[test]
fn a_name_after_too_many_parameters_is_not_passed_silently() {
    // Parameters past the 256th were dropped unread: `filename=setup.exe` after
    // 256 others was never seen, and the message passed.
    let junk: String = (0..256).map(|i| format!("; p{i}=v")).collect();
    let raw = parts_with_headers(
        1,
        &format!("Content-Disposition: attachment{junk}; filename=setup.exe\r\n"),
    );
    let i = inspect(&raw);
    assert_eq!(
        limit_named(&i).as_deref(),
        Some("more than 256 parameters in one header")
    );
}

#[test]
fn too_many_encoded_words_are_uninspectable() {
    let words = "=?utf-8?Q?a?= =?iso-8859-1?Q?b?= ".repeat(129);
    let raw = parts_with_headers(
        1,
        &format!("Content-Disposition: attachment; filename=\"{words}.pdf\"\r\n"),
    );
    assert_eq!(
        limit_named(&inspect(&raw)).as_deref(),
        Some("more than 256 encoded words in one header parameter")
    );
}

#[test]
fn long_vietnamese_names_are_under_every_cap() {
    // 255 characters of Vietnamese, decomposed (NFD: "ệ" is e and two marks, 5
    // bytes), in RFC 2231 sections of 60 percent-encoded bytes, and in encoded words.
    let nfd = format!("{}.pdf", "e\u{323}\u{302}".repeat(251));
    let encoded: String = nfd.bytes().map(|b| format!("%{b:02X}")).collect();
    let sections: String = encoded
        .as_bytes()
        .chunks(60)
        .enumerate()
        .map(|(n, s)| {
            let s = std::str::from_utf8(s).unwrap();
            if n == 0 {
                format!(";\r\n filename*0*=utf-8''{s}")
            } else {
                format!(";\r\n filename*{n}*={s}")
            }
        })
        .collect();
    let words: String = nfd
        .as_bytes()
        .chunks(45)
        .map(|c| format!("=?utf-8?B?{}?=\r\n ", b64(c)))
        .collect();
    let raw = parts_with_headers(
        1,
        &format!(
            "Content-Type: application/pdf;\r\n name=\"{}\"\r\nContent-Disposition: attachment{sections}\r\n",
            words.trim_end()
        ),
    );
    let i = inspect(&raw);
    assert!(i.problems.is_empty(), "{:?}", i.problems);
    // Both forms decode to the same name (so no second name), kept at its start
    // and end.
    assert!(i.alt_names.is_empty(), "{:?}", i.alt_names);
    let kept = i.files[0].name.as_deref().unwrap();
    assert!(kept.starts_with("e\u{323}\u{302}e") && kept.ends_with("\u{302}.pdf"));
    assert!(encoded.len() > 3000, "{}", encoded.len());
}

/// Attached messages nested `levels` deep, each quoted-printable (the text below
/// decodes to itself), 1 MB of text at the bottom.
fn nested_quoted_printable(levels: usize) -> Vec<u8> {
    let mut raw = Vec::new();
    for _ in 0..levels {
        raw.extend_from_slice(
            b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n",
        );
    }
    raw.extend_from_slice(b"Content-Type: text/plain\r\n\r\n");
    raw.extend(
        "cong van so ve viec trien khai\r\n"
            .repeat(32_000)
            .as_bytes(),
    );
    raw
}

const WORK_LIMIT: &str = "MIME structure nested too deep for its size (inspecting it would read more than 8 times the message)";

#[test]
fn nested_encoded_messages_are_decoded_a_bounded_number_of_times() {
    // 100 levels decoded the whole message 100 times.
    let i = inspect(&nested_quoted_printable(100));
    assert_eq!(limit_named(&i).as_deref(), Some(WORK_LIMIT));
    assert!(i.parts <= 10, "{} parts", i.parts);
    let i = inspect(&nested_quoted_printable(3));
    assert!(i.problems.is_empty(), "{:?}", i.problems);
}

#[test]
fn nested_multiparts_with_lookalike_lines_are_bounded() {
    // Boundaries b, bb, bbb...: a line of 240 b's starts like every delimiter,
    // so each of 200 levels checked every line of the bottom part.
    let boundary = |level: usize| "b".repeat(level + 1);
    let mut raw = format!(
        "Content-Type: multipart/mixed; boundary={}\r\n\r\n",
        boundary(0)
    )
    .into_bytes();
    for level in 0..200 {
        raw.extend_from_slice(
            format!(
                "--{}\r\nContent-Type: multipart/mixed; boundary={}\r\n\r\n",
                boundary(level),
                boundary(level + 1)
            )
            .as_bytes(),
        );
    }
    raw.extend_from_slice(format!("--{}\r\n\r\n", boundary(200)).as_bytes());
    raw.extend(
        format!("--{}X\r\n", "b".repeat(240))
            .repeat(4_000)
            .as_bytes(),
    );
    let i = inspect(&raw);
    assert_eq!(limit_named(&i).as_deref(), Some(WORK_LIMIT));
}

#[test]
fn many_files_under_long_deep_paths_are_bounded() {
    // 100 attached messages with 250-character names, 5,000 files at the bottom:
    // each file copied the 100 names (400 MB, 1.2 s for a 2 MB message).
    let mut raw = Vec::new();
    for level in 0..100 {
        raw.extend_from_slice(
            format!(
                "Content-Type: message/rfc822; name=\"{}{level:03}.eml\"\r\n\r\n",
                "n".repeat(250)
            )
            .as_bytes(),
        );
    }
    raw.extend_from_slice(b"Content-Type: multipart/mixed; boundary=b\r\n\r\n");
    for n in 0..5_000 {
        raw.extend_from_slice(
            format!("--b\r\nContent-Type: application/pdf; name=f{n}.pdf\r\n\r\nx\r\n").as_bytes(),
        );
    }
    let i = inspect(&raw);
    assert_eq!(limit_named(&i).as_deref(), Some(WORK_LIMIT));
    assert!(i.files.len() < 5_000, "{} files", i.files.len());
}

#[test]
fn a_uuencoded_file_after_many_empty_blocks_is_found() {
    // 12,000 "begin 644 x" lines that decode to nothing used up the count of
    // blocks (max_mime_parts) and hid the real one after them.
    let mut text = "begin 644 x\r\n`\r\nend\r\n".repeat(12_000);
    text.push_str(&congvu_milter::inspect::uuencode::encode_uu(
        "setup.exe",
        b"MZ\x90\x00",
    ));
    let mut raw = b"From: a@x.test\r\nContent-Type: text/plain\r\n\r\n".to_vec();
    raw.extend_from_slice(text.as_bytes());
    let i = inspect(&raw);
    assert!(i.problems.is_empty(), "{:?}", i.problems);
    let v = evaluate(&i, &Policy::default());
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].rule.name, "executable");
    assert_eq!(v[0].var("file"), Some("setup.exe"));
}

#[test]
fn the_time_limit_names_its_key() {
    let limits = LimitsSection {
        max_inspect_time: congvu_milter::policy::Seconds::secs(0),
        ..LimitsSection::default()
    };
    let i = inspect_message(
        &parts_with_headers(3, "Content-Type: text/plain\r\n"),
        &limits,
    );
    assert_eq!(
        i.problems,
        ["inspection time limit reached (max_inspect_time = 0 s)"]
    );
}
