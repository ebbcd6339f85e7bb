//! Reading the policy file: syntax errors with their line, every semantic error
//! (bad value, unknown key, contradictory settings) with file, line and key, and
//! warnings that do not stop the daemon.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::Policy;
use crate::rules::{configurable_rule, configurable_rules};

/// How serious a problem in the policy is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found in a policy, by dotted key (`clamav.max_scan_size`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    pub key: String,
    pub message: String,
}

impl Problem {
    pub fn error(key: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Error,
            key: key.into(),
            message: message.into(),
        }
    }

    pub fn warning(key: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Warning,
            key: key.into(),
            message: message.into(),
        }
    }
}

/// A problem placed in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocatedProblem {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub problem: Problem,
}

impl fmt::Display for LocatedProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.problem.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match self.line {
            Some(line) => write!(f, "{}:{line}: {kind}: ", self.file.display())?,
            None => write!(f, "{}: {kind}: ", self.file.display())?,
        }
        if self.problem.key.is_empty() {
            write!(f, "{}", self.problem.message)
        } else {
            write!(f, "{}: {}", self.problem.key, self.problem.message)
        }
    }
}

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read policy file: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: syntax error: {message}", file.display())]
    Syntax {
        file: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{}", render_problems(problems))]
    Invalid { problems: Vec<LocatedProblem> },
}

fn render_problems(problems: &[LocatedProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A policy that loaded and validated, with what the metrics and logs report.
#[derive(Debug, Clone)]
pub struct LoadedPolicy {
    pub policy: Arc<Policy>,
    pub path: PathBuf,
    /// SHA-256 of the file's bytes, hex (first 16 digits are enough to tell
    /// versions apart in a dashboard).
    pub hash: String,
    pub warnings: Vec<LocatedProblem>,
}

impl LoadedPolicy {
    /// Reads, parses and validates a policy file.
    pub fn load(path: &Path) -> Result<LoadedPolicy, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_text(&text, path)
    }

    /// Parses and validates policy text; `path` names the file in messages and is
    /// the base for relative paths inside the policy.
    pub fn from_text(text: &str, path: &Path) -> Result<LoadedPolicy, ConfigError> {
        // Syntax first: one error, with its line.
        if let Err(err) = text.parse::<toml::Table>() {
            let (line, column) = err
                .span()
                .map(|s| line_col(text, s.start))
                .unwrap_or((1, 1));
            return Err(ConfigError::Syntax {
                file: path.to_owned(),
                line,
                column,
                message: err.message().trim().to_owned(),
            });
        }
        let mut policy = deserialize_collecting_errors(text, path)?;
        let mut problems = policy.prepare(path);
        problems.extend(policy.validate(path));
        let mut located: Vec<LocatedProblem> = problems
            .drain(..)
            .map(|problem| LocatedProblem {
                file: path.to_owned(),
                line: find_key_line(text, &problem.key),
                problem,
            })
            .collect();
        // In the order of the file, as an admin reads it; keys not in the file last.
        located.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
        let (errors, warnings): (Vec<_>, Vec<_>) = located
            .into_iter()
            .partition(|p| p.problem.severity == super::load::Severity::Error);
        if !errors.is_empty() {
            let mut all = errors;
            all.extend(warnings);
            return Err(ConfigError::Invalid { problems: all });
        }
        Ok(LoadedPolicy {
            policy: Arc::new(policy),
            path: path.to_owned(),
            hash: hex_sha256(text.as_bytes()),
            warnings,
        })
    }
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Deserializes the policy; on an error, notes it, blanks out the offending key
/// (or table) and tries again, so that one run reports every bad key.
fn deserialize_collecting_errors(text: &str, path: &Path) -> Result<Policy, ConfigError> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut problems = Vec::new();
    for _ in 0..100 {
        let current = lines.join("\n");
        match toml::from_str::<Policy>(&current) {
            Ok(policy) if problems.is_empty() => return Ok(policy),
            Ok(mut partial) => {
                // What is left of the file parsed: check it too, so one run
                // reports the bad values and the contradictions together.
                let mut more = partial.prepare(path);
                more.extend(partial.validate(path));
                for problem in more.into_iter().filter(|p| p.severity == Severity::Error) {
                    problems.push(LocatedProblem {
                        file: path.to_owned(),
                        line: find_key_line(text, &problem.key),
                        problem,
                    });
                }
                break;
            }
            Err(err) => {
                let message = err.message().trim().to_owned();
                let Some(span) = err.span().filter(|s| s.start < current.len()) else {
                    problems.push(LocatedProblem {
                        file: path.to_owned(),
                        line: None,
                        problem: Problem::error("", message),
                    });
                    break;
                };
                let (line, _) = line_col(&current, span.start);
                let (end_line, _) = line_col(&current, span.end.saturating_sub(1).max(span.start));
                let key = key_at_line(&lines, line - 1);
                problems.push(LocatedProblem {
                    file: path.to_owned(),
                    line: Some(line),
                    problem: Problem::error(key, message),
                });
                if !blank_out(&mut lines, line - 1, end_line - 1) {
                    break;
                }
            }
        }
    }
    problems.sort_by_key(|p| p.line);
    Err(ConfigError::Invalid { problems })
}

/// Comments out lines `first..=last`; a table header takes its whole table with
/// it. Returns false when nothing changed (to stop the retry loop).
fn blank_out(lines: &mut [String], first: usize, last: usize) -> bool {
    let mut changed = false;
    let last = if lines
        .get(first)
        .is_some_and(|l| l.trim_start().starts_with('['))
    {
        (first + 1..lines.len())
            .find(|&i| lines[i].trim_start().starts_with('['))
            .map(|i| i - 1)
            .unwrap_or(lines.len().saturating_sub(1))
    } else {
        last
    };
    for line in lines.iter_mut().take(last + 1).skip(first) {
        if !line.trim_start().starts_with('#') && !line.trim().is_empty() {
            *line = format!("# {line}");
            changed = true;
        }
    }
    changed
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = offset
        - before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1)
        + 1;
    (line, column)
}

