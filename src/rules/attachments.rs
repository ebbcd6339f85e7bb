//! Attachment rules (Điều 4 khoản 7, Điều 10): executables, deceptive names,
//! encrypted and uninspectable archives, the total attachment size.

use serde::Deserialize;

use crate::policy::{Policy, Problem};

/// `[attachments]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttachmentPolicy {}

impl AttachmentPolicy {
    pub fn validate(&self, _policy: &Policy) -> Vec<Problem> {
        Vec::new()
    }
}
