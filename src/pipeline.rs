//! The decision for one message: cheap rules first, then ClamAV, then the policy
//! folds every violation into one verdict. The daemon and the offline `scan`
//! command both call [`decide`], so what an admin tests offline is what the daemon
//! does.
//!
//! The decision is pure: it returns the verdict and the [`Facts`] that led to it
//! (what was inspected, the forwarding signals), and writes
//! neither logs nor metrics. The daemon reports both afterwards, in one step
//! (src/server/report.rs); `scan` prints the verdict and touches no metric.
//!
//! Order matters for cost, not for the outcome: when the cheap rules already
//! refuse the message, clamd is not asked (the verdict could only get more severe
//! in wording, not in action).
//!
//! In the daemon, decisions share two things ([`Shared`]): the memory budget
//! (what inspection holds beyond the body's decoded copy is charged to it; a full
//! budget defers the message, a message that alone needs more than the whole
//! budget is uninspectable) and turns at inspecting (`[limits]
//! max_concurrent_inspections`: inspection is CPU work, and every message being
//! inspected holds memory). The offline `scan` shares nothing.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use tokio::runtime::RuntimeFlavor;
use tokio::sync::Semaphore;

use crate::inspect::budget::{MemoryAccount, MemoryShortfall};
use crate::inspect::{ArchiveKind, ExecKind, FileKind, Inspection, Signature, SignatureFormat};
use crate::message::Message;
use crate::milter::Limit;
use crate::milter::budget::{MemoryBudget, SESSION_BYTES_PER_BODY_BYTE};
use crate::policy::{Mode, Policy};
use crate::rule::Violation;
use crate::rules;
use crate::rules::forwarding::ForwardingFinding;
use crate::scan::{ScanMode, ScanOutcome, Scanner};
use crate::verdict::{Action, Finding, HeaderEdit, Verdict};
use serde::Serialize;

/// Facts about the message worth reporting beside the verdict (logs, metrics).
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Each attachment and archive entry inspected.
    pub files: Vec<FileFact>,
    /// A signed message (S/MIME, OpenPGP): Điều 4 khoản 8 adoption.
    pub signed: Option<Signature>,
    /// What the forwarding rule saw, when it fired.
    pub forwarding: Option<ForwardingFinding>,
    /// The digitally signed documents among the files (Điều 4 khoản 8
    /// adoption): for the metrics, `scan` and the audit record.
    pub signed_documents: Vec<SignedDocumentFact>,
    /// In monitor mode, the action enforcing would have taken; `None` outside it.
    pub monitor_action: Option<Action>,
    /// Documents whose text could not be read for classification stamps
    /// (Điều 15 khoản 2): how many, and the first few as `"path": reason`.
    pub unreadable_documents: usize,
    pub unreadable_examples: Vec<String>,
}

/// Unreadable documents named in the log line, at most.
const UNREADABLE_EXAMPLES: usize = 8;

/// One digitally signed document: where it sits and how it is signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignedDocumentFact {
    /// As [`crate::inspect::FileFacts::path`]: the attachment, then the entries.
    pub path: Vec<String>,
    #[serde(serialize_with = "format_name")]
    pub format: SignatureFormat,
}

fn format_name<S: serde::Serializer>(format: &SignatureFormat, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(format.as_str())
}

/// One inspected file: bounded labels for the metrics, and what the audit
/// record lists (src/server/audit.rs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFact {
    /// The detected type (`executable_pe`, `archive_zip`, `document`, ...).
    pub kind: &'static str,
    /// The detected MIME type (`application/zip`, `application/x-msdownload`).
    pub mime_type: String,
    /// Attachment name, then entry names down to this file.
    pub path: Vec<String>,
    /// Decoded size in bytes.
    pub size: u64,
    /// SHA-256 of the decoded bytes, when all of them were read.
    pub sha256: Option<[u8; 32]>,
    /// Found inside an archive, not attached directly.
    pub in_archive: bool,
    /// The archive format, when the file is an encrypted archive.
    pub encrypted: Option<&'static str>,
}

