//! Virus scanning against a real clamd (started privately for each test, on a
//! unix socket and a loopback TCP port under /tmp), plus fake clamds for faults.
//!
//! The clamd harness is self-contained here on purpose (another branch builds a
//! shared one in tests/common/); the integrator may unify them.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use congvu_milter::inspect::ScanPart;
use congvu_milter::message::Message;
use congvu_milter::policy::{ByteSize, LoadedPolicy, Policy, Seconds};
use congvu_milter::rule::Violation;
use congvu_milter::rules::virus::{self, CLAMAV_SIZE_LIMIT, CLAMAV_UNAVAILABLE};
use congvu_milter::scan::{ClamavPolicy, OnFailure, ScanMode, ScanOutcome, ScanProblem, Scanner};
use congvu_milter::verdict::{Action, Finding, HeaderEdit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The scan outcome as the daemon judges it: the virus violations, and the
/// judged clamd failure (`clamav_unavailable`, `clamav_size_limit`) when some part
/// went unscanned.
fn judged(outcome: &ScanOutcome, policy: &Policy) -> (Vec<Violation>, Option<Finding>) {
    let (failures, viruses): (Vec<_>, Vec<_>) = virus::evaluate(outcome, policy)
        .into_iter()
        .partition(|v| v.rule.internal());
    let failure = failures
        .first()
        .and_then(|v| policy.judge(v, &Message::default()));
    (viruses, failure)
}

const TESTFILES: &str = "/usr/share/clamav-testfiles";

/// The EICAR test string, assembled so this source file is not itself a "virus".
fn eicar() -> Vec<u8> {
    let mut s = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$".to_vec();
    s.extend_from_slice(b"EICAR-STANDARD-ANTIVIRUS-");
    s.extend_from_slice(b"TEST-FILE!$H+H*");
    assert_eq!(s.len(), 68);
    s
}

// ---------------------------------------------------------------------------
// A private clamd
// ---------------------------------------------------------------------------

struct ClamdOpts {
    stream_max_length: &'static str,
    /// Listen on this unix socket instead of one in the clamd's own directory.
    socket: Option<PathBuf>,
}

impl Default for ClamdOpts {
    fn default() -> Self {
        ClamdOpts {
            stream_max_length: "30M",
            socket: None,
        }
    }
}

/// A clamd with a tiny database (clam.exe by MD5, EICAR by body signature),
/// killed on drop.
struct Clamd {
    dir: tempfile::TempDir,
    child: Option<Child>,
    socket: PathBuf,
    port: u16,
}

impl Clamd {
    fn start() -> Clamd {
        Clamd::start_with(ClamdOpts::default())
    }

    fn start_with(opts: ClamdOpts) -> Clamd {
        // AppArmor's clamd profile allows /tmp.
        let dir = tempfile::Builder::new()
            .prefix("congvu-clamd-")
            .tempdir_in("/tmp")
            .unwrap();
        let db = dir.path().join("db");
        std::fs::create_dir(&db).unwrap();
        let hdb = Command::new("sigtool")
            .arg("--md5")
            .arg(format!("{TESTFILES}/clam.exe"))
            .output()
            .expect("sigtool (clamav package) is needed");
        assert!(hdb.status.success(), "sigtool failed");
        std::fs::write(db.join("test.hdb"), &hdb.stdout).unwrap();
        let hex: String = eicar().iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(
            db.join("eicar.ndb"),
            format!("Eicar-Test-Signature:0:*:{hex}\n"),
        )
        .unwrap();
        let socket = opts
            .socket
            .clone()
            .unwrap_or_else(|| dir.path().join("clamd.sock"));
        let port = free_port();
        let conf = dir.path().join("clamd.conf");
        std::fs::write(
            &conf,
            format!(
                "Foreground yes\nLocalSocket {}\nTCPSocket {port}\nTCPAddr 127.0.0.1\nDatabaseDirectory {}\nStreamMaxLength {}\nLogFile {}\nMaxThreads 8\n",
                socket.display(),
                db.display(),
                opts.stream_max_length,
                dir.path().join("clamd.log").display(),
            ),
        )
        .unwrap();
        let child = Command::new("/usr/sbin/clamd")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("stderr")).unwrap(),
            ))
            .spawn()
            .expect("clamd (clamav-daemon package) is needed");
        let mut clamd = Clamd {
            dir,
            child: Some(child),
            socket,
            port,
        };
        clamd.wait_ready();
        clamd
    }

    fn wait_ready(&mut self) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("clamd exited ({status}): {}", self.logs());
            }
            if sync_ping_unix(&self.socket) && sync_ping_tcp(self.port) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("clamd did not answer PING: {}", self.logs());
    }

    fn logs(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        format!("stderr: {}\nlog: {}", read("stderr"), read("clamd.log"))
    }

    fn unix(&self) -> String {
        format!("unix:{}", self.socket.display())
    }

    fn tcp(&self) -> String {
        format!("tcp:127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Drop for Clamd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn sync_ping(mut s: impl Read + Write) -> bool {
    let mut reply = Vec::new();
    s.write_all(b"zPING\0").is_ok() && s.read_to_end(&mut reply).is_ok() && reply == b"PONG\0"
}

fn sync_ping_unix(path: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(path).is_ok_and(sync_ping)
}

fn sync_ping_tcp(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok_and(sync_ping)
}

// ---------------------------------------------------------------------------
// Fake clamds
// ---------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Fake {
    /// Accepts, reads everything, never answers (not even PING).
    Hang,
    /// Reads the whole INSTREAM, answers this (PING gets PONG).
    Answer(&'static [u8]),
    /// Reads the whole INSTREAM, closes without a word (PING gets PONG).
    Close,
}

/// Starts a fake clamd on a loopback port; returns its `tcp:` endpoint.
async fn fake_clamd(kind: Fake) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                if let Fake::Hang = kind {
                    let mut sink = [0u8; 65536];
                    while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
                    // Keep the connection open until the peer goes away.
                    std::future::pending::<()>().await;
                }
                let mut cmd = Vec::new();
                loop {
                    let Ok(b) = s.read_u8().await else { return };
                    if b == 0 {
                        break;
                    }
                    cmd.push(b);
                }
                if cmd == b"zPING" {
                    let _ = s.write_all(b"PONG\0").await;
                    return;
                }
                loop {
                    let Ok(len) = s.read_u32().await else { return };
                    if len == 0 {
                        break;
                    }
                    let mut buf = vec![0; len as usize];
                    if s.read_exact(&mut buf).await.is_err() {
                        return;
                    }
                }
                if let Fake::Answer(reply) = kind {
                    let _ = s.write_all(reply).await;
                }
            });
        }
    });
    format!("tcp:127.0.0.1:{port}")
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn config(endpoints: &[String]) -> ClamavPolicy {
    ClamavPolicy {
        endpoints: endpoints.to_vec(),
        connect_timeout: Seconds(Duration::from_secs(2)),
        scan_timeout: Seconds(Duration::from_secs(20)),
        // Probes only when a test asks for them.
        probe_interval: Seconds(Duration::from_secs(3600)),
        ..ClamavPolicy::default()
    }
}

