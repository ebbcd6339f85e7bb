//! Throughput of the inspection (`inspect_message` + `rules::attachments::evaluate`)
//! and of the full decision (`pipeline::decide`, ClamAV off) on five inputs built
//! here, deterministically: a plain text mail, a 10 MB base64 PDF, a zip with
//! 1,000 entries, a 3-deep nested archive (fixtures/archives/nested.tar.gz: an
//! executable in a zip in a 7z in a tar.gz, so it is refused; the whole chain is
//! unpacked all the same) and a docx.
//!
//!   cargo bench --bench inspect                  # everything
//!   cargo bench --bench inspect -- pdf           # one input
//!
//! Not a test: `cargo test --all-targets` builds this and runs it without
//! `--bench`, and then it returns at once. Figures: bench/README.md.

use std::hint::black_box;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use congvu_milter::inspect::inspect_message;
use congvu_milter::message::Message;
use congvu_milter::pipeline;
use congvu_milter::policy::{LoadedPolicy, Policy};
use congvu_milter::rules;
use criterion::{BenchmarkId, Criterion, Throughput};

#[path = "../sample_data.rs"]
mod sample_data;
use sample_data::{base64_lines, pseudo_random};

const WORDS: [&str; 16] = [
    "cong", "van", "so", "ve", "viec", "trien", "khai", "ke", "hoach", "nam", "thuc", "hien",
    "chi", "dao", "bac", "giang",
];

fn prose(len: usize) -> String {
    let mut s = String::with_capacity(len + 80);
    let mut i = 0usize;
    while s.len() < len {
        s.push_str(WORDS[(i * 7 + i / 16) % WORDS.len()]);
        i += 1;
        s.push_str(if i.is_multiple_of(12) { ".\r\n" } else { " " });
    }
    s.push_str(".\r\n");
    s
}

const HEAD: &str = "Return-Path: <a@example.org>\r\nReceived: from mail.example.org ([198.51.100.7])\r\n\tby mx.bacgiang.gov.vn (Postfix) with ESMTPS id 4TABCDEF\r\nFrom: Nguoi Gui <a@example.org>\r\nTo: nhanvien@bacgiang.gov.vn\r\nDate: Mon, 13 Nov 2023 08:00:00 +0700\r\nMessage-ID: <bench@example.org>\r\nMIME-Version: 1.0\r\n";

fn plain_text() -> Vec<u8> {
    let mut m = format!(
        "{HEAD}Subject: cong van\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    )
    .into_bytes();
    m.extend_from_slice(prose(5000).as_bytes());
    m
}

fn with_attachment(name: &str, ctype: &str, data: &[u8]) -> Vec<u8> {
    let mut m = format!(
        "{HEAD}Subject: tep dinh kem\r\nContent-Type: multipart/mixed; boundary=\"=_b\"\r\n\r\n--=_b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{}--=_b\r\nContent-Type: {ctype}; name=\"{name}\"\r\nContent-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n",
        prose(600)
    )
    .into_bytes();
    m.extend_from_slice(&base64_lines(data));
    m.extend_from_slice(b"--=_b--\r\n");
    m
}

fn pdf(size: usize) -> Vec<u8> {
    let mut d = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec();
    d.extend_from_slice(&pseudo_random(size - d.len(), 0x9E37_79B9_7F4A_7C15));
    d
}

fn zip_of(entries: impl IntoIterator<Item = (String, Vec<u8>, bool)>) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data, deflate) in entries {
        let method = if deflate {
            zip::CompressionMethod::Deflated
        } else {
            zip::CompressionMethod::Stored
        };
        let opts = zip::write::SimpleFileOptions::default().compression_method(method);
        w.start_file(name, opts).expect("zip entry");
        w.write_all(&data).expect("zip data");
    }
    w.finish().expect("zip finish").into_inner()
}

