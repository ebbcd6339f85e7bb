//! Runs the real `congvu-milter` binary for tests: a policy in a temp dir, a free
//! loopback port, stderr captured to a log file, signals for reload and stop.
#![allow(dead_code)]

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use congvu_milter::milter::client::{MilterClient, Offer};
use congvu_milter::milter::codec::{Family, Reply};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A free TCP port on 127.0.0.1 (bound, then released for the daemon).
/// Panics unless the milter's final reply lets the message through.
pub fn assert_delivered(reply: &Reply) {
    assert!(
        matches!(reply, Reply::Accept | Reply::Continue),
        "not delivered: {reply:?}"
    );
}

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

/// A running daemon.
pub struct Daemon {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub milter_port: u16,
    pub metrics_port: u16,
    pub policy_path: PathBuf,
    log_path: PathBuf,
}

/// A policy for tests: `extra` is appended to a header that sets the milter and
/// metrics sockets. Scanning is off unless `extra` has a `[clamav]` section.
pub fn policy_text(milter_port: u16, metrics_port: u16, extra: &str) -> String {
    let clamav = if extra.contains("[clamav]") {
        ""
    } else {
        "[clamav]\nenabled = false\n"
    };
    // Top-level keys (e.g. `mode`) must come before the first table.
    let split = extra
        .lines()
        .position(|l| l.trim_start().starts_with('['))
        .unwrap_or(extra.lines().count());
    let top: Vec<&str> = extra.lines().take(split).collect();
    let extra: Vec<&str> = extra.lines().skip(split).collect();
    let (top, extra) = (top.join("\n"), extra.join("\n"));
    format!(
        "{top}\n[milter]\nlisten = [\"inet:127.0.0.1:{milter_port}\"]\nprogress_interval = \"1s\"\nshutdown_grace = \"5s\"\n\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\n{clamav}{extra}\n"
    )
}

impl Daemon {
    /// Starts the daemon with a policy made by `policy_text(ports, extra)` and
    /// waits until its milter port accepts connections.
    pub fn start(extra_policy: &str) -> Daemon {
        let dir = tempfile::tempdir().expect("temp dir");
        let milter_port = free_port();
        let metrics_port = free_port();
        let policy_path = dir.path().join("policy.toml");
        std::fs::write(
            &policy_path,
            policy_text(milter_port, metrics_port, extra_policy),
        )
        .expect("write policy");
        Daemon::start_with(dir, milter_port, metrics_port, policy_path)
    }

    pub fn start_with(
        dir: tempfile::TempDir,
        milter_port: u16,
        metrics_port: u16,
        policy_path: PathBuf,
    ) -> Daemon {
        let log_path = dir.path().join("daemon.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_congvu-milter"));
        command
            .arg("serve")
            .arg("--config")
            .arg(&policy_path)
            .env("RUST_LOG", "congvu_milter=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // Started with a soft open-files limit below the hard one, as systemd's
        // default (1024:524288) does: the daemon raises it itself
        // (see `open_files_limit`).
        // SAFETY: setrlimit only, between fork and exec.
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(|| {
                let mut limit = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_max > 256 {
                    limit.rlim_cur = limit.rlim_cur.min(256);
                    libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("start congvu-milter");
        let mut daemon = Daemon {
            child: Some(child),
            dir,
            milter_port,
            metrics_port,
            policy_path,
            log_path,
        };
        daemon.wait_listening();
        daemon
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.milter_port)).is_ok() {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("congvu-milter exited with {status}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "congvu-milter did not listen within 20 s; log:\n{}",
            self.log()
        );
    }

    /// A milter connection to the daemon that has negotiated `offer` and passed
    /// CONNECT (192.0.2.7) and HELO, as Postfix opens one for an SMTP session.
    pub async fn milter_client(&self, offer: Offer) -> MilterClient<tokio::net::TcpStream> {
        let mut c = MilterClient::connect_tcp(&self.milter_addr(), Duration::from_secs(20))
            .await
            .expect("connect to the daemon");
        c.negotiate(offer).await.expect("negotiate");
        c.connect(
            "client.test",
            Family::Inet(Ipv4Addr::new(192, 0, 2, 7), 40000),
        )
        .await
        .expect("connect step");
        c.helo("client.test").await.expect("helo");
        c
    }

    pub fn milter_addr(&self) -> String {
        format!("127.0.0.1:{}", self.milter_port)
    }

    pub fn milter_socket(&self) -> String {
        format!("inet:127.0.0.1:{}", self.milter_port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn policy_path(&self) -> &Path {
        &self.policy_path
    }

    /// The daemon's open-files limit, soft and hard, from /proc/PID/limits.
    pub fn open_files_limit(&self) -> (String, String) {
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", self.pid()))
            .expect("/proc/PID/limits");
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .expect("Max open files");
        let mut fields = line["Max open files".len()..].split_whitespace();
        let soft = fields.next().expect("soft").to_owned();
        let hard = fields.next().expect("hard").to_owned();
        (soft, hard)
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("running").id() as i32)
    }

    /// Writes a new policy (same sockets) and sends SIGHUP; waits until the log
    /// shows the reload's outcome.
    pub fn reload_with(&self, extra_policy: &str) -> bool {
        std::fs::write(
            &self.policy_path,
            policy_text(self.milter_port, self.metrics_port, extra_policy),
        )
        .expect("write policy");
        self.reload_raw()
    }

    /// Sends SIGHUP and waits for "policy reloaded" or "reload refused".
    pub fn reload_raw(&self) -> bool {
        let before_ok = self.log().matches("policy reloaded").count();
        let before_err = self.log().matches("reload refused").count();
        kill(self.pid(), Signal::SIGHUP).expect("SIGHUP");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let log = self.log();
            if log.matches("policy reloaded").count() > before_ok {
                return true;
            }
            if log.matches("reload refused").count() > before_err {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("no reload outcome in the log:\n{}", self.log());
    }

    /// GET a path of the metrics endpoint; returns (status, body).
    pub fn http_get(&self, path: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port))
            .expect("connect to the metrics endpoint");
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .expect("send request");
        let mut resp = String::new();
        s.read_to_string(&mut resp).expect("read response");
        let status = resp
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = resp
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    /// SIGTERM and wait for exit; returns whether it exited successfully.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        false
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