fn policy_with(cfg: &ClamavPolicy) -> Policy {
    Policy {
        clamav: cfg.clone(),
        ..Policy::default()
    }
}

fn part(label: &str, data: impl Into<Bytes>) -> ScanPart {
    ScanPart {
        label: label.into(),
        data: data.into(),
    }
}

fn testfile(name: &str) -> ScanPart {
    part(name, std::fs::read(format!("{TESTFILES}/{name}")).unwrap())
}

fn zip_of(name: &str, data: &[u8]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file(name, zip::write::SimpleFileOptions::default())
        .unwrap();
    w.write_all(data).unwrap();
    w.finish().unwrap().into_inner()
}

/// Bytes no signature matches.
fn filler(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

fn signatures(outcome: &ScanOutcome) -> Vec<(String, String)> {
    match outcome {
        ScanOutcome::Infected { findings, .. } => findings
            .iter()
            .map(|d| (d.label.clone(), d.signature.clone()))
            .collect(),
        other => panic!("expected Infected, got {other:?}"),
    }
}

fn status_header(edits: &[HeaderEdit]) -> String {
    edits
        .iter()
        .find_map(|e| match e {
            HeaderEdit::Add { name, value } if name == "X-Virus-Status" => Some(value.clone()),
            _ => None,
        })
        .expect("no X-Virus-Status added")
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for (n, c) in data.chunks(3).enumerate() {
        if n > 0 && n % 19 == 0 {
            out.push_str("\r\n");
        }
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let v = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(v >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn mail_with_attachment(name: &str, data: &[u8]) -> Vec<u8> {
    format!(
        "From: a@x.test\r\nTo: b@bacgiang.gov.vn\r\nSubject: test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"BB\"\r\n\r\n--BB\r\nContent-Type: text/plain\r\n\r\nXin chao\r\n--BB\r\nContent-Type: application/octet-stream; name=\"{name}\"\r\nContent-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--BB--\r\n",
        base64(data)
    )
    .into_bytes()
}

// ---------------------------------------------------------------------------
// Real clamd: what it finds
// ---------------------------------------------------------------------------

#[tokio::test]
async fn eicar_txt_attachment_is_infected_and_rejected_with_its_signature() {
    let clamd = Clamd::start();
    let cfg = config(&[clamd.unix()]);
    let scanner = Scanner::new(&cfg).unwrap();
    let outcome = scanner
        .scan_parts(&[part("ghi-chu.txt", eicar()), part("part 1", "Xin chao")])
        .await;
    let sigs = signatures(&outcome);
    assert_eq!(sigs.len(), 1);
    assert_eq!(sigs[0].0, "ghi-chu.txt");
    assert!(sigs[0].1.starts_with("Eicar-Test-Signature"), "{sigs:?}");
    assert!(outcome.fully_scanned());

    let policy = policy_with(&cfg);
    let (violations, failure) = judged(&outcome, &policy);
    assert!(failure.is_none());
    let finding = policy
        .judge(&violations[0], &Message::default())
        .expect("virus rule applies");
    assert_eq!(finding.action, Action::Reject);
    let reply = finding.reply.unwrap().render();
    assert!(reply.starts_with("554 5.7.1 "), "{reply}");
    assert!(reply.contains("Eicar-Test-Signature"), "{reply}");

    let h = &scanner.health()[0];
    assert!(h.healthy);
    assert_eq!((h.scans, h.infected, h.errors), (2, 1, 0));
    assert!(h.latency_sum > Duration::ZERO);
}

#[tokio::test]
async fn eicar_inside_a_zip_is_found_by_clamd_over_tcp() {
    let clamd = Clamd::start();
    let scanner = Scanner::new(&config(&[clamd.tcp()])).unwrap();
    let outcome = scanner
        .scan_parts(&[part("tai-lieu.zip", zip_of("docs/eicar.com.txt", &eicar()))])
        .await;
    let sigs = signatures(&outcome);
    assert_eq!(sigs[0].0, "tai-lieu.zip");
    assert!(sigs[0].1.starts_with("Eicar-Test-Signature"), "{sigs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clam_exe_alone_and_in_zip_7z_tar_gz_is_infected() {
    let clamd = Clamd::start();
    let scanner = Scanner::new(&config(&[clamd.unix()])).unwrap();
    let names = ["clam.exe", "clam.zip", "clam.7z", "clam.tar.gz"];
    let parts: Vec<ScanPart> = names.iter().map(|n| testfile(n)).collect();
    let outcome = scanner.scan_parts(&parts).await;
    let mut sigs = signatures(&outcome);
    sigs.sort();
    let mut labels: Vec<&str> = sigs.iter().map(|(l, _)| l.as_str()).collect();
    labels.sort();
    let mut expected = names.to_vec();
    expected.sort();
    assert_eq!(labels, expected, "{sigs:?}");
    assert!(
        sigs.iter().all(|(_, s)| s.starts_with("clam.exe")),
        "{sigs:?}"
    );

    let edits = virus::virus_headers(&Message::default(), &outcome, &Policy::default());
    assert!(status_header(&edits).starts_with("Infected (clam.exe"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clean_parts_are_clean_and_get_the_clean_status() {
    let clamd = Clamd::start();
    let cfg = config(&[clamd.unix()]);
    let scanner = Scanner::new(&cfg).unwrap();
    let parts = [
        part("thu-moi.txt", "Kinh gui cac dong chi"),
        part("data.bin", filler(300_000)),
        part("bao-cao.zip", zip_of("bao-cao.txt", b"so lieu")),
        part("empty", Bytes::new()),
    ];
    let outcome = scanner.scan_parts(&parts).await;
    assert_eq!(outcome, ScanOutcome::Clean { parts_scanned: 4 });
    let policy = policy_with(&cfg);
    assert_eq!(judged(&outcome, &policy), (vec![], None));
    let edits = virus::virus_headers(&Message::default(), &outcome, &policy);
    assert_eq!(edits.len(), 2, "{edits:?}");
    assert!(
        matches!(&edits[1], HeaderEdit::Add { name, value } if name == "X-Virus-Status" && value == "Clean"),
        "{edits:?}"
    );
}

// ---------------------------------------------------------------------------
// Real clamd: failures
// ---------------------------------------------------------------------------

#[tokio::test]
async fn stopped_clamd_gives_tempfail_and_unscanned_status() {
    let mut clamd = Clamd::start();
    let cfg = config(&[clamd.unix(), clamd.tcp()]);
    let scanner = Scanner::new(&cfg).unwrap();
    assert!(
        scanner
            .scan_parts(&[part("a.txt", "hello")])
            .await
            .is_clean()
    );
    clamd.stop();

    let outcome = scanner.scan_parts(&[part("a.txt", "hello")]).await;
    let ScanOutcome::Failed { unscanned, .. } = &outcome else {
        panic!("expected Failed, got {outcome:?}")
    };
    assert!(matches!(unscanned[0].problem, ScanProblem::NoAnswer(_)));

    let policy = policy_with(&cfg);
    let (violations, failure) = judged(&outcome, &policy);
    assert!(violations.is_empty());
    let failure = failure.expect("a failure decision");
    assert_eq!(failure.action, Action::Tempfail);
    assert_eq!(failure.reason.rule, CLAMAV_UNAVAILABLE.name);
    let reply = failure.reply.unwrap();
    assert_eq!((reply.code, reply.enhanced.as_str()), (451, "4.7.1"));

    let msg = Message::from_eml(b"From: a@x.test\nX-Virus-Status: Clean\n\nhi\n");
    let edits = virus::virus_headers(&msg, &outcome, &policy);
    assert!(edits.contains(&HeaderEdit::Delete {
        name: "X-Virus-Status".into(),
        index: 1
    }));
    assert_eq!(status_header(&edits), "Unscanned");

    // Both endpoints were tried and are out of service; the probe agrees.
    for h in scanner.health() {
        assert!(!h.healthy, "{h:?}");
        assert!(h.last_error.is_some(), "{h:?}");
        assert_eq!(h.errors, 1, "{h:?}");
    }
    // The probe agrees for the unix socket. (The TCP port is free again: another
    // test's clamd, in this process, may be listening there by now.)
    scanner.probe_now().await;
    let unix = scanner
        .health()
        .into_iter()
        .find(|h| h.name.starts_with("unix:"))
        .expect("the unix endpoint");
    assert!(!unix.healthy, "{unix:?}");
}

#[tokio::test]
async fn clamd_that_never_answers_times_out_quickly() {
    let hung = fake_clamd(Fake::Hang).await;
    let cfg = ClamavPolicy {
        connect_timeout: Seconds(Duration::from_millis(500)),
        scan_timeout: Seconds(Duration::from_millis(300)),
        scan_timeout_per_mib: Seconds(Duration::ZERO),
        ..config(&[hung])
    };
    let scanner = Scanner::new(&cfg).unwrap();
    let started = Instant::now();
    let outcome = scanner.scan_parts(&[part("a.pdf", filler(200_000))]).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(outcome.as_str(), "failed", "{outcome:?}");
    let (_, failure) = judged(&outcome, &policy_with(&cfg));
    assert_eq!(failure.unwrap().action, Action::Tempfail);
    let h = &scanner.health()[0];
    assert!(!h.healthy);
    assert_eq!(h.timeouts, 1);
    assert!(
        h.last_error
            .as_deref()
            .unwrap()
            .contains("no answer within"),
        "{h:?}"
    );
    // PING does not answer either: stays out.
    scanner.probe_now().await;
    assert!(!scanner.any_healthy());
}

#[tokio::test]
async fn stopped_process_clamd_accepts_but_never_answers_and_times_out() {
    // SIGSTOP: the kernel still accepts connections on clamd's sockets, but
    // nothing reads or answers.
    let clamd = Clamd::start();
    let pid = clamd.child.as_ref().unwrap().id().to_string();
    let signal = |sig: &str| {
        let ok = Command::new("kill").args([sig, &pid]).status().unwrap();
        assert!(ok.success());
    };
    signal("-STOP");
    let cfg = ClamavPolicy {
        connect_timeout: Seconds(Duration::from_millis(500)),
        scan_timeout: Seconds(Duration::from_millis(400)),
        scan_timeout_per_mib: Seconds(Duration::ZERO),
        ..config(&[clamd.unix(), clamd.tcp()])
    };
    let scanner = Scanner::new(&cfg).unwrap();
    let started = Instant::now();
    // Bigger than the socket buffers, so the writes block too.
    let outcome = scanner
        .scan_parts(&[part("a.pdf", filler(4 * 1024 * 1024))])
        .await;
    let took = started.elapsed();
    // Before SIGCONT: a startup PING still pending would be answered then.
    let health = scanner.health();
    signal("-CONT");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(outcome.as_str(), "failed", "{outcome:?}");
    assert!(
        health.iter().all(|h| !h.healthy && h.timeouts == 1),
        "{health:?}"
    );
    let (_, failure) = judged(&outcome, &policy_with(&cfg));
    assert_eq!(failure.unwrap().action, Action::Tempfail);
    // Running again, it answers PING and both endpoints return.
    scanner.probe_now().await;
    assert!(scanner.health().iter().all(|h| h.healthy));
}

#[tokio::test]
async fn message_deadline_bounds_all_scans_of_a_message() {
    let hung = fake_clamd(Fake::Hang).await;
    let cfg = ClamavPolicy {
        scan_timeout: Seconds(Duration::from_secs(30)),
        message_deadline: Seconds(Duration::from_millis(400)),
        ..config(&[hung])
    };
    let scanner = Scanner::new(&cfg).unwrap();
    let started = Instant::now();
    let outcome = scanner
        .scan_parts(&[part("a", "x"), part("b", "y"), part("c", "z")])
        .await;
    assert!(started.elapsed() < Duration::from_secs(10));
    let ScanOutcome::Failed { unscanned, .. } = &outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(unscanned.len(), 3);
    assert!(format!("{}", unscanned[0].problem).contains("message_deadline"));
    // The dropped scans are no longer counted in flight.
    assert_eq!(scanner.health()[0].in_flight, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hung_endpoint_fails_over_to_the_live_clamd() {
    let clamd = Clamd::start();
    let hung = fake_clamd(Fake::Hang).await;
    let cfg = ClamavPolicy {
        scan_timeout: Seconds(Duration::from_millis(300)),
        scan_timeout_per_mib: Seconds(Duration::ZERO),
        ..config(&[hung, clamd.unix()])
    };
    let scanner = Scanner::new(&cfg).unwrap();
    for i in 0..4 {
        let outcome = scanner.scan_parts(&[part(&format!("p{i}"), eicar())]).await;
        assert_eq!(signatures(&outcome).len(), 1, "{outcome:?}");
    }
    let health = scanner.health();
    assert!(!health[0].healthy && health[0].timeouts >= 1, "{health:?}");
    assert!(health[1].healthy && health[1].scans == 4, "{health:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_endpoint_is_shown_unhealthy_and_returns_after_a_probe() {
    let live = Clamd::start();
    let spare_dir = tempfile::Builder::new()
        .prefix("congvu-dead-")
        .tempdir_in("/tmp")
        .unwrap();
    let dead_socket = spare_dir.path().join("clamd.sock");
    let cfg = ClamavPolicy {
        probe_interval: Seconds(Duration::from_millis(200)),
        max_parallel_parts: 4,
        ..config(&[format!("unix:{}", dead_socket.display()), live.tcp()])
    };
    let scanner = Scanner::new(&cfg).unwrap();

    let parts: Vec<ScanPart> = (0..10)
        .map(|i| {
            if i % 3 == 0 {
                part(&format!("v{i}.txt"), eicar())
            } else {
                part(&format!("c{i}.txt"), format!("clean {i}"))
            }
        })
        .collect();
    let outcome = scanner.scan_parts(&parts).await;
    assert!(outcome.fully_scanned(), "{outcome:?}");
    assert_eq!(signatures(&outcome).len(), 4);

    let health = scanner.health();
    assert_eq!(health[0].name, format!("unix:{}", dead_socket.display()));
    assert!(!health[0].healthy, "{health:?}");
    assert!(health[0].last_error.is_some());
    assert_eq!(health[0].scans, 0);
    assert!(health[1].healthy);
    assert_eq!(health[1].scans, 10, "{health:?}");
    assert!(scanner.any_healthy());

    // A clamd comes up on the dead socket: the background probe returns it.
    let revived = Clamd::start_with(ClamdOpts {
        socket: Some(dead_socket.clone()),
        ..ClamdOpts::default()
    });
    let start = Instant::now();
    while !scanner.health()[0].healthy {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            scanner.health()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(scanner.health()[0].consecutive_failures, 0);
    // And it takes its share of the load again.
    let outcome = scanner.scan_parts(&parts).await;
    assert_eq!(signatures(&outcome).len(), 4);
    assert!(scanner.health()[0].scans > 0, "{:?}", scanner.health());
    scanner.shutdown();
    drop(revived);
}

#[tokio::test]
async fn clamd_size_limit_error_gets_the_configured_action() {
    let clamd = Clamd::start_with(ClamdOpts {
        stream_max_length: "1M",
        ..ClamdOpts::default()
    });
    let big = filler(2_000_000);
    // Over the unix socket (our writes fail with EPIPE once clamd stops
    // reading, and its answer must still be read) and over TCP.
    for endpoint in [clamd.unix(), clamd.tcp()] {
        let scanner = Scanner::new(&config(std::slice::from_ref(&endpoint))).unwrap();
        let outcome = scanner
            .scan_parts(&[part("small.txt", "ok"), part("big.bin", big.clone())])
            .await;
        let ScanOutcome::SizeLimit {
            parts_scanned,
            unscanned,
            ..
        } = &outcome
        else {
            panic!("{endpoint}: expected SizeLimit, got {outcome:?}")
        };
        assert_eq!(*parts_scanned, 1);
        assert_eq!(unscanned[0].label, "big.bin");
        assert_eq!(
            unscanned[0].problem,
            ScanProblem::SizeLimit {
                size: 2_000_000,
                limit: None
            }
        );
        // clamd answered: the endpoint stays in service.
        assert!(scanner.health()[0].healthy, "{:?}", scanner.health());

        for (on_failure, action, code) in [
            (OnFailure::Tempfail, Action::Tempfail, Some(451)),
            (OnFailure::Reject, Action::Reject, Some(550)),
            (OnFailure::Accept, Action::Accept, None),
        ] {
            let cfg = ClamavPolicy {
                on_failure,
                ..config(std::slice::from_ref(&endpoint))
            };
            let policy = policy_with(&cfg);
            let (violations, failure) = judged(&outcome, &policy);
            assert!(violations.is_empty());
            let failure = failure.unwrap();
            assert_eq!(failure.action, action);
            assert_eq!(failure.reason.rule, CLAMAV_SIZE_LIMIT.name);
            assert_eq!(failure.reply.map(|r| r.code), code);
            let edits = virus::virus_headers(&Message::default(), &outcome, &policy);
            assert_eq!(status_header(&edits), "Unscanned");
        }
    }
}

#[tokio::test]
async fn part_over_max_scan_size_is_not_sent_at_all() {
    let clamd = Clamd::start();
    let cfg = ClamavPolicy {
        max_scan_size: ByteSize::mib(1),
        ..config(&[clamd.unix()])
    };
    let scanner = Scanner::new(&cfg).unwrap();
    let outcome = scanner
        .scan_parts(&[part("big.bin", filler(2 * 1024 * 1024))])
        .await;
    assert_eq!(
        outcome.unscanned()[0].problem,
        ScanProblem::SizeLimit {
            size: 2 * 1024 * 1024,
            limit: Some(1024 * 1024)
        }
    );
    assert_eq!(scanner.health()[0].scans, 0);
}

// ---------------------------------------------------------------------------
// Fake clamds: answers that are not clean
// ---------------------------------------------------------------------------

#[tokio::test]
async fn error_reply_is_never_clean_and_another_endpoint_is_tried() {
    let erring = fake_clamd(Fake::Answer(b"stream: Can't allocate memory ERROR\0")).await;
    let alone = Scanner::new(&config(std::slice::from_ref(&erring))).unwrap();
    let outcome = alone.scan_parts(&[part("a.txt", "hello")]).await;
    let ScanOutcome::Failed { unscanned, .. } = &outcome else {
        panic!("{outcome:?}")
    };
    assert!(
        matches!(&unscanned[0].problem, ScanProblem::Error(e) if e.contains("allocate memory")),
        "{outcome:?}"
    );
    // An ERROR is an answer: the endpoint is not taken out, but the error counts.
    let h = &alone.health()[0];
    assert!(h.healthy && h.errors == 1 && h.scans == 1, "{h:?}");

    let clamd = Clamd::start();
    let pair = Scanner::new(&config(&[erring, clamd.unix()])).unwrap();
    for _ in 0..3 {
        assert!(pair.scan_parts(&[part("a.txt", "hello")]).await.is_clean());
    }
}

#[tokio::test]
async fn garbage_or_silence_is_never_clean() {
    for fake in [
        Fake::Answer(b"UNKNOWN COMMAND\0"),
        Fake::Answer(b"stream: OKAY\0"),
        Fake::Close,
    ] {
        let endpoint = fake_clamd(fake).await;
        let scanner = Scanner::new(&config(&[endpoint])).unwrap();
        let outcome = scanner.scan_parts(&[part("a.txt", "hello")]).await;
        assert_eq!(outcome.as_str(), "failed", "{outcome:?}");
        let edits = virus::virus_headers(&Message::default(), &outcome, &Policy::default());
        assert_eq!(status_header(&edits), "Unscanned");
    }
}

// ---------------------------------------------------------------------------
// scan = "message"
// ---------------------------------------------------------------------------

#[tokio::test]
async fn message_mode_sends_the_raw_message() {
    let clamd = Clamd::start();
    let cfg = ClamavPolicy {
        scan: ScanMode::Message,
        ..config(&[clamd.unix()])
    };
    let scanner = Scanner::new(&cfg).unwrap();

    let infected = scanner
        .scan_raw(Bytes::from(mail_with_attachment("note.txt", &eicar())))
        .await;
    let sigs = signatures(&infected);
    assert_eq!(sigs[0].0, "message");
    assert!(sigs[0].1.starts_with("Eicar-Test-Signature"), "{sigs:?}");

    let clam_mail = std::fs::read(format!("{TESTFILES}/clam.mail")).unwrap();
    let sigs = signatures(&scanner.scan_raw(Bytes::from(clam_mail)).await);
    assert!(sigs[0].1.starts_with("clam.exe"), "{sigs:?}");

    let clean = scanner
        .scan_raw(Bytes::from(mail_with_attachment(
            "note.txt",
            b"binh thuong",
        )))
        .await;
    assert_eq!(clean, ScanOutcome::Clean { parts_scanned: 1 });

    // A message over max_scan_size gets the on_failure action.
    let small = ClamavPolicy {
        max_scan_size: ByteSize(64 * 1024),
        on_failure: OnFailure::Reject,
        ..cfg.clone()
    };
    let scanner = Scanner::new(&small).unwrap();
    let outcome = scanner
        .scan_raw(Bytes::from(mail_with_attachment(
            "big.bin",
            &filler(100_000),
        )))
        .await;
    assert_eq!(outcome.as_str(), "size_limit", "{outcome:?}");
    let failure = judged(&outcome, &policy_with(&small)).1.unwrap();
    assert_eq!(failure.action, Action::Reject);
}

// ---------------------------------------------------------------------------
// Headers and configuration
// ---------------------------------------------------------------------------

#[tokio::test]
async fn forged_incoming_clean_status_is_removed_before_ours_is_added() {
    let clamd = Clamd::start();
    let cfg = config(&[clamd.unix()]);
    let scanner = Scanner::new(&cfg).unwrap();
    let msg = Message::from_eml(
        b"From: a@x.test\nX-Virus-Scanned: ClamAV at spammer\nX-Virus-Status: Clean\nSubject: hi\nx-virus-status: Clean\n\nbody\n",
    );
    let outcome = scanner
        .scan_parts(&[part("a.txt", eicar()), part("b.txt", "ok")])
        .await;
    let edits = virus::virus_headers(&msg, &outcome, &policy_with(&cfg));
    assert_eq!(
        edits,
        vec![
            HeaderEdit::Delete {
                name: "X-Virus-Scanned".into(),
                index: 1
            },
            HeaderEdit::Delete {
                name: "X-Virus-Status".into(),
                index: 2
            },
            HeaderEdit::Delete {
                name: "X-Virus-Status".into(),
                index: 1
            },
            HeaderEdit::Add {
                name: "X-Virus-Scanned".into(),
                value: "ClamAV using congvu-milter".into()
            },
            HeaderEdit::Add {
                name: "X-Virus-Status".into(),
                value: "Infected (Eicar-Test-Signature.UNOFFICIAL)".into()
            },
        ]
    );
}

#[test]
fn check_config_refuses_bad_clamav_settings() {
    let text = "[limits]\nmax_attachments_size = \"15 MiB\"\n\n[clamav]\nendpoints = [\"tcp:clamd\"]\nmax_scan_size = \"10 MiB\"\nscan_timeout = 0\n";
    let err = LoadedPolicy::from_text(text, Path::new("policy.toml")).unwrap_err();
    let shown = err.to_string();
    let congvu_milter::policy::ConfigError::Invalid { problems } = err else {
        panic!("{shown}")
    };
    let keys: Vec<(&str, Option<usize>)> = problems
        .iter()
        .map(|p| (p.problem.key.as_str(), p.line))
        .collect();
    assert!(keys.contains(&("clamav.endpoints", Some(5))), "{keys:?}");
    assert!(
        keys.contains(&("clamav.max_scan_size", Some(6))),
        "{keys:?}"
    );
    assert!(keys.contains(&("clamav.scan_timeout", Some(7))), "{keys:?}");

    assert!(
        Scanner::new(&ClamavPolicy {
            endpoints: vec!["clamd.example:3310".into()],
            ..ClamavPolicy::default()
        })
        .is_err()
    );
    assert!(
        Scanner::new(&ClamavPolicy {
            endpoints: vec![],
            ..ClamavPolicy::default()
        })
        .is_err()
    );
}
