//! A private clamd with a tiny self-built signature database (there is no
//! network for freshclam): the MD5 of ClamAV's harmless test executable
//! `clam.exe` (which clamd also finds inside the zip/7z/tar.gz/... copies in
//! clamav-testfiles) and an EICAR body signature.
//!
//! Layout of its directory (`/tmp/congvu-clamd-XXXX`): `clamd.conf`,
//! `db/test.hdb`, `db/eicar.ndb`, `clamd.sock`, `clamd.log`, `clamd.out`
//! (stdout/stderr), `tmp/`.

use super::{
    INSTALL_HINT, finish_dir, free_port, loopback, peek_exited, poll, require_binary, require_file,
    set_mode, spawn_child, tail, temp_dir, terminate,
};
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// ClamAV's harmless test executable (package clamav-testfiles).
pub const CLAM_EXE: &str = "/usr/share/clamav-testfiles/clam.exe";
/// Directory of the test files (clam.zip, clam.7z, clam.tar.gz, ...).
pub const TESTFILES_DIR: &str = "/usr/share/clamav-testfiles";

/// The 68-byte EICAR test string, assembled at run time so this source file
/// and the test binaries don't trip a virus scanner on a developer machine.
pub fn eicar() -> Vec<u8> {
    let parts = [
        "X5O!P%@AP[4\\PZX54(P^)7CC)7}$",
        "EICAR-STANDARD-ANTIVIRUS",
        "-TEST-FILE!$H+H*",
    ];
    let s = parts.concat().into_bytes();
    assert_eq!(s.len(), 68);
    s
}

#[derive(Debug, Clone)]
pub struct ClamdOptions {
    /// Also listen on TCP 127.0.0.1:random (see [`Clamd::tcp_addr`]).
    pub tcp: bool,
    /// clamd's `StreamMaxLength` (INSTREAM size limit), e.g. `"30M"`.
    pub stream_max_length: String,
    /// clamd's `MaxThreads`.
    pub max_threads: u32,
    /// Extra signature files (`name`, `content`) for the database
    /// directory, e.g. `("extra.ndb", "...")`.
    pub extra_signatures: Vec<(String, String)>,
    /// Extra clamd.conf lines, appended last.
    pub extra_conf: Vec<String>,
    /// How long to wait for PONG after starting.
    pub start_timeout: Duration,
}

impl Default for ClamdOptions {
    fn default() -> Self {
        ClamdOptions {
            tcp: false,
            stream_max_length: "30M".into(),
            max_threads: 4,
            extra_signatures: Vec::new(),
            extra_conf: Vec::new(),
            start_timeout: Duration::from_secs(60),
        }
    }
}

/// A running private clamd. Dropping it kills it.
pub struct Clamd {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    clamd: PathBuf,
    child: Option<Child>,
    tcp: Option<SocketAddr>,
}

impl Clamd {
    /// Builds the database, writes clamd.conf and starts clamd; returns once
    /// it answers PING. Panics with its log if it can't.
    pub fn start(opts: ClamdOptions) -> Clamd {
        let clamd = require_binary("clamd");
        require_binary("sigtool");
        require_file(CLAM_EXE, "clamav-testfiles' clam.exe");
        let mut last_err = String::new();
        for _ in 0..5 {
            match Self::try_start(&opts, &clamd) {
                Ok(c) => return c,
                Err(e) if e.contains("in use") => last_err = e,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("{last_err}")
    }

    fn try_start(opts: &ClamdOptions, clamd: &Path) -> Result<Clamd, String> {
        let dir = temp_dir("congvu-clamd-");
        let path = dir.path().to_path_buf();
        let db = path.join("db");
        let tmp = path.join("tmp");
        for d in [&db, &tmp] {
            fs::create_dir_all(d).map_err(|e| format!("test bed: mkdir {}: {e}", d.display()))?;
            set_mode(d, 0o755);
        }
        write_database(&db, opts);
        let tcp = opts.tcp.then(|| loopback(free_port()));
        fs::write(path.join("clamd.conf"), clamd_conf(&path, tcp, opts))
            .map_err(|e| format!("test bed: write clamd.conf: {e}"))?;
        let mut c = Clamd {
            dir: Some(dir),
            path,
            clamd: clamd.to_path_buf(),
            child: None,
            tcp,
        };
        c.launch(opts.start_timeout)?;
        Ok(c)
    }

    fn launch(&mut self, timeout: Duration) -> Result<(), String> {
        let child = spawn_child(
            &self.clamd,
            &["-c".as_ref(), self.conf_path().as_os_str()],
            &self.path.join("clamd.out"),
            &[],
        )
        .map_err(|e| {
            format!(
                "test bed: spawn {}: {e} — {INSTALL_HINT}",
                self.clamd.display()
            )
        })?;
        self.child = Some(child);
        let started = Instant::now();
        let ready = poll(timeout, || {
            if self.child.as_ref().and_then(peek_exited) != Some(false) {
                return Some(false);
            }
            let unix_ok = self.ping().is_ok();
            let tcp_ok = self.tcp.is_none_or(|a| ping_stream(connect_tcp(a)).is_ok());
            (unix_ok && tcp_ok).then_some(true)
        });
        if ready == Some(true) {
            return Ok(());
        }
        let report = self.failure_report(&format!(
            "clamd did not answer PING within {:?}",
            started.elapsed()
        ));
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, libc::SIGKILL, Duration::from_secs(1));
        }
        Err(report)
    }

    /// The unix socket clamd listens on.
    pub fn socket_path(&self) -> PathBuf {
        self.path.join("clamd.sock")
    }

