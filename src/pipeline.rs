//! The decision for one message: cheap rules first, then ClamAV, then the policy
//! folds every violation into one verdict. The daemon and the offline `scan`
//! command both call [`decide`], so what an admin tests offline is what the daemon
//! does.

use std::time::Instant;

use crate::message::Message;
use crate::policy::Policy;
use crate::rules;
use crate::verdict::{Action, Finding, Verdict, Violation};

/// Facts about the message worth reporting beside the verdict (logs, metrics).
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub size: u64,
    pub elapsed_ms: u64,
}

/// A verdict with the facts that led to it.
#[derive(Debug, Clone)]
pub struct Decision {
    pub verdict: Verdict,
    pub facts: Facts,
}

/// Judges violations under the policy and folds them into one verdict.
pub fn judge(violations: &[Violation], msg: &Message, policy: &Policy) -> Verdict {
    let findings: Vec<Finding> = violations
        .iter()
        .filter_map(|v| policy.judge(v, msg))
        .collect();
    Verdict::from_findings(findings)
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

/// An early verdict ends the message only if it refuses or defers it; a tag or
/// exception lets the message go on to the full decision.
fn decisive(verdict: Verdict) -> Option<Verdict> {
    matches!(verdict.action, Action::Reject | Action::Tempfail).then_some(verdict)
}

/// The full decision at end of message.
pub async fn decide(msg: &Message, policy: &Policy) -> Decision {
    let started = Instant::now();
    let mut violations = Vec::new();
    violations.extend(rules::size::check_streamed(msg, 0, policy));
    let verdict = judge(&violations, msg, policy);
    Decision {
        verdict,
        facts: Facts {
            size: msg.raw.len() as u64,
            elapsed_ms: started.elapsed().as_millis() as u64,
        },
    }
}
