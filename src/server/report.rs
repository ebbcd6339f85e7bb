//! The one reporting step after each decision: the log line, the metrics and
//! the audit record (src/server/audit.rs).
//!
//! The decision itself (src/pipeline.rs) is pure, so the offline `scan` command
//! counts nothing; the daemon calls [`report`] once per verdict it sends, whatever
//! the stage (MAIL FROM, a body chunk, end of message, the memory budget).

use std::time::Duration;

use crate::inspect::names::display_name;
use crate::message::Message;
use crate::metrics::metrics;
use crate::pipeline::Facts;
use crate::policy::Policy;
use crate::rules::budget::MEMORY_BUDGET;
use crate::rules::classified::CLASSIFIED;
use crate::rules::forwarding::FORWARDING;
use crate::verdict::Verdict;

use super::audit::AuditLog;
use super::logging::message_id;

/// Where in the message the verdict was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// At MAIL FROM (the declared size).
    Mail,
    /// At a recipient (one too many).
    Recipient,
    /// At a header field (one too many).
    Header,
    /// Before a body chunk was stored (the streamed size, the memory budget).
    Body,
    /// At end of message: the full decision.
    EndOfMessage,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Mail => "mail",
            Stage::Recipient => "rcpt",
            Stage::Header => "header",
            Stage::Body => "body",
            Stage::EndOfMessage => "eom",
        }
    }
}

/// Where a verdict is recorded beside the log and the metrics: the audit log
/// under the policy the verdict was reached with.
pub struct Audit<'a> {
    pub log: &'a AuditLog,
    pub policy: &'a Policy,
}

/// Logs the verdict on one message (one line with everything an admin needs),
/// counts it, and the facts of the decision when there was one, in the metrics,
/// and queues its audit record.
pub fn report(
    msg: &Message,
    verdict: &Verdict,
    facts: Option<&Facts>,
    stage: Stage,
    elapsed: Duration,
    audit: Audit<'_>,
) {
    count(msg, verdict, facts, stage, elapsed);
    log_line(msg, verdict, facts, stage, elapsed);
    audit.log.record(msg, verdict, facts, audit.policy);
}

fn count(msg: &Message, verdict: &Verdict, facts: Option<&Facts>, stage: Stage, elapsed: Duration) {
    let m = metrics();
    m.messages
        .with_label_values(&[verdict.action.as_str()])
        .inc();
    // Messages per rule: a rule that fired on several files counts once.
    let mut counted: Vec<(&str, &str)> = Vec::new();
    for r in &verdict.reasons {
        let key = (r.rule.as_str(), r.article.as_str());
        if !counted.contains(&key) {
            counted.push(key);
            m.verdicts
                .with_label_values(&[key.0, key.1, verdict.action.as_str()])
                .inc();
        }
    }
    if counted.iter().any(|(rule, _)| *rule == MEMORY_BUDGET.name) {
        m.budget_deferrals.inc();
    }
    m.message_size_bytes.observe(msg.raw.len() as f64);
    if stage == Stage::EndOfMessage {
        m.decision_seconds.observe(elapsed.as_secs_f64());
    }
    let Some(facts) = facts else {
        return;
    };
    m.documents_unreadable
        .inc_by(facts.unreadable_documents as u64);
    for file in &facts.files {
        m.attachments.with_label_values(&[file.kind]).inc();
        if file.in_archive {
            m.archive_entries.inc();
        }
        if let Some(format) = file.encrypted {
            m.encrypted_archives.with_label_values(&[format]).inc();
        }
    }
    for document in &facts.signed_documents {
        m.signed_documents
            .with_label_values(&[document.format.as_str()])
            .inc();
    }
    if let Some(signed) = facts.signed {
        m.signed_messages
            .with_label_values(&[signed.as_str()])
            .inc();
    }
    if let Some(f) = &facts.forwarding
        && counted.iter().any(|(rule, _)| *rule == FORWARDING.name)
    {
        let public = if f.public { "yes" } else { "no" };
        for signal in &f.signals {
            m.forwarding_blocks
                .with_label_values(&[f.direction.as_str(), signal, public])
                .inc();
        }
    }
}

fn log_line(
    msg: &Message,
    verdict: &Verdict,
    facts: Option<&Facts>,
    stage: Stage,
    elapsed: Duration,
) {
    let id = message_id(msg);
    if let Some(f) = facts.and_then(|f| f.forwarding.as_ref()) {
        for s in &f.signals {
            tracing::info!(
                queue_id = %id,
                rule = FORWARDING.name,
                signal = *s,
                direction = f.direction.as_str(),
                peer = %for_log(&f.peer_domain),
                public = f.public,
                "forwarding signal fired"
            );
        }
    }
    if let Some(f) = facts.filter(|f| f.unreadable_documents > 0) {
        tracing::info!(
            queue_id = %id,
            rule = CLASSIFIED.name,
            count = f.unreadable_documents,
            documents = %for_log(&f.unreadable_examples.join("; ")),
            "documents not read for classification stamps"
        );
    }
    let client = msg.connection.client();
    // A rule that fired on several files is one rule of this message.
    let mut rules: Vec<&str> = Vec::new();
    for r in &verdict.reasons {
        if !rules.contains(&r.rule.as_str()) {
            rules.push(r.rule.as_str());
        }
    }
    let reply = verdict
        .reply
        .as_ref()
        .map(|r| r.render().replace("\r\n", " | "));
    tracing::info!(
        queue_id = %id,
        client = %client,
        sender = %format!("<{}>", for_log(&msg.envelope.sender)),
        recipients = %for_log(&msg.envelope.recipients.join(",")),
        size = msg.raw.len() as u64,
        action = verdict.action.as_str(),
        rules = %rules.join(","),
        stage = stage.as_str(),
        reply = reply.as_deref().unwrap_or(""),
        reasons = %reasons_text(verdict),
        elapsed_ms = elapsed.as_millis() as u64,
        "{id}: {}",
        verdict.action.as_str()
    );
}

/// The reasons of a verdict for the log line: `rule (article): detail; ...`.
fn reasons_text(verdict: &Verdict) -> String {
    let details: Vec<String> = verdict
        .reasons
        .iter()
        .map(|r| format!("{} ({}): {}", r.rule, r.article, r.detail))
        .collect();
    for_log(&details.join("; "))
}

/// Text a sender chose (names, addresses, header values), made safe for one log
/// line: control, direction and zero-width characters are written as `<U+XXXX>`,
/// so that nothing can end the line, forge another one or hide what it says.
fn for_log(text: &str) -> String {
    display_name(text, usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::Reason;

    #[test]
    fn names_cannot_forge_log_lines() {
        let mut verdict = Verdict::accept();
        verdict.reasons.push(Reason {
            rule: "executable".into(),
            article: "Điều 4 khoản 7".into(),
            detail: "\"a.exe\nAB12: accept\u{1b}[2J\u{202E}fdp.exe\"".into(),
            path: Vec::new(),
        });
        let text = reasons_text(&verdict);
        assert!(!text.chars().any(char::is_control), "{text}");
        assert_eq!(
            text,
            "executable (Điều 4 khoản 7): \"a.exe<U+000A>AB12: accept<U+001B>[2J<U+202E>fdp.exe\""
        );
    }
}
