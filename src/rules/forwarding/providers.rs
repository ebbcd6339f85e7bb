//! Public mail providers: the curated default list, the admins' extra file, and
//! the matcher (`gmail.com` covers its subdomains; `yahoo.*` covers `yahoo.com`,
//! `yahoo.com.vn` and their subdomains).

use std::collections::HashSet;
use std::path::Path;

/// The curated default: global and Vietnamese-popular webmail providers (the
/// README's `public_providers`). `vnn.vn` (VNPT ISP mail) is left to the admins.
pub const DEFAULT_PROVIDERS: &[&str] = &[
    // Google
    "gmail.com",
    "googlemail.com",
    // Yahoo
    "yahoo.com",
    "yahoo.com.vn",
    "ymail.com",
    "rocketmail.com",
    "yahoo.*",
    // Microsoft
    "outlook.com",
    "outlook.com.vn",
    "hotmail.com",
    "live.com",
    "msn.com",
    "hotmail.*",
    "live.*",
    "outlook.*",
    // Apple, AOL
    "icloud.com",
    "me.com",
    "mac.com",
    "aol.com",
    // Russian
    "yandex.ru",
    "yandex.com",
    "ya.ru",
    "mail.ru",
    "bk.ru",
    "inbox.ru",
    "list.ru",
    "rambler.ru",
    // German and mail.com
    "gmx.com",
    "gmx.net",
    "gmx.de",
    "web.de",
    "mail.com",
    // Encrypted webmail
    "proton.me",
    "protonmail.com",
    "protonmail.ch",
    "pm.me",
    "tutanota.com",
    "tuta.io",
    // Zoho
    "zoho.com",
    "zohomail.com",
    // Chinese
    "qq.com",
    "foxmail.com",
    "163.com",
    "126.com",
    "yeah.net",
    "139.com",
    "sina.com",
    "sohu.com",
    "aliyun.com",
    // Korean
    "naver.com",
    "daum.net",
    "hanmail.net",
    // Fastmail
    "fastmail.com",
    "fastmail.fm",
];

/// A provider pattern, checked and normalised (lowercase, no trailing dot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// `gmail.com`: the domain and its subdomains.
    Domain(String),
    /// `yahoo.*`: the labels before `.*`, followed by one or more labels; and the
    /// subdomains of such a domain.
    Wildcard(Vec<String>),
}

/// Parses one pattern: `domain`, `domain.*`; a leading `@` or `*.` is dropped
/// (a pattern covers subdomains anyway).
pub fn parse_pattern(text: &str) -> Result<Pattern, String> {
    let t = text.trim().to_ascii_lowercase();
    let t = t.trim_start_matches('@');
    let t = t.strip_prefix("*.").unwrap_or(t);
    let t = t.trim_end_matches('.');
    if t.is_empty() {
        return Err(format!("{text:?} is empty"));
    }
    let (body, wildcard) = match t.strip_suffix(".*") {
        Some(body) => (body, true),
        None => (t, false),
    };
    let labels: Vec<&str> = body.split('.').collect();
    for label in &labels {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "{text:?} is not a domain or a pattern such as \"yahoo.*\" (only a trailing \".*\" is allowed; write IDNs in xn-- form)"
            ));
        }
    }
    if !wildcard && labels.len() < 2 {
        return Err(format!(
            "{text:?} is a bare top-level label; name a domain such as \"gmail.com\" or a pattern such as \"{text}.*\""
        ));
    }
    Ok(if wildcard {
        Pattern::Wildcard(labels.into_iter().map(str::to_owned).collect())
    } else {
        Pattern::Domain(body.to_owned())
    })
}

/// Reads the admins' providers file: one domain or pattern a line, `#` starts a
/// comment, blank lines are skipped. Errors name the line.
pub fn read_providers_file(path: &Path) -> Result<Vec<Pattern>, Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("cannot read {}: {e}", path.display())])?;
    let mut patterns = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        match parse_pattern(line) {
            Ok(p) => patterns.push(p),
            Err(e) => errors.push(format!("{}:{}: {e}", path.display(), i + 1)),
        }
    }
    if errors.is_empty() {
        Ok(patterns)
    } else {
        Err(errors)
    }
}

/// Matches domains against the provider patterns. Exact domains are kept in a set
/// (a file of thousands of domains costs one lookup per label of the domain).
#[derive(Debug, Clone, Default)]
pub struct ProviderMatcher {
    exact: HashSet<String>,
    wildcards: Vec<Vec<String>>,
}