/// The dotted key defined on line `index` (0-based): the enclosing table's name
/// and the key before `=`; for a table header, the table's name.
fn key_at_line(lines: &[String], index: usize) -> String {
    let Some(line) = lines.get(index) else {
        return String::new();
    };
    if let Some(header) = table_header(line) {
        return header;
    }
    let table = lines[..index]
        .iter()
        .rev()
        .find_map(|l| table_header(l))
        .unwrap_or_default();
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_owned())
        .unwrap_or_default();
    match (table.is_empty(), key.is_empty()) {
        (true, _) => key,
        (false, true) => table,
        (false, false) => format!("{table}.{key}"),
    }
}

fn table_header(line: &str) -> Option<String> {
    let t = line.trim();
    let inner = t
        .strip_prefix("[[")
        .and_then(|r| r.split("]]").next())
        .or_else(|| t.strip_prefix('[').and_then(|r| r.split(']').next()))?;
    Some(inner.trim().replace(['"', ' '], ""))
}

/// The line where a dotted key is set, if it is in the file (`a.b.c` is key `c`
/// in table `[a.b]`, or `b.c` in `[a]`, ...).
fn find_key_line(text: &str, dotted: &str) -> Option<usize> {
    if dotted.is_empty() {
        return None;
    }
    let mut table = String::new();
    let mut table_line = None;
    for (i, line) in text.lines().enumerate() {
        if let Some(h) = table_header(line) {
            table = h;
            if table == dotted {
                table_line = Some(i + 1);
            }
            continue;
        }
        let Some((k, _)) = line.split_once('=') else {
            continue;
        };
        let k = k.trim().trim_matches('"');
        if k.starts_with('#') {
            continue;
        }
        let full = if table.is_empty() {
            k.to_owned()
        } else {
            format!("{table}.{k}")
        };
        if full == dotted {
            return Some(i + 1);
        }
    }
    table_line.or_else(|| {
        // Fall back to the table of a key that is missing from the file.
        dotted
            .rsplit_once('.')
            .and_then(|(parent, _)| find_key_line(text, parent))
    })
}

impl Policy {
    /// Loads what the policy refers to (files of extra domains, ...), relative to
    /// the policy file's directory. Runs on every load and reload.
    pub fn prepare(&mut self, policy_path: &Path) -> Vec<Problem> {
        self.forwarding.prepare(policy_path)
    }

