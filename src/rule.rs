//! What a rule is, and what it reports. A rule of the regulation is declared once,
//! as a [`Rule`] constant beside the detector that fires it (src/rules/), and
//! listed in [`crate::rules::REGISTRY`]. A detector reports a [`Violation`] that
//! points at its `Rule`; the policy's judge (src/policy/judge.rs) turns it into an
//! action. Because a violation holds the rule itself, not its name, a detector
//! cannot report a rule that does not exist, and the judge never has to look one
//! up.

use serde::Deserialize;

/// What the admins can choose for a rule in `[rules.NAME] action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    /// Refuse with the rule's 5xx reply.
    Reject,
    /// Defer with 451 4.7.1; the sender retries.
    Tempfail,
    /// Accept into Postfix's hold queue.
    Quarantine,
    /// Accept and drop silently.
    Discard,
    /// Deliver with a header naming what was found.
    Tag,
}

/// `[clamav] on_failure`: the action of the internal clamd rules, for a message
/// that no clamd could give an answer for (down, timeout, ERROR reply, clamd's
/// size limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// 451 4.7.1: the sender retries later; nothing passes unscanned.
    #[default]
    Tempfail,
    /// Deliver, with `X-Virus-Status: Unscanned`.
    Accept,
    /// Refuse for good (5xx).
    Reject,
}

impl OnFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            OnFailure::Tempfail => "tempfail",
            OnFailure::Accept => "accept",
            OnFailure::Reject => "reject",
        }
    }
}

/// Where a rule's action comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// `[rules.NAME]`: action, exceptions, reply text; monitor mode tags instead.
    RulesTable,
    /// `[clamav] on_failure`: `tempfail` (the passing-fault 451), `reject` (the
    /// rule's reply) or `accept` (delivered, the reason recorded); monitor mode
    /// tags instead of refusing. No `[rules.NAME]` table configures it.
    ClamavOnFailure,
    /// Always the rule's default action and reply, in every mode: the daemon
    /// protecting itself (the memory budget: 451; what one message may hold: 5xx).
    Fixed,
}

/// One rule: its name (as the policy file, logs and metrics write it), the
/// article of the regulation it enforces, and what it does by default.
#[derive(Debug, PartialEq, Eq)]
pub struct Rule {
    pub name: &'static str,
    /// With diacritics, as logs and metrics write it (`Điều 4 khoản 7`).
    pub article: &'static str,
    pub default_action: RuleAction,
    /// The refusal's reply code and enhanced status code.
    pub code: u16,
    pub enhanced: &'static str,
    /// Reply template (ASCII); `{file}`, `{signature}`, `{limit}`, `{size}`,
    /// `{signal}`, `{detail}` are replaced by the violation's values.
    pub reply: &'static str,
    pub control: Control,
}

impl Rule {
    /// An outcome of the daemon's own limits and faults (clamd, memory, what one
    /// message may hold), not a rule admins
    /// configure in `[rules.NAME]` or find in the README's rule table.
    pub fn internal(&self) -> bool {
        self.control != Control::RulesTable
    }
}

/// A rule's raw finding before the policy decides what to do with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub rule: &'static Rule,
    /// Human description for logs (`"hoso.exe" in "a.zip": PE executable`).
    pub detail: String,
    /// Values for the reply template: `file`, `signature`, `limit`, `signal`, ...
    pub vars: Vec<(&'static str, String)>,
    /// Where in the message: attachment name then entry names; empty for the
    /// message itself.
    pub path: Vec<String>,
}

impl Violation {
    pub fn new(rule: &'static Rule, detail: impl Into<String>) -> Self {
        Violation {
            rule,
            detail: detail.into(),
            vars: Vec::new(),
            path: Vec::new(),
        }
    }

    /// The file the violation is about.
    pub fn at(mut self, path: &[String]) -> Self {
        self.path = path.to_vec();
        self
    }

    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.vars.push((name, value.into()));
        self
    }

    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}
