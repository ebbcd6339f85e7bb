//! A private Postfix instance on 127.0.0.1, relaying everything it accepts
//! to an in-process [`SmtpSink`].
//!
//! Layout of its directory (`/tmp/congvu-postfix-XXXX`):
//! `main.cf`, `master.cf`, `virtual` (+ `.db`), `queue/`, `data/`,
//! `postfix.log` (maillog_file), `master.out` (master's stdout/stderr),
//! `sink/NNNNNN.eml` (every relayed message).

use super::smtp::{self, SinkMessage, SmtpOutcome, SmtpSink};
use super::{
    INSTALL_HINT, finish_dir, free_port, is_listening, loopback, peek_exited, poll, require_file,
    require_root, set_mode, spawn_child, tail, temp_dir, terminate,
};
use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// How to configure the instance. `Default` gives a plain relay with no
/// milter; see [`PostfixOptions::with_milter`].
#[derive(Debug, Clone)]
pub struct PostfixOptions {
    /// `smtpd_milters`, e.g. `"inet:127.0.0.1:PORT"`. Also sets
    /// `milter_protocol = 6`.
    pub milter: Option<String>,
    /// `milter_default_action` (used when the milter is down, times out or
    /// misbehaves). Default `tempfail`, Postfix 3.7's default.
    pub milter_default_action: String,
    /// `milter_content_timeout` (Postfix default 300 s). Whole seconds.
    pub milter_content_timeout: Option<Duration>,
    /// `milter_command_timeout` (Postfix default 30 s). Whole seconds.
    pub milter_command_timeout: Option<Duration>,
    /// `milter_connect_timeout` (Postfix default 30 s). Whole seconds.
    pub milter_connect_timeout: Option<Duration>,
    /// `message_size_limit` in bytes; default 200,000,000 (well above the
    /// regulation's 25 MiB attachment limit).
    pub message_size_limit: u64,
    pub myhostname: String,
    /// `mydestination`; empty by default (everything is relayed).
    pub mydestination: String,
    /// `relay_domains`; empty by default.
    pub relay_domains: String,
    /// `virtual_alias_maps` entries (`pattern`, `result`), written to a
    /// `hash:` table and run through postmap. E.g.
    /// `("alice@so.bacgiang.gov.vn", "alice@gmail.test")`.
    pub virtual_aliases: Vec<(String, String)>,
    /// Extra `main.cf` lines, appended last (they win).
    pub extra_main_cf: Vec<String>,
    /// Read/write timeout of [`Postfix::send`]'s SMTP client.
    pub client_timeout: Duration,
}

impl Default for PostfixOptions {
    fn default() -> Self {
        PostfixOptions {
            milter: None,
            milter_default_action: "tempfail".into(),
            milter_content_timeout: None,
            milter_command_timeout: None,
            milter_connect_timeout: None,
            message_size_limit: 200_000_000,
            myhostname: "mx.testbed.invalid".into(),
            mydestination: String::new(),
            relay_domains: String::new(),
            virtual_aliases: Vec::new(),
            extra_main_cf: Vec::new(),
            client_timeout: Duration::from_secs(120),
        }
    }
}

impl PostfixOptions {
    /// Default options with `smtpd_milters = milter`.
    pub fn with_milter(milter: impl Into<String>) -> Self {
        PostfixOptions {
            milter: Some(milter.into()),
            ..Default::default()
        }
    }
}

/// A running private Postfix. Dropping it stops master and every daemon.
pub struct Postfix {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    master: Child,
    smtpd: SocketAddr,
    sink: SmtpSink,
    client_timeout: Duration,
}

const QUEUE_DIRS: &[&str] = &[
    "active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming", "private",
    "saved", "trace",
];

