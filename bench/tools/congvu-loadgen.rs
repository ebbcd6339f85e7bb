//! Load generator: replays a directory of .eml files to a milter over N concurrent
//! connections, speaking the protocol the way Postfix 3.7 does (the project's
//! [`MilterClient`]), and reports throughput, decision latency, replies, errors
//! and, given the milter's pid, its peak memory and CPU time.
//!
//! A bench tool, not installed by the Debian package. Only loopback or test-bed
//! addresses are meant as targets. See bench/README.md.
//!
//! ```text
//! congvu-loadgen --milter 127.0.0.1:8891 --dir DIR --connections 8 --messages 2000 \
//!                [--per-connection 5] [--pid PID] [--json]
//! ```

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use congvu_milter::message::Envelope;
use congvu_milter::milter::client::{MilterClient, Offer, StageMacros};
use congvu_milter::milter::codec::{Family, Reply};
use serde::Serialize;

#[derive(Parser, Debug)]
#[command(
    name = "congvu-loadgen",
    about = "Replays .eml files to a milter like Postfix and measures it"
)]
struct Args {
    /// Milter address, host:port (TCP).
    #[arg(long, default_value = "127.0.0.1:8891")]
    milter: String,
    /// Directory of .eml files, replayed in name order, round-robin.
    #[arg(long)]
    dir: PathBuf,
    /// Concurrent milter connections (Postfix opens one per SMTP session).
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Messages to send in all.
    #[arg(long, default_value_t = 1000)]
    messages: u64,
    /// Messages per connection before QUIT and a new connection (like an SMTP
    /// session delivering several messages).
    #[arg(long, default_value_t = 5)]
    per_connection: u64,
    /// The milter's pid: report its peak RSS and CPU time (from /proc).
    #[arg(long)]
    pid: Option<u32>,
    /// Envelope sender.
    #[arg(long, default_value = "sender@example.org")]
    from: String,
    /// Envelope recipient (repeat for several).
    #[arg(long, default_value = "nhanvien@bacgiang.gov.vn")]
    rcpt: Vec<String>,
    /// Timeout for each read and write, seconds.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
}

/// One message sent.
struct Sample {
    bytes: u64,
    /// EOB to final reply; `None` when the milter decided before end of message.
    eom_latency: Option<Duration>,
    kind: ReplyKind,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ReplyKind {
    Accept,
    Reject,
    Tempfail,
    Other,
}

fn kind_of(reply: &Reply) -> ReplyKind {
    match reply {
        Reply::Accept | Reply::Continue => ReplyKind::Accept,
        Reply::Reject => ReplyKind::Reject,
        Reply::Tempfail => ReplyKind::Tempfail,
        Reply::ReplyCode(text) if text.starts_with('5') => ReplyKind::Reject,
        Reply::ReplyCode(text) if text.starts_with('4') => ReplyKind::Tempfail,
        _ => ReplyKind::Other,
    }
}

#[derive(Default)]
struct TaskResult {
    samples: Vec<Sample>,
    errors: u64,
    first_errors: Vec<String>,
}

#[derive(Serialize)]
struct Report {
    files: usize,
    connections: usize,
    messages: u64,
    bytes: u64,
    seconds: f64,
    messages_per_s: f64,
    mb_per_s: f64,
    /// Decision latency (EOB to final reply), milliseconds.
    latency_ms_p50: f64,
    latency_ms_p99: f64,
    latency_ms_max: f64,
    decided_at_eom: usize,
    decided_early: usize,
    accept: u64,
    reject: u64,
    tempfail: u64,
    other: u64,
    errors: u64,
    first_errors: Vec<String>,
    milter: Option<MilterUsage>,
}

#[derive(Serialize)]
struct MilterUsage {
    pid: u32,
    /// VmHWM at the end, KiB (reset at start when the kernel allows it).
    peak_rss_kib: u64,
    peak_rss_reset: bool,
    /// Highest VmRSS seen by sampling every 20 ms, KiB.
    sampled_max_rss_kib: u64,
    /// User + system CPU seconds the milter used during the run.
    cpu_seconds: f64,
    /// Messages (MB) per CPU-second of the milter: per core.
    messages_per_cpu_s: f64,
    mb_per_cpu_s: f64,
}

fn load_corpus(dir: &Path) -> anyhow::Result<Vec<(String, Arc<Vec<u8>>)>> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    names.sort();
    if names.is_empty() {
        bail!("no .eml files in {}", dir.display());
    }
    names
        .into_iter()
        .map(|p| {
            let bytes =
                std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
            Ok((p.display().to_string(), Arc::new(bytes)))
        })
        .collect()
}

