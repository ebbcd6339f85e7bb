//! Test bed shared by the integration tests: a private Postfix instance
//! ([`postfix::Postfix`]) relaying to an in-process SMTP sink, a private
//! clamd ([`clamd::Clamd`]) with a tiny self-built signature database, a
//! private rspamd ([`rspamd::Rspamd`]) with contrib/rspamd's settings, and a
//! small SMTP client ([`smtp`]). Everything listens on 127.0.0.1 only and
//! lives in its own directory under /tmp, so tests can run concurrently.
//!
//! Declared once in tests/tests.rs; a subject module uses it as `crate::common`.
//! The packages it needs are installed by `tests/testbed/install.sh` (run by
//! `tests/run.sh`).
//!
//! Set `TESTBED_KEEP=1` to keep the temporary directories (configuration,
//! logs, queue, received messages) after a test, for post-mortems.
#![allow(dead_code)]
#![allow(unused_imports)]

pub mod clamd;
pub mod mail;
pub mod postfix;
pub mod rspamd;
pub mod smtp;

pub use clamd::{Clamd, ClamdOptions};
pub use postfix::{Postfix, PostfixOptions};
pub use smtp::{Reply, SinkMessage, SmtpClient, SmtpOutcome, Stage};

use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Where the test bed's packages come from, for error messages.
pub const INSTALL_HINT: &str = "run `bash tests/testbed/install.sh` as root (tests/run.sh does)";

/// Panics with an explicit message unless `path` exists.
pub fn require_file(path: impl AsRef<Path>, what: &str) {
    let path = path.as_ref();
    if !path.exists() {
        panic!(
            "test bed: {what} not found at {} — {INSTALL_HINT}",
            path.display()
        );
    }
}

/// Finds an executable on PATH (plus the sbin directories, which a non-login
/// root shell may lack).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Like [`which`], but panics with an explicit message when it is missing.
pub fn require_binary(name: &str) -> PathBuf {
    which(name).unwrap_or_else(|| panic!("test bed: binary `{name}` not found — {INSTALL_HINT}"))
}

/// Panics unless the tests run as root (Postfix's master must).
pub fn require_root(what: &str) {
    if !nix::unistd::Uid::effective().is_root() {
        panic!("test bed: {what} must run as root (the CI does); current euid is not 0");
    }
}

/// A port on 127.0.0.1 that was free a moment ago. Callers that hand it to
/// another program retry on "address in use" (the window is small).
pub fn free_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("test bed: bind 127.0.0.1:0");
    l.local_addr().expect("test bed: local_addr").port()
}

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// Is something listening on 127.0.0.1:`port`? Reads /proc/net/tcp instead of
/// connecting, so a milter behind smtpd never sees a probe connection.
pub fn is_listening(port: u16) -> bool {
    let Ok(table) = fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    let want = format!("0100007F:{port:04X}");
    let any = format!("00000000:{port:04X}");
    table.lines().skip(1).any(|line| {
        let mut cols = line.split_whitespace();
        let local = cols.nth(1).unwrap_or("");
        let state = cols.nth(1).unwrap_or("");
        state == "0A" && (local == want || local == any)
    })
}

/// A fresh directory under /tmp (AppArmor profiles for clamd allow /tmp),
/// world-traversable so that Postfix's unprivileged daemons and clamd can
/// reach the files inside.
pub fn temp_dir(prefix: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .expect("test bed: create a temp dir under /tmp");
    set_mode(dir.path(), 0o755);
    if std::env::var_os("TESTBED_KEEP").is_some() {
        eprintln!("test bed: keeping {}", dir.path().display());
    }
    dir
}

/// Drops a TempDir, or leaves it on disk if TESTBED_KEEP is set.
pub fn finish_dir(dir: tempfile::TempDir) {
    if std::env::var_os("TESTBED_KEEP").is_some() {
        let _ = dir.keep();
    }
}

pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("test bed: chmod {mode:o} {}: {e}", path.display()));
}

/// The last `n` lines of a text file, or a note saying why there are none.
pub fn tail(path: &Path, n: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(n);
            format!(
                "--- last {} lines of {} ---\n{}\n--- end ---",
                lines.len() - start,
                path.display(),
                lines[start..].join("\n")
            )
        }
        Err(e) => format!("--- {}: {e} ---", path.display()),
    }
}

/// Polls `f` every 20 ms until it returns `Some` or `timeout` passes.
pub fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `program args...` so that it and everything it forks die with the
/// test process, with stdout and stderr appended to `output`.
///
/// The returned [`Child`] is a small `sh` wrapper that leads its own process
/// group, runs the program in the background and waits for it. Its
/// parent-death signal is SIGTERM; on SIGTERM it signals the whole group and
/// waits. Why not set PR_SET_PDEATHSIG on the program directly: the kernel
/// clears it when a process changes credentials, and Postfix's master does
/// (it switches euid to create files owned by `postfix`), so a master left
/// behind by a crashed test would keep running forever.
///
/// PR_SET_PDEATHSIG also fires when the *thread* that forked exits, not the
/// process. Test threads come and go (and a Clamd kept in a `static`
/// outlives the test that started it), so every child is forked from one
/// long-lived spawner thread that ends only with the process.
pub fn spawn_child(
    program: &Path,
    args: &[&std::ffi::OsStr],
    output: &Path,
    envs: &[(&str, &std::ffi::OsStr)],
) -> io::Result<Child> {
    type Job = Box<dyn FnOnce() + Send>;
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let sender = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("testbed-spawner".into())
            .spawn(move || {
                for job in rx {
                    job();
                }
            })
            .expect("test bed: start the spawner thread");
        Mutex::new(tx)
    });
    const WRAPPER: &str =
        r#"trap 'trap "" TERM; kill -TERM 0; wait; exit 143' TERM; "$@" & wait $!"#;
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(output)?;
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(WRAPPER)
        .arg("sh")
        .arg(program)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0);
    let parent = std::process::id();
    // SAFETY: the closure only calls async-signal-safe functions (prctl,
    // getppid, _exit).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let (tx, rx) = mpsc::channel();
    sender
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send(Box::new(move || {
            let _ = tx.send(cmd.spawn());
        }))
        .expect("test bed: spawner thread is gone");
    rx.recv().expect("test bed: spawner thread is gone")
}

