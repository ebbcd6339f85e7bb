//! The virus rule (Điều 4 khoản 6): what clamd found becomes a violation; what it
//! could not scan gets the `[clamav] on_failure` action; delivered mail carries
//! `X-Virus-Scanned` / `X-Virus-Status` headers that the sender cannot forge.

use crate::message::Message;
use crate::policy::rules::ascii_only;
use crate::policy::{Mode, Policy};
use crate::scan::{OnFailure, ScanOutcome};
use crate::verdict::{Action, Finding, HeaderEdit, Reason, SmtpReply, Verdict, Violation};

/// Rule name of a message no clamd could answer for (down, timeout, ERROR).
pub const RULE_UNAVAILABLE: &str = "clamav_unavailable";
/// Rule name of a message (or part) over clamd's size limit.
pub const RULE_SIZE_LIMIT: &str = "clamav_size_limit";

/// Turns a scan outcome into the `virus` violation (for `Policy::judge`) and, when
/// some part could not be scanned, the failure decision of `[clamav] on_failure`:
/// - `tempfail`: 451 4.7.1, the sender retries;
/// - `reject`: 550 5.7.1 "could not be scanned";
/// - `accept`: an `Accept` finding that records why (the message is delivered
///   with `X-Virus-Status: Unscanned`, see [`virus_headers`]).
///
/// A virus and unscanned parts can come together: both are returned and the
/// most severe wins when the findings are folded, so a virus rule set to `tag`
/// still cannot let an unscanned part through under `on_failure = "tempfail"`.
/// In monitor mode the failure decision is an `Accept` with the tag header, like
/// every other rule's finding. Nothing when scanning is disabled.
pub fn evaluate(outcome: &ScanOutcome, policy: &Policy) -> (Vec<Violation>, Option<Finding>) {
    if !policy.clamav.enabled {
        return (Vec::new(), None);
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
            Violation::new("virus", "Điều 4 khoản 6", format!("virus found: {detail}"))
                .with("signature", first.signature.clone())
                .with("file", first.label.clone()),
        );
    }
    (violations, failure_decision(outcome, policy))
}

fn failure_decision(outcome: &ScanOutcome, policy: &Policy) -> Option<Finding> {
    if outcome.fully_scanned() {
        return None;
    }
    let size_limit = matches!(outcome, ScanOutcome::SizeLimit { .. });
    let (rule, article) = if size_limit {
        (RULE_SIZE_LIMIT, "Điều 4 khoản 6")
    } else {
        (RULE_UNAVAILABLE, "Điều 18 khoản 2")
    };
    let what = outcome
        .unscanned()
        .iter()
        .map(|u| format!("{:?}: {}", u.label, u.problem))
        .collect::<Vec<_>>()
        .join("; ");
    let on_failure = policy.clamav.on_failure;
    let detail = format!("not scanned (on_failure = {}): {what}", on_failure.as_str());
    let reason = Reason {
        rule: rule.to_owned(),
        article: article.to_owned(),
        detail: detail.clone(),
    };
    if policy.mode == Mode::Monitor && on_failure != OnFailure::Accept {
        return Some(Finding {
            action: Action::Accept,
            reason,
            reply: None,
            headers: vec![HeaderEdit::Add {
                name: policy.headers.tag_header.clone(),
                value: format!("{rule} ({})", ascii_only(&detail)),
            }],
        });
    }
    Some(match on_failure {
        // Same reply as every passing fault.
        OnFailure::Tempfail => Finding {
            action: Action::Tempfail,
            reply: Verdict::tempfail(rule, "").reply,
            reason,
            headers: Vec::new(),
        },
        OnFailure::Reject => Finding {
            action: Action::Reject,
            reply: Some(SmtpReply::new(
                550,
                "5.7.1",
                if size_limit {
                    "Thu qua lon de kiem tra virus (Quy che, Dieu 4 khoan 6) / message too large to be scanned for viruses"
                } else {
                    "Khong kiem tra virus duoc, thu bi tu choi (Quy che, Dieu 4 khoan 6) / message could not be scanned for viruses"
                },
            )),
            reason,
            headers: Vec::new(),
        },
        OnFailure::Accept => Finding {
            action: Action::Accept,
            reply: None,
            reason,
            headers: Vec::new(),
        },
    })
}

