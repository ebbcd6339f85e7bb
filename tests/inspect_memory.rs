//! Peak memory of inspection, measured with a counting allocator (this test
//! binary only; the tests run one at a time under a lock): the MIME walk on a
//! 20 MB message stays under 3x the message size, the message itself included;
//! a zip entry that unpacks to 400 MiB from a 7.8 MB message is read as a
//! stream, within the memory budget plus a fixed overhead.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::sync::Arc;

use bytes::Bytes;
use congvu_milter::inspect::budget::MemoryAccount;
use congvu_milter::inspect::mime::inspect_message_within;
use congvu_milter::inspect::{inspect_message, inspect_message_shared};
use congvu_milter::message::Message;
use congvu_milter::milter::budget::{MemoryBudget, Reservation, SESSION_BYTES_PER_BODY_BYTE};
use congvu_milter::pipeline::{Shared, decide_sharing};
use congvu_milter::policy::{LimitsSection, Policy};
use congvu_milter::verdict::Action;

#[path = "../bench/sample_data.rs"]
mod sample_data;
use sample_data::{base64_lines, big_entry_zip, message_with_attachment};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static LOCK: Mutex<()> = Mutex::new(());

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
            PEAK.fetch_max(now, Ordering::SeqCst);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::SeqCst);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const MIB: usize = 1024 * 1024;

/// About 20 MB: a text body, a base64 attachment and an 8-bit attachment, and an
/// attached message with a base64 attachment of its own.
fn twenty_mb_message() -> Vec<u8> {
    let mut m = b"From: a@x.test\r\nSubject: big\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"=_m\"\r\n\r\n--=_m\r\nContent-Type: text/plain\r\n\r\nhello\r\n".to_vec();
    let data: Vec<u8> = (0..8 * MIB).map(|i| (i * 31 % 251) as u8).collect();
    m.extend_from_slice(b"--=_m\r\nContent-Type: application/octet-stream; name=\"a.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n");
    m.extend_from_slice(&base64_lines(&data));
    m.extend_from_slice(b"--=_m\r\nContent-Type: text/csv; name=\"b.csv\"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n");
    m.extend(std::iter::repeat_n(b'x', 5 * MIB));
    m.extend_from_slice(b"\r\n--=_m\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nContent-Type: multipart/mixed; boundary=\"=_i\"\r\n\r\n--=_i\r\nContent-Type: application/pdf; name=\"c.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n");
    m.extend_from_slice(&base64_lines(&data[..3 * MIB]));
    m.extend_from_slice(b"--=_i--\r\n\r\n--=_m--\r\n");
    m
}

fn measure(f: impl FnOnce()) -> usize {
    PEAK.store(CURRENT.load(Ordering::SeqCst), Ordering::SeqCst);
    f();
    PEAK.load(Ordering::SeqCst)
}

#[test]
fn peak_memory_under_three_times_the_message() {
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let raw = twenty_mb_message();
    let size = raw.len();
    assert!(size > 19 * MIB && size < 22 * MIB, "{size}");
    let baseline = CURRENT.load(Ordering::SeqCst);
    let peak = measure(|| {
        let inspection = inspect_message(&raw, &LimitsSection::default());
        assert_eq!(inspection.files.len(), 4, "{:?}", inspection.files);
        assert!(inspection.problems.is_empty());
    });
    let extra = peak - baseline;
    eprintln!(
        "message {size} bytes: peak {peak} bytes with the message ({:.2}x)",
        (peak - baseline + size) as f64 / size as f64
    );
    assert!(
        extra + size < 3 * size,
        "peak {} is not under 3x {size}",
        extra + size
    );
}

#[test]
fn shared_input_is_not_copied() {
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let raw = Bytes::from(twenty_mb_message());
    let size = raw.len();
    let baseline = CURRENT.load(Ordering::SeqCst);
    let peak = measure(|| {
        let inspection = inspect_message_shared(&raw, &LimitsSection::default());
        // The 8-bit part is a slice of the input.
        let csv = inspection
            .scan_parts
            .iter()
            .find(|p| p.label == "b.csv")
            .unwrap();
        let inside = raw.as_ptr_range();
        assert!(inside.contains(&csv.data.as_ptr()));
    });
    let extra = peak - baseline;
    eprintln!(
        "shared: peak {:.2}x the message",
        (extra + size) as f64 / size as f64
    );
    // Decoded base64 (8 + 3 MiB) on top of the message.
    assert!(extra < 13 * MIB, "{extra}");
}

/// What inspecting one message may hold beyond its memory budget's charge:
/// the first and last bytes of a streamed entry, decoder state, the facts.
const FIXED_OVERHEAD: usize = MIB;

