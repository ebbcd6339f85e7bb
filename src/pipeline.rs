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

use bytes::Bytes;

use tokio::runtime::RuntimeFlavor;

use crate::inspect::{ArchiveKind, ExecKind, FileKind, Inspection, Signature};
use crate::message::Message;
use crate::milter::Limit;
use crate::policy::Policy;
use crate::rule::Violation;
use crate::rules;
use crate::rules::forwarding::ForwardingFinding;
use crate::scan::{ScanMode, ScanOutcome, Scanner};
use crate::verdict::{Action, Finding, HeaderEdit, Verdict};

/// Facts about the message worth reporting beside the verdict (logs, metrics).
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Each attachment and archive entry inspected.
    pub files: Vec<FileFact>,
    /// A signed message (S/MIME, OpenPGP): Điều 4 khoản 8 adoption.
    pub signed: Option<Signature>,
    /// What the forwarding rule saw, when it fired.
    pub forwarding: Option<ForwardingFinding>,
}

/// One inspected file, in bounded labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileFact {
    /// The detected type (`executable_pe`, `archive_zip`, `document`, ...).
    pub kind: &'static str,
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

/// Inspects the message's content. The work is CPU-bound, so on the daemon's
/// multi-threaded runtime it tells tokio to move other tasks off this thread
/// meanwhile.
fn inspect(msg: &Message, policy: &Policy) -> Inspection {
    let run = || crate::inspect::inspect_message(&msg.raw, &policy.limits);
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
        },
        FileKind::Archive(a) => match a {
            ArchiveKind::Zip => "archive_zip",
            ArchiveKind::SevenZip => "archive_7z",
            ArchiveKind::Tar => "archive_tar",
            ArchiveKind::Gzip => "archive_gzip",
            ArchiveKind::Bzip2 => "archive_bzip2",
            ArchiveKind::Xz => "archive_xz",
            ArchiveKind::Rar4 | ArchiveKind::Rar5 => "archive_rar",
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
    let mut violations = Vec::new();
    violations.extend(rules::size::check_streamed(msg, 0, policy));
    let forwarding = rules::forwarding::detect(msg, policy);
    if let Some(f) = &forwarding {
        violations.push(f.violation());
    }
    let inspection = inspect(msg, policy);
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
                ScanMode::Message => s.scan_raw(Bytes::copy_from_slice(&msg.raw)).await,
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
    let facts = Facts {
        files: file_facts(&inspection),
        signed: inspection.signed,
        forwarding,
    };
    Decision { verdict, facts }
}
