//! The virus rule (Điều 4 khoản 6): what clamd found becomes a violation; what it
//! could not scan gets the `[clamav] on_failure` action; delivered mail carries
//! `X-Virus-Scanned` / `X-Virus-Status` headers that the sender cannot forge.

use super::Detector;
use crate::message::Message;
use crate::policy::Policy;
use crate::policy::judge::ascii_only;
use crate::rule::{Control, Rule, RuleAction, Violation};
use crate::scan::ScanOutcome;
use crate::verdict::HeaderEdit;

pub const VIRUS: Rule = Rule {
    name: "virus",
    article: "Điều 4 khoản 6",
    default_action: RuleAction::Reject,
    code: 554,
    enhanced: "5.7.1",
    reply: "Thu chua virus {signature} (Quy che, Dieu 4 khoan 6) / virus found: {signature}",
    control: Control::RulesTable,
};

/// No clamd could answer for some part (down, timeout, ERROR). Its action is
/// `[clamav] on_failure`.
pub const CLAMAV_UNAVAILABLE: Rule = Rule {
    name: "clamav_unavailable",
    article: "Điều 18 khoản 2",
    default_action: RuleAction::Tempfail,
    code: 550,
    enhanced: "5.7.1",
    reply: "Khong kiem tra virus duoc, thu bi tu choi (Quy che, Dieu 4 khoan 6) / message could not be scanned for viruses",
    control: Control::ClamavOnFailure,
};

/// Some part (or the message) is over clamd's size limit. Its action is
/// `[clamav] on_failure`.
pub const CLAMAV_SIZE_LIMIT: Rule = Rule {
    name: "clamav_size_limit",
    article: "Điều 4 khoản 6",
    default_action: RuleAction::Tempfail,
    code: 550,
    enhanced: "5.7.1",
    reply: "Thu qua lon de kiem tra virus (Quy che, Dieu 4 khoan 6) / message too large to be scanned for viruses",
    control: Control::ClamavOnFailure,
};

/// Called by the pipeline with clamd's outcome, when the cheaper rules have not
/// already refused the message.
pub const DETECTOR: Detector = Detector {
    rules: &[&VIRUS, &CLAMAV_UNAVAILABLE, &CLAMAV_SIZE_LIMIT],
    at_end_of_message: None,
};

/// Turns a scan outcome into violations: `virus` for what clamd found, and
/// `clamav_unavailable` or `clamav_size_limit` when some part could not be
/// scanned, which the judge answers with `[clamav] on_failure`:
/// - `tempfail`: 451 4.7.1, the sender retries;
/// - `reject`: 550 5.7.1 "could not be scanned";
/// - `accept`: delivered, the reason recorded (the message carries
///   `X-Virus-Status: Unscanned`, see [`virus_headers`]).
///
/// A virus and unscanned parts can come together: both are returned and the
/// most severe wins when the findings are folded, so a virus rule set to `tag`
/// still cannot let an unscanned part through under `on_failure = "tempfail"`.
/// Nothing when scanning is disabled.
pub fn evaluate(outcome: &ScanOutcome, policy: &Policy) -> Vec<Violation> {
    if !policy.clamav.enabled {
        return Vec::new();
    }
    let mut violations = Vec::new();
    if let ScanOutcome::Infected { findings, .. } = outcome
        && let Some(first) = findings.first()
    {
        let detail = findings
            .iter()
            .map(|d| format!("{:?}: {}", d.label, d.signature))
            .collect::<Vec<_>>()
            .join(", ");
        violations.push(
            Violation::new(&VIRUS, format!("virus found: {detail}"))
                .with("signature", first.signature.clone())
                .with("file", first.label.clone()),
        );
    }
    if !outcome.fully_scanned() {
        let rule = match outcome {
            ScanOutcome::SizeLimit { .. } => &CLAMAV_SIZE_LIMIT,
            _ => &CLAMAV_UNAVAILABLE,
        };
        let what = outcome
            .unscanned()
            .iter()
            .map(|u| format!("{:?}: {}", u.label, u.problem))
            .collect::<Vec<_>>()
            .join("; ");
        let on_failure = policy.clamav.on_failure.as_str();
        violations.push(Violation::new(
            rule,
            format!("not scanned (on_failure = {on_failure}): {what}"),
        ));
    }
    violations
}