/// The measured case of issue 13 (there a 7.8 MB message, ratio 72; here 7.4 MB,
/// ratio 77): a zip holding one deflated entry of 400 MiB, under every limit. It
/// made `scan` peak at 964 MB when entries were held whole; read as a stream it
/// costs the decoded attachment and a fixed overhead.
#[test]
fn a_400_mib_entry_is_read_as_a_stream() {
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let zip = big_entry_zip("nhat-ky.txt", 400 * MIB);
    let raw = message_with_attachment("ho-so.zip", "application/zip", &zip);
    let zip_len = zip.len();
    drop(zip);
    assert!(raw.len() < 10 * MIB, "{}", raw.len());
    let baseline = CURRENT.load(Ordering::SeqCst);
    let peak = measure(|| {
        let inspection = inspect_message(&raw, &LimitsSection::default());
        let entry = inspection
            .files
            .iter()
            .find(|f| f.name.as_deref() == Some("nhat-ky.txt"))
            .expect("the entry is listed");
        assert_eq!(entry.size, 400 * MIB as u64);
        assert_eq!(entry.uninspectable, None);
        assert!(inspection.problems.is_empty(), "{:?}", inspection.problems);
    });
    let extra = peak - baseline;
    eprintln!(
        "message {} bytes, zip {zip_len} bytes, entry 400 MiB: peak {extra} bytes above the message",
        raw.len()
    );
    assert!(
        extra < zip_len + FIXED_OVERHEAD,
        "peak {extra} is not under the decoded zip ({zip_len}) + {FIXED_OVERHEAD}"
    );
}

/// The daemon's decision on the same message, under a budget that gives it
/// nothing beyond what its body took (the session's three bytes per body byte):
/// accepted, its memory given back, and the heap above the message stays within
/// the decoded copy those three bytes count plus the fixed overhead.
#[test]
fn the_400_mib_entry_needs_nothing_beyond_what_the_body_was_charged() {
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let raw = message_with_attachment(
        "ho-so.zip",
        "application/zip",
        &big_entry_zip("nhat-ky.txt", 400 * MIB),
    );
    let msg = Message::from_eml(&raw);
    drop(raw);
    let body = msg.body_len() as u64;
    let pool = MemoryBudget::new(SESSION_BYTES_PER_BODY_BYTE * body);
    let mut session = Reservation::new(Some(pool.clone()));
    assert!(session.grow(SESSION_BYTES_PER_BODY_BYTE * body));
    let mut policy = Policy::default();
    policy.clamav.enabled = false;
    let shared = Shared {
        memory: Some(pool.clone()),
        ..Shared::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let baseline = CURRENT.load(Ordering::SeqCst);
    let peak = measure(|| {
        let decision = runtime.block_on(decide_sharing(&msg, &policy, None, &shared));
        assert_eq!(
            decision.verdict.action,
            Action::Accept,
            "{:?}",
            decision.verdict
        );
    });
    assert_eq!(pool.used(), SESSION_BYTES_PER_BODY_BYTE * body);
    let extra = peak - baseline;
    eprintln!("decision: peak {extra} bytes above the message of {body} body bytes");
    assert!(extra < body as usize + FIXED_OVERHEAD, "{extra}");
}

/// An archive that must be opened is held whole: the heap never holds more
/// than the account was charged (the decoded copy included) plus the fixed
/// overhead, here with the zip holding the 400 MiB entry itself inside a zip.
#[test]
fn what_is_held_whole_is_charged() {
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let inner = big_entry_zip("nhat-ky.txt", 400 * MIB);
    let outer = {
        use std::io::Write;
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let stored = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        w.start_file("ho-so.zip", stored).unwrap();
        w.write_all(&inner).unwrap();
        w.finish().unwrap().into_inner()
    };
    drop(inner);
    let raw = message_with_attachment("luu-tru.zip", "application/zip", &outer);
    drop(outer);
    let pool = MemoryBudget::new(u64::MAX);
    let account = MemoryAccount::new(pool.clone(), 0, u64::MAX);
    let baseline = CURRENT.load(Ordering::SeqCst);
    let peak = measure(|| {
        let inspection = inspect_message_within(
            &raw,
            &LimitsSection::default(),
            Some(Arc::clone(&account)),
            true,
        );
        assert!(inspection.files.iter().any(|f| f.size == 400 * MIB as u64));
        assert!(inspection.files.iter().all(|f| f.uninspectable.is_none()));
    });
    let extra = peak - baseline;
    let charged = account.peak() as usize;
    eprintln!("held whole: peak {extra} bytes, the account's peak {charged}");
    assert!(
        charged > 10 * MIB,
        "the decoded zip and the inner one: {charged}"
    );
    assert!(
        extra < charged + FIXED_OVERHEAD,
        "{extra} > {charged} + {FIXED_OVERHEAD}"
    );
}