/// Header edits for a delivered message: first every incoming `X-Virus-*` header
/// (and the configured scanned/status names) is deleted, so a sender cannot
/// forge a clean status; then `X-Virus-Scanned: ClamAV using congvu-milter` and
/// `X-Virus-Status: Clean | Infected (Signature) | Unscanned` are appended.
/// `Clean` only when every part was scanned and found clean.
///
/// Deletes use CHGHEADER with an empty value and the index of the header among
/// those of the same name (from 1, case-insensitive). Postfix turns a deleted
/// header into a "deleted text" record that later lookups skip (cleanup_milter.c:
/// `cleanup_find_header_start` skips `REC_TYPE_DTXT`), so the indexes of the
/// headers after it shift down by one; Sendmail keeps the slot. Deleting from the
/// highest index down is right under both.
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
    // Per name (case-insensitive): the spelling seen first and how many there are.
    let mut counts: Vec<(String, u32)> = Vec::new();
    for h in msg.headers.iter().filter(|h| ours(&h.name)) {
        match counts
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(&h.name))
        {
            Some((_, c)) => *c += 1,
            None => counts.push((h.name.clone(), 1)),
        }
    }
    let mut edits: Vec<HeaderEdit> = counts
        .into_iter()
        .flat_map(|(name, count)| {
            (1..=count).rev().map(move |index| HeaderEdit::Delete {
                name: name.clone(),
                index,
            })
        })
        .collect();
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
    use crate::policy::RuleSettings;
    use crate::scan::{Detection, ScanProblem, Unscanned};

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
        let (v, failure) = evaluate(&infected(), &p);
        assert!(failure.is_none());
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].rule, "virus");
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
        let (v, _) = evaluate(&infected(), &p);
        let reply = p.judge(&v[0], &Message::default()).unwrap().reply.unwrap();
        assert!(!reply.render().contains("Eicar"), "{reply}");
    }

    #[test]
    fn failure_actions() {
        let (v, f) = evaluate(&failed(), &Policy::default());
        assert!(v.is_empty());
        let f = f.unwrap();
        assert_eq!(f.action, Action::Tempfail);
        assert_eq!(f.reason.rule, RULE_UNAVAILABLE);
        let r = f.reply.unwrap();
        assert_eq!((r.code, r.enhanced.as_str()), (451, "4.7.1"));

        let f = evaluate(&failed(), &with_on_failure(OnFailure::Reject))
            .1
            .unwrap();
        assert_eq!(f.action, Action::Reject);
        assert_eq!(f.reply.unwrap().code, 550);

        let f = evaluate(&failed(), &with_on_failure(OnFailure::Accept))
            .1
            .unwrap();
        assert_eq!(f.action, Action::Accept);
        assert!(f.reply.is_none());

        let f = evaluate(&size_limit(), &Policy::default()).1.unwrap();
        assert_eq!(f.action, Action::Tempfail);
        assert_eq!(f.reason.rule, RULE_SIZE_LIMIT);
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
        let (v, f) = evaluate(&outcome, &Policy::default());
        assert_eq!(v.len(), 1);
        assert_eq!(f.unwrap().action, Action::Tempfail);
    }

    #[test]
    fn monitor_mode_never_defers() {
        let p = Policy {
            mode: Mode::Monitor,
            ..Default::default()
        };
        let f = evaluate(&failed(), &p).1.unwrap();
        assert_eq!(f.action, Action::Accept);
        assert!(matches!(&f.headers[0], HeaderEdit::Add { name, .. } if name == "X-Congvu-Policy"));
    }

    #[test]
    fn disabled_does_nothing() {
        let mut p = Policy::default();
        p.clamav.enabled = false;
        assert_eq!(evaluate(&failed(), &p), (vec![], None));
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