/// Fields of /proc/PID/stat after the command name: utime and stime (clock ticks).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After ")": state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A `Vm*:` line of /proc/PID/status, KiB.
fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Resets VmHWM to the current RSS (Linux 4.0+, needs the right to write there).
fn reset_hwm(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1000.0
}

struct Shared {
    args: Args,
    corpus: Vec<(String, Arc<Vec<u8>>)>,
    next: AtomicU64,
    stop: AtomicBool,
}

async fn connection_task(shared: Arc<Shared>, task: usize) -> TaskResult {
    let a = &shared.args;
    let mut out = TaskResult::default();
    let timeout = Duration::from_secs(a.timeout);
    let mut conn_no = 0u64;
    'connections: while !shared.stop.load(Ordering::Relaxed) {
        conn_no += 1;
        let mut client = match MilterClient::connect_tcp(&a.milter, timeout).await {
            Ok(c) => c,
            Err(e) => {
                record_error(&mut out, format!("connect: {e}"));
                if out.errors > 10 && out.samples.is_empty() {
                    shared.stop.store(true, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let setup = async {
            client.negotiate(Offer::POSTFIX_3_7).await?;
            client
                .macros(
                    b'C',
                    &[
                        ("j", "mx.bacgiang.gov.vn"),
                        ("{daemon_name}", "smtpd"),
                        ("{client_addr}", "198.51.100.7"),
                        ("{client_port}", "40000"),
                        ("{client_name}", "mail.example.org"),
                    ],
                )
                .await?;
            client
                .connect(
                    "mail.example.org",
                    Family::Inet(Ipv4Addr::new(198, 51, 100, 7), 40000),
                )
                .await?;
            client.helo("mail.example.org").await?;
            Ok::<_, congvu_milter::milter::client::ClientError>(())
        };
        if let Err(e) = setup.await {
            record_error(&mut out, format!("setup: {e}"));
            continue;
        }
        for _ in 0..a.per_connection {
            let i = shared.next.fetch_add(1, Ordering::Relaxed);
            if i >= a.messages || shared.stop.load(Ordering::Relaxed) {
                let _ = client.quit().await;
                break 'connections;
            }
            let (_, eml) = &shared.corpus[(i as usize) % shared.corpus.len()];
            let queue_id = format!("{:X}{:05X}{:04X}", task, conn_no & 0xFFFFF, i & 0xFFFF);
            let macros = StageMacros::new()
                .with(b'M', "i", &queue_id)
                .with(b'M', "{mail_addr}", &a.from)
                .with(b'R', "i", &queue_id)
                .with(b'T', "i", &queue_id)
                .with(b'N', "i", &queue_id)
                .with(b'E', "i", &queue_id);
            let envelope = Envelope {
                sender: a.from.clone(),
                sender_params: vec![format!("SIZE={}", eml.len()), "BODY=8BITMIME".into()],
                recipients: a.rcpt.clone(),
            };
            match client.send_message(&envelope, eml, &macros).await {
                Ok(outcome) => out.samples.push(Sample {
                    bytes: eml.len() as u64,
                    eom_latency: client.last_eom_latency(),
                    kind: kind_of(&outcome.reply),
                }),
                Err(e) => {
                    record_error(&mut out, format!("message {i}: {e}"));
                    continue 'connections;
                }
            }
        }
        let _ = client.quit().await;
    }
    out
}

fn record_error(out: &mut TaskResult, text: String) {
    out.errors += 1;
    if out.first_errors.len() < 5 {
        out.first_errors.push(text);
    }
}

async fn run(args: Args) -> anyhow::Result<Report> {
    let corpus = load_corpus(&args.dir)?;
    let pid = args.pid;
    let peak_rss_reset = pid.is_some_and(reset_hwm);
    let cpu_before = pid.and_then(cpu_ticks);
    let connections = args.connections.max(1);
    let files = corpus.len();
    let shared = Arc::new(Shared {
        args,
        corpus,
        next: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });

    // Sample the milter's RSS while the load runs.
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = pid.map(|pid| {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut max = 0;
            while sampling.load(Ordering::Relaxed) {
                max = max.max(status_kib(pid, "VmRSS:").unwrap_or(0));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            max
        })
    });

    let started = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|t| tokio::spawn(connection_task(shared.clone(), t)))
        .collect();
    let mut all = TaskResult::default();
    for t in tasks {
        let r = t.await.context("a connection task panicked")?;
        all.samples.extend(r.samples);
        all.errors += r.errors;
        for e in r.first_errors {
            if all.first_errors.len() < 5 {
                all.first_errors.push(e);
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    sampling.store(false, Ordering::Relaxed);
    let sampled_max = match sampler {
        Some(s) => s.await.unwrap_or(0),
        None => 0,
    };

    let bytes: u64 = all.samples.iter().map(|s| s.bytes).sum();
    let messages = all.samples.len() as u64;
    let mut lat: Vec<Duration> = all.samples.iter().filter_map(|s| s.eom_latency).collect();
    lat.sort();
    let count = |k: ReplyKind| all.samples.iter().filter(|s| s.kind == k).count() as u64;
    let mb = bytes as f64 / 1e6;
    let milter = pid.map(|pid| {
        // /proc reports CPU time in USER_HZ, 100 on Linux.
        let cpu_seconds = match (cpu_before, cpu_ticks(pid)) {
            (Some(b), Some(a)) => a.saturating_sub(b) as f64 / 100.0,
            _ => 0.0,
        };
        let per = |x: f64| {
            if cpu_seconds > 0.0 {
                x / cpu_seconds
            } else {
                0.0
            }
        };
        MilterUsage {
            pid,
            peak_rss_kib: status_kib(pid, "VmHWM:").unwrap_or(0),
            peak_rss_reset,
            sampled_max_rss_kib: sampled_max,
            cpu_seconds,
            messages_per_cpu_s: per(messages as f64),
            mb_per_cpu_s: per(mb),
        }
    });
    Ok(Report {
        files,
        connections,
        messages,
        bytes,
        seconds,
        messages_per_s: messages as f64 / seconds,
        mb_per_s: mb / seconds,
        latency_ms_p50: percentile(&lat, 50.0),
        latency_ms_p99: percentile(&lat, 99.0),
        latency_ms_max: lat.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        decided_at_eom: lat.len(),
        decided_early: all.samples.len() - lat.len(),
        accept: count(ReplyKind::Accept),
        reject: count(ReplyKind::Reject),
        tempfail: count(ReplyKind::Tempfail),
        other: count(ReplyKind::Other),
        errors: all.errors,
        first_errors: all.first_errors,
        milter,
    })
}

fn print_table(r: &Report) {
    println!(
        "congvu-loadgen: {} files, {} connections",
        r.files, r.connections
    );
    println!("  messages          {:>12}", r.messages);
    println!("  MB sent           {:>12.1}", r.bytes as f64 / 1e6);
    println!("  seconds           {:>12.2}", r.seconds);
    println!("  messages/s        {:>12.1}", r.messages_per_s);
    println!("  MB/s              {:>12.2}", r.mb_per_s);
    println!(
        "  latency ms        p50 {:.2}  p99 {:.2}  max {:.2}  ({} at EOM, {} decided early)",
        r.latency_ms_p50, r.latency_ms_p99, r.latency_ms_max, r.decided_at_eom, r.decided_early
    );
    println!(
        "  replies           accept {}  reject {}  tempfail {}  other {}",
        r.accept, r.reject, r.tempfail, r.other
    );
    println!("  errors            {:>12}", r.errors);
    for e in &r.first_errors {
        println!("    {e}");
    }
    if let Some(m) = &r.milter {
        println!(
            "  milter pid {}: peak RSS {:.1} MiB{} (sampled max {:.1} MiB), CPU {:.2} s",
            m.pid,
            m.peak_rss_kib as f64 / 1024.0,
            if m.peak_rss_reset {
                ""
            } else {
                " (since start)"
            },
            m.sampled_max_rss_kib as f64 / 1024.0,
            m.cpu_seconds
        );
        println!(
            "  per milter core   {:.1} messages/s  {:.2} MB/s",
            m.messages_per_cpu_s, m.mb_per_cpu_s
        );
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let json = args.json;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(run(args))?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_table(&report);
    }
    if report.errors > 0 {
        std::process::exit(1);
    }
    Ok(())
}
