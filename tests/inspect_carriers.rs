//! Files that carry files (fixtures/carriers, made by make-carriers.sh with
//! qpdf, macutils' binhex and Python, and copied from Debian's
//! clamav-testfiles): what they carry is inspected like an archive entry, so an
//! executable inside is found by policy alone, without clamd.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use congvu_milter::inspect::archive::{Entry, Opened, Sink};
use congvu_milter::inspect::budget::Budget;
use congvu_milter::inspect::filetype::classify;
use congvu_milter::inspect::{
    ExecKind, FileFacts, FileKind, binhex, html, inspect_message, pdf, rtf,
};
use congvu_milter::policy::{LimitsSection, Policy};
use congvu_milter::rules::attachments::evaluate;
use proptest::prelude::*;

use crate::common::mail::with_attachment;
use crate::inspect_archives::{assert_clean, inspect_with, path};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/carriers")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn inspect(name: &str) -> Vec<FileFacts> {
    inspect_with(name, &fixture(name), &LimitsSection::default())
}

/// The paths of the executables found, by content.
fn executables(facts: &[FileFacts]) -> Vec<Vec<String>> {
    facts
        .iter()
        .filter(|f| matches!(f.kind, FileKind::Executable(_)))
        .map(|f| f.path.clone())
        .collect()
}

// --- PDF ---

#[test]
fn pdf_attachment_is_inspected_with_its_name() {
    let facts = inspect("exe-in.pdf");
    assert_eq!(facts.len(), 2, "{facts:#?}");
    assert_eq!(facts[1].name.as_deref(), Some("setup.exe"));
    assert_eq!(facts[1].kind, FileKind::Executable(ExecKind::Pe));
    assert_eq!(facts[1].size, 544);
    assert_eq!(facts[0].uninspectable, None);
}

#[test]
fn pdf_attachment_named_in_an_object_stream() {
    let facts = inspect("exe-in-objstm.pdf");
    assert_eq!(
        executables(&facts),
        [path(&["exe-in-objstm.pdf", "setup.exe"])]
    );
}

#[test]
fn pdf_attachment_found_by_content_under_a_text_name() {
    let facts = inspect("renamed-exe-in.pdf");
    assert_eq!(
        executables(&facts),
        [path(&["renamed-exe-in.pdf", "hoadon.txt"])]
    );
}

#[test]
fn clamav_test_pdf_carries_its_exe() {
    assert_eq!(executables(&inspect("clam.pdf")).len(), 1);
}

#[test]
fn pdf_with_a_text_attachment_passes() {
    let facts = inspect("plain-in.pdf");
    assert_eq!(facts.len(), 2);
    assert_eq!(facts[1].name.as_deref(), Some("baocao.txt"));
    assert_clean(&facts);
}

#[test]
fn pdf_with_many_attachments_stays_in_the_entry_budget() {
    let facts = inspect("many-in.pdf");
    assert_eq!(facts.len(), 301);
    assert_clean(&facts);
    let limits = LimitsSection {
        max_archive_entries: 100,
        ..LimitsSection::default()
    };
    let facts = inspect_with("many-in.pdf", &fixture("many-in.pdf"), &limits);
    assert_eq!(facts.len(), 101);
    let reason = facts[0].uninspectable.as_deref().unwrap();
    assert!(reason.contains("max_archive_entries"), "{reason}");
}

#[test]
fn truncated_pdf_is_uninspectable_not_passed() {
    let facts = inspect("truncated-exe-in.pdf");
    let reason = facts[0].uninspectable.as_deref();
    assert!(reason.is_some_and(|r| r.contains("PDF")), "{facts:#?}");
}

// --- CHM ---

#[test]
fn chm_is_executable_content() {
    let facts = inspect("clam.chm");
    assert_eq!(facts[0].kind, FileKind::Executable(ExecKind::Chm));
    // Under another name too.
    let facts = inspect_with("help.txt", &fixture("clam.chm"), &LimitsSection::default());
    assert_eq!(facts[0].kind, FileKind::Executable(ExecKind::Chm));
    // "ITSF" alone, or text that starts so, is not.
    let facts = inspect_with("a.txt", b"ITSF is an acronym", &LimitsSection::default());
    assert!(!matches!(facts[0].kind, FileKind::Executable(_)));
}

// --- RTF ---

#[test]
fn rtf_package_object_is_inspected_with_its_name() {
    let facts = inspect("exe-in.rtf");
    assert_eq!(facts.len(), 2, "{facts:#?}");
    assert_eq!(facts[1].name.as_deref(), Some("setup.exe"));
    assert_eq!(facts[1].kind, FileKind::Executable(ExecKind::Pe));
    assert_eq!(facts[1].size, 544);
}