impl Postfix {
    /// Starts an instance and waits until smtpd listens. Panics with the
    /// logs if it can't.
    pub fn start(opts: PostfixOptions) -> Postfix {
        require_root("a private Postfix master");
        let daemon_dir = daemon_directory();
        require_file(daemon_dir.join("master"), "Postfix master");
        require_file("/usr/sbin/postmap", "postmap");
        // A random port may be taken between our probe and master's bind:
        // retry a few times on "Address already in use".
        let mut last_err = String::new();
        for _ in 0..5 {
            match Self::try_start(&opts, &daemon_dir) {
                Ok(pf) => return pf,
                Err(e) if e.contains("Address already in use") => last_err = e,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("{last_err}")
    }

    fn try_start(opts: &PostfixOptions, daemon_dir: &Path) -> Result<Postfix, String> {
        let dir = temp_dir("congvu-postfix-");
        let path = dir.path().to_path_buf();
        let sink = SmtpSink::start(&path.join("sink"));
        let port = free_port();
        make_queue(&path);
        fs::write(path.join("main.cf"), main_cf(opts, &path, sink.addr()))
            .map_err(|e| format!("test bed: write main.cf: {e}"))?;
        fs::write(path.join("master.cf"), master_cf(port))
            .map_err(|e| format!("test bed: write master.cf: {e}"))?;
        write_virtual(opts, &path);
        // Postfix re-reads a main.cf younger than ~2 s every 300 ms until it
        // is "stable" (dict_load_file), which made every start take 2 s.
        backdate(&path.join("main.cf"));
        backdate(&path.join("master.cf"));

        let master = spawn_child(
            &daemon_dir.join("master"),
            &["-c".as_ref(), path.as_os_str(), "-d".as_ref()],
            &path.join("master.out"),
            &[("MAIL_CONFIG", path.as_os_str())],
        )
        .map_err(|e| format!("test bed: spawn Postfix master: {e} — {INSTALL_HINT}"))?;
        let pf = Postfix {
            dir: Some(dir),
            path,
            master,
            smtpd: loopback(port),
            sink,
            client_timeout: opts.client_timeout,
        };

        let started = Instant::now();
        let ready = poll(Duration::from_secs(30), || {
            if peek_exited(&pf.master) != Some(false) {
                return Some(false);
            }
            is_listening(port).then_some(true)
        });
        if ready != Some(true) {
            let report = pf.failure_report(&format!(
                "Postfix master did not listen on {} within {:?}",
                pf.smtpd,
                started.elapsed()
            ));
            return Err(report);
        }
        // Without a milter, prove smtpd really answers. With one, don't: the
        // probe would be a session the milter under test sees.
        if opts.milter.is_none() {
            match smtp::SmtpClient::connect(pf.smtpd, Duration::from_secs(30)) {
                Ok(c) if c.banner.code == 220 => c.quit(),
                Ok(c) => {
                    return Err(
                        pf.failure_report(&format!("smtpd greeted with {:?}", c.banner.text()))
                    );
                }
                Err(e) => return Err(pf.failure_report(&format!("smtpd banner: {e}"))),
            }
        }
        Ok(pf)
    }

    /// The smtpd address (127.0.0.1:random).
    pub fn smtp_addr(&self) -> SocketAddr {
        self.smtpd
    }

    /// The sink's address (Postfix's relayhost).
    pub fn sink_addr(&self) -> SocketAddr {
        self.sink.addr()
    }

    /// The instance's directory (config, queue, logs, sink files).
    pub fn dir(&self) -> &Path {
        &self.path
    }

    /// Sends one message over SMTP (EHLO, MAIL, RCPT..., DATA, QUIT) and
    /// returns what the client saw. `raw` is sent unchanged apart from SMTP
    /// wire encoding (bare LF -> CRLF, dot-stuffing). Panics only on I/O
    /// errors (with the Postfix log); refusals are outcomes.
    pub fn send(&self, from: &str, rcpts: &[&str], raw: &[u8]) -> SmtpOutcome {
        smtp::send_message(
            self.smtpd,
            "client.testbed.invalid",
            from,
            rcpts,
            raw,
            self.client_timeout,
        )
        .unwrap_or_else(|e| panic!("{}", self.failure_report(&format!("SMTP send failed: {e}"))))
    }

    /// [`Postfix::send`] for async tests: runs the blocking client on
    /// tokio's blocking pool, so a milter served by the same runtime (even
    /// a current-thread one) keeps running meanwhile.
    pub async fn send_async(&self, from: &str, rcpts: &[&str], raw: &[u8]) -> SmtpOutcome {
        let addr = self.smtpd;
        let timeout = self.client_timeout;
        let from = from.to_string();
        let rcpts: Vec<String> = rcpts.iter().map(|r| r.to_string()).collect();
        let raw = raw.to_vec();
        let res = tokio::task::spawn_blocking(move || {
            let rcpts: Vec<&str> = rcpts.iter().map(String::as_str).collect();
            smtp::send_message(addr, "client.testbed.invalid", &from, &rcpts, &raw, timeout)
        })
        .await
        .expect("test bed: SMTP client task panicked");
        res.unwrap_or_else(|e| panic!("{}", self.failure_report(&format!("SMTP send failed: {e}"))))
    }

    /// Waits until at least `n` messages reached the sink and returns the
    /// raw bytes of all of them (arrival order; each begins with Postfix's
    /// Received: header). Panics with the log on timeout.
    pub fn wait_delivered(&self, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
        self.wait_delivered_messages(n, timeout)
            .into_iter()
            .map(|m| m.data)
            .collect()
    }

    /// Like [`Postfix::wait_delivered`], with envelopes.
    pub fn wait_delivered_messages(&self, n: usize, timeout: Duration) -> Vec<SinkMessage> {
        match self.sink.wait(n, timeout) {
            Ok(msgs) => msgs,
            Err(so_far) => panic!(
                "{}",
                self.failure_report(&format!(
                    "expected {n} message(s) at the sink within {timeout:?}, got {}",
                    so_far.len()
                ))
            ),
        }
    }

    /// Async version of [`Postfix::wait_delivered`]: polls without
    /// blocking the runtime (works on a current-thread runtime).
    pub async fn wait_delivered_async(&self, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        while self.sink.count() < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.wait_delivered(n, Duration::ZERO)
    }

    /// Messages the sink has received so far.
    pub fn delivered(&self) -> Vec<SinkMessage> {
        self.sink.messages()
    }

    /// Asserts that nothing reaches the sink during `wait` (for rejected or
    /// discarded mail).
    pub fn assert_nothing_delivered(&self, wait: Duration) {
        if let Ok(msgs) = self.sink.wait(1, wait) {
            panic!(
                "expected no delivery, but the sink got {} message(s); first:\n{}",
                msgs.len(),
                String::from_utf8_lossy(&msgs[0].data)
            );
        }
    }

    /// Postfix's log (maillog_file).
    pub fn log(&self) -> String {
        fs::read(self.path.join("postfix.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Waits until the log contains `needle`; returns the whole log, or
    /// panics with its tail.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> String {
        poll(timeout, || {
            let log = self.log();
            log.contains(needle).then_some(log)
        })
        .unwrap_or_else(|| {
            panic!(
                "{}",
                self.failure_report(&format!(
                    "{needle:?} not in the Postfix log after {timeout:?}"
                ))
            )
        })
    }

    /// Queue files in one queue (`"hold"` for quarantined mail, `"deferred"`,
    /// `"active"`, `"incoming"`, ...), as queue ids.
    pub fn queue_ids(&self, queue: &str) -> Vec<String> {
        let mut ids = Vec::new();
        let mut stack = vec![self.path.join("queue").join(queue)];
        while let Some(d) = stack.pop() {
            let Ok(rd) = fs::read_dir(&d) else { continue };
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if let Some(name) = p.file_name().and_then(|n| n.to_str()) {
                    ids.push(name.to_string());
                }
            }
        }
        ids.sort();
        ids
    }

    /// A description of the instance for panic messages: the reason, master
    /// state, its output and the log tail.
    pub fn failure_report(&self, what: &str) -> String {
        let mut s = format!(
            "test bed: {what}\n  instance dir: {}\n",
            self.path.display()
        );
        let _ = writeln!(s, "  smtpd {}, sink {}", self.smtpd, self.sink.addr());
        let _ = writeln!(
            s,
            "  queues: incoming {:?} active {:?} deferred {:?} hold {:?}",
            self.queue_ids("incoming"),
            self.queue_ids("active"),
            self.queue_ids("deferred"),
            self.queue_ids("hold")
        );
        let _ = writeln!(s, "{}", tail(&self.path.join("master.out"), 20));
        let _ = writeln!(s, "{}", tail(&self.path.join("postfix.log"), 40));
        s
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        // master forwards SIGTERM to its daemons; terminate() SIGKILLs the
        // process group afterwards for anything left.
        terminate(&mut self.master, libc::SIGTERM, Duration::from_secs(5));
        if let Some(dir) = self.dir.take() {
            finish_dir(dir);
        }
    }
}

/// `postconf -h daemon_directory` (the Debian default if postconf is absent,
/// so the caller's existence check names the missing file).
fn daemon_directory() -> PathBuf {
    Command::new("/usr/sbin/postconf")
        .args(["-dh", "daemon_directory"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postfix/sbin"))
}

/// Sets a file's mtime a minute into the past.
fn backdate(path: &Path) {
    let past = std::time::SystemTime::now() - Duration::from_secs(60);
    fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(past))
        .unwrap_or_else(|e| panic!("test bed: set mtime of {}: {e}", path.display()));
}

fn chown(path: &Path, user: &str, group: Option<&str>) {
    let uid = nix::unistd::User::from_name(user)
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("test bed: no user `{user}` — {INSTALL_HINT}"))
        .uid;
    let gid = group.map(|g| {
        nix::unistd::Group::from_name(g)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("test bed: no group `{g}` — {INSTALL_HINT}"))
            .gid
    });
    nix::unistd::chown(path, Some(uid), gid)
        .unwrap_or_else(|e| panic!("test bed: chown {}: {e}", path.display()));
}

fn make_queue(base: &Path) {
    let q = base.join("queue");
    let mk = |p: &Path, mode: u32, user: &str, group: Option<&str>| {
        fs::create_dir_all(p).unwrap_or_else(|e| panic!("test bed: mkdir {}: {e}", p.display()));
        chown(p, user, group);
        set_mode(p, mode);
    };
    mk(&q, 0o755, "root", Some("root"));
    mk(&q.join("pid"), 0o755, "root", Some("root"));
    for d in QUEUE_DIRS {
        mk(&q.join(d), 0o700, "postfix", None);
    }
    mk(&q.join("maildrop"), 0o730, "postfix", Some("postdrop"));
    mk(&q.join("public"), 0o710, "postfix", Some("postdrop"));
    mk(&base.join("data"), 0o700, "postfix", None);
}

fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs().max(1))
}

