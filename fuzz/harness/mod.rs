//! The bodies of the fuzz targets, shared by the fuzz crate (`fuzz/fuzz_targets/*.rs`,
//! one line each) and the regression suite (`tests/fuzz_regressions.rs`), so a
//! crash input replays through exactly the code path that found it.
//!
//! Each `pub fn TARGET(data: &[u8])` must return on every input: no panic, no hang,
//! bounded memory (the fuzz script enforces the last two with `-timeout` and
//! `-rss_limit_mb`). Limits are small so that iterations stay fast.
//!
//! Panics: production wraps every archive opener in `catch_unwind` (see
//! `inspect::file::inspect_file`), so a panic inside a *dependency's* decoder there
//! is the designed fallback ("damaged archive"), not a crash. A panic in this
//! crate's own code is always a bug, even where it would be caught. [`install_panic_hook`]
//! encodes that: inside a [`guarded`] region a panic whose location is in a
//! registry crate is only counted; any other panic is recorded and, when fuzzing,
//! aborts the process so libFuzzer reports it.

#![allow(dead_code)]

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Once, OnceLock};
use std::time::Duration;

use bytes::BytesMut;
use congvu_milter::inspect::archive::{
    self, Entry, Opened, compress, libarchive, ole, rar, sevenz, tar, zip,
};
use congvu_milter::inspect::budget::Budget;
use congvu_milter::inspect::file::inspect_file as inspect_one;
use congvu_milter::inspect::{
    ArchiveKind, FileKind, binhex, cms, document, filetype, html, inspect_message, names, pdf, rtf,
    text, tnef, uuencode,
};
use congvu_milter::message::{Connection, Message};
use congvu_milter::milter::budget::MemoryBudget;
use congvu_milter::milter::codec::{
    Command, MilterCodec, MtaCodec, encode_command, encode_reply, undouble_percent,
};
use congvu_milter::milter::session::{SessionConfig, run_session};
use congvu_milter::milter::{BoxFuture, Filter};
use congvu_milter::policy::{ByteSize, LimitsSection, LoadedPolicy, Policy, Seconds};
use congvu_milter::rules::forwarding;
use congvu_milter::verdict::{Action, HeaderEdit, SmtpReply, Verdict};
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------------------
// Panic policy
// ---------------------------------------------------------------------------

static ABORT_ON_PANIC: AtomicBool = AtomicBool::new(false);
/// Dependency panics swallowed by a production `catch_unwind` (for the report).
pub static TOLERATED_PANICS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static GUARDED: Cell<u32> = const { Cell::new(0) };
    static BAD_PANICS: Cell<u32> = const { Cell::new(0) };
}

/// Installs the panic hook once. `abort` is true in the fuzz targets (libFuzzer
/// reports an abort as a crash), false in the tests (they check [`bad_panics`]).
pub fn install_panic_hook(abort: bool) {
    static ONCE: Once = Once::new();
    ABORT_ON_PANIC.store(abort, Ordering::Relaxed);
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_dependency = info.location().is_some_and(|l| {
                let f = l.file();
                f.contains("/registry/src/") || f.contains("/git/checkouts/")
            });
            if GUARDED.with(Cell::get) > 0 && in_dependency {
                TOLERATED_PANICS.fetch_add(1, Ordering::Relaxed);
                return;
            }
            BAD_PANICS.with(|c| c.set(c.get() + 1));
            previous(info);
            if ABORT_ON_PANIC.load(Ordering::Relaxed) {
                std::process::abort();
            }
        }));
    });
}

/// Panics on this thread that were not a tolerated dependency panic.
pub fn bad_panics() -> u32 {
    BAD_PANICS.with(Cell::get)
}

/// Runs `f` as production does an archive opener: panics are caught (and judged
/// by the hook).
fn guarded<T>(f: impl FnOnce() -> T) -> Option<T> {
    GUARDED.with(|g| g.set(g.get() + 1));
    let r = catch_unwind(AssertUnwindSafe(f)).ok();
    GUARDED.with(|g| g.set(g.get() - 1));
    r
}

/// Marks a region whose panics production catches further down (inspect_file's
/// own `catch_unwind`); panics that escape still propagate.
fn guarded_region<T>(f: impl FnOnce() -> T) -> T {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            GUARDED.with(|g| g.set(g.get() - 1));
        }
    }
    GUARDED.with(|g| g.set(g.get() + 1));
    let _reset = Reset;
    f()
}

