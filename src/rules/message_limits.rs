//! What one message may hold before the daemon stops keeping it: recipients and
//! header fields (`[milter] max_recipients`, `max_headers`). The milter session
//! counts them as they arrive and asks the filter for the verdict of a message
//! past a cap; these are the rules of that verdict. A refusal, not a deferral:
//! sending the same message again can never fit it under the cap. Like the memory
//! budget, they hold in every mode (Điều 18 khoản 2: the operator keeps the
//! system running).

use super::Detector;
use crate::milter::Limit;
use crate::rule::{Control, Rule, RuleAction, Violation};

pub const TOO_MANY_RECIPIENTS: Rule = Rule {
    name: "too_many_recipients",
    article: "Điều 18 khoản 2",
    default_action: RuleAction::Reject,
    code: 550,
    enhanced: "5.5.3",
    reply: "Too many recipients: more than {limit} in one message; send it in smaller batches",
    control: Control::Fixed,
};

pub const TOO_MANY_HEADERS: Rule = Rule {
    name: "too_many_headers",
    article: "Điều 18 khoản 2",
    default_action: RuleAction::Reject,
    code: 552,
    enhanced: "5.3.4",
    reply: "Too many header fields: more than {limit} in one message",
    control: Control::Fixed,
};

/// Called by the daemon when the session reports a message past a cap.
pub const DETECTOR: Detector = Detector {
    rules: &[&TOO_MANY_RECIPIENTS, &TOO_MANY_HEADERS],
    at_end_of_message: None,
};

/// The violation of a message past one of the session's caps.
pub fn over_limit(limit: Limit) -> Violation {
    let (rule, count, what, key) = match limit {
        Limit::Recipients(n) => (&TOO_MANY_RECIPIENTS, n, "recipients", "max_recipients"),
        Limit::Headers(n) => (&TOO_MANY_HEADERS, n, "header fields", "max_headers"),
    };
    Violation::new(
        rule,
        format!("more than {count} {what} ([milter] {key}); nothing more of the message is kept"),
    )
    .with("limit", count.to_string())
}
