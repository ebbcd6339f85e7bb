//! Speed of reading documents for classification stamps (src/inspect/text/):
//! documents per second and MB/s per format, over the fixtures of
//! fixtures/classified (or the files given), each read repeatedly for about a
//! second with a fresh budget per document, as the milter does per message.
//!
//!   cargo run --release --example classified-bench [FILE...]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use congvu_milter::inspect::budget::Budget;
use congvu_milter::inspect::filetype::classify;
use congvu_milter::inspect::text::read_document;
use congvu_milter::policy::LimitsSection;

fn main() {
    let mut files: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if files.is_empty() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/classified");
        files = std::fs::read_dir(&dir)
            .expect("fixtures/classified")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e != "sh"))
            .collect();
        files.sort();
    }
    let limits = LimitsSection::default();
    // Per format (the extension): documents read, bytes, time.
    let mut totals: BTreeMap<String, (u64, u64, Duration)> = BTreeMap::new();
    for path in &files {
        let data = std::fs::read(path).expect("readable file");
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let format = path
            .extension()
            .map_or("(none)".into(), |e| e.to_string_lossy().into_owned());
        let kind = classify(&data);
        let start = Instant::now();
        let mut runs = 0u64;
        let mut outcome = None;
        while start.elapsed() < Duration::from_secs(1) {
            let mut budget = Budget::new(&limits);
            outcome = read_document(Some(&name), &kind, &data, &mut budget);
            runs += 1;
        }
        let elapsed = start.elapsed();
        println!(
            "{name:<28} {:>9} bytes {:>10.0} docs/s {:>8.1} MB/s  {outcome:?}",
            data.len(),
            runs as f64 / elapsed.as_secs_f64(),
            (runs * data.len() as u64) as f64 / elapsed.as_secs_f64() / 1e6,
        );
        let t = totals.entry(format).or_default();
        t.0 += runs;
        t.1 += runs * data.len() as u64;
        t.2 += elapsed;
    }
    println!("\nper format:");
    for (format, (runs, bytes, time)) in totals {
        println!(
            "{format:<6} {:>10.0} docs/s {:>8.1} MB/s",
            runs as f64 / time.as_secs_f64(),
            bytes as f64 / time.as_secs_f64() / 1e6
        );
    }
}
