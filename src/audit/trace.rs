//! The `trace` command: every message, on any host, that carried a file (by
//! SHA-256 or by name) or had a given Message-ID: to follow a leaked document
//! (Điều 17 khoản 3). Each record is listed as logged; duplicates are not merged,
//! since which hosts saw the message is the point.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;

use super::record::{Action, AuditRecord, FileEntry, LineCounts};
use super::report::read_logs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TraceFormat {
    Text,
    Json,
}

/// `congvu-milter trace`.
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["sha256", "message_id", "name"])))]
pub struct TraceArgs {
    /// Audit log, plain or gzip (by content); `-` for standard input. Repeatable.
    #[arg(long, required = true, num_args = 1..)]
    pub log: Vec<PathBuf>,
    /// SHA-256 of the file (what `sha256sum` prints), any case.
    #[arg(long, value_name = "HEX", value_parser = parse_sha256)]
    pub sha256: Option<String>,
    /// Message-ID, with or without its angle brackets.
    #[arg(long, value_name = "ID")]
    pub message_id: Option<String>,
    /// Glob on the file's name (last path element; `*`, `?`, `[...]`), ignoring case.
    #[arg(long, value_name = "GLOB")]
    pub name: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: TraceFormat,
}

fn parse_sha256(s: &str) -> Result<String, String> {
    if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err("a SHA-256 is 64 hexadecimal digits".into())
    }
}

/// What is looked for.
#[derive(Debug, Clone)]
pub enum Needle {
    Sha256(String),
    MessageId(String),
    Name(Vec<char>),
}

impl Needle {
    pub fn from_args(args: &TraceArgs) -> Needle {
        if let Some(h) = &args.sha256 {
            Needle::Sha256(h.clone())
        } else if let Some(id) = &args.message_id {
            let id = id.trim();
            Needle::MessageId(if id.starts_with('<') {
                id.to_owned()
            } else {
                format!("<{id}>")
            })
        } else {
            Needle::Name(
                args.name
                    .as_deref()
                    .unwrap_or("*")
                    .to_lowercase()
                    .chars()
                    .collect(),
            )
        }
    }

    /// Whether the record matches, and the files that made it match.
    pub fn matches<'r, 'a>(&self, record: &'r AuditRecord<'a>) -> Option<Vec<&'r FileEntry<'a>>> {
        match self {
            Needle::MessageId(id) => {
                (record.message_id.as_deref() == Some(id.as_str())).then(Vec::new)
            }
            Needle::Sha256(hash) => {
                let files: Vec<_> = record
                    .files
                    .iter()
                    .filter(|f| {
                        f.sha256
                            .as_deref()
                            .is_some_and(|h| h.eq_ignore_ascii_case(hash))
                    })
                    .collect();
                (!files.is_empty()).then_some(files)
            }
            Needle::Name(glob) => {
                let files: Vec<_> = record
                    .files
                    .iter()
                    .filter(|f| {
                        f.path.last().is_some_and(|name| {
                            let name: Vec<char> = name.to_lowercase().chars().collect();
                            glob_match(glob, &name)
                        })
                    })
                    .collect();
                (!files.is_empty()).then_some(files)
            }
        }
    }
}