// ---------------------------------------------------------------------------
// Shared fixtures
// ---------------------------------------------------------------------------

/// Small limits: 8 MiB unpacked, 1000 entries, depth 8, 20 s (the fuzz script's
/// `-timeout` is lower, so a slow input is reported rather than cut by the budget).
pub fn limits() -> LimitsSection {
    LimitsSection {
        max_message_size: ByteSize::mib(8),
        max_attachments_size: ByteSize::mib(8),
        max_archive_depth: 8,
        max_archive_entries: 1000,
        max_unpacked_size: ByteSize::mib(8),
        max_compression_ratio: 1000,
        max_mime_parts: 1000,
        max_message_depth: 20,
        max_inspect_time: Seconds::secs(20),
        max_buffered_bytes: ByteSize::mib(64),
        max_concurrent_inspections: 1,
    }
}

fn budget() -> Budget {
    Budget::new(&limits())
}

/// A sink that looks at each entry as the real one does (classifies the bytes)
/// without recursing.
fn visit(_budget: &mut Budget, entry: Entry<'_>) {
    if let Some(bytes) = entry.data {
        let _ = filetype::classify(bytes);
    }
    let _ = names::final_extension(&entry.name);
}

fn open_with(data: &[u8], f: impl FnOnce(&[u8], &mut Budget, &mut archive::Sink<'_>) -> Opened) {
    let mut b = budget();
    let mut sink = visit;
    let _ = guarded(|| f(data, &mut b, &mut sink));
}

// ---------------------------------------------------------------------------
// Targets
// ---------------------------------------------------------------------------

/// The milter frame decoder (MTA → milter) and the reply decoder (milter → MTA),
/// with the re-encoding of what decoded.
pub fn milter_codec(data: &[u8]) {
    let mut codec = MilterCodec::new(64 * 1024);
    let mut buf = BytesMut::from(data);
    let mut out = BytesMut::new();
    while let Ok(Some(cmd)) = codec.decode_eof(&mut buf) {
        out.clear();
        let _ = encode_command(&cmd, &mut out, 64 * 1024);
        if let Command::Macro { pairs, .. } = &cmd {
            for (_, v) in pairs {
                let _ = undouble_percent(v);
            }
        }
    }
    let mut codec = MtaCodec::new(64 * 1024);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(reply)) = codec.decode_eof(&mut buf) {
        out.clear();
        let _ = encode_reply(&reply, &mut out);
    }
}

/// A filter whose decisions depend on the message, so every reply path is taken.
struct FuzzFilter;

impl Filter for FuzzFilter {
    fn connect(&self, conn: &Connection) -> Option<Verdict> {
        conn.hostname
            .starts_with("refuse")
            .then(|| verdict(Action::Reject, 1))
    }

    fn mail(&self, msg: &Message) -> Option<Verdict> {
        msg.envelope
            .sender
            .contains("tempfail")
            .then(|| verdict(Action::Tempfail, 2))
    }

    fn body_chunk(&self, msg: &Message, chunk_len: usize) -> Option<Verdict> {
        (msg.raw.len() + chunk_len > 256 * 1024).then(|| verdict(Action::Reject, 3))
    }

    fn end_of_message(&self, msg: Message) -> BoxFuture<'static, Verdict> {
        let pick = msg.raw.len() % 5;
        let action = [
            Action::Accept,
            Action::Quarantine,
            Action::Discard,
            Action::Tempfail,
            Action::Reject,
        ][pick];
        let n = msg.headers.len();
        Box::pin(async move { verdict(action, n) })
    }
}

fn verdict(action: Action, n: usize) -> Verdict {
    let mut v = Verdict::accept();
    v.action = action;
    if action != Action::Accept {
        v.reply = Some(SmtpReply::new(550, "5.7.1", "fuzz 100% %s\r\nline"));
    }
    v.headers = vec![
        HeaderEdit::Add {
            name: "X-Fuzz".into(),
            value: "yes".into(),
        },
        HeaderEdit::Insert {
            index: n as u32,
            name: "X-Fuzz-Insert".into(),
            value: "x".repeat(n % 300),
        },
        HeaderEdit::Change {
            name: "Subject".into(),
            index: (n % 3) as u32,
            value: "changed".into(),
        },
        HeaderEdit::Delete {
            name: "X-Remove".into(),
            index: 1,
        },
    ];
    v
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
}