    /// The TCP address; panics unless started with `tcp: true`.
    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp.expect(
            "test bed: this clamd has no TCP socket; start it with ClamdOptions { tcp: true, .. }",
        )
    }

    pub fn conf_path(&self) -> PathBuf {
        self.path.join("clamd.conf")
    }

    pub fn dir(&self) -> &Path {
        &self.path
    }

    /// clamd's own log file.
    pub fn log(&self) -> String {
        fs::read(self.path.join("clamd.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub fn is_running(&self) -> bool {
        self.child.as_ref().and_then(peek_exited) == Some(false)
    }

    /// Kills clamd (SIGKILL, like a crash) and waits; the socket file may
    /// stay behind, connecting to it fails. Use [`Clamd::restart`] to bring
    /// it back on the same socket and port.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, libc::SIGKILL, Duration::from_secs(1));
        }
    }

    /// Stops (if running) and starts clamd again with the same
    /// configuration, socket and TCP port.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.launch(Duration::from_secs(60)) {
            panic!("{e}");
        }
    }

    /// `zPING` over the unix socket.
    pub fn ping(&self) -> io::Result<()> {
        ping_stream(UnixStream::connect(self.socket_path()))
    }

    /// Scans `data` with zINSTREAM over the unix socket and returns clamd's
    /// reply without the trailing NUL (`"stream: OK"`,
    /// `"stream: Eicar-Test-Signature.UNOFFICIAL FOUND"`, `"... ERROR"`).
    pub fn scan(&self, data: &[u8]) -> io::Result<String> {
        let mut s = UnixStream::connect(self.socket_path())?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        s.write_all(b"zINSTREAM\0")?;
        // Past StreamMaxLength clamd answers "INSTREAM size limit exceeded.
        // ERROR" and closes while we are still writing: the write fails with
        // EPIPE, but the reply is waiting to be read.
        let sent = (|| {
            for chunk in data.chunks(65536) {
                s.write_all(&(chunk.len() as u32).to_be_bytes())?;
                s.write_all(chunk)?;
            }
            s.write_all(&0u32.to_be_bytes())
        })();
        if let Err(e) = sent
            && !matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            )
        {
            return Err(e);
        }
        let mut reply = Vec::new();
        s.read_to_end(&mut reply)?;
        while reply.last() == Some(&0) {
            reply.pop();
        }
        Ok(String::from_utf8_lossy(&reply).into_owned())
    }

    fn failure_report(&self, what: &str) -> String {
        let mut s = format!("test bed: {what}\n  clamd dir: {}\n", self.path.display());
        let _ = writeln!(
            s,
            "  socket {}, tcp {:?}",
            self.socket_path().display(),
            self.tcp
        );
        let _ = writeln!(s, "{}", tail(&self.path.join("clamd.out"), 20));
        let _ = writeln!(s, "{}", tail(&self.path.join("clamd.log"), 30));
        s
    }
}

impl Drop for Clamd {
    fn drop(&mut self) {
        self.stop();
        if let Some(dir) = self.dir.take() {
            finish_dir(dir);
        }
    }
}

fn connect_tcp(addr: SocketAddr) -> io::Result<std::net::TcpStream> {
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
}

fn ping_stream<S: Read + Write>(stream: io::Result<S>) -> io::Result<()> {
    let mut s = stream?;
    s.write_all(b"zPING\0")?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply)?;
    if reply == b"PONG\0" {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "unexpected PING reply {:?}",
            String::from_utf8_lossy(&reply)
        )))
    }
}

fn write_database(db: &Path, opts: &ClamdOptions) {
    let out = Command::new("sigtool")
        .arg("--md5")
        .arg(CLAM_EXE)
        .output()
        .unwrap_or_else(|e| panic!("test bed: run sigtool: {e} — {INSTALL_HINT}"));
    if !out.status.success() || out.stdout.is_empty() {
        panic!(
            "test bed: sigtool --md5 {CLAM_EXE} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    fs::write(db.join("test.hdb"), &out.stdout).expect("test bed: write test.hdb");
    let hex: String = eicar().iter().map(|b| format!("{b:02x}")).collect();
    fs::write(
        db.join("eicar.ndb"),
        format!("Eicar-Test-Signature:0:*:{hex}\n"),
    )
    .expect("test bed: write eicar.ndb");
    for (name, content) in &opts.extra_signatures {
        fs::write(db.join(name), content)
            .unwrap_or_else(|e| panic!("test bed: write signature file {name}: {e}"));
    }
}

fn clamd_conf(dir: &Path, tcp: Option<SocketAddr>, opts: &ClamdOptions) -> String {
    let d = dir.display();
    let mut conf = format!(
        "# Private test-bed clamd, generated by tests/common/clamd.rs\n\
         Foreground yes\n\
         LocalSocket {d}/clamd.sock\n\
         LocalSocketMode 666\n\
         FixStaleSocket yes\n\
         DatabaseDirectory {d}/db\n\
         TemporaryDirectory {d}/tmp\n\
         PidFile {d}/clamd.pid\n\
         LogFile {d}/clamd.log\n\
         LogTime yes\n\
         LogSyslog no\n\
         LogClean no\n\
         SelfCheck 0\n\
         MaxThreads {threads}\n\
         StreamMaxLength {sml}\n",
        threads = opts.max_threads,
        sml = opts.stream_max_length,
    );
    if let Some(a) = tcp {
        let _ = writeln!(conf, "TCPSocket {}\nTCPAddr {}", a.port(), a.ip());
    }
    for line in &opts.extra_conf {
        conf.push_str(line);
        conf.push('\n');
    }
    conf
}