/// A verdict with the facts that led to it.
#[derive(Debug, Clone)]
pub struct Decision {
    pub verdict: Verdict,
    pub facts: Facts,
}

/// Judges violations under the policy and folds them into one verdict.
pub fn judge(violations: &[Violation], msg: &Message, policy: &Policy) -> Verdict {
    Verdict::from_findings(findings(violations, msg, policy))
}

fn findings(violations: &[Violation], msg: &Message, policy: &Policy) -> Vec<Finding> {
    violations
        .iter()
        .filter_map(|v| policy.judge(v, msg))
        .collect()
}

/// The early verdict at MAIL FROM, if one is certain.
pub fn at_mail(msg: &Message, policy: &Policy) -> Option<Verdict> {
    let v = rules::size::check_declared(msg, policy)?;
    decisive(judge(&[v], msg, policy))
}

/// The early verdict before a body chunk is stored, if one is certain.
pub fn at_body_chunk(msg: &Message, chunk_len: usize, policy: &Policy) -> Option<Verdict> {
    let v = rules::size::check_streamed(msg, chunk_len, policy)?;
    decisive(judge(&[v], msg, policy))
}

/// The verdict on a message whose next body chunk found the memory budget full.
pub fn over_budget(msg: &Message, policy: &Policy, used: u64, limit: u64) -> Verdict {
    judge(&[rules::budget::over_budget(used, limit)], msg, policy)
}

/// The verdict on a message that crossed one of the session's caps.
pub fn over_limit(msg: &Message, policy: &Policy, limit: Limit) -> Verdict {
    judge(&[rules::message_limits::over_limit(limit)], msg, policy)
}

/// An early verdict ends the message only if it refuses or defers it; a tag or
/// exception lets the message go on to the full decision.
fn decisive(verdict: Verdict) -> Option<Verdict> {
    matches!(verdict.action, Action::Reject | Action::Tempfail).then_some(verdict)
}

/// What the daemon's decisions share; the default shares nothing (the offline
/// `scan`).
#[derive(Debug, Clone, Default)]
pub struct Shared {
    /// `[limits] max_buffered_bytes`: the session charged the message's body; the
    /// inspection charges what it holds beyond the body's decoded copy.
    pub memory: Option<Arc<MemoryBudget>>,
    /// `[limits] max_concurrent_inspections` turns at inspecting; a message waits
    /// for one at most `[limits] max_inspect_time`.
    pub inspections: Option<Arc<Semaphore>>,
}

/// The memory account of one message's inspection: its body already holds
/// [`SESSION_BYTES_PER_BODY_BYTE`] per byte of the budget, one of which is the
/// decoded copy inspection may make uncharged; it may charge at most what the
/// rest of the budget would give it alone.
fn memory_account(msg: &Message, pool: &Arc<MemoryBudget>) -> Arc<MemoryAccount> {
    let body = msg.body_len() as u64;
    let ceiling = pool
        .limit()
        .saturating_sub(body.saturating_mul(SESSION_BYTES_PER_BODY_BYTE));
    MemoryAccount::new(pool.clone(), body, ceiling)
}

/// Inspects the message's content. The work is CPU-bound, so on the daemon's
/// multi-threaded runtime it tells tokio to move other tasks off this thread
/// meanwhile.
fn inspect(msg: &Message, policy: &Policy, memory: Option<Arc<MemoryAccount>>) -> Inspection {
    let read_stamps = crate::rules::classified::reaches_outside_the_state(msg, policy);
    let run = || {
        crate::inspect::mime::inspect_message_within(&msg.raw, &policy.limits, memory, read_stamps)
    };
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(run),
        _ => run(),
    }
}

/// What inspection saw, in bounded labels: file types, archive entries,
/// encrypted archives.
fn file_facts(inspection: &Inspection) -> Vec<FileFact> {
    inspection
        .files
        .iter()
        .map(|file| FileFact {
            kind: file_type_label(&file.kind),
            mime_type: mime_type(&file.kind),
            path: file.path.clone(),
            size: file.size,
            sha256: file.sha256,
            in_archive: file.path.len() > 1,
            encrypted: file.encrypted.then(|| match &file.kind {
                FileKind::Archive(kind) => archive_label(*kind),
                _ => "other",
            }),
        })
        .collect()
}

