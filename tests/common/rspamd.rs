//! A private instance of Debian's rspamd: the stock `/etc/rspamd/rspamd.conf`
//! with its local configuration directory, database, run and log directories
//! moved into a temporary directory, so it never touches (or collides with) the
//! system's rspamd.
//!
//! `local.d/` holds the files of `contrib/rspamd/local.d/` unchanged, the
//! settings an admin installs. `override.d/` holds what only the test bed needs:
//! random loopback ports for the proxy (milter), normal and controller workers,
//! a resolver that fails at once (there is no network here; rspamd's DNS lists
//! and remote maps simply find nothing), and rspamd's GTUBE-style test patterns.
//!
//! Layout of its directory (`/tmp/congvu-rspamd-XXXX`): `etc/local.d`,
//! `etc/override.d`, `db/`, `run/`, `log/rspamd.log`, `rspamd.out`
//! (stdout/stderr of the main process).
//!
//! Compiling the Hyperscan databases takes rspamd ~10 s of CPU on a fresh
//! machine; they are kept between runs in [`HS_CACHE_DIR`] (rspamd checks each
//! cached file against its own build and patterns), which makes later starts
//! take about a second.

use super::{
    INSTALL_HINT, finish_dir, free_port, is_listening, peek_exited, poll, require_binary,
    require_root, set_mode, spawn_child, tail, temp_dir, terminate,
};
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Hyperscan cache shared by every test-bed rspamd, across runs.
pub const HS_CACHE_DIR: &str = "/var/tmp/congvu-testbed-rspamd-hs";

/// The system user and group Debian's rspamd package creates; the workers run as it.
const RSPAMD_USER: &str = "_rspamd";

/// How long a start may take: a fresh machine compiles the Hyperscan cache first.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// A running private rspamd. Dropping it stops the main process and its workers.
pub struct Rspamd {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    child: Option<Child>,
    milter_port: u16,
    controller_port: u16,
}

