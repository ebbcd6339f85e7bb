//! What the filter decided about one message, independent of the milter protocol.
//!
//! The policy's judge turns each rule's violation into a [`Finding`]; the pipeline
//! folds them into one [`Verdict`] with an
//! [`Action`], the SMTP reply the sender sees, header edits, and the reasons that
//! the log line, the metrics and `scan --json` report.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use serde::Serialize;

use crate::message::Message;

/// What happens to the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Deliver (milter "accept" or "continue"), possibly with header edits.
    Accept,
    /// Deliver, but hold in Postfix's hold queue for an admin to look at.
    Quarantine,
    /// Accept and silently drop.
    Discard,
    /// 4xx: the sender retries later.
    Tempfail,
    /// 5xx: refused for good.
    Reject,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Accept => "accept",
            Action::Quarantine => "quarantine",
            Action::Discard => "discard",
            Action::Tempfail => "tempfail",
            Action::Reject => "reject",
        }
    }
}

/// The reply text of every passing fault (clamd down, memory budget full, ...).
pub const TEMPFAIL_TEXT: &str =
    "Tam thoi khong kiem tra duoc thu, vui long gui lai sau / temporary failure, try again later";

/// An SMTP reply: code, enhanced status code, one or more text lines (ASCII).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SmtpReply {
    pub code: u16,
    pub enhanced: String,
    pub lines: Vec<String>,
}

impl SmtpReply {
    pub fn new(code: u16, enhanced: &str, text: impl Into<String>) -> Self {
        SmtpReply {
            code,
            enhanced: enhanced.to_owned(),
            lines: vec![text.into()],
        }
    }

    /// The reply as an SMTP client sees it: `550-5.7.1 first` / `550 5.7.1 last`,
    /// lines joined by CRLF. Non-ASCII and control characters are replaced by `?`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let n = self.lines.len().max(1);
        for i in 0..n {
            let text = self.lines.get(i).map(String::as_str).unwrap_or("");
            if i > 0 {
                out.push_str("\r\n");
            }
            let sep = if i + 1 == n { ' ' } else { '-' };
            out.push_str(&format!("{}{}{} ", self.code, sep, self.enhanced));
            out.extend(text.chars().map(|c| {
                if c.is_ascii() && !c.is_ascii_control() {
                    c
                } else {
                    '?'
                }
            }));
        }
        out
    }
}

impl std::fmt::Display for SmtpReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.render())
    }
}

/// A header change the milter asks the MTA to make at end of message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum HeaderEdit {
    /// Append a header at the end of the header block.
    Add { name: String, value: String },
    /// Insert a header at `index` (0 = top).
    Insert {
        index: u32,
        name: String,
        value: String,
    },
    /// Replace the `index`-th (from 1) header of that name.
    Change {
        name: String,
        index: u32,
        value: String,
    },
    /// Delete the `index`-th (from 1) header of that name.
    Delete { name: String, index: u32 },
}

impl HeaderEdit {
    /// Deletes every header of the message whose name `matches`, so that what a
    /// sender wrote cannot pass for what the filter adds.
    ///
    /// Deletes use CHGHEADER with an empty value and the index of the header among
    /// those of the same name (from 1, case-insensitive). Postfix turns a deleted
    /// header into a "deleted text" record that later lookups skip (cleanup_milter.c:
    /// `cleanup_find_header_start` skips `REC_TYPE_DTXT`), so the indexes of the
    /// headers after it shift down by one; Sendmail keeps the slot. Deleting from the
    /// highest index down is right under both.
    pub fn delete_all(msg: &Message, matches: impl Fn(&str) -> bool) -> Vec<HeaderEdit> {
        // Per name (case-insensitive), in the order first seen: the spelling seen
        // first and how many there are.
        let mut counts: Vec<(String, u32)> = Vec::new();
        let mut slot: HashMap<String, usize> = HashMap::new();
        for h in msg.headers.iter().filter(|h| matches(&h.name)) {
            match slot.entry(h.name.to_ascii_lowercase()) {
                Entry::Occupied(e) => counts[*e.get()].1 += 1,
                Entry::Vacant(e) => {
                    e.insert(counts.len());
                    counts.push((h.name.clone(), 1));
                }
            }
        }
        counts
            .into_iter()
            .flat_map(|(name, count)| {
                (1..=count).rev().map(move |index| HeaderEdit::Delete {
                    name: name.clone(),
                    index,
                })
            })
            .collect()
    }
}

/// Why a rule fired: the rule's name, the article of the regulation it enforces
/// (with diacritics, as logs and metrics write it), and a human detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    pub rule: String,
    pub article: String,
    pub detail: String,
    /// Where in the message: attachment name then entry names; empty for the
    /// message itself.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub path: Vec<String>,
}

/// One rule's finding about a message, before the findings are folded together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub action: Action,
    pub reason: Reason,
    /// The reply to send if this finding decides the message.
    pub reply: Option<SmtpReply>,
    /// Headers to add when the message is delivered anyway (tag, monitor mode).
    pub headers: Vec<HeaderEdit>,
    /// In monitor mode, the action enforcing would have taken instead of `action`.
    pub monitor_action: Option<Action>,
}

/// The final decision about one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub action: Action,
    pub reply: Option<SmtpReply>,
    pub headers: Vec<HeaderEdit>,
    pub reasons: Vec<Reason>,
}

impl Verdict {
    pub fn accept() -> Self {
        Verdict {
            action: Action::Accept,
            reply: None,
            headers: Vec::new(),
            reasons: Vec::new(),
        }
    }

