//! The daemon's capacity deferrals (Điều 18 khoản 2, mail is never lost), in
//! every mode, with 451 so that the sender retries:
//! - `memory_budget`: a message whose next body chunk, header field or recipient,
//!   or whose inspection, would take the bytes held by all messages past
//!   `[limits] max_buffered_bytes`. The budget itself is counted in
//!   src/milter/budget.rs.
//! - `inspection_queue`: a message that waited `[limits] max_inspect_time` for
//!   one of the `[limits] max_concurrent_inspections` turns at being inspected.

use std::time::Duration;

use super::Detector;
use crate::inspect::budget::MemoryShortfall;
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

pub const INSPECTION_QUEUE: Rule = Rule {
    name: "inspection_queue",
    ..MEMORY_BUDGET
};

/// Called by the daemon when the budget refuses what a message would hold or
/// what its inspection needs, or when a message waited too long for its turn.
pub const DETECTOR: Detector = Detector {
    rules: &[&MEMORY_BUDGET, &INSPECTION_QUEUE],
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

/// The deferral of a message whose inspection found the budget full (other
/// messages held it: [`MemoryShortfall::Busy`]).
pub fn inspection_over_budget(shortfall: &MemoryShortfall) -> Violation {
    Violation::new(&MEMORY_BUDGET, shortfall.to_string())
}

/// The deferral of a message that waited `waited` for one of `turns` turns at
/// being inspected.
pub fn queue_timeout(turns: usize, waited: Duration) -> Violation {
    Violation::new(
        &INSPECTION_QUEUE,
        format!(
            "waited {} s for one of the {turns} inspections at once ([limits] max_concurrent_inspections), past [limits] max_inspect_time",
            waited.as_secs()
        ),
    )
}
