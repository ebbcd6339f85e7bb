//! The rules of the regulation and the detectors that fire them. Each detector
//! file declares its rules (a [`Rule`]: name, article, default action, reply) and
//! reports [`crate::rule::Violation`]s pointing at them; the policy's judge decides
//! what each violation means. Adding a rule is one file (or one constant beside an
//! existing detector) plus one line in [`REGISTRY`].

pub mod attachments;
pub mod budget;
pub mod forwarding;
pub mod size;
pub mod virus;

use crate::rule::Rule;

/// Every rule, in the order the README's table lists them; the internal ones (the
/// daemon's own faults) last.
pub const REGISTRY: &[&Rule] = &[
    &attachments::EXECUTABLE,
    &attachments::DECEPTIVE_NAME,
    &attachments::ENCRYPTED_ARCHIVE,
    &attachments::UNINSPECTABLE,
    &attachments::ATTACHMENT_SIZE,
    &size::MESSAGE_SIZE,
    &forwarding::FORWARDING,
    &virus::VIRUS,
    &virus::CLAMAV_UNAVAILABLE,
    &virus::CLAMAV_SIZE_LIMIT,
    &budget::MEMORY_BUDGET,
];

/// The rules a `[rules.NAME]` table configures.
pub fn configurable_rules() -> impl Iterator<Item = &'static Rule> {
    REGISTRY.iter().copied().filter(|r| !r.internal())
}

/// A rule a `[rules.NAME]` table may name.
pub fn configurable_rule(name: &str) -> Option<&'static Rule> {
    configurable_rules().find(|r| r.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::Control;

    #[test]
    fn names_are_unique_and_snake_case() {
        for (i, rule) in REGISTRY.iter().enumerate() {
            assert!(
                rule.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{}",
                rule.name
            );
            assert!(
                REGISTRY[..i].iter().all(|r| r.name != rule.name),
                "{} is declared twice",
                rule.name
            );
        }
    }

    #[test]
    fn replies_are_ascii_and_refusals_are_5xx() {
        for rule in REGISTRY {
            assert!(rule.reply.is_ascii(), "{}", rule.name);
            if rule.control != Control::AlwaysTempfail {
                assert!((500..600).contains(&rule.code), "{}", rule.name);
                assert!(rule.enhanced.starts_with("5."), "{}", rule.name);
            }
        }
    }

    /// The README's "What it enforces" table lists exactly the configurable rules,
    /// in the registry's order, with their articles and default replies' codes.
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
    }
}