fn zip_1000() -> Vec<u8> {
    zip_of((0..1000).map(|i| {
        (
            format!("ho-so/{i:04}.txt"),
            prose(200 + i % 300).into_bytes(),
            true,
        )
    }))
}

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/archives")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The fixture docx grown to a realistic size: 300 KB of document XML (deflated)
/// and a 200 KB stored image.
fn docx() -> Vec<u8> {
    let src = fixture("report.docx");
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(src)).expect("fixture docx");
    let mut entries = Vec::new();
    for i in 0..archive.len() {
        let mut f = archive.by_index(i).expect("entry");
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut data).expect("read entry");
        let name = f.name().expect("entry name").into_owned();
        if name == "word/document.xml" {
            let filler: String = (0..1500)
                .map(|_| format!("<w:p><w:r><w:t>{}</w:t></w:r></w:p>", prose(150)))
                .collect();
            let at = data
                .windows(2)
                .position(|w| w == b"</")
                .unwrap_or(data.len());
            data.splice(at..at, filler.into_bytes());
        }
        entries.push((name, data, true));
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(&pseudo_random(200_000, 42));
    entries.push(("word/media/image1.png".to_owned(), png, false));
    zip_of(entries)
}

fn inputs() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("plain-text", plain_text()),
        (
            "pdf-10mb",
            with_attachment("tai-lieu.pdf", "application/pdf", &pdf(10_000_000)),
        ),
        (
            "zip-1000",
            with_attachment("ho-so.zip", "application/zip", &zip_1000()),
        ),
        (
            "nested-3",
            with_attachment(
                "nested.tar.gz",
                "application/gzip",
                &fixture("nested.tar.gz"),
            ),
        ),
        (
            "docx",
            with_attachment(
                "bao-cao.docx",
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                &docx(),
            ),
        ),
    ]
}

fn policy() -> Policy {
    let loaded = LoadedPolicy::from_text("[clamav]\nenabled = false\n", Path::new("bench.toml"))
        .expect("bench policy");
    (*loaded.policy).clone()
}

fn benches(c: &mut Criterion) {
    let policy = policy();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    for (name, eml) in inputs() {
        let msg = Message::from_eml(&eml);
        // Sanity: every input is inspected without problems; only the nested
        // fixture is refused (an executable at the bottom: zip in 7z in tar.gz).
        let inspection = inspect_message(&msg.raw, &policy.limits);
        assert!(
            inspection.problems.is_empty(),
            "{name}: {:?}",
            inspection.problems
        );
        let violations = rules::attachments::evaluate(&inspection, &policy);
        assert_eq!(
            violations.is_empty(),
            name != "nested-3",
            "{name}: {violations:?}"
        );
        assert!(
            name == "plain-text" || !inspection.files.is_empty(),
            "{name}: the attachment was not found"
        );
        eprintln!(
            "{name}: message {} bytes, {} files inspected, {} bytes of attachments, {} violations",
            msg.raw.len(),
            inspection.files.len(),
            inspection.attachments_size,
            violations.len()
        );

        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Bytes(msg.raw.len() as u64));
        if msg.raw.len() > 1_000_000 {
            group.sample_size(10);
            group.measurement_time(Duration::from_secs(5));
        }
        group.bench_function(BenchmarkId::from_parameter("inspect"), |b| {
            b.iter(|| {
                let inspection = inspect_message(black_box(&msg.raw), &policy.limits);
                black_box(rules::attachments::evaluate(&inspection, &policy))
            })
        });
        group.bench_function(BenchmarkId::from_parameter("decide"), |b| {
            b.iter(|| black_box(runtime.block_on(pipeline::decide(black_box(&msg), &policy, None))))
        });
        group.finish();
    }
}

fn main() {
    // `cargo test --all-targets` runs bench targets without `--bench`: do nothing.
    if !std::env::args().any(|a| a == "--bench") {
        println!("bench/criterion/inspect.rs: run with `cargo bench --bench inspect`; skipped");
        return;
    }
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    benches(&mut c);
    c.final_summary();
}