#[test]
fn rtf_package_found_by_content_under_a_text_name() {
    let facts = inspect("renamed-exe-in.rtf");
    assert_eq!(
        executables(&facts),
        [path(&["renamed-exe-in.rtf", "hoadon.txt"])]
    );
}

#[test]
fn clamav_test_rtf_carries_its_exe() {
    assert_eq!(executables(&inspect("clam.exe.rtf")).len(), 1);
}

#[test]
fn rtf_with_a_text_package_passes() {
    let facts = inspect("plain-in.rtf");
    assert_eq!(facts.len(), 2);
    assert_eq!(facts[1].name.as_deref(), Some("baocao.txt"));
    assert_clean(&facts);
}

#[test]
fn truncated_rtf_object_is_uninspectable_not_passed() {
    let facts = inspect("truncated-exe-in.rtf");
    let reason = facts[0].uninspectable.as_deref();
    assert!(
        reason.is_some_and(|r| r.contains("cut short")),
        "{facts:#?}"
    );
}

// --- HTML ---

#[test]
fn data_uri_download_is_inspected_with_its_name() {
    let facts = inspect("exe-in-data-uri.html");
    assert_eq!(
        executables(&facts),
        [path(&["exe-in-data-uri.html", "setup.exe"])]
    );
}

#[test]
fn clamav_test_html_carries_its_exe() {
    assert_eq!(executables(&inspect("clam.exe.html")).len(), 1);
}

#[test]
fn smuggled_zip_is_opened() {
    let facts = inspect("exe-in-smuggling.html");
    assert_eq!(
        executables(&facts),
        [path(&["exe-in-smuggling.html", "hoadon.zip", "setup.exe"])]
    );
}

#[test]
fn html_with_an_inline_image_and_a_text_string_passes() {
    let facts = inspect("plain-in.html");
    // The image is a file; the long base64 string decodes to text: ignored.
    assert_eq!(facts.len(), 2, "{facts:#?}");
    assert_eq!(facts[1].kind, FileKind::Other("image/png".into()));
    assert_clean(&facts);
}

// --- BinHex ---

#[test]
fn binhex_data_fork_is_inspected_with_its_name() {
    let facts = inspect("exe-in.hqx");
    assert_eq!(facts.len(), 2, "{facts:#?}");
    assert_eq!(facts[1].name.as_deref(), Some("setup.exe"));
    assert_eq!(facts[1].kind, FileKind::Executable(ExecKind::Pe));
    assert_eq!(facts[1].size, 544);
}

#[test]
fn clamav_test_binhex_carries_its_exe() {
    assert_eq!(executables(&inspect("clam.exe.hqx")).len(), 1);
}

#[test]
fn binhex_of_a_text_file_passes() {
    let facts = inspect("plain-in.hqx");
    assert_eq!(facts.len(), 2);
    assert_eq!(facts[1].name.as_deref(), Some("baocao.txt"));
    assert_clean(&facts);
}

#[test]
fn truncated_binhex_is_uninspectable_not_passed() {
    let facts = inspect("truncated-exe-in.hqx");
    let reason = facts[0].uninspectable.as_deref();
    assert!(
        reason.is_some_and(|r| r.contains("cut short")),
        "{facts:#?}"
    );
}

#[test]
fn binhex_in_the_body_text_is_inspected() {
    let mut raw =
        b"From: a@example.org\r\nTo: b@bacgiang.gov.vn\r\nSubject: tep\r\n\r\nGui anh tep:\r\n\r\n"
            .to_vec();
    raw.extend(fixture("exe-in.hqx"));
    let i = inspect_message(&raw, &LimitsSection::default());
    assert_eq!(executables(&i.files), [path(&["(unnamed)", "setup.exe"])]);
}

// --- a message saved as a file ---

/// The rules broken by a message carrying `data` as an attachment named
/// `name` of type `content_type`.
fn rules_broken(name: &str, content_type: &str, data: &[u8]) -> Vec<String> {
    let raw = with_attachment(
        "a@example.org",
        "b@bacgiang.gov.vn",
        name,
        content_type,
        data,
    );
    let inspection = inspect_message(&raw, &LimitsSection::default());
    evaluate(&inspection, &Policy::default())
        .into_iter()
        .map(|v| v.rule.name.to_owned())
        .collect()
}

