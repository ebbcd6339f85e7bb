//! Mail addresses, in one place: the envelope's `<user@domain>` as Postfix sends
//! it, the domain part, domain and exception matching, and the addresses a header
//! names. Every caller (the milter session, the judge's exceptions, the forwarding
//! rule, `scan`) goes through here, so they all read an address the same way.

use crate::message::unfold;

/// The address without surrounding whitespace and angle brackets
/// (`<a@x.test>` → `a@x.test`); the null sender `<>` becomes empty.
pub fn bare(address: &str) -> &str {
    address.trim().trim_start_matches('<').trim_end_matches('>')
}

/// The domain part of an address, lowercased (`user@Example.ORG` → `example.org`).
pub fn domain(address: &str) -> Option<String> {
    let (_, domain) = bare(address).rsplit_once('@')?;
    (!domain.is_empty()).then(|| domain.to_ascii_lowercase())
}

/// True when `domain` is `pattern` or one of its subdomains (case-insensitive).
pub fn domain_matches(domain: &str, pattern: &str) -> bool {
    let domain = domain.trim_end_matches('.');
    let pattern = pattern.trim_start_matches('@').trim_end_matches('.');
    if domain.len() < pattern.len() {
        return false;
    }
    // Compared as bytes: the cut need not fall on a char boundary of a hostile
    // domain (`split_at` on the str panicked there; found by fuzzing,
    // fuzz/regressions/forwarding/). An ASCII-case-insensitive byte match is what
    // `str::eq_ignore_ascii_case` does anyway.
    let (head, tail) = domain.as_bytes().split_at(domain.len() - pattern.len());
    tail.eq_ignore_ascii_case(pattern.as_bytes()) && (head.is_empty() || head.ends_with(b"."))
}

/// True when `address` matches a policy entry: `user@domain` (that mailbox, any
/// case), `@domain` or `domain` (the domain and its subdomains).
pub fn matches_entry(address: &str, entry: &str) -> bool {
    let address = bare(address);
    let entry = entry.trim();
    match entry.split_once('@') {
        Some((local, domain)) if !local.is_empty() => {
            address.eq_ignore_ascii_case(entry) && !domain.is_empty()
        }
        _ => self::domain(address).is_some_and(|d| domain_matches(&d, entry)),
    }
}

/// The addresses a header value names, lowercased: the `<...>` contents when
/// there are any, otherwise every whitespace/comma/semicolon-separated token with
/// an `@` inside.
pub fn in_header(value: &str) -> Vec<String> {
    let value = unfold(value);
    let mut out = Vec::new();
    if value.contains('<') {
        let mut rest = value.as_str();
        while let Some(start) = rest.find('<') {
            let after = &rest[start + 1..];
            let Some(end) = after.find('>') else { break };
            let a = after[..end].trim();
            if a.contains('@') {
                out.push(a.to_ascii_lowercase());
            }
            rest = &after[end + 1..];
        }
        if !out.is_empty() {
            return out;
        }
    }
    for token in value.split([' ', '\t', ',', ';']) {
        let t = token.trim_matches(|c: char| matches!(c, '"' | '\'' | '(' | ')' | '<' | '>'));
        if t.contains('@') && !t.starts_with('@') && !t.ends_with('@') {
            out.push(t.to_ascii_lowercase());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brackets_and_domains() {
        assert_eq!(bare(" <a@x.test> "), "a@x.test");
        assert_eq!(bare("<>"), "");
        assert_eq!(domain("<User@Example.ORG>").as_deref(), Some("example.org"));
        assert_eq!(domain("nobody"), None);
        assert_eq!(domain("a@"), None);
    }

    #[test]
    fn subdomains_match_and_look_alikes_do_not() {
        assert!(domain_matches("bacgiang.gov.vn", "bacgiang.gov.vn"));
        assert!(domain_matches("stttt.BacGiang.gov.vn", "bacgiang.gov.vn"));
        assert!(!domain_matches("evilbacgiang.gov.vn", "bacgiang.gov.vn"));
        assert!(domain_matches("bacgiang.gov.vn", "gov.vn"));
        assert!(!domain_matches("gov.vn.evil.com", "gov.vn"));
    }

    #[test]
    fn policy_entries() {
        assert!(matches_entry("<Boss@X.test>", "boss@x.test"));
        assert!(!matches_entry("other@x.test", "boss@x.test"));
        assert!(matches_entry("a@it.bacgiang.gov.vn", "@bacgiang.gov.vn"));
        assert!(matches_entry("a@it.bacgiang.gov.vn", "bacgiang.gov.vn"));
        assert!(!matches_entry("a@notbacgiang.gov.vn", "bacgiang.gov.vn"));
    }

    #[test]
    fn addresses_from_header_forms() {
        assert_eq!(
            in_header("\"Nguyễn Thị Ngọc\" <NgocNT_STTTT@BacGiang.gov.vn>"),
            vec!["ngocnt_stttt@bacgiang.gov.vn"]
        );
        assert_eq!(
            in_header("a@gmail.com b@bacgiang.gov.vn"),
            vec!["a@gmail.com", "b@bacgiang.gov.vn"]
        );
        assert_eq!(
            in_header("user@contoso.com;\n\t5f1c-aa"),
            vec!["user@contoso.com"]
        );
        assert!(in_header("Pigeonhole Sieve 0.5.19").is_empty());
    }
}
