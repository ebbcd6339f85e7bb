//! The audit record: one JSON line per message, appended to `[audit] file` when
//! the daemon reaches the message's verdict (schema 1, documented in the README's
//! "Audit records" section). `congvu-milter report` and `trace` read it.
//!
//! The record is built and serialised by the session that reached the verdict;
//! a dedicated thread appends it, so that a slow or full disk never holds a
//! reply to Postfix. The queue between them is bounded: when it is full the
//! record is dropped, counted (`congvu_milter_audit_records_dropped_total`) and
//! warned about, rather than making the verdict wait (a disk stalled long enough
//! to fill it would otherwise turn into Postfix timing out on every message; the
//! verdict still goes to Postfix and to the log line). Write errors are counted
//! (`congvu_milter_audit_write_errors_total`) and never stop the daemon.
//!
//! Each record is one `write` of a whole line on a file opened with `O_APPEND`,
//! so lines of one writer never interleave. A reload (SIGHUP, which logrotate's
//! `postrotate` sends) reopens the file before the next record, without
//! waiting for the queue.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::address;
use crate::message::{Message, unfold};
use crate::metrics::metrics;
use crate::pipeline::{Facts, SignedDocumentFact};
use crate::policy::{AuditSection, Policy};
use crate::verdict::{Action, Verdict};

/// The schema version every record carries in `audit`.
pub const SCHEMA: u32 = 1;

/// Files listed in one record at most; the rest are counted in `files_omitted`.
pub const MAX_FILES: usize = 1000;

/// Records waiting for the writer thread at most.
const QUEUE_LEN: usize = 8192;

/// One message's audit record, field for field and in the order of the schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    pub audit: u32,
    pub time: String,
    pub host: String,
    pub instance: Option<String>,
    pub queue_id: Option<String>,
    pub message_id: Option<String>,
    pub sender: String,
    pub sasl_login: Option<String>,
    pub recipients: Vec<AuditRecipient>,
    pub client_addr: Option<String>,
    pub direction: &'static str,
    pub action: &'static str,
    pub monitor_action: Option<&'static str>,
    pub reply: Option<String>,
    pub violations: Vec<AuditViolation>,
    pub files: Vec<AuditFile>,
    pub files_omitted: u64,
    /// Documents carrying a digital signature (`format`: `pdf`, `ooxml`, `odf`).
    pub signed_documents: Vec<SignedDocumentFact>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecipient {
    pub address: String,
    pub local: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditViolation {
    pub rule: String,
    pub article: String,
    pub path: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditFile {
    pub path: Vec<String>,
    pub size: u64,
    #[serde(rename = "type")]
    pub file_type: String,
    pub sha256: Option<String>,
}

impl AuditRecord {
    /// The record of `msg`'s verdict at `now`. `facts` are there when the
    /// message was decided at its end (not refused earlier).
    pub fn new(
        msg: &Message,
        verdict: &Verdict,
        facts: Option<&Facts>,
        policy: &Policy,
        host: &str,
        now: SystemTime,
    ) -> AuditRecord {
        let is_local = |addr: &str| {
            address::domain(addr).is_some_and(|domain| policy.domains.is_local(&domain))
        };
        let owned = |s: Option<&str>| s.map(str::to_owned);
        let files = facts.map_or(&[][..], |f| &f.files[..]);
        AuditRecord {
            audit: SCHEMA,
            time: rfc3339_millis(now),
            host: host.to_owned(),
            instance: owned(msg.macro_value("daemon_name").filter(|s| !s.is_empty())),
            queue_id: owned(msg.queue_id()),
            message_id: msg.header_values("Message-ID").next().map(unfold),
            sender: msg.envelope.sender.clone(),
            sasl_login: owned(msg.auth_login()),
            recipients: msg
                .envelope
                .recipients
                .iter()
                .map(|r| AuditRecipient {
                    address: r.clone(),
                    local: is_local(r),
                })
                .collect(),
            client_addr: client_addr(msg),
            direction: if is_local(&msg.envelope.sender) {
                "outgoing"
            } else {
                "incoming"
            },
            action: action_name(verdict),
            monitor_action: facts.and_then(|f| f.monitor_action).map(Action::as_str),
            reply: verdict.reply.as_ref().map(|r| r.render()),
            violations: verdict
                .reasons
                .iter()
                .map(|r| AuditViolation {
                    rule: r.rule.clone(),
                    article: r.article.clone(),
                    path: r.path.clone(),
                })
                .collect(),
            files: files
                .iter()
                .take(MAX_FILES)
                .map(|f| AuditFile {
                    path: f.path.clone(),
                    size: f.size,
                    file_type: f.mime_type.clone(),
                    sha256: f.sha256.map(|d| hex(&d)),
                })
                .collect(),
            files_omitted: files.len().saturating_sub(MAX_FILES) as u64,
            signed_documents: facts.map_or_else(Vec::new, |f| f.signed_documents.clone()),
        }
    }

    /// The record as one line of JSON, newline included. Everything a sender
    /// chose is a JSON string, escaped by the serialiser: nothing can end the
    /// line early or forge another record.
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).expect("a record always serialises");
        line.push('\n');
        line
    }
}