/// A whole milter session: the fuzz bytes are what the MTA sends (read as one
/// stream; the session's replies go to a sink), against [`FuzzFilter`].
pub fn milter_session(data: &[u8]) {
    let config = SessionConfig {
        max_frame_size: 64 * 1024,
        idle_timeout: Duration::from_secs(5),
        progress_interval: Duration::from_millis(50),
        requested_macros: SessionConfig::default_macros(),
        // A small budget, so the fuzzer also reaches the over-budget path.
        memory_budget: Some(MemoryBudget::new(256 * 1024)),
        // Small caps, so the fuzzer also reaches the refusals and the macro cap.
        max_recipients: 50,
        max_headers: 50,
        max_macro_bytes: 16 * 1024,
        write_timeout: Duration::from_secs(5),
    };
    let stream = tokio::io::join(data, tokio::io::sink());
    RUNTIME.with(|rt| {
        rt.block_on(run_session(
            stream,
            Arc::new(FuzzFilter),
            config,
            1,
            "fuzz".into(),
            CancellationToken::new(),
        ))
    });
}

/// The MIME walk over a whole message, with every file found inspected.
pub fn mime_walk(data: &[u8]) {
    let limits = limits();
    guarded_region(|| {
        let _ = inspect_message(data, &limits);
    });
}

pub fn archive_zip(data: &[u8]) {
    open_with(data, zip::open);
}

pub fn archive_7z(data: &[u8]) {
    open_with(data, sevenz::open);
}

pub fn archive_tar(data: &[u8]) {
    open_with(data, tar::open);
}

/// The OLE2 opener (Package objects, Outlook attachments, embedded objects)
/// and the Package layout alone.
pub fn archive_ole(data: &[u8]) {
    open_with(data, ole::open);
    if let Some(p) = ole::parse_package(data) {
        assert!(p.data.end <= data.len() && p.data.start <= p.data.end);
    }
}

/// gzip, bzip2 or xz: the one the magic says, else one picked by length.
pub fn archive_compress(data: &[u8]) {
    let kind = match filetype::archive_kind(data) {
        Some(k @ (ArchiveKind::Gzip | ArchiveKind::Bzip2 | ArchiveKind::Xz)) => k,
        _ => [ArchiveKind::Gzip, ArchiveKind::Bzip2, ArchiveKind::Xz][data.len() % 3],
    };
    open_with(data, |d, b, s| {
        compress::open(kind, Some("fuzz.bin.gz"), d, b, s)
    });
}

/// rar4 or rar5 by the magic (without one, both): the header listing alone,
/// then unpacking through libarchive.
pub fn archive_rar(data: &[u8]) {
    let kinds: &[ArchiveKind] = match filetype::archive_kind(data) {
        Some(ArchiveKind::Rar4) => &[ArchiveKind::Rar4],
        Some(ArchiveKind::Rar5) => &[ArchiveKind::Rar5],
        _ => &[ArchiveKind::Rar4, ArchiveKind::Rar5],
    };
    for &kind in kinds {
        open_with(data, |d, b, s| rar::open(kind, d, b, s));
        open_with(data, |d, b, s| libarchive::open(kind, d, b, s));
    }
}

/// cab, ISO 9660, LHA, cpio or ar through libarchive: the one the magic says,
/// else one picked by length.
pub fn archive_libarchive(data: &[u8]) {
    let kind = match filetype::archive_kind(data) {
        Some(k) if libarchive::is_opened_here(k) => k,
        _ => [
            ArchiveKind::Cab,
            ArchiveKind::Iso,
            ArchiveKind::Lha,
            ArchiveKind::Cpio,
            ArchiveKind::Ar,
        ][data.len() % 5],
    };
    open_with(data, |d, b, s| libarchive::open(kind, d, b, s));
}

/// `classify` and the recursive inspection of one file (archives in archives).
pub fn inspect_file(data: &[u8]) {
    let _ = filetype::classify(data);
    let _ = filetype::exec_kind(data);
    let _ = filetype::is_msi(data);
    let _ = filetype::zip_document_kind(data);
    let mut b = budget();
    let mut out = Vec::new();
    guarded_region(|| {
        inspect_one(vec!["fuzz".into()], Some("fuzz"), data, 0, &mut b, &mut out);
    });
}