/// A bounded label for an archive format: the format's name, `unsupported` for
/// every format the filter cannot open.
fn archive_label(kind: ArchiveKind) -> &'static str {
    match kind {
        ArchiveKind::Unsupported(_) => "unsupported",
        known => crate::inspect::archive::format_name(known),
    }
}

/// The MIME type of a detected file type, as the audit record writes it.
fn mime_type(kind: &FileKind) -> String {
    let known = match kind {
        FileKind::Executable(e) => match e {
            ExecKind::Pe => "application/x-msdownload",
            ExecKind::Dos => "application/x-dosexec",
            ExecKind::Elf => "application/x-executable",
            ExecKind::MachO => "application/x-mach-binary",
            ExecKind::Msi => "application/x-msi",
            ExecKind::JavaClass => "application/java-vm",
            ExecKind::Script => "text/x-shellscript",
            ExecKind::Chm => "application/vnd.ms-htmlhelp",
        },
        FileKind::Archive(a) => match a {
            ArchiveKind::Zip => "application/zip",
            ArchiveKind::SevenZip => "application/x-7z-compressed",
            ArchiveKind::Tar => "application/x-tar",
            ArchiveKind::Gzip => "application/gzip",
            ArchiveKind::Bzip2 => "application/x-bzip2",
            ArchiveKind::Xz => "application/x-xz",
            ArchiveKind::Rar4 | ArchiveKind::Rar5 => "application/vnd.rar",
            ArchiveKind::Cab => "application/vnd.ms-cab-compressed",
            ArchiveKind::Iso => "application/x-iso9660-image",
            ArchiveKind::Lha => "application/x-lzh-compressed",
            ArchiveKind::Cpio => "application/x-cpio",
            ArchiveKind::Ar => "application/x-archive",
            ArchiveKind::Unsupported(what) => return format!("archive/{what}"),
        },
        FileKind::Document(mime) => mime,
        FileKind::Other(mime) => mime,
    };
    known.to_owned()
}

/// A bounded label for a detected file type.
fn file_type_label(kind: &FileKind) -> &'static str {
    match kind {
        FileKind::Executable(e) => match e {
            ExecKind::Pe => "executable_pe",
            ExecKind::Dos => "executable_dos",
            ExecKind::Elf => "executable_elf",
            ExecKind::MachO => "executable_macho",
            ExecKind::Msi => "executable_msi",
            ExecKind::JavaClass => "executable_java",
            ExecKind::Script => "executable_script",
            ExecKind::Chm => "executable_chm",
        },
        FileKind::Archive(a) => match a {
            ArchiveKind::Zip => "archive_zip",
            ArchiveKind::SevenZip => "archive_7z",
            ArchiveKind::Tar => "archive_tar",
            ArchiveKind::Gzip => "archive_gzip",
            ArchiveKind::Bzip2 => "archive_bzip2",
            ArchiveKind::Xz => "archive_xz",
            ArchiveKind::Rar4 | ArchiveKind::Rar5 => "archive_rar",
            ArchiveKind::Cab => "archive_cab",
            ArchiveKind::Iso => "archive_iso",
            ArchiveKind::Lha => "archive_lzh",
            ArchiveKind::Cpio => "archive_cpio",
            ArchiveKind::Ar => "archive_ar",
            ArchiveKind::Unsupported(_) => "archive_unsupported",
        },
        FileKind::Document(_) => "document",
        FileKind::Other(mime) => match mime.split('/').next().unwrap_or("") {
            "image" => "image",
            "text" => "text",
            "audio" | "video" => "media",
            "message" => "message",
            _ => "other",
        },
    }
}