#[test]
fn message_sent_as_octet_stream_is_inspected_as_a_message() {
    let raw = with_attachment(
        "a@example.org",
        "b@bacgiang.gov.vn",
        "hoso.dat",
        "application/octet-stream",
        &fixture("exe-in.eml"),
    );
    let i = inspect_message(&raw, &LimitsSection::default());
    assert_eq!(executables(&i.files), [path(&["hoso.dat", "setup.exe"])]);
    // Declared as text, too.
    assert_eq!(
        rules_broken("thu.txt", "text/plain", &fixture("exe-in.eml")),
        ["executable"]
    );
}

#[test]
fn harmless_message_sent_as_octet_stream_passes() {
    assert!(
        rules_broken(
            "thu.eml",
            "application/octet-stream",
            &fixture("plain-in.eml")
        )
        .is_empty()
    );
}

// --- every carrier, through `scan` ---

/// Each fixture attached as octet-stream to a message judged by `scan` with
/// ClamAV off: `exe-*`, `renamed-exe-*` and `clam*` are refused by
/// `executable`, `plain-*` and `many-*` accepted, `truncated-*` refused
/// (`uninspectable`, beside `executable` when what survived is a program).
#[test]
fn scan_judges_every_carrier_fixture_without_clamav() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/carriers");
    let tmp = tempfile::tempdir().unwrap();
    let policy = tmp.path().join("policy.toml");
    std::fs::write(&policy, "[clamav]\nenabled = false\n").unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !(n.ends_with(".sh") || n.ends_with(".py") || n.ends_with(".md")))
        .collect();
    names.sort();
    assert!(names.len() >= 20, "fixtures present");
    let mut messages = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let raw = with_attachment(
            "a@example.org",
            "b@bacgiang.gov.vn",
            name,
            "application/octet-stream",
            &fixture(name),
        );
        let path = tmp.path().join(format!("{i:03}.eml"));
        std::fs::write(&path, raw).unwrap();
        messages.push(path);
    }
    let reports = scan_json(&policy, &messages);
    assert_eq!(reports.len(), names.len());
    let mut problems = Vec::new();
    for (name, report) in names.iter().zip(&reports) {
        let action = report["action"].as_str().unwrap_or("?");
        let rules: Vec<&str> = report["reasons"]
            .as_array()
            .map(|a| a.iter().filter_map(|r| r["rule"].as_str()).collect())
            .unwrap_or_default();
        let ok = if name.starts_with("plain-") || name.starts_with("many-") {
            action == "accept"
        } else if name.starts_with("truncated-") {
            action == "reject" && rules.contains(&"uninspectable")
        } else {
            action == "reject" && rules.contains(&"executable")
        };
        if !ok {
            problems.push(format!("{name}: {action} {rules:?}"));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// `scan --json` from a@example.org to b@bacgiang.gov.vn under `policy`: one
/// report per message (fails with `scan`'s errors when one is missing).
pub fn scan_json(policy: &Path, messages: &[PathBuf]) -> Vec<serde_json::Value> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_congvu-milter"))
        .args(["scan", "--json", "--from", "a@example.org"])
        .args(["--rcpt", "b@bacgiang.gov.vn", "--config"])
        .arg(policy)
        .args(messages)
        .output()
        .unwrap();
    let reports: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        reports.len(),
        messages.len(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    reports
}

// --- hostile input: no panic, bounded time ---

/// Runs a carrier reader on `data` with a sink that types every file, and
/// gives what it found out about the carrier.
fn open_carrier(
    open: fn(&[u8], &mut Budget, &mut Sink<'_>) -> Opened,
    data: &[u8],
    limits: &LimitsSection,
) -> (Opened, usize) {
    let mut budget = Budget::new(limits);
    let mut files = 0;
    let mut sink = |_: &mut Budget, entry: Entry<'_>| {
        files += 1;
        if let Some(bytes) = entry.data {
            let _ = classify(bytes);
        }
    };
    let opened = open(data, &mut budget, &mut sink);
    (opened, files)
}

type Reader = fn(&[u8], &mut Budget, &mut Sink<'_>) -> Opened;

const READERS: &[(&str, Reader)] = &[
    ("exe-in.pdf", pdf::open),
    ("exe-in-objstm.pdf", pdf::open),
    ("clam.pdf", pdf::open),
    ("exe-in.rtf", rtf::open),
    ("clam.exe.rtf", rtf::open),
    ("exe-in-smuggling.html", html::open),
    ("exe-in-data-uri.html", html::open),
    ("exe-in.hqx", binhex::open),
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Cut anywhere and with bytes changed, every reader returns (the MIME
    /// walk's catch_unwind is not relied on: the readers are called bare).
    #[test]
    fn damaged_carriers_never_panic(
        which in 0..READERS.len(),
        cut in 0.0f64..1.0,
        flips in proptest::collection::vec((0.0f64..1.0, any::<u8>()), 0..8),
    ) {
        let (name, open) = READERS[which];
        let mut data = fixture(name);
        data.truncate((data.len() as f64 * cut) as usize + 1);
        for (at, byte) in flips {
            let i = ((data.len() as f64 * at) as usize).min(data.len() - 1);
            data[i] = byte;
        }
        let _ = open_carrier(open, &data, &LimitsSection::default());
    }
}

/// 4 MB of what makes a naive reader quadratic, for each reader: it returns.
/// A guard against a reader gone quadratic (the PDF reader once took 118 s on
/// the second case), not a speed check: each case takes well under a second
/// in a debug build, the bound is 60 s so a loaded machine never trips it.
/// Speed is measured by bench/hostile-cpu.sh.
#[test]
fn hostile_carriers_are_read_in_linear_time() {
    let cases: Vec<(&str, Reader, Vec<u8>)> = vec![
        // Streams without endstream: each would search the rest of the file.
        (
            "pdf streams without end",
            pdf::open,
            [
                b"%PDF-1.4\n".as_slice(),
                &b"1 0 obj <</Type/EmbeddedFile>> stream\nx".repeat(100_000),
            ]
            .concat(),
        ),
        // Unclosed dictionaries after every "obj".
        (
            "pdf unclosed dictionaries",
            pdf::open,
            [b"%PDF-1.4\n".as_slice(), &b"1 0 obj <<<<(".repeat(300_000)].concat(),
        ),
        (
            "rtf objdata without end",
            rtf::open,
            [b"{\\rtf1".as_slice(), &b"\\objdata 4".repeat(400_000)].concat(),
        ),
        (
            "html data: without comma",
            html::open,
            [b"<html>".as_slice(), &b"data:".repeat(800_000)].concat(),
        ),
        (
            "html unclosed script strings",
            html::open,
            [b"<html><script>".as_slice(), &b"'\"`".repeat(1_300_000)].concat(),
        ),
        (
            "binhex markers",
            binhex::open,
            b"(This file must be converted with BinHex 4.0)\n:".repeat(90_000),
        ),
    ];
    for (what, open, data) in cases {
        let started = Instant::now();
        let _ = open_carrier(open, &data, &LimitsSection::default());
        let took = started.elapsed();
        eprintln!("{what}: {took:?}");
        assert!(took < Duration::from_secs(60), "{what}: {took:?}");
    }
}

#[test]
fn binhex_runs_stop_at_the_unpacked_limit() {
    // A header stating a 1 GiB data fork, then runs of 255 bytes: 2 bytes of
    // input (8/3 symbols) for 255 of output, 25 MB from 270 KB, past the
    // unpacked limit (a ratio under 100: the ratio limit does not apply).
    let mut raw = vec![5];
    raw.extend(b"a.bin\0TEXTMACS\0\0");
    raw.extend(0x4000_0000u32.to_be_bytes());
    raw.extend([0, 0, 0, 0, 0, 0, b'x']);
    for _ in 0..100_000 {
        raw.extend([0x90, 0xFF]);
    }
    let mut text = b"(This file must be converted with BinHex 4.0)\n:".to_vec();
    text.extend(binhex::encode_symbols(&raw));
    text.push(b':');
    let limits = LimitsSection {
        max_unpacked_size: congvu_milter::policy::ByteSize::mib(4),
        ..LimitsSection::default()
    };
    let (opened, files) = open_carrier(binhex::open, &text, &limits);
    let reason = opened.uninspectable.unwrap_or_default();
    assert!(reason.contains("max_unpacked_size"), "{reason}");
    // The fork is listed, with its first bytes and the reason.
    assert_eq!(files, 1);
}

#[test]
fn rtf_objects_other_than_packages_are_typed_by_content() {
    let facts = inspect("clam-ole-in.rtf");
    assert_eq!(facts.len(), 3, "{facts:#?}");
    assert_eq!(facts[1].name.as_deref(), Some("(Word.Document.8 object)"));
    assert_eq!(facts[1].kind, FileKind::Document("application/msword"));
    // The Word file is opened in turn (src/inspect/archive/ole.rs): the
    // program in its Package object is found.
    assert_eq!(facts[2].name.as_deref(), Some("Clam.exe"));
    assert!(
        matches!(facts[2].kind, FileKind::Executable(_)),
        "{facts:#?}"
    );
    let facts = inspect("exe-ole-in.rtf");
    assert_eq!(
        executables(&facts),
        [path(&["exe-ole-in.rtf", "(Word.Document.8 object)"])]
    );
}
