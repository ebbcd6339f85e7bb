//! Virus scanning with clamd (Điều 4 khoản 6, Điều 15 khoản 5, Điều 18 khoản 4).

use serde::Deserialize;

use crate::policy::{Policy, Problem};

/// `[clamav]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClamavPolicy {
    /// `false` turns virus scanning off entirely.
    pub enabled: bool,
    /// clamd sockets: `unix:/PATH` or `tcp:HOST:PORT`.
    pub endpoints: Vec<String>,
}

impl Default for ClamavPolicy {
    fn default() -> Self {
        ClamavPolicy {
            enabled: true,
            endpoints: vec!["unix:/run/clamav/clamd.ctl".into()],
        }
    }
}

impl ClamavPolicy {
    pub fn validate(&self, _policy: &Policy) -> Vec<Problem> {
        Vec::new()
    }
}
