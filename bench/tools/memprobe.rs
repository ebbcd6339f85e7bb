//! Peak memory of deciding one 20 MB message (a ~15 MB base64 PDF attachment,
//! an 8-bit text attachment and body text), the message itself included, as a
//! ratio to the message size. Two measures:
//!
//! - the process's peak RSS (VmHWM in /proc/self/status), reset before each step
//!   through /proc/self/clear_refs when the kernel allows it;
//! - bytes allocated at the peak, by a counting allocator (exact, and the same
//!   method as tests/inspect_memory.rs).
//!
//!   cargo run --release --example memprobe
//!
//! Steps: the message as the session holds it (`Message`, raw `BytesMut`), then
//! `inspect_message` + `rules::attachments::evaluate`, then the full
//! `pipeline::decide` with ClamAV off.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use congvu_milter::inspect::inspect_message;
use congvu_milter::message::Message;
use congvu_milter::pipeline;
use congvu_milter::policy::LoadedPolicy;
use congvu_milter::rules;

#[path = "../sample_data.rs"]
mod sample_data;
use sample_data::{base64_lines, pseudo_random};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let grow = new_size - layout.size();
                let now = CURRENT.fetch_add(grow, Ordering::Relaxed) + grow;
                // A moving realloc holds both blocks for a moment.
                PEAK.fetch_max(now + layout.size(), Ordering::Relaxed);
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const MB: usize = 1_000_000;

fn status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn reset_hwm() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// About 20 MB: body text, a PDF-like attachment (15 MB once base64-encoded) and
/// a 4 MB 8-bit CSV attachment.
fn twenty_mb_message() -> Vec<u8> {
    let mut m = b"From: a@example.org\r\nTo: nhanvien@bacgiang.gov.vn\r\nSubject: big\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"=_m\"\r\n\r\n--=_m\r\nContent-Type: text/plain\r\n\r\n".to_vec();
    for i in 0..10_000 {
        m.extend_from_slice(
            format!("dong {i} cua van ban kem theo cong van so 123\r\n").as_bytes(),
        );
    }
    m.extend_from_slice(b"--=_m\r\nContent-Type: application/pdf; name=\"a.pdf\"\r\nContent-Disposition: attachment; filename=\"a.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n");
    let mut pdf = b"%PDF-1.7\n".to_vec();
    pdf.extend_from_slice(&pseudo_random(15 * MB / 4 * 3 - pdf.len(), 7));
    m.extend_from_slice(&base64_lines(&pdf));
    drop(pdf);
    m.extend_from_slice(b"--=_m\r\nContent-Type: text/csv; name=\"b.csv\"\r\nContent-Disposition: attachment; filename=\"b.csv\"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n");
    let row = b"1;Nguyen Van A;So TTTT;0123456789\r\n";
    while m.len() < 20 * MB - 20 {
        m.extend_from_slice(row);
    }
    m.extend_from_slice(b"--=_m--\r\n");
    m
}

struct Step {
    name: &'static str,
    rss_kib: u64,
    alloc_bytes: usize,
}

fn main() {
    let policy = LoadedPolicy::from_text("[clamav]\nenabled = false\n", Path::new("memprobe.toml"))
        .expect("policy")
        .policy;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let resettable = reset_hwm();
    let base_rss = status_kib("VmRSS:");
    let base_alloc = CURRENT.load(Ordering::Relaxed);

    // The message as the milter session holds it (the .eml bytes are dropped).
    let msg = {
        let eml = twenty_mb_message();
        Message::from_eml(&eml)
    };
    let size = msg.raw.len();
    let held_rss = status_kib("VmRSS:");
    let held_alloc = CURRENT.load(Ordering::Relaxed);

    let mut steps = Vec::new();
    let mut measure = |name: &'static str, f: &mut dyn FnMut()| {
        reset_hwm();
        PEAK.store(CURRENT.load(Ordering::Relaxed), Ordering::Relaxed);
        f();
        steps.push(Step {
            name,
            rss_kib: status_kib("VmHWM:"),
            alloc_bytes: PEAK.load(Ordering::Relaxed),
        });
    };
    measure("inspect + evaluate", &mut || {
        let inspection = inspect_message(&msg.raw, &policy.limits);
        assert!(inspection.problems.is_empty(), "{:?}", inspection.problems);
        std::hint::black_box(rules::attachments::evaluate(&inspection, &policy));
    });
    measure("pipeline::decide", &mut || {
        let decision = runtime.block_on(pipeline::decide(&msg, &policy, None));
        std::hint::black_box(decision);
    });

    println!("message: {size} bytes ({:.1} MB)", size as f64 / 1e6);
    println!(
        "baseline before the message: RSS {:.1} MiB; with the message held: RSS {:.1} MiB, allocated {:.1} MB",
        base_rss as f64 / 1024.0,
        held_rss as f64 / 1024.0,
        (held_alloc - base_alloc) as f64 / 1e6
    );
    if !resettable {
        println!("(VmHWM could not be reset: the RSS peaks below include earlier steps)");
    }
    println!(
        "{:<22} {:>14} {:>10} {:>16} {:>10}",
        "step", "peak RSS MiB", "x size", "peak alloc MB", "x size"
    );
    for s in &steps {
        // Both relative to the process before the message existed: the message
        // itself is included, as in "peak memory for a 20 MB message".
        let rss = s.rss_kib.saturating_sub(base_rss) as f64 * 1024.0;
        let alloc = s.alloc_bytes.saturating_sub(base_alloc) as f64;
        println!(
            "{:<22} {:>14.1} {:>10.2} {:>16.1} {:>10.2}",
            s.name,
            rss / 1048576.0,
            rss / size as f64,
            alloc / 1e6,
            alloc / size as f64
        );
    }
}
