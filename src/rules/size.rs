//! The raw message cap (Điều 10): a message whose declared `SIZE=` or streamed
//! body is already past `[limits] max_message_size` is refused at once, before
//! the rest is buffered.

use super::Detector;
use crate::message::Message;
use crate::policy::{ByteSize, Policy};
use crate::rule::{Control, Rule, RuleAction, Violation};

pub const MESSAGE_SIZE: Rule = Rule {
    name: "message_size",
    article: "Điều 10",
    default_action: RuleAction::Reject,
    code: 552,
    enhanced: "5.3.4",
    reply: "Thu vuot qua kich thuoc toi da {limit} (Quy che, Dieu 10) / message exceeds the size limit of {limit}",
    control: Control::RulesTable,
};

/// Called by the pipeline at MAIL FROM and before each body chunk.
pub const DETECTOR: Detector = Detector {
    rules: &[&MESSAGE_SIZE],
    at_end_of_message: None,
};

fn violation(what: &str, size: u64, limit: ByteSize) -> Violation {
    Violation::new(
        &MESSAGE_SIZE,
        format!(
            "{what} {} bytes, over the limit of {} bytes",
            size,
            limit.bytes()
        ),
    )
    .with("size", ByteSize(size).to_string())
    .with("limit", limit.to_string())
}

/// At MAIL FROM: the size the client declared.
pub fn check_declared(msg: &Message, policy: &Policy) -> Option<Violation> {
    let limit = policy.limits.max_message_size;
    let declared = msg.envelope.declared_size()?;
    (declared > limit.bytes()).then(|| violation("declared SIZE", declared, limit))
}

/// Before a body chunk is stored: what the message would then measure.
pub fn check_streamed(msg: &Message, next_chunk: usize, policy: &Policy) -> Option<Violation> {
    let limit = policy.limits.max_message_size;
    let size = (msg.raw.len() + next_chunk) as u64;
    (size > limit.bytes()).then(|| violation("message of at least", size, limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(limit: u64) -> Policy {
        let mut p = Policy::default();
        p.limits.max_message_size = ByteSize(limit);
        p
    }

    #[test]
    fn declared_size_over_the_cap_is_refused() {
        let mut msg = Message::default();
        msg.envelope.sender_params = vec!["SIZE=2000".into()];
        assert!(check_declared(&msg, &policy(1999)).is_some());
        assert!(check_declared(&msg, &policy(2000)).is_none());
    }

    #[test]
    fn streamed_size_counts_what_is_buffered_and_the_next_chunk() {
        let mut msg = Message::default();
        msg.push_header("Subject", "x");
        msg.push_body(&[b'a'; 100]);
        let stored = msg.raw.len();
        assert!(check_streamed(&msg, 10, &policy(stored as u64 + 10)).is_none());
        let v = check_streamed(&msg, 11, &policy(stored as u64 + 10)).unwrap();
        assert_eq!(v.rule, &MESSAGE_SIZE);
    }
}
