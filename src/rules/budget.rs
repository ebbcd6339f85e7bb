//! The memory-budget deferral (Điều 18 khoản 2, mail is never lost): a message
//! whose next body chunk, header field or recipient would take the bytes held by
//! all sessions past `[limits] max_buffered_bytes` is deferred with 451, in every
//! mode, and the sender retries.
//! The budget itself is counted in src/milter/budget.rs.

use super::Detector;
use crate::policy::ByteSize;
use crate::rule::{Control, Rule, RuleAction, Violation};
use crate::verdict::TEMPFAIL_TEXT;

pub const MEMORY_BUDGET: Rule = Rule {
    name: "memory_budget",
    article: "Điều 18 khoản 2",
    default_action: RuleAction::Tempfail,
    code: 451,
    enhanced: "4.7.1",
    reply: TEMPFAIL_TEXT,
    control: Control::Fixed,
};

/// Called by the daemon when the budget refuses what a message would hold.
pub const DETECTOR: Detector = Detector {
    rules: &[&MEMORY_BUDGET],
    at_end_of_message: None,
};

/// The deferral of a message that found the budget full.
pub fn over_budget(used: u64, limit: u64) -> Violation {
    Violation::new(
        &MEMORY_BUDGET,
        format!(
            "messages in progress hold {} of the {} budget ([limits] max_buffered_bytes)",
            ByteSize(used),
            ByteSize(limit)
        ),
    )
}