    /// Checks what serde cannot: values that must parse, settings that contradict
    /// each other. Errors stop the policy from loading; warnings are reported.
    pub fn validate(&self, policy_path: &Path) -> Vec<super::Problem> {
        let mut problems = Vec::new();
        if self.milter.listen.is_empty() {
            problems.push(Problem::error(
                "milter.listen",
                "at least one socket is needed",
            ));
        }
        for (i, l) in self.milter.listen.iter().enumerate() {
            if let Err(e) = super::ListenAddr::parse(l) {
                problems.push(Problem::error(
                    "milter.listen",
                    format!("entry {}: {e}", i + 1),
                ));
            }
        }
        if u32::from_str_radix(self.milter.socket_mode.trim_start_matches("0o"), 8).is_err() {
            problems.push(Problem::error(
                "milter.socket_mode",
                format!(
                    "{:?} is not an octal mode such as \"0660\"",
                    self.milter.socket_mode
                ),
            ));
        }
        for (key, count) in [
            ("milter.max_connections", self.milter.max_connections),
            ("milter.max_headers", self.milter.max_headers),
            ("metrics.max_connections", self.metrics.max_connections),
        ] {
            if count == 0 {
                problems.push(Problem::error(key, "must be at least 1"));
            }
        }
        if self.milter.max_frame_size.bytes() < 1024 * 1024 {
            problems.push(Problem::error(
                "milter.max_frame_size",
                "must be at least 1 MiB: Postfix sends headers up to header_size_limit",
            ));
        }
        if self.milter.progress_interval.get().is_zero() {
            problems.push(Problem::error(
                "milter.progress_interval",
                "must be above zero",
            ));
        }
        if self.milter.max_recipients == 0 {
            problems.push(Problem::error(
                "milter.max_recipients",
                "must be at least 1 (keep it above Postfix's smtpd_recipient_limit, 1000 by default)",
            ));
        }
        if self.milter.max_macro_bytes.bytes() < 8 * 1024 {
            problems.push(Problem::error(
                "milter.max_macro_bytes",
                "must be at least 8 KiB: Postfix's default macros take about 3 KiB",
            ));
        }
        if self.milter.write_timeout.get().is_zero() {
            problems.push(Problem::error("milter.write_timeout", "must be above zero"));
        }
        if self.domains.local.is_empty() {
            problems.push(Problem::error(
                "domains.local",
                "name at least one local domain",
            ));
        }
        for d in self.domains.local.iter().chain(&self.domains.state) {
            if d.is_empty() || d.contains(['@', ' ', '*']) {
                problems.push(Problem::error(
                    "domains",
                    format!("{d:?} is not a domain name"),
                ));
            }
        }
        let limits = &self.limits;
        if limits.max_message_size.bytes() == 0 {
            problems.push(Problem::error(
                "limits.max_message_size",
                "must be above zero",
            ));
        }
        // Base64 makes attachments a third larger, plus MIME headers and body text.
        let needed = limits.max_attachments_size.bytes() / 3 * 4 + 256 * 1024;
        if limits.max_message_size.bytes() < needed {
            problems.push(Problem::warning(
                "limits.max_message_size",
                format!(
                    "{} is too small to carry attachments just under max_attachments_size ({}) once base64-encoded; use at least {}",
                    limits.max_message_size,
                    limits.max_attachments_size,
                    super::ByteSize(needed)
                ),
            ));
        }
        // The budget counts each body byte three times (raw buffer and decoded copies).
        if limits.max_buffered_bytes.bytes() < limits.max_message_size.bytes().saturating_mul(3) {
            problems.push(Problem::error(
                "limits.max_buffered_bytes",
                "must be at least three times max_message_size (a message is counted with its buffer's growth and its decoded copy), or no large message could ever be taken",
            ));
        }
        if !self.metrics.listen.is_empty()
            && self.metrics.listen.parse::<std::net::SocketAddr>().is_err()
        {
            problems.push(Problem::error(
                "metrics.listen",
                format!(
                    "{:?} is not HOST:PORT (e.g. \"127.0.0.1:9898\")",
                    self.metrics.listen
                ),
            ));
        }
        if self.metrics.header_timeout.get().is_zero() {
            problems.push(Problem::error(
                "metrics.header_timeout",
                "must be above zero",
            ));
        }
        if self.metrics.connection_timeout < self.metrics.header_timeout {
            problems.push(Problem::error(
                "metrics.connection_timeout",
                "must be at least header_timeout",
            ));
        }
        if !matches!(
            self.log.level.as_str(),
            "error" | "warn" | "info" | "debug" | "trace"
        ) {
            problems.push(Problem::error(
                "log.level",
                "use error, warn, info, debug or trace",
            ));
        }
        if self.headers.tag_header.is_empty()
            || !self
                .headers
                .tag_header
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b':')
        {
            problems.push(Problem::error(
                "headers.tag_header",
                "not a valid header name",
            ));
        }
        if self.audit.enabled && !self.audit.file.starts_with('/') {
            problems.push(Problem::error(
                "audit.file",
                "must be an absolute path (the daemon's working directory is /)",
            ));
        }
        for (name, settings) in &self.rules {
            let key = format!("rules.{name}");
            if configurable_rule(name).is_none() {
                let known: Vec<_> = configurable_rules().map(|r| r.name).collect();
                problems.push(Problem::error(
                    key,
                    format!("unknown rule; the rules are {}", known.join(", ")),
                ));
                continue;
            }
            if let Some(reply) = &settings.reply
                && (!reply.is_ascii() || reply.contains(['\r', '\n']) || reply.len() > 900)
            {
                problems.push(Problem::error(
                    format!("{key}.reply"),
                    "SMTP replies must be one line of ASCII (Vietnamese without diacritics), at most 900 characters",
                ));
            }
        }
        problems.extend(self.attachments.validate(self));
        problems.extend(self.clamav.validate(self));
        problems.extend(self.forwarding.validate(self, policy_path));
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<LoadedPolicy, ConfigError> {
        LoadedPolicy::from_text(text, Path::new("test.toml"))
    }