/// Content-Type / Content-Disposition parsing (RFC 2231), RFC 2047 words,
/// charsets, and the extension and display logic on the results.
pub fn names(data: &[u8]) {
    let field = names::parse_content_field(data);
    let _ = field.param("filename");
    let _ = field.params_named("name").count();
    for (_, v) in &field.params {
        let _ = names::final_extension(v);
        let _ = names::bidi_control(v);
        let _ = names::display_name(v, 40);
    }
    let text = String::from_utf8_lossy(data);
    // Zip entry names, as the signature and macro parts are told by.
    document::Marks::default().note_part(&text);
    let decoded = names::decode_rfc2047(&text);
    let _ = names::final_extension(&decoded);
    let _ = names::display_name(&decoded, 255);
    let _ = names::display_name(&text, 0);
    if let Some((charset, rest)) = data.split_first() {
        let charset = [
            "utf-8",
            "windows-1258",
            "iso-8859-1",
            "shift_jis",
            "x-unknown",
        ][usize::from(*charset) % 5];
        let _ = names::decode_charset(Some(charset), rest);
    }
}

/// The CMS (S/MIME) reader: BER with indefinite lengths and chunked content.
/// What it gives back is never longer than its input.
pub fn cms(data: &[u8]) {
    if let Ok(cms::Pkcs7::Signed(content)) = cms::read_content_info(data) {
        assert!(content.len() <= data.len());
    }
}

pub fn tnef(data: &[u8]) {
    let t = tnef::parse_tnef(data, 100);
    for a in &t.attachments {
        // The MIME walk slices the stream with this range (`Bytes::slice`), so an
        // out-of-range one is a crash there: index the same way.
        let _ = filetype::classify(&data[a.data.clone()]);
        if let Some(name) = &a.name {
            let _ = names::final_extension(name);
        }
    }
}

/// Each carrier reader alone (src/inspect/carrier.rs): PDF embedded files, RTF
/// objects, HTML data: URIs and script strings, BinHex.
pub fn carrier_pdf(data: &[u8]) {
    open_with(data, pdf::open);
}

pub fn carrier_rtf(data: &[u8]) {
    open_with(data, rtf::open);
}

pub fn carrier_html(data: &[u8]) {
    let _ = html::is_html(None, data);
    open_with(data, html::open);
}

pub fn carrier_binhex(data: &[u8]) {
    open_with(data, binhex::open);
}

/// Office documents read for classification stamps: OOXML and OpenDocument
/// (the zip entries with the text, their markup, the font tables).
pub fn text_office(data: &[u8]) {
    let mut b = budget();
    let kind = match data.first().map(|b| b % 4) {
        Some(0) => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        Some(1) => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        Some(2) => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        _ => "application/vnd.oasis.opendocument.text",
    };
    guarded_region(|| {
        let _ = text::read_document(None, &FileKind::Document(kind), data, &mut b);
        // The markup reader on its own, with the HTML vocabulary.
        let mut finder = text::stamp::StampFinder::default();
        let _ = text::markup::feed(data, &text::markup::HTML, &mut finder, &b);
    });
}

/// A PDF's text layer read for stamps (content streams, text operators, CMaps).
pub fn text_pdf(data: &[u8]) {
    let mut b = budget();
    guarded_region(|| {
        let _ = text::pdf::read(data, &mut b);
    });
}

/// RTF text read for stamps, and plain text, Subjects and legacy encodings.
pub fn text_rtf(data: &[u8]) {
    let mut b = budget();
    guarded_region(|| {
        let _ = text::rtf::read(data, &mut b);
        let _ = text::plain_text(data, &mut b);
        let lossy = String::from_utf8_lossy(data);
        let _ = text::stamp::subject_stamp(&lossy);
        let _ = text::legacy::decode_tcvn3(&lossy, true);
        let _ = text::legacy::decode_vni(&lossy);
    });
}

pub fn uuencode(data: &[u8]) {
    let found = uuencode::find_uuencoded(data, 100);
    for f in &found {
        let _ = filetype::classify(&f.data);
    }
}

/// Policy text through the loader (syntax, deserialisation, validation). A
/// `providers_file` names a file on disk, which the admin chooses, so inputs that
/// set one are skipped.
pub fn policy_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.contains("providers_file") {
        return;
    }
    let _ = LoadedPolicy::from_text(text, Path::new("/nonexistent/fuzz.toml"));
}