/// The full decision at end of message. `scanner` is the clamd pool, `None` when
/// scanning is off — or when it could not be set up, in which case the
/// `on_failure` action applies as for any clamd failure.
pub async fn decide(msg: &Message, policy: &Policy, scanner: Option<&Scanner>) -> Decision {
    decide_sharing(msg, policy, scanner, &Shared::default()).await
}

/// A memory shortfall as a violation: the budget is busy (try later), or the
/// message needs more than the whole budget (uninspectable, for good).
fn memory_violation(short: &MemoryShortfall) -> Violation {
    match short {
        MemoryShortfall::Busy { .. } => rules::budget::inspection_over_budget(short),
        MemoryShortfall::TooLarge { .. } => {
            rules::attachments::message_uninspectable(&short.to_string())
        }
    }
}

/// A verdict decided before the message could be judged whole (no turn at
/// inspecting, no memory): nothing else is judged.
fn deferred(violation: Violation, msg: &Message, policy: &Policy) -> Decision {
    let found = findings(&[violation], msg, policy);
    let facts = Facts {
        monitor_action: monitor_action(&found, policy),
        ..Facts::default()
    };
    Decision {
        verdict: Verdict::from_findings(found),
        facts,
    }
}

/// In monitor mode, the most severe action enforcing would have taken on these
/// findings (`accept` when none); `None` outside monitor mode.
fn monitor_action(found: &[Finding], policy: &Policy) -> Option<Action> {
    (policy.mode == Mode::Monitor).then(|| {
        found
            .iter()
            .map(|f| f.monitor_action.unwrap_or(f.action))
            .max()
            .unwrap_or(Action::Accept)
    })
}