/// What was done, as the schema names it: a delivered message that a rule
/// tagged (the `tag` action, monitor mode) is `tag`.
fn action_name(verdict: &Verdict) -> &'static str {
    match verdict.action {
        Action::Accept if !verdict.reasons.is_empty() => "tag",
        other => other.as_str(),
    }
}

/// The SMTP client's address from CONNECT, else Postfix's `{client_addr}`.
fn client_addr(msg: &Message) -> Option<String> {
    let conn = &msg.connection;
    conn.addr.map(|a| a.to_string()).or_else(|| {
        conn.macros
            .get("client_addr")
            .or_else(|| msg.macros.get("client_addr"))
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
    })
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// `2026-12-06T03:13:48.123Z`.
pub fn rfc3339_millis(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// The machine's host name, read once.
fn host_name() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default()
    })
}

enum Command {
    Line(String),
    Flush(mpsc::Sender<()>),
}

/// The file to write to, and how many times it was set: the writer reopens it
/// before its next record when that number changed. Shared rather than queued,
/// so that a reload never waits behind a full queue.
#[derive(Default)]
struct Target {
    generation: u64,
    path: Option<PathBuf>,
}

/// The daemon's audit log: sessions hand it records, its thread appends them.
pub struct AuditLog {
    queue: SyncSender<Command>,
    enabled: AtomicBool,
    target: Arc<Mutex<Target>>,
}

impl AuditLog {
    /// Starts the writer thread for `[audit]`.
    pub fn start(section: &AuditSection) -> Arc<AuditLog> {
        let (queue, commands) = mpsc::sync_channel(QUEUE_LEN);
        let target = Arc::new(Mutex::new(Target::default()));
        let shared = target.clone();
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || write_records(commands, &shared))
            .expect("cannot start the audit writer thread");
        let log = Arc::new(AuditLog {
            queue,
            enabled: AtomicBool::new(false),
            target,
        });
        log.configure(section);
        log
    }

    /// Takes `[audit]` as a (re)loaded policy has it, and reopens the file:
    /// after logrotate moved it, records go to a new one.
    pub fn configure(&self, section: &AuditSection) {
        let mut target = self.target.lock().unwrap_or_else(|e| e.into_inner());
        target.generation += 1;
        target.path = section.enabled.then(|| PathBuf::from(&section.file));
        self.enabled.store(section.enabled, Ordering::Relaxed);
    }

    /// Queues the record of one verdict; never waits.
    pub fn record(&self, msg: &Message, verdict: &Verdict, facts: Option<&Facts>, policy: &Policy) {
        if !self.enabled.load(Ordering::Relaxed) {
            return;
        }
        let record = AuditRecord::new(msg, verdict, facts, policy, host_name(), SystemTime::now());
        match self.queue.try_send(Command::Line(record.to_line())) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let dropped = &metrics().audit_records_dropped;
                dropped.inc();
                // One warning per thousand, so that a stalled disk does not flood.
                if dropped.get() % 1000 == 1 {
                    tracing::warn!(
                        dropped = dropped.get(),
                        "audit record dropped: the writer is {QUEUE_LEN} records behind (disk stalled?)"
                    );
                }
            }
            Err(TrySendError::Disconnected(_)) => {
                metrics().audit_write_errors.inc();
            }
        }
    }

    /// Waits (at most `timeout`) until every record queued so far is written.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (done, wait) = mpsc::channel();
        let mut command = Command::Flush(done);
        loop {
            match self.queue.try_send(command) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    command = back;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(_) => return false,
            }
        }
        wait.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }
}

