//! The rules of the regulation and the detectors that fire them. Each detector
//! file declares its rules (a [`Rule`]: name, article, default action, reply) and
//! its [`Detector`], and reports [`Violation`]s pointing at those rules; the
//! policy's judge decides what each violation means. Adding a rule is one file (a
//! `Rule`, a detecting function and the `Detector` that ties them) plus one line
//! in [`REGISTRY`]; a rule that an existing detector fires is one more constant
//! in that detector's list.

pub mod attachments;
pub mod budget;
pub mod classified;
pub mod forwarding;
pub mod macro_document;
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
    classified::DETECTOR,
    virus::DETECTOR,
    macro_document::DETECTOR,
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

    /// The README's "What it enforces" section has two tables: the first lists
    /// exactly the configurable rules, in the registry's order, with their
    /// articles and default replies' codes; the second the internal outcomes,
    /// with their articles and default answers.
    #[test]
    fn readme_rule_tables_match_the_registry() {
        let readme = include_str!("../../README.md");
        let section = readme
            .split("## What it enforces")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .expect("README has a \"What it enforces\" section");
        // The cells of each table's rows whose first cell is a `name`, table by table.
        let mut tables: Vec<Vec<Vec<String>>> = Vec::new();
        let mut in_table = false;
        for line in section.lines() {
            if !line.starts_with('|') {
                in_table = false;
                continue;
            }
            if !in_table {
                tables.push(Vec::new());
                in_table = true;
            }
            let cells: Vec<String> = line
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect();
            if let Some(name) = cells[0].strip_prefix('`').and_then(|c| c.strip_suffix('`')) {
                let mut row = cells.clone();
                row[0] = name.to_owned();
                tables.last_mut().expect("table").push(row);
            }
        }
        assert_eq!(tables.len(), 2, "two tables: {tables:?}");
        let rows: Vec<(String, String, String)> = tables[0]
            .iter()
            .map(|c| (c[0].clone(), c[1].clone(), c[3].clone()))
            .collect();
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
        // The answer column starts with the default answer: "451 4.7.1 (...)",
        // "552 5.3.4, always".
        let outcomes: Vec<(String, String, String)> = tables[1]
            .iter()
            .map(|c| {
                let answer = c.last().expect("answer");
                let code = answer
                    .split([' ', ','])
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ");
                (c[0].clone(), c[1].clone(), code)
            })
            .collect();
        let expected: Vec<(String, String, String)> = all_rules()
            .filter(|r| r.internal())
            .map(|r| {
                let answer = if r.default_action == RuleAction::Tempfail {
                    "451 4.7.1".to_owned()
                } else {
                    format!("{} {}", r.code, r.enhanced)
                };
                (r.name.to_owned(), r.article.to_owned(), answer)
            })
            .collect();
        let mut sorted_outcomes = outcomes.clone();
        let mut sorted_expected = expected.clone();
        sorted_outcomes.sort();
        sorted_expected.sort();
        assert_eq!(
            sorted_outcomes, sorted_expected,
            "the README's table of internal outcomes"
        );
    }
}