/// [`decide`], sharing memory and turns at inspecting with the daemon's other
/// decisions.
pub async fn decide_sharing(
    msg: &Message,
    policy: &Policy,
    scanner: Option<&Scanner>,
    shared: &Shared,
) -> Decision {
    let mut violations = Vec::new();
    violations.extend(rules::size::check_streamed(msg, 0, policy));
    let forwarding = rules::forwarding::detect(msg, policy);
    if let Some(f) = &forwarding {
        violations.push(f.violation());
    }
    let turn = match &shared.inspections {
        Some(turns) => {
            let waiting = Instant::now();
            let wait = policy.limits.max_inspect_time.get();
            match tokio::time::timeout(wait, turns.clone().acquire_owned()).await {
                Ok(Ok(permit)) => Some(permit),
                _ => {
                    let queued = rules::budget::queue_timeout(
                        policy.limits.concurrent_inspections(),
                        waiting.elapsed(),
                    );
                    return deferred(queued, msg, policy);
                }
            }
        }
        None => None,
    };
    // Held until the decision is made: the inspection's parts go to clamd.
    let memory = shared.memory.as_ref().map(|pool| memory_account(msg, pool));
    let mut inspection = inspect(msg, policy, memory.clone());
    drop(turn);
    match memory.as_ref().and_then(|m| m.shortfall()) {
        Some(busy @ MemoryShortfall::Busy { .. }) => {
            return deferred(memory_violation(&busy), msg, policy);
        }
        Some(too_large) => inspection.problems.push(too_large.to_string()),
        None => {}
    }
    violations.extend(rules::at_end_of_message(&rules::Evidence {
        msg,
        policy,
        inspection: &inspection,
    }));
    let mut found = findings(&violations, msg, policy);
    let refused = found.iter().any(|f| {
        matches!(
            f.action,
            Action::Reject | Action::Tempfail | Action::Discard
        )
    });

    let mut outcome = None;
    if policy.clamav.enabled && !refused {
        let result = match scanner {
            Some(s) => match policy.clamav.scan {
                ScanMode::Message => {
                    let copy = msg.raw.len() as u64;
                    if let Some(m) = &memory
                        && !m.hold(copy)
                        && let Some(short) = m.shortfall()
                    {
                        return deferred(memory_violation(&short), msg, policy);
                    }
                    s.scan_raw(Bytes::copy_from_slice(&msg.raw)).await
                }
                ScanMode::Attachments => s.scan_parts(&inspection.scan_parts).await,
            },
            None => ScanOutcome::Failed {
                reason: "the clamd pool could not be set up".into(),
                parts_scanned: 0,
                unscanned: Vec::new(),
            },
        };
        found.extend(findings(
            &rules::virus::evaluate(&result, policy),
            msg,
            policy,
        ));
        outcome = Some(result);
    }

    let monitor_action = monitor_action(&found, policy);
    let mut verdict = Verdict::from_findings(found);
    if matches!(verdict.action, Action::Accept | Action::Quarantine) {
        // Forged headers are deleted before ours are added: incoming tag headers
        // (a sender must not pass for the filter), then clamd's X-Virus-* edits.
        let tag = &policy.headers.tag_header;
        let mut headers = HeaderEdit::delete_all(msg, |name| name.eq_ignore_ascii_case(tag));
        if let Some(result) = &outcome {
            headers.extend(rules::virus::virus_headers(msg, result, policy));
        }
        headers.append(&mut verdict.headers);
        verdict.headers = headers;
    }
    let unreadable: Vec<_> = rules::classified::unreadable_documents(&inspection).collect();
    let facts = Facts {
        files: file_facts(&inspection),
        signed: inspection.signed,
        forwarding,
        signed_documents: inspection
            .signed_documents()
            .map(|d| SignedDocumentFact {
                path: d.path.to_vec(),
                format: d.format,
            })
            .collect(),
        monitor_action,
        unreadable_documents: unreadable.len(),
        unreadable_examples: unreadable
            .iter()
            .take(UNREADABLE_EXAMPLES)
            .map(|(f, reason)| format!("{}: {reason}", rules::attachments::long_path(f)))
            .collect(),
    };
    Decision { verdict, facts }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use sha2::Digest;

    use super::*;
    use crate::milter::budget::Reservation;
    use crate::policy::Seconds;

    fn policy() -> Policy {
        let mut p = Policy::default();
        p.clamav.enabled = false;
        p
    }

    /// A message whose zip holds a stored zip of 2 MiB of noise: the inner one
    /// must be held whole to be opened.
    fn nested_archive_message() -> Message {
        let mut seed = 7u64;
        let noise: Vec<u8> = (0..2 << 20)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let zip = |name: &str, data: &[u8], method| {
            let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
            let options = zip::write::SimpleFileOptions::default().compression_method(method);
            w.start_file(name, options).unwrap();
            w.write_all(data).unwrap();
            w.finish().unwrap().into_inner()
        };
        let inner = zip("noise.bin", &noise, zip::CompressionMethod::Stored);
        let outer = zip("inner.zip", &inner, zip::CompressionMethod::Stored);
        let mut eml = b"From: a@example.org\r\nTo: b@bacgiang.gov.vn\r\nSubject: ho so\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: application/zip; name=a.zip\r\nContent-Transfer-Encoding: base64\r\n\r\n".to_vec();
        eml.extend(base64_simd::STANDARD.encode_to_string(&outer).as_bytes());
        eml.extend(b"\r\n--b--\r\n");
        Message::from_eml(&eml)
    }

    /// The budget a session would have charged for `msg`, taken from a pool of
    /// `extra` bytes more than that.
    fn pool_for(msg: &Message, extra: u64) -> (Arc<MemoryBudget>, Reservation) {
        let session = SESSION_BYTES_PER_BODY_BYTE * msg.body_len() as u64;
        let pool = MemoryBudget::new(session + extra);
        let mut held = Reservation::new(Some(pool.clone()));
        assert!(held.grow(session));
        (pool, held)
    }

    fn decide_with(msg: &Message, policy: &Policy, shared: &Shared) -> Verdict {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime
            .block_on(decide_sharing(msg, policy, None, shared))
            .verdict
    }

    #[test]
    fn a_message_within_the_budget_is_decided_and_gives_the_memory_back() {
        let msg = nested_archive_message();
        let (pool, _session) = pool_for(&msg, 8 << 20);
        let before = pool.used();
        let shared = Shared {
            memory: Some(pool.clone()),
            ..Shared::default()
        };
        assert_eq!(decide_with(&msg, &policy(), &shared).action, Action::Accept);
        assert_eq!(pool.used(), before);
    }

    #[test]
    fn a_full_budget_defers_and_a_budget_too_small_for_the_message_refuses() {
        let msg = nested_archive_message();
        // Other messages hold all but 1 MiB: come back later.
        let (pool, _session) = pool_for(&msg, 8 << 20);
        let mut others = Reservation::new(Some(pool.clone()));
        assert!(others.grow(7 << 20));
        let shared = Shared {
            memory: Some(pool.clone()),
            ..Shared::default()
        };
        let verdict = decide_with(&msg, &policy(), &shared);
        assert_eq!(verdict.action, Action::Tempfail);
        assert_eq!(verdict.reasons[0].rule, "memory_budget");
        drop(others);

        // The whole budget leaves 1 MiB beyond the body: never enough.
        let (pool, _session) = pool_for(&msg, 1 << 20);
        let shared = Shared {
            memory: Some(pool),
            ..Shared::default()
        };
        let verdict = decide_with(&msg, &policy(), &shared);
        assert_eq!(verdict.action, Action::Reject);
        assert_eq!(verdict.reasons[0].rule, "uninspectable");
        assert!(
            verdict.reasons[0]
                .detail
                .contains("more than the whole budget"),
            "{:?}",
            verdict.reasons
        );
    }

    fn decide_facts(msg: &Message, policy: &Policy) -> Decision {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(decide(msg, policy, None))
    }

    #[test]
    fn facts_list_each_file_with_its_hash_and_monitor_mode_what_it_would_have_done() {
        let eml = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/messages/fail-exe-in-zip.eml"
        ))
        .unwrap();
        let msg = Message::from_eml(&eml);
        let enforced = decide_facts(&msg, &policy());
        assert_eq!(enforced.verdict.action, Action::Reject);
        assert_eq!(enforced.facts.monitor_action, None);
        let exe = enforced
            .verdict
            .reasons
            .iter()
            .find(|r| r.rule == "executable")
            .expect("the executable rule fired");
        let exe_file = enforced
            .facts
            .files
            .iter()
            .find(|f| f.path == exe.path)
            .expect("the violation's path names a listed file");
        assert_eq!(exe_file.path.len(), 2, "{:?}", exe_file.path);
        assert!(enforced.facts.files.iter().all(|f| f.sha256.is_some()));

        // The attachment's hash is that of its decoded bytes.
        let parsed = mail_parser::MessageParser::default()
            .parse(&eml[..])
            .unwrap();
        let zip = parsed.attachment(0).unwrap().contents();
        let digest: [u8; 32] = sha2::Sha256::digest(zip).into();
        assert_eq!(enforced.facts.files[0].sha256, Some(digest));
        assert_eq!(enforced.facts.files[0].mime_type, "application/zip");

        let mut monitor = policy();
        monitor.mode = Mode::Monitor;
        let watched = decide_facts(&msg, &monitor);
        assert_eq!(watched.verdict.action, Action::Accept);
        assert_eq!(watched.facts.monitor_action, Some(Action::Reject));
        let clean = Message::from_eml(b"From: a@example.org\r\nSubject: x\r\n\r\nhello\r\n");
        assert_eq!(
            decide_facts(&clean, &monitor).facts.monitor_action,
            Some(Action::Accept)
        );
    }

    #[test]
    fn a_message_that_gets_no_turn_in_time_is_deferred() {
        let msg = nested_archive_message();
        let mut policy = policy();
        policy.limits.max_inspect_time = Seconds::parse("100ms").unwrap();
        let shared = Shared {
            inspections: Some(Arc::new(Semaphore::new(0))),
            ..Shared::default()
        };
        let verdict = decide_with(&msg, &policy, &shared);
        assert_eq!(verdict.action, Action::Tempfail);
        assert_eq!(verdict.reasons[0].rule, "inspection_queue");
    }
}