/// The writer thread: appends lines, reopens on demand; runs until every
/// [`AuditLog`] is gone.
fn write_records(commands: Receiver<Command>, target: &Mutex<Target>) {
    let mut generation = 0;
    let mut path: Option<PathBuf> = None;
    let mut file: Option<File> = None;
    let mut failing = false;
    for command in commands {
        {
            let target = target.lock().unwrap_or_else(|e| e.into_inner());
            if target.generation != generation {
                generation = target.generation;
                path = target.path.clone();
                file = None;
                failing = false;
            }
        }
        match command {
            Command::Flush(done) => {
                let _ = done.send(());
            }
            Command::Line(line) => {
                let Some(p) = &path else { continue };
                let result = match &mut file {
                    Some(f) => f.write_all(line.as_bytes()),
                    None => open(p).and_then(|mut f| {
                        let written = f.write_all(line.as_bytes());
                        file = Some(f);
                        written
                    }),
                };
                match result {
                    Ok(()) => failing = false,
                    Err(e) => {
                        metrics().audit_write_errors.inc();
                        // Opened again for the next record (the disk may come back).
                        file = None;
                        if !failing {
                            tracing::warn!(file = %p.display(), "cannot write the audit record: {e}");
                            failing = true;
                        }
                    }
                }
            }
        }
    }
}