/// Header edits for a delivered message: first every incoming `X-Virus-*` header
/// (and the configured scanned/status names) is deleted, so a sender cannot
/// forge a clean status; then `X-Virus-Scanned: ClamAV using congvu-milter` and
/// `X-Virus-Status: Clean | No attachments | Infected (Signature) | Unscanned`
/// are appended. `Clean` only when clamd scanned something and every part was
/// scanned and found clean; `No attachments` when `scan = "attachments"` found
/// nothing to give clamd (the text of the message is not scanned in that mode).
///
/// The deletes are [`HeaderEdit::delete_all`]'s.
///
/// Nothing when scanning is disabled. With `add_headers = false` forged headers
/// are still removed, but none are added.
pub fn virus_headers(msg: &Message, outcome: &ScanOutcome, policy: &Policy) -> Vec<HeaderEdit> {
    let cfg = &policy.clamav;
    if !cfg.enabled {
        return Vec::new();
    }
    let ours = |name: &str| {
        name.get(..8)
            .is_some_and(|p| p.eq_ignore_ascii_case("X-Virus-"))
            || name.eq_ignore_ascii_case(&cfg.scanned_header)
            || name.eq_ignore_ascii_case(&cfg.status_header)
    };
    let mut edits = HeaderEdit::delete_all(msg, ours);
    if cfg.add_headers {
        edits.push(HeaderEdit::Add {
            name: cfg.scanned_header.clone(),
            value: cfg.scanned_value.clone(),
        });
        edits.push(HeaderEdit::Add {
            name: cfg.status_header.clone(),
            value: status_value(outcome),
        });
    }
    edits
}

/// The status header's value, as clamav-milter writes it.
pub fn status_value(outcome: &ScanOutcome) -> String {
    match outcome {
        ScanOutcome::Clean { parts_scanned: 0 } => "No attachments".to_owned(),
        ScanOutcome::Clean { .. } => "Clean".to_owned(),
        ScanOutcome::Infected { findings, .. } => match findings.first() {
            Some(d) => format!("Infected ({})", header_safe(&d.signature)),
            None => "Infected".to_owned(),
        },
        ScanOutcome::Failed { .. } | ScanOutcome::SizeLimit { .. } => "Unscanned".to_owned(),
    }
}