fn main_cf(opts: &PostfixOptions, dir: &Path, sink: SocketAddr) -> String {
    let d = dir.display();
    let mut cf = format!(
        "# Private test-bed instance, generated by tests/common/postfix.rs\n\
         compatibility_level = 3.6\n\
         queue_directory = {d}/queue\n\
         data_directory = {d}/data\n\
         maillog_file = {d}/postfix.log\n\
         maillog_file_prefixes = {d}\n\
         syslog_name = postfix-testbed\n\
         myhostname = {myhostname}\n\
         mydomain = testbed.invalid\n\
         myorigin = $myhostname\n\
         mydestination = {mydestination}\n\
         relay_domains = {relay_domains}\n\
         inet_interfaces = 127.0.0.1\n\
         inet_protocols = ipv4\n\
         mynetworks = 127.0.0.0/8\n\
         smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n\
         smtpd_recipient_restrictions =\n\
         local_recipient_maps =\n\
         alias_maps =\n\
         alias_database =\n\
         relayhost = [{sink_ip}]:{sink_port}\n\
         message_size_limit = {size}\n\
         mailbox_size_limit = 0\n\
         # Mail from 127.0.0.1 stands in for remote clients: don't add\n\
         # Message-ID/Date or rewrite headers as for local submissions.\n\
         local_header_rewrite_clients =\n\
         # Relay bytes unchanged even if the next hop didn't say 8BITMIME.\n\
         disable_mime_output_conversion = yes\n\
         smtpd_tls_security_level = none\n\
         smtp_tls_security_level = none\n\
         smtpd_peername_lookup = no\n\
         smtpd_error_sleep_time = 0\n\
         in_flow_delay = 0\n\
         queue_run_delay = 1s\n\
         minimal_backoff_time = 1s\n\
         maximal_backoff_time = 2s\n\
         biff = no\n\
         append_dot_mydomain = no\n",
        myhostname = opts.myhostname,
        mydestination = opts.mydestination,
        relay_domains = opts.relay_domains,
        sink_ip = sink.ip(),
        sink_port = sink.port(),
        size = opts.message_size_limit,
    );
    if opts.virtual_aliases.is_empty() {
        cf.push_str("virtual_alias_maps =\n");
    } else {
        let _ = writeln!(cf, "virtual_alias_maps = hash:{d}/virtual");
    }
    if let Some(m) = &opts.milter {
        let _ = writeln!(cf, "smtpd_milters = {m}");
        cf.push_str("milter_protocol = 6\n");
    }
    let _ = writeln!(cf, "milter_default_action = {}", opts.milter_default_action);
    for (name, value) in [
        ("milter_content_timeout", opts.milter_content_timeout),
        ("milter_command_timeout", opts.milter_command_timeout),
        ("milter_connect_timeout", opts.milter_connect_timeout),
    ] {
        if let Some(v) = value {
            let _ = writeln!(cf, "{name} = {}", secs(v));
        }
    }
    for line in &opts.extra_main_cf {
        cf.push_str(line);
        cf.push('\n');
    }
    cf
}