impl ProviderMatcher {
    pub fn new<'a>(patterns: impl IntoIterator<Item = &'a Pattern>) -> Self {
        let mut m = ProviderMatcher::default();
        for p in patterns {
            match p {
                Pattern::Domain(d) => {
                    m.exact.insert(d.clone());
                }
                Pattern::Wildcard(labels) => {
                    if !m.wildcards.contains(labels) {
                        m.wildcards.push(labels.clone());
                    }
                }
            }
        }
        m
    }

    pub fn len(&self) -> usize {
        self.exact.len() + self.wildcards.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when `domain` is a listed provider, one of its subdomains, or matches
    /// a wildcard pattern. Local and state domains are the caller's to exclude.
    pub fn matches(&self, domain: &str) -> bool {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        if domain.is_empty() {
            return false;
        }
        // Every suffix at a label boundary: mail.yahoo.com, yahoo.com, com.
        let mut rest = domain.as_str();
        loop {
            if self.exact.contains(rest) {
                return true;
            }
            match rest.split_once('.') {
                Some((_, tail)) => rest = tail,
                None => break,
            }
        }
        if self.wildcards.is_empty() {
            return false;
        }
        let labels: Vec<&str> = domain.split('.').collect();
        self.wildcards.iter().any(|w| {
            // w followed by at least one more label, anywhere from a label boundary.
            labels.len() > w.len()
                && (0..labels.len() - w.len())
                    .any(|i| labels[i..i + w.len()].iter().zip(w).all(|(a, b)| a == b))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> ProviderMatcher {
        let pats: Vec<Pattern> = DEFAULT_PROVIDERS
            .iter()
            .map(|p| parse_pattern(p).unwrap())
            .collect();
        ProviderMatcher::new(&pats)
    }

    #[test]
    fn exact_domains_cover_subdomains_at_label_boundaries() {
        let m = defaults();
        assert!(m.matches("gmail.com"));
        assert!(m.matches("GMail.COM."));
        assert!(m.matches("mx.gmail.com"));
        assert!(!m.matches("notgmail.com"));
        assert!(!m.matches("gmail.com.evil.example"));
        assert!(!m.matches("com"));
        assert!(!m.matches(""));
    }

    #[test]
    fn wildcard_stands_for_one_or_more_trailing_labels() {
        let m = defaults();
        assert!(m.matches("yahoo.com"));
        assert!(m.matches("yahoo.com.vn"));
        assert!(m.matches("yahoo.co.jp"));
        assert!(m.matches("mail.yahoo.com.vn"));
        assert!(m.matches("hotmail.fr"));
        assert!(m.matches("outlook.de"));
        assert!(!m.matches("yahoo"), "needs at least one trailing label");
        assert!(!m.matches("notyahoo.com"));
        assert!(!m.matches("yahoofans.com"));
    }

    #[test]
    fn patterns_are_checked() {
        assert_eq!(
            parse_pattern("Yahoo.*").unwrap(),
            Pattern::Wildcard(vec!["yahoo".into()])
        );
        assert_eq!(
            parse_pattern("@GMX.de.").unwrap(),
            Pattern::Domain("gmx.de".into())
        );
        assert_eq!(
            parse_pattern("*.onmicrosoft.com").unwrap(),
            Pattern::Domain("onmicrosoft.com".into())
        );
        for bad in [
            "",
            "*",
            "gmail",
            "*.com.*x",
            "ya*hoo.com",
            "a..b",
            "-x.com",
            "x y.com",
            "*.yahoo",
        ] {
            assert!(parse_pattern(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(parse_pattern("live.*").is_ok());
        assert!(parse_pattern("mail.yahoo.*").is_ok());
    }

    #[test]
    fn every_default_is_valid() {
        for p in DEFAULT_PROVIDERS {
            parse_pattern(p).unwrap();
        }
    }

    #[test]
    fn providers_file_with_comments() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("providers.txt");
        std::fs::write(
            &path,
            "# extra providers\n\nvnn.vn   # VNPT\nmail.example.*\n  fpt.vn\n",
        )
        .unwrap();
        let pats = read_providers_file(&path).unwrap();
        assert_eq!(pats.len(), 3);
        let m = ProviderMatcher::new(&pats);
        assert!(m.matches("hn.vnn.vn"));
        assert!(m.matches("mail.example.org"));
        assert!(m.matches("fpt.vn"));
    }

    #[test]
    fn providers_file_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.txt");
        std::fs::write(&path, "gmail.com\nnot a domain\n").unwrap();
        let errs = read_providers_file(&path).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert!(errs[0].contains("p.txt:2:"), "{}", errs[0]);
        let missing = read_providers_file(&dir.path().join("nope.txt")).unwrap_err();
        assert!(missing[0].contains("nope.txt"), "{}", missing[0]);
    }
}