/// Printable ASCII only, at most 200 characters.
fn header_safe(text: &str) -> String {
    ascii_only(text)
        .chars()
        .map(|c| if c.is_ascii_control() { '?' } else { c })
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Mode, RuleSettings};
    use crate::scan::{Detection, OnFailure, ScanProblem, Unscanned};
    use crate::verdict::{Action, Finding};

    /// The scan outcome as the judge answers it.
    fn judged(outcome: &ScanOutcome, policy: &Policy) -> Vec<Finding> {
        evaluate(outcome, policy)
            .iter()
            .filter_map(|v| policy.judge(v, &Message::default()))
            .collect()
    }

    /// The finding of the clamd failure, when there is one.
    fn failure(outcome: &ScanOutcome, policy: &Policy) -> Option<Finding> {
        judged(outcome, policy)
            .into_iter()
            .find(|f| f.reason.rule != VIRUS.name)
    }

    fn infected() -> ScanOutcome {
        ScanOutcome::Infected {
            findings: vec![
                Detection {
                    label: "a.txt".into(),
                    signature: "Eicar-Test-Signature".into(),
                },
                Detection {
                    label: "b.zip".into(),
                    signature: "clam.exe".into(),
                },
            ],
            parts_scanned: 2,
            unscanned: vec![],
        }
    }

    fn failed() -> ScanOutcome {
        ScanOutcome::Failed {
            reason: "down".into(),
            parts_scanned: 1,
            unscanned: vec![Unscanned {
                label: "b.pdf".into(),
                problem: ScanProblem::NoAnswer("connection refused".into()),
            }],
        }
    }

    fn size_limit() -> ScanOutcome {
        ScanOutcome::SizeLimit {
            reason: "big".into(),
            parts_scanned: 0,
            unscanned: vec![Unscanned {
                label: "big.bin".into(),
                problem: ScanProblem::SizeLimit {
                    size: 2_000_000,
                    limit: None,
                },
            }],
        }
    }

    fn with_on_failure(on_failure: OnFailure) -> Policy {
        let mut p = Policy::default();
        p.clamav.on_failure = on_failure;
        p
    }

    #[test]
    fn virus_rejects_with_signature() {
        let p = Policy::default();
        let v = evaluate(&infected(), &p);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].rule, &VIRUS);
        assert_eq!(v[0].var("signature"), Some("Eicar-Test-Signature"));
        assert_eq!(v[0].var("file"), Some("a.txt"));
        assert!(v[0].detail.contains("clam.exe"), "{}", v[0].detail);
        let f = p.judge(&v[0], &Message::default()).unwrap();
        assert_eq!(f.action, Action::Reject);
        let reply = f.reply.unwrap().render();
        assert!(
            reply.starts_with("554 5.7.1 ") && reply.contains("Eicar-Test-Signature"),
            "{reply}"
        );
    }

    #[test]
    fn hidden_signature_stays_hidden() {
        let mut p = Policy::default();
        p.rules.insert(
            "virus".into(),
            RuleSettings {
                hide_details: Some(true),
                ..Default::default()
            },
        );
        let v = evaluate(&infected(), &p);
        let reply = p.judge(&v[0], &Message::default()).unwrap().reply.unwrap();
        assert!(!reply.render().contains("Eicar"), "{reply}");
    }

    #[test]
    fn failure_actions() {
        let found = judged(&failed(), &Policy::default());
        assert_eq!(found.len(), 1);
        let f = found[0].clone();
        assert_eq!(f.action, Action::Tempfail);
        assert_eq!(f.reason.rule, CLAMAV_UNAVAILABLE.name);
        let r = f.reply.unwrap();
        assert_eq!((r.code, r.enhanced.as_str()), (451, "4.7.1"));

        let f = failure(&failed(), &with_on_failure(OnFailure::Reject)).unwrap();
        assert_eq!(f.action, Action::Reject);
        assert_eq!(f.reply.unwrap().code, 550);

        let f = failure(&failed(), &with_on_failure(OnFailure::Accept)).unwrap();
        assert_eq!(f.action, Action::Accept);
        assert!(f.reply.is_none());

        let f = failure(&size_limit(), &Policy::default()).unwrap();
        assert_eq!(f.action, Action::Tempfail);
        assert_eq!(f.reason.rule, CLAMAV_SIZE_LIMIT.name);
        assert!(
            f.reason.detail.contains("StreamMaxLength"),
            "{}",
            f.reason.detail
        );
    }

    #[test]
    fn virus_with_unscanned_parts_keeps_the_failure() {
        let ScanOutcome::Infected {
            findings,
            parts_scanned,
            ..
        } = infected()
        else {
            unreachable!()
        };
        let outcome = ScanOutcome::Infected {
            findings,
            parts_scanned,
            unscanned: failed().unscanned().to_vec(),
        };
        let found = judged(&outcome, &Policy::default());
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].action, Action::Reject);
        assert_eq!(
            failure(&outcome, &Policy::default()).unwrap().action,
            Action::Tempfail
        );
    }

    #[test]
    fn monitor_mode_never_defers() {
        let p = Policy {
            mode: Mode::Monitor,
            ..Default::default()
        };
        let f = failure(&failed(), &p).unwrap();
        assert_eq!(f.action, Action::Accept);
        assert!(matches!(&f.headers[0], HeaderEdit::Add { name, .. } if name == "X-Congvu-Policy"));
    }

    #[test]
    fn disabled_does_nothing() {
        let mut p = Policy::default();
        p.clamav.enabled = false;
        assert_eq!(evaluate(&failed(), &p), vec![]);
        let msg = Message::from_eml(b"X-Virus-Status: Clean\n\nhi\n");
        assert!(virus_headers(&msg, &failed(), &p).is_empty());
    }

    fn forged() -> Message {
        Message::from_eml(
            "From: a@x.test\nX-Virus-Status: Clean\nX-Virus-Scanned: ClamAV\nx-virus-status: Clean\nSubject: s\nX-VIRUS-STATUS: Clean\nX-Virus-Report: none\nX-Virüs: x\nXé-Virus-Status: y\n\nbody\n".as_bytes(),
        )
    }

    #[test]
    fn forged_headers_are_deleted_from_the_highest_index_down() {
        let p = Policy::default();
        let edits = virus_headers(&forged(), &ScanOutcome::Clean { parts_scanned: 1 }, &p);
        let del = |name: &str, index| HeaderEdit::Delete {
            name: name.into(),
            index,
        };
        assert_eq!(
            edits,
            vec![
                del("X-Virus-Status", 3),
                del("X-Virus-Status", 2),
                del("X-Virus-Status", 1),
                del("X-Virus-Scanned", 1),
                del("X-Virus-Report", 1),
                HeaderEdit::Add {
                    name: "X-Virus-Scanned".into(),
                    value: "ClamAV using congvu-milter".into()
                },
                HeaderEdit::Add {
                    name: "X-Virus-Status".into(),
                    value: "Clean".into()
                },
            ]
        );
    }

    #[test]
    fn status_is_never_clean_unless_all_scanned() {
        let p = Policy::default();
        let status = |o: &ScanOutcome| match virus_headers(&forged(), o, &p).last() {
            Some(HeaderEdit::Add { value, .. }) => value.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(status(&failed()), "Unscanned");
        assert_eq!(status(&size_limit()), "Unscanned");
        assert_eq!(status(&infected()), "Infected (Eicar-Test-Signature)");
        assert_eq!(status(&ScanOutcome::Clean { parts_scanned: 2 }), "Clean");
        // scan = "attachments" on a message without attachments: clamd saw nothing.
        assert_eq!(
            status(&ScanOutcome::Clean { parts_scanned: 0 }),
            "No attachments"
        );
    }

    #[test]
    fn renamed_headers_and_no_adds() {
        let mut p = Policy::default();
        p.clamav.status_header = "X-AV-Status".into();
        p.clamav.add_headers = false;
        let msg = Message::from_eml(b"X-AV-Status: Clean\nX-Virus-Status: Clean\n\nb\n");
        let edits = virus_headers(&msg, &ScanOutcome::Clean { parts_scanned: 0 }, &p);
        assert_eq!(edits.len(), 2);
        assert!(
            edits
                .iter()
                .all(|e| matches!(e, HeaderEdit::Delete { index: 1, .. }))
        );
    }
}