/// A minimal master.cf without chroot: smtpd on 127.0.0.1:port plus the
/// daemons a relay needs.
fn master_cf(port: u16) -> String {
    format!(
        "# service type  private unpriv  chroot  wakeup  maxproc command\n\
         127.0.0.1:{port} inet n - n - - smtpd\n\
         pickup    unix  n       -       n       60      1       pickup\n\
         cleanup   unix  n       -       n       -       0       cleanup\n\
         qmgr      unix  n       -       n       300     1       qmgr\n\
         rewrite   unix  -       -       n       -       -       trivial-rewrite\n\
         bounce    unix  -       -       n       -       0       bounce\n\
         defer     unix  -       -       n       -       0       bounce\n\
         trace     unix  -       -       n       -       0       bounce\n\
         verify    unix  -       -       n       -       1       verify\n\
         flush     unix  n       -       n       1000?   0       flush\n\
         proxymap  unix  -       -       n       -       -       proxymap\n\
         proxywrite unix -       -       n       -       1       proxymap\n\
         smtp      unix  -       -       n       -       -       smtp\n\
         relay     unix  -       -       n       -       -       smtp\n\
         showq     unix  n       -       n       -       -       showq\n\
         error     unix  -       -       n       -       -       error\n\
         retry     unix  -       -       n       -       -       error\n\
         discard   unix  -       -       n       -       -       discard\n\
         local     unix  -       n       n       -       -       local\n\
         virtual   unix  -       n       n       -       -       virtual\n\
         anvil     unix  -       -       n       -       1       anvil\n\
         scache    unix  -       -       n       -       1       scache\n\
         postlog   unix-dgram n  -       n       -       1       postlogd\n"
    )
}

fn write_virtual(opts: &PostfixOptions, dir: &Path) {
    if opts.virtual_aliases.is_empty() {
        return;
    }
    let table = dir.join("virtual");
    let text: String = opts
        .virtual_aliases
        .iter()
        .map(|(k, v)| format!("{k} {v}\n"))
        .collect();
    fs::write(&table, text).expect("test bed: write virtual");
    let out = Command::new("/usr/sbin/postmap")
        .arg("-c")
        .arg(dir)
        .arg(format!("hash:{}", table.display()))
        .output()
        .unwrap_or_else(|e| panic!("test bed: run postmap: {e} — {INSTALL_HINT}"));
    if !out.status.success() {
        panic!(
            "test bed: postmap hash:{} failed: {}",
            table.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