fn shipped_policy(public: bool) -> &'static Policy {
    static ALL: OnceLock<Policy> = OnceLock::new();
    static PUBLIC: OnceLock<Policy> = OnceLock::new();
    let text = include_str!("../../config/congvu-milter.toml");
    let load = |scope: &str| {
        let text = format!("{text}\n");
        let mut p = (*LoadedPolicy::from_text(&text, Path::new("congvu-milter.toml"))
            .expect("shipped policy loads")
            .policy)
            .clone();
        if scope == "public" {
            p.forwarding.scope = forwarding::Scope::Public;
        }
        p
    };
    if public {
        PUBLIC.get_or_init(|| load("public"))
    } else {
        ALL.get_or_init(|| load("all"))
    }
}

/// The forwarding rule on a message: the first byte picks the envelope and the
/// connection (sender and recipients local or not, client internal or not, the
/// scope), the rest is the .eml.
pub fn forwarding(data: &[u8]) {
    let Some((&sel, eml)) = data.split_first() else {
        return;
    };
    let mut msg = Message::from_eml(eml);
    msg.envelope.sender = if sel & 1 == 0 {
        "nguoi.gui@bacgiang.gov.vn".into()
    } else {
        "someone@gmail.com".into()
    };
    msg.envelope.recipients = vec![if sel & 2 == 0 {
        "can.bo@bacgiang.gov.vn".into()
    } else {
        "ban@yahoo.com".into()
    }];
    let addr = if sel & 4 == 0 {
        "10.0.0.5"
    } else {
        "203.0.113.9"
    };
    let mut conn = Connection {
        addr: addr.parse().ok(),
        hostname: format!("[{addr}]"),
        ..Default::default()
    };
    conn.macros.insert(
        "{daemon_name}",
        if sel & 8 == 0 { "smtpd" } else { "submission" },
    );
    if sel & 16 != 0 {
        msg.macros.insert("{auth_authen}", "can.bo");
    }
    msg.connection = Arc::new(conn);
    let _ = forwarding::evaluate(&msg, shipped_policy(sel & 32 != 0));
}

/// Every target by name, for the regression suite.
/// A target's body.
pub type Target = fn(&[u8]);

/// `report` and `trace` on an audit log (gzip when it starts with gzip's magic):
/// every grouping, `--repeat`, and a name glob built from the input's first bytes.
pub fn audit_log(data: &[u8]) {
    use congvu_milter::audit::agency::Agencies;
    use congvu_milter::audit::record::{LineCounts, decompressed, for_each_record};
    use congvu_milter::audit::report::{GroupBy, Report};
    use congvu_milter::audit::trace::{Needle, glob_match};
    let glob: Vec<char> = String::from_utf8_lossy(&data[..data.len().min(12)])
        .chars()
        .collect();
    let needle = Needle::Name(glob.clone());
    let text: Vec<char> = String::from_utf8_lossy(data).chars().take(200).collect();
    let _ = glob_match(&glob, &text);
    for by in [
        GroupBy::Agency,
        GroupBy::Mailbox,
        GroupBy::Article,
        GroupBy::Rule,
        GroupBy::Day,
    ] {
        let mut report = Report::new(by, None, None, Some(1), Agencies::default());
        let mut counts = LineCounts::default();
        let on_record = |r: &congvu_milter::audit::record::AuditRecord| {
            let _ = needle.matches(r);
            report.add(r);
        };
        if let Ok(input) = decompressed(data) {
            let _ = for_each_record("fuzz", input, &mut counts, |_| {}, on_record);
        }
        let _ = report.write_text(&mut std::io::sink(), &counts, 1);
        let _ = report.write_csv(&mut std::io::sink());
        let _ = report.write_json(&mut std::io::sink());
    }
}

pub const TARGETS: &[(&str, Target)] = &[
    ("audit_log", audit_log),
    ("milter_codec", milter_codec),
    ("milter_session", milter_session),
    ("mime_walk", mime_walk),
    ("archive_zip", archive_zip),
    ("archive_7z", archive_7z),
    ("archive_tar", archive_tar),
    ("archive_compress", archive_compress),
    ("archive_rar", archive_rar),
    ("archive_libarchive", archive_libarchive),
    ("archive_ole", archive_ole),
    ("inspect_file", inspect_file),
    ("names", names),
    ("tnef", tnef),
    ("cms", cms),
    ("uuencode", uuencode),
    ("carrier_pdf", carrier_pdf),
    ("carrier_rtf", carrier_rtf),
    ("carrier_html", carrier_html),
    ("carrier_binhex", carrier_binhex),
    ("text_office", text_office),
    ("text_pdf", text_pdf),
    ("text_rtf", text_rtf),
    ("policy_toml", policy_toml),
    ("forwarding", forwarding),
];