fn open(path: &std::path::Path) -> std::io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Connection;
    use crate::pipeline::FileFact;
    use crate::verdict::{Reason, SmtpReply};

    fn message() -> Message {
        let mut conn = Connection {
            addr: Some("192.0.2.7".parse().unwrap()),
            ..Connection::default()
        };
        conn.macros.insert("{daemon_name}", "inbound");
        let mut msg = Message {
            connection: Arc::new(conn),
            ..Message::default()
        };
        msg.macros.insert("i", "8AFD2B6042");
        msg.macros.insert("{auth_authen}", "ngocnt_stttt");
        msg.envelope.sender = "ngocnt_stttt@bacgiang.gov.vn".into();
        msg.envelope.recipients = vec![
            "a@gmail.com".into(),
            "hongnt_baodai_lucnam@bacgiang.gov.vn".into(),
        ];
        msg.push_header("Message-ID", "<abc.123@bacgiang.gov.vn>");
        msg.end_headers();
        msg
    }

    fn file(path: &[&str], sha256: Option<[u8; 32]>) -> FileFact {
        FileFact {
            kind: "other",
            mime_type: "application/zip".into(),
            path: path.iter().map(|s| s.to_string()).collect(),
            size: 1234,
            sha256,
            in_archive: path.len() > 1,
            encrypted: None,
        }
    }

    #[test]
    fn a_record_has_every_field_of_the_schema_in_order() {
        let mut verdict = Verdict::accept();
        verdict.action = Action::Reject;
        verdict.reply = Some(SmtpReply::new(550, "5.7.1", "refused"));
        verdict.reasons.push(Reason {
            rule: "executable".into(),
            article: "Điều 4 khoản 7".into(),
            detail: "ignored".into(),
            path: vec!["hoso.zip".into(), "hoso.pdf.exe".into()],
        });
        let facts = Facts {
            files: vec![
                file(&["hoso.zip"], Some([0xab; 32])),
                file(&["hoso.zip", "x"], None),
            ],
            ..Facts::default()
        };
        let t = UNIX_EPOCH + Duration::from_millis(1_796_526_828_123);
        let record = AuditRecord::new(
            &message(),
            &verdict,
            Some(&facts),
            &Policy::default(),
            "mail",
            t,
        );
        let line = record.to_line();
        assert!(line.ends_with("}\n") && line.matches('\n').count() == 1);
        let ab = "ab".repeat(32);
        let expected = format!(
            concat!(
                r#"{{"audit":1,"time":"2026-12-06T03:13:48.123Z","host":"mail","instance":"inbound","#,
                r#""queue_id":"8AFD2B6042","message_id":"<abc.123@bacgiang.gov.vn>","#,
                r#""sender":"ngocnt_stttt@bacgiang.gov.vn","sasl_login":"ngocnt_stttt","#,
                r#""recipients":[{{"address":"a@gmail.com","local":false}},{{"address":"hongnt_baodai_lucnam@bacgiang.gov.vn","local":true}}],"#,
                r#""client_addr":"192.0.2.7","direction":"outgoing","action":"reject","monitor_action":null,"#,
                r#""reply":"550 5.7.1 refused","#,
                r#""violations":[{{"rule":"executable","article":"Điều 4 khoản 7","path":["hoso.zip","hoso.pdf.exe"]}}],"#,
                r#""files":[{{"path":["hoso.zip"],"size":1234,"type":"application/zip","sha256":"{ab}"}},"#,
                r#"{{"path":["hoso.zip","x"],"size":1234,"type":"application/zip","sha256":null}}],"#,
                r#""files_omitted":0,"signed_documents":[]}}"#,
                "\n"
            ),
            ab = ab
        );
        assert_eq!(line, expected);
    }

    /// The writer's record is what `report` and `trace` read (src/audit/record.rs):
    /// the two sides of schema 1 agree field by field, monitor mode and signed
    /// documents included.
    #[test]
    fn the_reader_parses_what_the_writer_writes() {
        use crate::audit::record::{self, Line};
        use crate::inspect::SignatureFormat;
        use crate::pipeline::SignedDocumentFact;
        // Delivered with a reason recorded: the record's action is "tag".
        let mut verdict = Verdict::accept();
        verdict.reasons.push(Reason {
            rule: "executable".into(),
            article: "Điều 4 khoản 7".into(),
            detail: "ignored".into(),
            path: vec!["a \"quoted\"\nname.exe".into()],
        });
        let facts = Facts {
            files: vec![file(&["signed.pdf"], Some([0x01; 32]))],
            signed_documents: vec![SignedDocumentFact {
                path: vec!["signed.pdf".into()],
                format: SignatureFormat::Pdf,
            }],
            monitor_action: Some(Action::Reject),
            ..Facts::default()
        };
        let line = AuditRecord::new(
            &message(),
            &verdict,
            Some(&facts),
            &Policy::default(),
            "mail",
            UNIX_EPOCH + Duration::from_millis(1_796_526_828_123),
        )
        .to_line();
        let Line::Record(parsed) = record::parse_line(line.trim_end().as_bytes()) else {
            panic!("the reader does not take the writer's record: {line}");
        };
        assert_eq!(parsed.audit, record::SCHEMA_VERSION);
        assert_eq!(parsed.time, "2026-12-06T03:13:48.123Z");
        assert_eq!(parsed.queue_id.as_deref(), Some("8AFD2B6042"));
        assert_eq!(
            parsed.message_id.as_deref(),
            Some("<abc.123@bacgiang.gov.vn>")
        );
        assert_eq!(parsed.sasl_login.as_deref(), Some("ngocnt_stttt"));
        assert_eq!(parsed.instance.as_deref(), Some("inbound"));
        assert_eq!(parsed.recipients.len(), 2);
        assert!(parsed.recipients[1].local && !parsed.recipients[0].local);
        assert_eq!(parsed.direction, record::Direction::Outgoing);
        assert_eq!(parsed.action, record::Action::Tag);
        assert_eq!(parsed.monitor_action, Some(record::Action::Reject));
        assert_eq!(parsed.violations[0].path, ["a \"quoted\"\nname.exe"]);
        assert_eq!(parsed.files[0].sha256.as_deref(), Some(&*"01".repeat(32)));
        assert_eq!(parsed.signed_documents.len(), 1);
        assert_eq!(parsed.signed_documents[0].path, ["signed.pdf"]);
        assert_eq!(parsed.signed_documents[0].format, "pdf");
    }

    #[test]
    fn a_message_refused_early_has_nulls_not_missing_fields() {
        let msg = Message {
            envelope: crate::message::Envelope {
                sender: String::new(),
                ..Default::default()
            },
            ..Message::default()
        };
        let record = AuditRecord::new(
            &msg,
            &Verdict::accept(),
            None,
            &Policy::default(),
            "h",
            UNIX_EPOCH,
        );
        let value: serde_json::Value = serde_json::from_str(&record.to_line()).unwrap();
        let object = value.as_object().unwrap();
        let keys: Vec<&str> = object.keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 18, "{keys:?}");
        for key in [
            "instance",
            "queue_id",
            "message_id",
            "sasl_login",
            "client_addr",
            "monitor_action",
            "reply",
        ] {
            assert_eq!(object[key], serde_json::Value::Null, "{key}");
        }
        assert_eq!(object["sender"], "");
        assert_eq!(object["direction"], "incoming");
        assert_eq!(object["action"], "accept");
        assert_eq!(object["time"], "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn names_a_sender_chose_stay_inside_their_string() {
        let mut msg = message();
        msg.envelope.recipients = vec!["x\"}\n{\"audit\":1@a.test".into()];
        let facts = Facts {
            files: vec![file(
                &["a.zip", "\u{202E}fdp.exe\r\n\"],\"size\":1,\u{0}"],
                None,
            )],
            ..Facts::default()
        };
        let line = AuditRecord::new(
            &msg,
            &Verdict::accept(),
            Some(&facts),
            &Policy::default(),
            "h",
            UNIX_EPOCH,
        )
        .to_line();
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        assert!(!line.trim_end().chars().any(|c| c.is_control()), "{line}");
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            back["recipients"][0]["address"],
            "x\"}\n{\"audit\":1@a.test"
        );
        assert_eq!(
            back["files"][0]["path"][1],
            "\u{202E}fdp.exe\r\n\"],\"size\":1,\u{0}"
        );
    }

    #[test]
    fn files_past_the_thousandth_are_counted_not_listed() {
        let facts = Facts {
            files: (0..1003).map(|i| file(&[&format!("f{i}")], None)).collect(),
            ..Facts::default()
        };
        let record = AuditRecord::new(
            &message(),
            &Verdict::accept(),
            Some(&facts),
            &Policy::default(),
            "h",
            UNIX_EPOCH,
        );
        assert_eq!(record.files.len(), MAX_FILES);
        assert_eq!(record.files_omitted, 3);
        assert_eq!(record.files.last().unwrap().path, vec!["f999".to_string()]);
    }

    #[test]
    fn dates_are_civil_utc() {
        let at = |secs: u64| rfc3339_millis(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00.000Z");
        assert_eq!(at(4_107_542_399), "2100-02-28T23:59:59.000Z");
        assert_eq!(at(1_709_251_199), "2024-02-29T23:59:59.000Z");
    }

    #[test]
    fn the_writer_appends_whole_lines_and_reopens_a_rotated_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let section = AuditSection {
            enabled: true,
            file: path.to_str().unwrap().into(),
        };
        let log = AuditLog::start(&section);
        let policy = Policy::default();
        log.record(&message(), &Verdict::accept(), None, &policy);
        assert!(log.flush(Duration::from_secs(5)));
        let rotated = dir.path().join("audit.jsonl.1");
        std::fs::rename(&path, &rotated).unwrap();
        log.configure(&section);
        log.record(&message(), &Verdict::accept(), None, &policy);
        log.record(&message(), &Verdict::accept(), None, &policy);
        assert!(log.flush(Duration::from_secs(5)));
        let old = std::fs::read_to_string(&rotated).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert_eq!(old.lines().count(), 1, "{old}");
        assert_eq!(new.lines().count(), 2, "{new}");
        for line in old.lines().chain(new.lines()) {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["queue_id"], "8AFD2B6042");
        }

        // Off: nothing more is written.
        log.configure(&AuditSection {
            enabled: false,
            ..section
        });
        log.record(&message(), &Verdict::accept(), None, &policy);
        assert!(log.flush(Duration::from_secs(5)));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), new);
    }

    #[test]
    fn a_writer_that_cannot_keep_up_drops_and_counts_records_without_waiting() {
        // A FIFO nobody reads: opening it blocks the writer thread, as a stalled
        // disk would.
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("audit.jsonl");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let log = AuditLog::start(&AuditSection {
            enabled: true,
            file: fifo.to_str().unwrap().into(),
        });
        let before = metrics().audit_records_dropped.get();
        let extra = 100;
        let started = Instant::now();
        for _ in 0..QUEUE_LEN + extra {
            log.record(&message(), &Verdict::accept(), None, &Policy::default());
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
        let dropped = metrics().audit_records_dropped.get() - before;
        assert!(dropped as usize >= extra - 1, "{dropped} dropped");
        assert!(!log.flush(Duration::from_millis(50)));
        // A reload does not wait for the stalled writer either.
        let started = Instant::now();
        log.configure(&AuditSection {
            enabled: false,
            file: "/nonexistent".into(),
        });
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_file_that_cannot_be_written_is_counted_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::start(&AuditSection {
            enabled: true,
            file: dir
                .path()
                .join("missing/audit.jsonl")
                .to_str()
                .unwrap()
                .into(),
        });
        let before = metrics().audit_write_errors.get();
        log.record(&message(), &Verdict::accept(), None, &Policy::default());
        assert!(log.flush(Duration::from_secs(5)));
        assert!(metrics().audit_write_errors.get() > before);
    }
}