    /// A tempfail for a passing fault (clamd down, overload, internal error).
    pub fn tempfail(rule: &str, detail: impl Into<String>) -> Self {
        let detail = detail.into();
        Verdict {
            action: Action::Tempfail,
            reply: Some(SmtpReply::new(451, "4.7.1", TEMPFAIL_TEXT)),
            headers: Vec::new(),
            reasons: vec![Reason {
                rule: rule.to_owned(),
                article: "Điều 18 khoản 2".to_owned(),
                detail,
                path: Vec::new(),
            }],
        }
    }

    /// Folds findings into one verdict: the most severe action wins
    /// (reject > tempfail > discard > quarantine > accept) and supplies the reply;
    /// header edits are kept only when the message is delivered. Every finding is
    /// weighed, but at most [`MAX_REASONS`] are kept (with their tags), so that
    /// hostile mail cannot flood the log or the header: the deciding one, the first
    /// of every other rule, then the rest in order; the last kept says how many
    /// more there were.
    pub fn from_findings(findings: Vec<Finding>) -> Self {
        let mut verdict = Verdict::accept();
        let mut deciding: Option<usize> = None;
        for (i, f) in findings.iter().enumerate() {
            if deciding.is_none_or(|d| f.action > findings[d].action) {
                deciding = Some(i);
            }
        }
        if let Some(d) = deciding {
            verdict.action = findings[d].action;
            verdict.reply = findings[d].reply.clone();
        }
        let delivered = matches!(verdict.action, Action::Accept | Action::Quarantine);
        let kept = kept_findings(&findings, deciding);
        let dropped = findings.len() - kept.iter().filter(|k| **k).count();
        for (f, keep) in findings.into_iter().zip(kept) {
            if !keep {
                continue;
            }
            verdict.reasons.push(f.reason);
            if delivered {
                verdict.headers.extend(f.headers);
            }
        }
        if dropped > 0
            && let Some(last) = verdict.reasons.last_mut()
        {
            last.detail
                .push_str(&format!(" (and {dropped} more findings not listed)"));
        }
        if delivered {
            verdict.reply = None;
        }
        verdict
    }
}

/// At most this many reasons (and tags) in one verdict.
pub const MAX_REASONS: usize = 20;

/// Which findings a verdict keeps: the deciding one, the first of every rule,
/// then the others in order, up to [`MAX_REASONS`].
fn kept_findings(findings: &[Finding], deciding: Option<usize>) -> Vec<bool> {
    let mut keep = vec![false; findings.len()];
    let mut count = 0;
    let mut mark = |i: usize, keep: &mut Vec<bool>| {
        if !keep[i] && count < MAX_REASONS {
            keep[i] = true;
            count += 1;
        }
    };
    if let Some(d) = deciding {
        mark(d, &mut keep);
    }
    let mut rules_seen = std::collections::HashSet::new();
    for (i, f) in findings.iter().enumerate() {
        if rules_seen.insert(f.reason.rule.as_str()) {
            mark(i, &mut keep);
        }
    }
    for i in 0..findings.len() {
        mark(i, &mut keep);
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(action: Action, rule: &str) -> Finding {
        Finding {
            action,
            reason: Reason {
                rule: rule.into(),
                article: "Điều 4 khoản 7".into(),
                detail: String::new(),
                path: Vec::new(),
            },
            reply: Some(SmtpReply::new(550, "5.7.1", rule)),
            headers: vec![HeaderEdit::Add {
                name: "X-Test".into(),
                value: rule.into(),
            }],
            monitor_action: None,
        }
    }

    #[test]
    fn most_severe_finding_decides() {
        let v = Verdict::from_findings(vec![
            finding(Action::Quarantine, "a"),
            finding(Action::Reject, "b"),
            finding(Action::Tempfail, "c"),
        ]);
        assert_eq!(v.action, Action::Reject);
        assert_eq!(v.reply.unwrap().lines, vec!["b".to_string()]);
        assert_eq!(v.reasons.len(), 3);
        assert!(v.headers.is_empty());
    }

    #[test]
    fn delivered_message_keeps_tags() {
        let v = Verdict::from_findings(vec![finding(Action::Accept, "tag")]);
        assert_eq!(v.action, Action::Accept);
        assert_eq!(v.headers.len(), 1);
        assert!(v.reply.is_none());
    }

    #[test]
    fn every_finding_is_weighed_but_reasons_are_capped() {
        // 30 tagged findings of one rule, then the one that refuses: the refusal
        // decides, and every rule keeps a reason.
        let mut findings: Vec<Finding> = (0..30).map(|_| finding(Action::Accept, "tag")).collect();
        findings.push(finding(Action::Reject, "refuse"));
        findings.push(finding(Action::Quarantine, "hold"));
        let v = Verdict::from_findings(findings);
        assert_eq!(v.action, Action::Reject);
        assert_eq!(v.reply.unwrap().lines, vec!["refuse".to_string()]);
        assert_eq!(v.reasons.len(), MAX_REASONS);
        assert_eq!(v.reasons[0].rule, "tag");
        assert!(v.reasons.iter().any(|r| r.rule == "refuse"));
        assert!(v.reasons.iter().any(|r| r.rule == "hold"));
        let last = &v.reasons[MAX_REASONS - 1].detail;
        assert!(
            last.ends_with("(and 12 more findings not listed)"),
            "{last}"
        );

        let tags: Vec<Finding> = (0..30).map(|_| finding(Action::Accept, "tag")).collect();
        let v = Verdict::from_findings(tags);
        assert_eq!(v.headers.len(), MAX_REASONS, "tags are capped too");
    }

    #[test]
    fn multi_line_reply_renders_with_dashes() {
        let r = SmtpReply {
            code: 550,
            enhanced: "5.7.1".into(),
            lines: vec!["one".into(), "hai: Điều".into()],
        };
        assert_eq!(r.render(), "550-5.7.1 one\r\n550 5.7.1 hai: ?i?u");
    }
}
