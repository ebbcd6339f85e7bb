//! The rules of the regulation, one file each. A rule looks at facts (the message,
//! its inspection, the scan results) and reports [`crate::verdict::Violation`]s;
//! the policy decides what each violation means.

pub mod attachments;
pub mod forwarding;
pub mod size;
pub mod virus;