    #[test]
    fn empty_file_gives_defaults() {
        let p = load("").unwrap();
        assert_eq!(
            p.policy.limits.max_attachments_size.bytes(),
            15 * 1024 * 1024
        );
        assert_eq!(p.hash.len(), 64);
    }

    #[test]
    fn syntax_error_names_its_line() {
        let err = load("[milter]\nlisten = [\"inet:127.0.0.1:1\"\n\n[limits]\n").unwrap_err();
        match err {
            ConfigError::Syntax { line, .. } => assert!(line >= 2, "line {line}"),
            other => panic!("expected syntax error, got {other}"),
        }
    }

    #[test]
    fn every_semantic_error_is_reported_with_line_and_key() {
        let text = "[milter]\nlisten = [\"inet:127.0.0.1:8891\"]\nbogus = 1\n\n[limits]\nmax_message_size = \"25 parsecs\"\n\n[nonsense]\nx = 1\n";
        let err = load(text).unwrap_err();
        let ConfigError::Invalid { problems } = err else {
            panic!("expected semantic errors")
        };
        let shown: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(problems.len(), 3, "{shown:#?}");
        assert_eq!(problems[0].line, Some(3));
        assert_eq!(problems[0].problem.key, "milter.bogus");
        assert_eq!(problems[1].line, Some(6));
        assert_eq!(problems[1].problem.key, "limits.max_message_size");
        assert_eq!(problems[2].line, Some(8));
        assert!(
            shown[2].starts_with("test.toml:8: error: nonsense"),
            "{}",
            shown[2]
        );
    }

    /// A policy that does not load, with exactly these (key, line) problems.
    fn assert_problems(text: &str, expected: Vec<(&str, Option<usize>)>) {
        let ConfigError::Invalid { problems } = load(text).unwrap_err() else {
            panic!("{text} loaded")
        };
        let keys: Vec<(&str, Option<usize>)> = problems
            .iter()
            .map(|p| (p.problem.key.as_str(), p.line))
            .collect();
        assert_eq!(keys, expected);
    }

    #[test]
    fn bad_values_and_contradictions_are_reported_together() {
        let text =
            "[milter]\nlisten = [\"tcp:1.2.3.4\"]\nfoo = 1\n[rules.virus]\nreply = \"Thư\"\n";
        assert_problems(
            text,
            vec![
                ("milter.listen", Some(2)),
                ("milter.foo", Some(3)),
                ("rules.virus.reply", Some(5)),
            ],
        );
    }

    #[test]
    fn contradictions_are_errors_with_lines() {
        let text = "[limits]\nmax_message_size = \"25 MiB\"\nmax_buffered_bytes = \"1 MiB\"\n";
        let ConfigError::Invalid { problems } = load(text).unwrap_err() else {
            panic!()
        };
        assert_eq!(problems[0].problem.key, "limits.max_buffered_bytes");
        assert_eq!(problems[0].line, Some(3));
    }

    #[test]
    fn small_message_cap_is_a_warning() {
        let p = load("[limits]\nmax_message_size = \"16 MiB\"\n").unwrap();
        assert_eq!(p.warnings.len(), 1);
        assert_eq!(p.warnings[0].line, Some(2));
    }

    #[test]
    fn peer_caps_and_timeouts_must_make_sense() {
        let text = "[milter]\nmax_recipients = 0\nmax_headers = 0\nmax_macro_bytes = \"1 KiB\"\nwrite_timeout = 0\n\n[metrics]\nmax_connections = 0\nheader_timeout = \"5s\"\nconnection_timeout = \"1s\"\n";
        assert_problems(
            text,
            vec![
                ("milter.max_recipients", Some(2)),
                ("milter.max_headers", Some(3)),
                ("milter.max_macro_bytes", Some(4)),
                ("milter.write_timeout", Some(5)),
                ("metrics.max_connections", Some(8)),
                ("metrics.connection_timeout", Some(10)),
            ],
        );
        let p = load("").unwrap();
        assert!(
            p.policy.milter.max_recipients > 1000,
            "above smtpd_recipient_limit"
        );
        assert_eq!(p.policy.metrics.max_connections, 16);
    }

    #[test]
    fn unknown_rule_is_an_error() {
        let ConfigError::Invalid { problems } =
            load("[rules.exectuable]\naction = \"reject\"\n").unwrap_err()
        else {
            panic!()
        };
        assert_eq!(problems[0].problem.key, "rules.exectuable");
        assert_eq!(problems[0].line, Some(1));
    }
}
