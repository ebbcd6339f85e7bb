//! The value of the tag header (`X-Congvu-Policy`) that the `tag` and
//! `quarantine` actions and monitor mode add: what a person reads first, then the
//! article and the file as quoted attributes that `congvu-milter quarantine`
//! parses back from a held message.
//!
//! Form: `RULE (DETAIL); article="ARTICLE"; file="FILE"`, all ASCII. The
//! attribute values escape `\` and `"` with a backslash, so they are found from
//! the end of the value even when the detail (which quotes file names chosen by
//! the sender) contains the same words.

/// What a tag header says about the finding.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolicyTag {
    pub rule: String,
    pub detail: String,
    pub article: String,
    pub file: String,
}

const ARTICLE: &str = "; article=\"";
const FILE: &str = "; file=\"";

impl PolicyTag {
    /// The header value. Every field must already be ASCII.
    pub fn render(&self) -> String {
        let mut out = format!("{} ({})", self.rule, self.detail);
        if !self.article.is_empty() {
            out.push_str(ARTICLE);
            out.push_str(&escape(&self.article));
            out.push('"');
        }
        if !self.file.is_empty() {
            out.push_str(FILE);
            out.push_str(&escape(&self.file));
            out.push('"');
        }
        out
    }

    /// Reads a header value back (unfolded or not). Older values without
    /// attributes give the rule and detail only; anything not starting with a
    /// rule name gives `None`.
    pub fn parse(value: &str) -> Option<PolicyTag> {
        let value: String = value
            .split(['\r', '\n'])
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(" ");
        let mut rest = value.trim();
        let file = take_attribute(&mut rest, FILE).unwrap_or_default();
        let article = take_attribute(&mut rest, ARTICLE).unwrap_or_default();
        let (rule, detail) = match rest.split_once(" (") {
            Some((rule, detail)) => (rule, detail.strip_suffix(')').unwrap_or(detail)),
            None => (rest, ""),
        };
        let valid_rule = !rule.is_empty()
            && rule
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        valid_rule.then(|| PolicyTag {
            rule: rule.to_owned(),
            detail: detail.to_owned(),
            article,
            file,
        })
    }
}

/// Removes a trailing `; key="value"` from `rest`, returning the unescaped value.
fn take_attribute(rest: &mut &str, key: &str) -> Option<String> {
    let body = rest.strip_suffix('"')?;
    let at = body.rfind(key)?;
    let quoted = &body[at + key.len()..];
    let value = unescape(quoted)?;
    *rest = &rest[..at];
    Some(value)
}

fn escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The inverse of [`escape`]; `None` when an unescaped quote shows the text was
/// not one escaped value.
fn unescape(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(detail: &str, file: &str) -> PolicyTag {
        PolicyTag {
            rule: "executable".into(),
            detail: detail.into(),
            article: "Dieu 4 khoan 7".into(),
            file: file.into(),
        }
    }

    #[test]
    fn renders_readably_and_parses_back() {
        let t = tag("\"ho so.exe\" in \"a.zip\": PE executable", "ho so.exe");
        let v = t.render();
        assert_eq!(
            v,
            "executable (\"ho so.exe\" in \"a.zip\": PE executable); article=\"Dieu 4 khoan 7\"; file=\"ho so.exe\""
        );
        assert_eq!(PolicyTag::parse(&v), Some(t));
    }

    #[test]
    fn a_hostile_file_name_cannot_forge_the_attributes() {
        let evil = "x\"; article=\"none\"; file=\"y";
        let t = tag(&format!("\"{evil}\": PE"), evil);
        let parsed = PolicyTag::parse(&t.render()).unwrap();
        assert_eq!(parsed, t);
    }

    #[test]
    fn folded_and_old_values_parse() {
        let folded = "executable (\"a.exe\": PE);\r\n\tarticle=\"Dieu 4 khoan 7\"; file=\"a.exe\"";
        let p = PolicyTag::parse(folded).unwrap();
        assert_eq!((p.rule.as_str(), p.file.as_str()), ("executable", "a.exe"));
        let old = PolicyTag::parse("encrypted_archive (\"x.zip\": encrypted)").unwrap();
        assert_eq!(old.rule, "encrypted_archive");
        assert_eq!(old.article, "");
        assert_eq!(PolicyTag::parse("(nothing)"), None);
    }
}
