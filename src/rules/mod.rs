//! The rules of the regulation and the detectors that fire them. Each detector
//! file declares its rules (a [`Rule`]: name, article, default action, reply) and
//! its [`Detector`], and reports [`Violation`]s pointing at those rules; the
//! policy's judge decides what each violation means. Adding a rule is one file (a
//! `Rule`, a detecting function and the `Detector` that ties them) plus one line
//! in [`REGISTRY`]; a rule that an existing detector fires is one more constant
//! in that detector's list.

pub mod attachments;
pub mod budget;
pub mod forwarding;
pub mod message_limits;
pub mod size;
pub mod virus;

use crate::inspect::Inspection;
use crate::message::Message;
use crate::policy::Policy;
use crate::rule::{Rule, Violation};

/// What a content detector looks at, at end of message.
pub struct Evidence<'a> {
    pub msg: &'a Message,
    pub policy: &'a Policy,
    pub inspection: &'a Inspection,
}

/// A detector: the rules it fires and, for a content detector, the check that
/// runs on every message at end of message, before clamd is asked.
pub struct Detector {
    pub rules: &'static [&'static Rule],
    /// `None` for the detectors the pipeline calls at their own moment: the size
    /// at MAIL FROM and during the body, forwarding (whose finding is also a fact
    /// of the decision), clamd's results, the memory budget.
    pub at_end_of_message: Option<fn(&Evidence<'_>) -> Vec<Violation>>,
}

/// Every detector, in the order the README's table lists their rules.
pub const REGISTRY: &[Detector] = &[
    attachments::DETECTOR,
    size::DETECTOR,
    forwarding::DETECTOR,
    virus::DETECTOR,
    budget::DETECTOR,
    message_limits::DETECTOR,
];

/// Every rule, the internal ones (the daemon's own faults) included.
pub fn all_rules() -> impl Iterator<Item = &'static Rule> {
    REGISTRY.iter().flat_map(|d| d.rules.iter().copied())
}

/// The rules a `[rules.NAME]` table configures.
pub fn configurable_rules() -> impl Iterator<Item = &'static Rule> {
    all_rules().filter(|r| !r.internal())
}

/// The violations of every content detector for one inspected message.
pub fn at_end_of_message(evidence: &Evidence<'_>) -> Vec<Violation> {
    REGISTRY
        .iter()
        .filter_map(|d| d.at_end_of_message)
        .flat_map(|detect| detect(evidence))
        .collect()
}

/// A rule a `[rules.NAME]` table may name.
pub fn configurable_rule(name: &str) -> Option<&'static Rule> {
    configurable_rules().find(|r| r.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::RuleAction;

    #[test]
    fn names_are_unique_and_snake_case() {
        let rules: Vec<&Rule> = all_rules().collect();
        for (i, rule) in rules.iter().enumerate() {
            assert!(
                rule.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{}",
                rule.name
            );
            assert!(
                rules[..i].iter().all(|r| r.name != rule.name),
                "{} is declared twice",
                rule.name
            );
        }
    }

    #[test]
    fn replies_are_ascii_and_refusals_are_5xx() {
        for rule in all_rules() {
            assert!(rule.reply.is_ascii(), "{}", rule.name);
            if rule.default_action != RuleAction::Tempfail {
                assert!((500..600).contains(&rule.code), "{}", rule.name);
                assert!(rule.enhanced.starts_with("5."), "{}", rule.name);
            }
        }
    }

    /// The README's "What it enforces" table lists exactly the configurable rules,
    /// in the registry's order, with their articles and default replies' codes;
    /// the text after it names every internal outcome.
    #[test]
    fn readme_rule_table_matches_the_registry() {
        let readme = include_str!("../../README.md");
        let section = readme
            .split("## What it enforces")
            .nth(1)
            .expect("README has a \"What it enforces\" section");
        let mut rows = Vec::new();
        for line in section.lines().skip_while(|l| !l.starts_with('|')) {
            if !line.starts_with('|') {
                break;
            }
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            if let Some(name) = cells[0].strip_prefix('`').and_then(|c| c.strip_suffix('`')) {
                rows.push((name.to_owned(), cells[1].to_owned(), cells[3].to_owned()));
            }
        }
        let expected: Vec<(String, String, String)> = configurable_rules()
            .map(|r| {
                (
                    r.name.to_owned(),
                    r.article.to_owned(),
                    format!("{} {}", r.code, r.enhanced),
                )
            })
            .collect();
        assert_eq!(rows, expected);
        // The internal outcomes are named in the text after the table.
        for rule in all_rules().filter(|r| r.internal()) {
            assert!(
                section.contains(&format!("`{}`", rule.name)),
                "README does not name the internal outcome {}",
                rule.name
            );
        }
    }
}