/// Shell-style glob: `*` any run, `?` one character, `[abc]`, `[a-z]`, `[!abc]`;
/// everything else literal. Iterative with one backtrack point, so linear-ish in
/// practice and never exponential.
pub fn glob_match(pattern: &[char], text: &[char]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() {
            match pattern[p] {
                '*' => {
                    star = Some((p, t));
                    p += 1;
                    continue;
                }
                '?' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                '[' => {
                    if let Some((matched, len)) = class_match(&pattern[p..], text[t])
                        && matched
                    {
                        p += len;
                        t += 1;
                        continue;
                    } else if class_match(&pattern[p..], text[t]).is_none() && text[t] == '[' {
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
                c if c == text[t] => {
                    p += 1;
                    t += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st)) => {
                p = sp + 1;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// A `[...]` class at the start of `pattern`: whether `c` is in it and the
/// class's length; None when the bracket is not closed (then `[` is literal).
fn class_match(pattern: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negated = matches!(pattern.get(i), Some('!' | '^'));
    if negated {
        i += 1;
    }
    let mut found = false;
    let mut first = true;
    while i < pattern.len() {
        if pattern[i] == ']' && !first {
            return Some((found != negated, i + 1));
        }
        first = false;
        if i + 2 < pattern.len() && pattern[i + 1] == '-' && pattern[i + 2] != ']' {
            found |= pattern[i] <= c && c <= pattern[i + 2];
            i += 3;
        } else {
            found |= pattern[i] == c;
            i += 1;
        }
    }
    None
}

fn file_path(f: &FileEntry) -> String {
    f.path.join("/")
}

fn write_text(out: &mut impl Write, record: &AuditRecord, files: &[&FileEntry]) -> io::Result<()> {
    let recipients: Vec<&str> = record.recipients.iter().map(|r| &*r.address).collect();
    let action = match record.monitor_action {
        Some(m) => format!("{} (monitor: {})", record.action.as_str(), m.as_str()),
        None => record.action.as_str().to_owned(),
    };
    writeln!(
        out,
        "{} {} {} {} {} -> {} {}",
        record.time,
        record.host,
        record.queue_id.as_deref().unwrap_or("-"),
        record.message_id.as_deref().unwrap_or("-"),
        if record.sender.is_empty() {
            "<>"
        } else {
            &record.sender
        },
        recipients.join(","),
        action
    )?;
    for f in files {
        writeln!(
            out,
            "    {} ({} bytes, {}, sha256 {})",
            file_path(f),
            f.size,
            f.file_type,
            f.sha256.as_deref().unwrap_or("-")
        )?;
    }
    Ok(())
}

/// One line of `trace --format json`.
#[derive(Serialize)]
struct TraceLine<'r> {
    time: &'r str,
    host: &'r str,
    instance: Option<&'r str>,
    queue_id: Option<&'r str>,
    message_id: Option<&'r str>,
    sender: &'r str,
    recipients: Vec<&'r str>,
    action: Action,
    monitor_action: Option<Action>,
    /// The files that matched (empty for `--message-id`).
    files: &'r [&'r FileEntry<'r>],
}

fn write_json(out: &mut impl Write, record: &AuditRecord, files: &[&FileEntry]) -> io::Result<()> {
    let line = TraceLine {
        time: &record.time,
        host: &record.host,
        instance: record.instance.as_deref(),
        queue_id: record.queue_id.as_deref(),
        message_id: record.message_id.as_deref(),
        sender: &record.sender,
        recipients: record.recipients.iter().map(|r| &*r.address).collect(),
        action: record.action,
        monitor_action: record.monitor_action,
        files,
    };
    serde_json::to_writer(&mut *out, &line)?;
    writeln!(out)
}

/// `congvu-milter trace`: exit 0 when something was found, 1 when nothing was.
pub fn run(args: &TraceArgs) -> ExitCode {
    let needle = Needle::from_args(args);
    let mut counts = LineCounts::default();
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut found = 0u64;
    let mut write_error = None;
    let read = read_logs("trace", &args.log, &mut counts, |record| {
        if write_error.is_some() {
            return;
        }
        if let Some(files) = needle.matches(record) {
            found += 1;
            let written = match args.format {
                TraceFormat::Text => write_text(&mut out, record, &files),
                TraceFormat::Json => write_json(&mut out, record, &files),
            };
            write_error = written.err();
        }
    });
    if let Err(code) = read {
        return code;
    }
    if let Some(e) = write_error.or_else(|| out.flush().err()) {
        eprintln!("congvu-milter trace: writing: {e}");
        return ExitCode::from(2);
    }
    eprint!("{}", counts.summary());
    eprintln!("{} records read, {found} matching", counts.records);
    if found > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::Action;
    use crate::audit::record::tests::sample;

    fn glob(p: &str, t: &str) -> bool {
        glob_match(
            &p.chars().collect::<Vec<_>>(),
            &t.chars().collect::<Vec<_>>(),
        )
    }

    #[test]
    fn glob_matches_like_the_shell() {
        assert!(glob("*.exe", "hoso.pdf.exe"));
        assert!(!glob("*.exe", "hoso.exe.pdf"));
        assert!(glob("hoso?.zip", "hoso1.zip"));
        assert!(!glob("hoso?.zip", "hoso.zip"));
        assert!(glob("bao_cao_[0-9]*.docx", "bao_cao_2026.docx"));
        assert!(!glob("bao_cao_[!0-9]*.docx", "bao_cao_2026.docx"));
        assert!(glob("[abc", "[abc"));
        assert!(glob("*", ""));
        assert!(glob("công_văn*", "công_văn_số_12.pdf"));
        assert!(!glob("a*a*a*a*a*b", &"a".repeat(200)));
    }

    #[test]
    fn needles_match_hash_id_and_name() {
        let r = sample(Some("<abc@bacgiang.gov.vn>"), Action::Accept);
        let args = |sha: Option<&str>, id: Option<&str>, name: Option<&str>| TraceArgs {
            log: vec![],
            sha256: sha.map(str::to_owned),
            message_id: id.map(str::to_owned),
            name: name.map(str::to_owned),
            format: TraceFormat::Text,
        };
        let hash = "ab".repeat(32);
        assert_eq!(
            Needle::from_args(&args(Some(&hash), None, None))
                .matches(&r)
                .unwrap()
                .len(),
            1
        );
        assert!(
            Needle::from_args(&args(Some(&"cd".repeat(32)), None, None))
                .matches(&r)
                .is_none()
        );
        assert!(
            Needle::from_args(&args(None, Some("abc@bacgiang.gov.vn"), None))
                .matches(&r)
                .is_some()
        );
        assert!(
            Needle::from_args(&args(None, Some("<abd@bacgiang.gov.vn>"), None))
                .matches(&r)
                .is_none()
        );
        assert!(
            Needle::from_args(&args(None, None, Some("HOSO.*")))
                .matches(&r)
                .is_some()
        );
        assert!(
            Needle::from_args(&args(None, None, Some("*.rar")))
                .matches(&r)
                .is_none()
        );
    }
}
