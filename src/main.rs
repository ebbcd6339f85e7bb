//! The `congvu-milter` command: `serve` runs the daemon, `check-config` checks a
//! policy file offline, `scan` runs the daemon's pipeline on .eml files, `report`
//! and `trace` read audit logs (src/audit), `quarantine` reviews the mail held on
//! Postfix's hold queue, `man` writes the manual pages. Every subcommand but
//! `report` and `trace` reads /etc/congvu-milter/congvu-milter.toml unless
//! `--config` names another file.
//!
//! Exit codes (also in congvu-milter(8), src/manpages.rs): 0 success (for `scan`:
//! every message accepted); 1 a policy with errors (`check-config`, `serve`) or,
//! for `scan`, at least one message that would not be accepted as is, or for
//! `trace`, no message found; 2 bad usage or a file that cannot be read; 3 the
//! daemon failed at run time.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use mimalloc::MiMalloc;

use congvu_milter::audit::{report, trace};
use congvu_milter::heap::CountingAllocator;
use congvu_milter::manpages::DEFAULT_CONFIG;
use congvu_milter::policy::{ConfigError, LoadedPolicy, LogFormat};
use congvu_milter::{manpages, offline, quarantine, server};

/// mimalloc gives memory back to the system after a burst of large messages
/// (glibc's malloc kept it in per-thread arenas), wrapped in a counter of heap
/// bytes in use (the `congvu_milter_heap_bytes` metric). It is built without
/// transparent huge pages (feature `no_thp`): with them a 2 MiB page is resident
/// as soon as one byte of it is touched, and peak RSS under load was 4x higher.
#[global_allocator]
static ALLOCATOR: CountingAllocator<MiMalloc> = CountingAllocator(MiMalloc);

/// Gives the calling thread's cached free memory back to the system: called when
/// a runtime thread runs out of work (see `server::run`), so that the RSS of an
/// idle daemon falls back to its baseline instead of keeping what the busiest
/// moment needed (bench/soak: flat at 12-13 MiB over 20,000 messages).
fn return_cached_memory() {
    // SAFETY: mimalloc's collection of the calling thread's heap, with no
    // argument but a flag.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

#[derive(Parser)]
#[command(
    name = "congvu-milter",
    version,
    about = "Postfix milter for the Bac Giang official-duty e-mail regulation"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the milter daemon.
    Serve {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Overrides `[log] format` of the policy.
        #[arg(long, value_enum)]
        log_format: Option<LogFormatArg>,
    },
    /// Check a policy file and report every problem with file, line and key.
    CheckConfig {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Judge .eml files with the daemon's pipeline and print each verdict.
    Scan {
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        #[command(flatten)]
        options: offline::ScanOptions,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Review the mail this filter put on hold: list, show, release, delete,
    /// expire (run as root: it uses postqueue, postcat and postsuper).
    Quarantine(quarantine::QuarantineArgs),
    /// Compliance figures from audit logs, by agency, mailbox, article, rule or day.
    Report(report::ReportArgs),
    /// Every message, on any host, that carried a file (by SHA-256 or name) or had
    /// a given Message-ID.
    Trace(trace::TraceArgs),
    /// Write the manual pages (congvu-milter(8), one per subcommand, and
    /// congvu-milter.toml(5)) into a directory.
    #[command(hide = true)]
    Man { dir: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => check_config(&config),
        Command::Serve { config, log_format } => {
            let loaded = match LoadedPolicy::load(&config) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("{e}");
                    eprintln!("congvu-milter: refusing to start with this policy");
                    return exit_for(&e);
                }
            };
            let format = match log_format {
                Some(LogFormatArg::Json) => LogFormat::Json,
                Some(LogFormatArg::Text) => LogFormat::Text,
                None => loaded.policy.log.format,
            };
            server::init_logging(format, &loaded.policy.log.level);
            for w in &loaded.warnings {
                tracing::warn!("{w}");
            }
            match server::run(config, loaded, Some(return_cached_memory)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("congvu-milter stopped: {e:#}");
                    ExitCode::from(3)
                }
            }
        }
        Command::Scan {
            config,
            options,
            files,
        } => {
            let loaded = match LoadedPolicy::load(&config) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("{e}");
                    return exit_for(&e);
                }
            };
            offline::run(&loaded, &options, &files)
        }
        Command::Quarantine(args) => quarantine::run(&args),
        Command::Report(args) => report::run(&args),
        Command::Trace(args) => trace::run(&args),
        Command::Man { dir } => match manpages::write_all(Cli::command(), &dir) {
            Ok(pages) => {
                for page in pages {
                    println!("{}", page.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("congvu-milter man: {}: {e}", dir.display());
                ExitCode::from(2)
            }
        },
    }
}

fn exit_for(e: &ConfigError) -> ExitCode {
    match e {
        ConfigError::Io { .. } => ExitCode::from(2),
        _ => ExitCode::from(1),
    }
}

fn check_config(path: &std::path::Path) -> ExitCode {
    match LoadedPolicy::load(path) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                println!("{w}");
            }
            println!(
                "{}: policy OK (sha256 {})",
                path.display(),
                &loaded.hash[..16]
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            exit_for(&e)
        }
    }
}
