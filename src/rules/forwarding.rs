//! Automatic forwarding out of official mailboxes and into them (Điều 4 khoản 4).

use std::path::Path;

use serde::Deserialize;

use crate::policy::{Policy, Problem};

/// `[forwarding]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardingPolicy {}

impl ForwardingPolicy {
    /// Reads the admins' file of extra provider domains, if configured.
    pub fn prepare(&mut self, _policy_path: &Path) -> Vec<Problem> {
        Vec::new()
    }

    pub fn validate(&self, _policy: &Policy, _policy_path: &Path) -> Vec<Problem> {
        Vec::new()
    }
}