impl Rspamd {
    /// Starts rspamd with `local_d`'s files as its `local.d` and waits until
    /// the proxy (milter) and controller workers listen and the controller
    /// answers `/stat`. Panics with its log if it can't.
    pub fn start(local_d: &Path) -> Rspamd {
        require_root("a private rspamd (started as root, workers as _rspamd)");
        let rspamd = require_binary("rspamd");
        let conf = Path::new("/etc/rspamd/rspamd.conf");
        if !conf.is_file() {
            panic!(
                "test bed: {} not found (package rspamd) — {INSTALL_HINT}",
                conf.display()
            );
        }
        // One start at a time: on a fresh machine the first one fills
        // HS_CACHE_DIR, and the next then starts in about a second instead of
        // compiling the same databases at the same time on the same cores.
        static STARTING: Mutex<()> = Mutex::new(());
        let _one_at_a_time = STARTING.lock().unwrap_or_else(|e| e.into_inner());
        let mut last_err = String::new();
        for _ in 0..5 {
            match Self::try_start(&rspamd, local_d) {
                Ok(r) => return r,
                Err(e) if e.contains("in use") => last_err = e,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("{last_err}")
    }

    fn try_start(rspamd: &Path, local_d: &Path) -> Result<Rspamd, String> {
        let (uid, gid) = rspamd_ids();
        let dir = temp_dir("congvu-rspamd-");
        let path = dir.path().to_path_buf();
        let mkdir = |p: &Path| {
            fs::create_dir_all(p).map_err(|e| format!("test bed: mkdir {}: {e}", p.display()))
        };
        for d in ["etc/local.d", "etc/override.d"] {
            mkdir(&path.join(d))?;
            set_mode(&path.join(d), 0o755);
        }
        let hs_cache = Path::new(HS_CACHE_DIR);
        for d in [
            path.join("db"),
            path.join("run"),
            path.join("log"),
            hs_cache.into(),
        ] {
            mkdir(&d)?;
            nix::unistd::chown(&d, Some(uid), Some(gid))
                .map_err(|e| format!("test bed: chown {}: {e}", d.display()))?;
            set_mode(&d, 0o755);
        }
        copy_dir_files(local_d, &path.join("etc/local.d"))?;

        let milter_port = free_port();
        let normal_port = free_port();
        let controller_port = free_port();
        let override_d = path.join("etc/override.d");
        let write = |name: &str, text: String| {
            fs::write(override_d.join(name), text)
                .map_err(|e| format!("test bed: write override.d/{name}: {e}"))
        };
        // override.d wins over the stock bind_socket ("localhost:1133x").
        for (worker, port) in [
            ("proxy", milter_port),
            ("normal", normal_port),
            ("controller", controller_port),
        ] {
            write(
                &format!("worker-{worker}.inc"),
                format!("bind_socket = \"127.0.0.1:{port}\";\n"),
            )?;
        }
        write(
            "options.inc",
            format!(
                "# No network on the test bed: every DNS query is refused at once\n\
                 # instead of timing out against the machine's resolver.\n\
                 dns {{\n  nameserver = [\"127.0.0.1:53\"];\n  timeout = 0.2s;\n  retransmits = 1;\n}}\n\
                 hs_cache_dir = \"{HS_CACHE_DIR}/\";\n\
                 # YJS*...GTUBE... (add header) besides the standard GTUBE (reject).\n\
                 enable_test_patterns = true;\n"
            ),
        )?;

        let out = path.join("rspamd.out");
        let vars: Vec<String> = [
            ("LOCAL_CONFDIR", "etc"),
            ("DBDIR", "db"),
            ("RUNDIR", "run"),
            ("LOGDIR", "log"),
        ]
        .iter()
        .map(|(var, sub)| format!("--var={var}={}", path.join(sub).display()))
        .collect();
        let args: Vec<&std::ffi::OsStr> = [
            "-f",
            "-c",
            "/etc/rspamd/rspamd.conf",
            "-u",
            RSPAMD_USER,
            "-g",
            RSPAMD_USER,
        ]
        .into_iter()
        .chain(vars.iter().map(String::as_str))
        .map(std::ffi::OsStr::new)
        .collect();
        let child = spawn_child(rspamd, &args, &out, &[])
            .map_err(|e| format!("test bed: spawn {}: {e} — {INSTALL_HINT}", rspamd.display()))?;
        let mut r = Rspamd {
            dir: Some(dir),
            path,
            child: Some(child),
            milter_port,
            controller_port,
        };

        let started = Instant::now();
        let ready = poll(START_TIMEOUT, || {
            if r.child.as_ref().and_then(peek_exited) != Some(false) {
                return Some(false);
            }
            let up =
                is_listening(milter_port) && is_listening(controller_port) && r.try_stat().is_ok();
            up.then_some(true)
        });
        if ready == Some(true) {
            return Ok(r);
        }
        let report = r.failure_report(&format!(
            "rspamd did not serve its proxy (milter) on 127.0.0.1:{milter_port} and its \
             controller on 127.0.0.1:{controller_port} within {:?} (a first start \
             compiles the Hyperscan cache in {HS_CACHE_DIR}: ~10 s of CPU)",
            started.elapsed()
        ));
        r.stop();
        Err(report)
    }

    /// The Postfix milter address of the proxy worker (`inet:127.0.0.1:PORT`).
    pub fn milter_socket(&self) -> String {
        format!("inet:127.0.0.1:{}", self.milter_port)
    }

    pub fn dir(&self) -> &Path {
        &self.path
    }

    /// rspamd's log (`log/rspamd.log`).
    pub fn log(&self) -> String {
        fs::read(self.path.join("log/rspamd.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The controller's `/stat` (the counters `rspamc stat` prints): `scanned`,
    /// `actions.{reject,"add header","no action",...}`, `connections`, ...
    /// Panics with the log if the controller does not answer.
    pub fn stat(&self) -> serde_json::Value {
        self.try_stat()
            .unwrap_or_else(|e| panic!("{}", self.failure_report(&format!("GET /stat: {e}"))))
    }

    /// Messages rspamd has scanned since it started.
    pub fn scanned(&self) -> u64 {
        let stat = self.stat();
        stat["scanned"].as_u64().unwrap_or_else(|| {
            panic!("rspamd's /stat has no numeric \"scanned\": {stat}");
        })
    }

    /// How many scans ended in `action` ("reject", "add header", "no action", ...).
    pub fn action_count(&self, action: &str) -> u64 {
        let stat = self.stat();
        stat["actions"][action].as_u64().unwrap_or_else(|| {
            panic!("rspamd's /stat has no numeric actions.{action:?}: {stat}");
        })
    }

    fn try_stat(&self) -> Result<serde_json::Value, String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.controller_port))
            .map_err(|e| format!("connect to the controller: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        write!(
            s,
            "GET /stat HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .map_err(|e| format!("send: {e}"))?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).map_err(|e| format!("read: {e}"))?;
        let resp = String::from_utf8_lossy(&resp);
        let (head, body) = resp
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("no HTTP header end in {resp:?}"))?;
        if !head.starts_with("HTTP/1.1 200") {
            return Err(format!("answered {head:?}"));
        }
        serde_json::from_str(body).map_err(|e| format!("not JSON ({e}): {body:?}"))
    }

    /// Stops rspamd (SIGTERM to the main process and its workers); Postfix
    /// then cannot reach the milter.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, libc::SIGTERM, Duration::from_secs(10));
        }
    }

    /// A description for panic messages: the reason, the ports, the main
    /// process's output and the log tail.
    pub fn failure_report(&self, what: &str) -> String {
        let mut s = format!(
            "test bed: {what}\n  instance dir: {}\n  proxy (milter) 127.0.0.1:{}, controller 127.0.0.1:{}\n",
            self.path.display(),
            self.milter_port,
            self.controller_port
        );
        let _ = writeln!(s, "{}", tail(&self.path.join("rspamd.out"), 20));
        let _ = writeln!(s, "{}", tail(&self.path.join("log/rspamd.log"), 40));
        s
    }
}

impl Drop for Rspamd {
    fn drop(&mut self) {
        self.stop();
        if let Some(dir) = self.dir.take() {
            finish_dir(dir);
        }
    }
}

/// `rspamadm configtest` (the check the README has the admin run) of Debian's
/// rspamd.conf with `local_d`'s files as its `local.d`: whether it said
/// `syntax OK`, and its output.
pub fn configtest(local_d: &Path) -> (bool, String) {
    let rspamadm = require_binary("rspamadm");
    let dir = temp_dir("congvu-rspamadm-");
    let etc = dir.path().join("etc");
    for d in ["local.d", "override.d"] {
        fs::create_dir_all(etc.join(d)).expect("test bed: mkdir");
    }
    copy_dir_files(local_d, &etc.join("local.d")).unwrap_or_else(|e| panic!("{e}"));
    fs::write(
        etc.join("override.d/options.inc"),
        format!("hs_cache_dir = \"{HS_CACHE_DIR}/\";\n"),
    )
    .expect("test bed: write override.d/options.inc");
    let out = std::process::Command::new(&rspamadm)
        .arg(format!("--var=LOCAL_CONFDIR={}", etc.display()))
        .arg(format!("--var=DBDIR={}", dir.path().display()))
        .args(["configtest", "-c", "/etc/rspamd/rspamd.conf"])
        .output()
        .unwrap_or_else(|e| panic!("test bed: run {}: {e} — {INSTALL_HINT}", rspamadm.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    finish_dir(dir);
    (
        out.status.success() && text.lines().any(|l| l == "syntax OK"),
        text,
    )
}

/// uid and gid of `_rspamd`, or a panic naming the package.
fn rspamd_ids() -> (nix::unistd::Uid, nix::unistd::Gid) {
    let user = nix::unistd::User::from_name(RSPAMD_USER)
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            panic!("test bed: no user `{RSPAMD_USER}` (package rspamd) — {INSTALL_HINT}")
        });
    (user.uid, user.gid)
}

/// Copies the regular files of `from` into `to` (not recursive: rspamd's
/// `local.d` is flat).
fn copy_dir_files(from: &Path, to: &Path) -> Result<(), String> {
    let entries =
        fs::read_dir(from).map_err(|e| format!("test bed: read {}: {e}", from.display()))?;
    for entry in entries.flatten() {
        let src = entry.path();
        if src.is_file() {
            let dst = to.join(entry.file_name());
            fs::copy(&src, &dst).map_err(|e| {
                format!("test bed: copy {} to {}: {e}", src.display(), dst.display())
            })?;
        }
    }
    Ok(())
}