/// Has the child exited? Peeks with `waitid(WNOWAIT)`, so an exited child
/// stays a zombie and its pid (= its process group id) cannot be reused
/// before we signal the group. `None` when the child was already reaped.
pub fn peek_exited(child: &Child) -> Option<bool> {
    // SAFETY: waitid on our own child with a zeroed siginfo_t.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let r = libc::waitid(
            libc::P_PID,
            child.id() as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        if r != 0 {
            return None;
        }
        Some(info.si_pid() != 0)
    }
}

/// Sends `sig` to a child's process group and to the child itself. Only
/// valid while the child is not reaped (see [`peek_exited`]).
fn signal_group(child: &Child, sig: i32) {
    let pid = child.id() as libc::pid_t;
    // SAFETY: plain kill(2) calls on a process group and pid we created.
    unsafe {
        libc::kill(-pid, sig);
        libc::kill(pid, sig);
    }
}

/// Terminates a child and the rest of its process group: `sig` first,
/// SIGKILL for whatever is left after `grace`, then reaps it.
pub fn terminate(child: &mut Child, sig: i32, grace: Duration) {
    match peek_exited(child) {
        None => return, // already reaped elsewhere
        Some(false) => {
            signal_group(child, sig);
            poll(grace, || (peek_exited(child) != Some(false)).then_some(()));
        }
        Some(true) => {}
    }
    // Postfix daemons that were mid-work may outlive the master by a moment.
    signal_group(child, libc::SIGKILL);
    let _ = child.wait();
    // The program itself is the wrapper's child, and killed processes take a
    // moment to close their sockets: wait until no live process is left in
    // the group, so that "stopped" really means nobody listens any more.
    // (Zombies don't count: they hold no sockets, and PID 1 on some CI VMs
    // takes a second or two to reap orphans.)
    let pgid = child.id() as i32;
    poll(Duration::from_secs(5), || {
        (!group_has_live_process(pgid)).then_some(())
    });
}

/// Is any process of group `pgid` still running? Scans /proc. A process
/// counts as gone once all its threads are zombies: a killed multi-threaded
/// daemon (clamd) shows its main thread as a zombie while other threads
/// still hold its sockets open.
fn group_has_live_process(pgid: i32) -> bool {
    // "pid (comm) state ppid pgrp ...": comm may hold spaces and ')'.
    fn fields(stat_path: &Path) -> Option<(String, i32)> {
        let stat = fs::read_to_string(stat_path).ok()?;
        let (_, rest) = stat.rsplit_once(')')?;
        let mut f = rest.split_whitespace();
        let state = f.next()?.to_string();
        let pgrp = f.nth(1)?.parse().ok()?;
        Some((state, pgrp))
    }
    let running = |state: &str| state != "Z" && state != "X";
    let Ok(procs) = fs::read_dir("/proc") else {
        return false;
    };
    procs
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .any(|e| {
            let Some((state, pgrp)) = fields(&e.path().join("stat")) else {
                return false;
            };
            if pgrp != pgid {
                return false;
            }
            if running(&state) {
                return true;
            }
            fs::read_dir(e.path().join("task")).is_ok_and(|tasks| {
                tasks
                    .flatten()
                    .any(|t| fields(&t.path().join("stat")).is_some_and(|(s, _)| running(&s)))
            })
        })
}

/// The value of one series (`name{labels}` exactly as exported) in Prometheus
/// text output; 0 when the series is absent.
pub fn metric_value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Bytes after the header/body separator (the first empty line), or the
/// whole input if there is none.
pub fn body_of(message: &[u8]) -> &[u8] {
    for sep in [&b"\r\n\r\n"[..], &b"\n\n"[..]] {
        if let Some(i) = message.windows(sep.len()).position(|w| w == sep) {
            return &message[i + sep.len()..];
        }
    }
    message
}

/// Unfolded values of every header called `name` (case-insensitive) in the
/// header section of `message`.
pub fn header_values(message: &[u8], name: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(message);
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(v) = current.as_mut() {
                v.push(' ');
                v.push_str(line.trim_start());
            }
            continue;
        }
        if let Some(v) = current.take() {
            out.push(v);
        }
        if let Some((n, v)) = line.split_once(':')
            && n.eq_ignore_ascii_case(name)
        {
            current = Some(v.trim_start().to_string());
        }
    }
    if let Some(v) = current {
        out.push(v);
    }
    out
}
