//! Attachment rules (Điều 4 khoản 7, Điều 10): executables, deceptive names,
//! encrypted and uninspectable archives, the total attachment size.
//!
//! [`evaluate`] turns the facts of an [`Inspection`] into [`Violation`]s; the
//! policy then decides what each one means (`Policy::judge`).

use std::cell::OnceCell;
use std::collections::{HashMap, HashSet};

use serde::Deserialize;

use super::Detector;
use crate::inspect::names::{bidi_control, display_name, final_extension_as_written};
use crate::inspect::{ArchiveKind, ExecKind, FileFacts, FileKind, Inspection};
use crate::policy::{ByteSize, Policy, Problem};
use crate::rule::{Control, Rule, RuleAction, Violation};

/// Executable types by extension: `exe` and `com` (named in Điều 4 khoản 7) and
/// the other Windows program and script types.
pub const DEFAULT_EXECUTABLE_EXTENSIONS: &[&str] = &[
    "exe", "com", "scr", "pif", "bat", "cmd", "vbs", "vbe", "js", "jse", "wsf", "wsh", "hta",
    "cpl", "msi", "msp", "jar", "ps1", "lnk", "reg", "chm",
];

pub const EXECUTABLE: Rule = Rule {
    name: "executable",
    article: "Điều 4 khoản 7",
    default_action: RuleAction::Reject,
    code: 550,
    enhanced: "5.7.1",
    reply: "Tep dinh kem \"{file}\" la tep thuc thi, bi cam (Quy che, Dieu 4 khoan 7) / executable attachment not allowed",
    control: Control::RulesTable,
};

pub const DECEPTIVE_NAME: Rule = Rule {
    name: "deceptive_name",
    article: "Điều 4 khoản 7",
    default_action: RuleAction::Reject,
    code: 550,
    enhanced: "5.7.1",
    reply: "Ten tep \"{file}\" chua ky tu dao chieu gay nham lan, bi cam (Quy che, Dieu 4 khoan 7) / deceptive file name not allowed",
    control: Control::RulesTable,
};

pub const ENCRYPTED_ARCHIVE: Rule = Rule {
    name: "encrypted_archive",
    article: "Điều 4 khoản 7",
    default_action: RuleAction::Reject,
    code: 550,
    enhanced: "5.7.1",
    reply: "Tep nen \"{file}\" co mat khau, bi han che (Quy che, Dieu 4 khoan 7) / password-protected archive not allowed",
    control: Control::RulesTable,
};

pub const UNINSPECTABLE: Rule = Rule {
    name: "uninspectable",
    article: "Điều 4 khoản 7",
    default_action: RuleAction::Reject,
    code: 550,
    enhanced: "5.7.1",
    reply: "Tep dinh kem \"{file}\" khong the kiem tra: {limit} (Quy che, Dieu 4 khoan 7) / attachment cannot be inspected",
    control: Control::RulesTable,
};

pub const ATTACHMENT_SIZE: Rule = Rule {
    name: "attachment_size",
    article: "Điều 10",
    default_action: RuleAction::Reject,
    code: 552,
    enhanced: "5.3.4",
    reply: "Tong dung luong tep dinh kem {size} vuot qua {limit} (Quy che, Dieu 10) / attachments total {size}, the limit is {limit}",
    control: Control::RulesTable,
};

/// `[attachments]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttachmentPolicy {
    /// Extensions (without the dot, any case) that make a file an executable by
    /// its name. Replacing the list drops the defaults; to add types, use
    /// `extra_executable_extensions`.
    pub executable_extensions: Vec<String>,
    /// Extensions added to `executable_extensions`.
    pub extra_executable_extensions: Vec<String>,
    /// Also find executables by content (PE, ELF, Mach-O, MSI, Java class, `#!`
    /// scripts, CHM) whatever their name.
    pub check_content: bool,
}

impl Default for AttachmentPolicy {
    fn default() -> Self {
        AttachmentPolicy {
            executable_extensions: DEFAULT_EXECUTABLE_EXTENSIONS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            extra_executable_extensions: Vec::new(),
            check_content: true,
        }
    }
}

impl AttachmentPolicy {
    pub fn validate(&self, _policy: &Policy) -> Vec<Problem> {
        let mut problems = Vec::new();
        for (key, list) in [
            (
                "attachments.executable_extensions",
                &self.executable_extensions,
            ),
            (
                "attachments.extra_executable_extensions",
                &self.extra_executable_extensions,
            ),
        ] {
            for ext in list {
                let t = ext.trim();
                if t.is_empty() {
                    problems.push(Problem::error(key, "an extension is empty"));
                } else if let Some(bare) = t.strip_prefix('.') {
                    problems.push(Problem::error(
                        key,
                        format!("write extensions without the dot: {bare:?}, not {t:?}"),
                    ));
                } else if t.chars().any(|c| {
                    c == '.'
                        || c.is_whitespace()
                        || c.is_control()
                        || matches!(c, '/' | '\\' | '*' | '?' | ':' | '"' | '<' | '>' | '|')
                }) {
                    problems.push(Problem::error(
                        key,
                        format!("{t:?} is not a file extension (one word, no dots or wildcards)"),
                    ));
                }
            }
        }
        for required in ["exe", "com"] {
            let listed = self
                .executable_extensions
                .iter()
                .chain(&self.extra_executable_extensions)
                .any(|e| e.trim().eq_ignore_ascii_case(required));
            if !listed {
                problems.push(Problem::warning(
                    "attachments.executable_extensions",
                    format!(
                        "{required:?} is not listed, but Điều 4 khoản 7 names .exe and .com files"
                    ),
                ));
            }
        }
        problems
    }

    /// The extension that makes `name` an executable, if it does. A name with a
    /// NUL (`x.exe%00.pdf`) is also read as Windows would, cut at the NUL.
    pub fn executable_extension(&self, name: &str) -> Option<String> {
        self.executable_names().extension_of(name)
    }

    /// The executable extensions, lower-cased once to be looked up by name.
    fn executable_names(&self) -> ExecutableNames {
        ExecutableNames::new(
            self.executable_extensions
                .iter()
                .chain(&self.extra_executable_extensions),
        )
    }
}

/// The lower-cased extensions that make a file an executable, made once per
/// message: the rules look up every name of every file in it, most of them
/// short ASCII extensions, which are compared as numbers ([`short_key`]).
struct ExecutableNames {
    short: Vec<u64>,
    all: Vec<String>,
}

impl ExecutableNames {
    fn new<'a>(extensions: impl Iterator<Item = &'a String>) -> Self {
        let all: Vec<String> = extensions.map(|e| e.trim().to_lowercase()).collect();
        let short = all.iter().filter_map(|e| short_key(e)).collect();
        ExecutableNames { short, all }
    }

    /// See [`AttachmentPolicy::executable_extension`].
    fn extension_of(&self, name: &str) -> Option<String> {
        self.final_extension_of(name).or_else(|| {
            let nul = memchr::memchr(0, name.as_bytes())?;
            self.final_extension_of(&name[..nul])
        })
    }

    fn final_extension_of(&self, name: &str) -> Option<String> {
        let ext = final_extension_as_written(name)?;
        match short_key(ext) {
            Some(key) => self.short.contains(&key).then(|| ext.to_ascii_lowercase()),
            None => {
                let ext = ext.to_lowercase();
                self.all.contains(&ext).then_some(ext)
            }
        }
    }
}

/// An ASCII extension of at most 7 bytes as one number: its bytes lower-cased,
/// and its length in the top byte (so that no two extensions share a key).
fn short_key(ext: &str) -> Option<u64> {
    if ext.len() > 7 || !ext.is_ascii() {
        return None;
    }
    let mut bytes = [0u8; 8];
    for (to, from) in bytes.iter_mut().zip(ext.bytes()) {
        *to = from.to_ascii_lowercase();
    }
    bytes[7] = ext.len() as u8;
    Some(u64::from_le_bytes(bytes))
}

pub const DETECTOR: Detector = Detector {
    rules: &[
        &EXECUTABLE,
        &DECEPTIVE_NAME,
        &ENCRYPTED_ARCHIVE,
        &UNINSPECTABLE,
        &ATTACHMENT_SIZE,
    ],
    at_end_of_message: Some(|e| evaluate(e.inspection, e.policy)),
};

/// The attachment rules' violations for one message: per offending file, at
/// most one violation per rule; then the total size; then what could not be
/// inspected. Every one is returned, however many: each must be judged (a rule set
/// to `tag` must not hide another's refusal); the verdict caps what is logged.
/// The cost is linear in the number of files.
pub fn evaluate(inspection: &Inspection, policy: &Policy) -> Vec<Violation> {
    let rules = &policy.attachments;
    let mut per_file: Vec<Violation> = Vec::new();
    let mut seen: HashSet<(&'static str, String)> = HashSet::new();
    let mut push = |v: Violation| {
        let key = (v.rule.name, v.var("file").unwrap_or_default().to_owned());
        if seen.insert(key) {
            per_file.push(v);
        }
    };
    let mut alt_names: HashMap<usize, Vec<&str>> = HashMap::new();
    for (index, name) in &inspection.alt_names {
        alt_names.entry(*index).or_default().push(name);
    }

    // Archives already reported as encrypted or uninspectable: their entries add
    // nothing more.
    let mut encrypted_reported = ReportedPaths::default();
    let mut uninspectable_reported = ReportedPaths::default();
    let executables = rules.executable_names();
    for (index, f) in inspection.files.iter().enumerate() {
        let names = || {
            f.name
                .as_deref()
                .into_iter()
                .chain(alt_names.get(&index).into_iter().flatten().copied())
        };
        // The reply's and the log's forms of the path, made only for a file
        // that is reported (most files of a message are not).
        let paths = OnceCell::new();
        let paths = || paths.get_or_init(|| (short_path(f), long_path(f)));

        if let Some((name, c)) = names().find_map(|n| bidi_control(n).map(|c| (n, c))) {
            let (file, where_) = paths();
            let mut detail = format!(
                "{where_}: the name holds the Unicode direction control U+{:04X}, which makes it display differently from what it is",
                c as u32
            );
            if f.path.last().map(String::as_str) != Some(name) {
                detail.push_str(&format!(" (name \"{}\")", display_name(name, 80)));
            }
            push(
                Violation::new(&DECEPTIVE_NAME, detail)
                    .with("file", file.clone())
                    .at(&f.path),
            );
        }

        let by_name = names().find_map(|n| executables.extension_of(n));
        let by_content = match &f.kind {
            FileKind::Executable(k) if rules.check_content => Some(exec_kind(*k)),
            _ => None,
        };
        if by_name.is_some() || by_content.is_some() {
            let what = match (&by_name, by_content) {
                (Some(ext), Some(kind)) => format!("{kind}, named .{ext}"),
                (Some(ext), None) => format!("executable by its name (.{ext})"),
                (None, Some(kind)) => kind.to_owned(),
                (None, None) => unreachable!(),
            };
            let (file, where_) = paths();
            push(
                Violation::new(&EXECUTABLE, format!("{where_}: {what}"))
                    .with("file", file.clone())
                    .at(&f.path),
            );
        }

        // An encrypted archive is one violation, not one more per encrypted entry.
        if f.encrypted && !encrypted_reported.hold_a_prefix_of(&f.path) {
            encrypted_reported.insert(&f.path);
            let (file, where_) = paths();
            push(
                Violation::new(
                    &ENCRYPTED_ARCHIVE,
                    format!("{where_}: {} with encrypted contents", kind_name(&f.kind)),
                )
                .with("file", file.clone())
                .at(&f.path),
            );
        }

        let uninspectable = match (&f.uninspectable, &f.kind) {
            (Some(reason), _) => Some(reason.clone()),
            (None, FileKind::Archive(ArchiveKind::Unsupported(format))) => {
                Some(format!("{format} archives cannot be opened"))
            }
            _ => None,
        };
        // Like encryption: an archive that cannot be inspected is one violation;
        // its entries that could not be inspected either add nothing.
        if let Some(reason) = uninspectable
            && !uninspectable_reported.hold_a_prefix_of(&f.path)
        {
            uninspectable_reported.insert(&f.path);
            let (file, where_) = paths();
            push(
                Violation::new(
                    &UNINSPECTABLE,
                    format!("{where_}: cannot be inspected: {reason}"),
                )
                .with("file", file.clone())
                .with("limit", reason)
                .at(&f.path),
            );
        }
    }

    let mut message_level = Vec::new();
    let limit = policy.limits.max_attachments_size;
    if inspection.attachments_size > limit.bytes() {
        let total = ByteSize(inspection.attachments_size);
        let (mut size, limit_text) = (total.to_string(), limit.to_string());
        if size == limit_text {
            size = format!("{:.2} MiB", total.bytes() as f64 / (1024.0 * 1024.0));
        }
        let largest = inspection
            .files
            .iter()
            .filter(|f| f.path.len() == 1)
            .max_by_key(|f| f.size);
        let mut detail = format!(
            "attachments total {size} ({} bytes), over the limit of {limit_text}",
            total.bytes()
        );
        let mut v = Violation::new(&ATTACHMENT_SIZE, String::new());
        if let Some(big) = largest {
            detail.push_str(&format!(
                "; largest {} ({})",
                long_path(big),
                ByteSize(big.size)
            ));
            v = v.with("file", short_path(big));
        }
        v.detail = detail;
        message_level.push(v.with("size", size).with("limit", limit_text));
    }
    for problem in &inspection.problems {
        message_level.push(message_uninspectable(problem));
    }

    per_file.extend(message_level);
    per_file
}

/// Paths already reported, to tell whether a file lies inside one of them.
/// Prefixes are hashed step by step: hashing every prefix of a path anew was
/// quadratic in its depth (9,000 files under 100 attached messages, 1.7 s).
#[derive(Default)]
struct ReportedPaths<'a> {
    by_hash: HashMap<u64, Vec<&'a [String]>>,
    state: std::hash::RandomState,
}

impl<'a> ReportedPaths<'a> {
    fn insert(&mut self, path: &'a [String]) {
        if let Some(hash) = self.prefix_hashes(path).last() {
            self.by_hash.entry(hash).or_default().push(path);
        }
    }

    /// True when a path reported is a proper prefix of `path`.
    fn hold_a_prefix_of(&self, path: &[String]) -> bool {
        if self.by_hash.is_empty() || path.is_empty() {
            return false;
        }
        let above = &path[..path.len() - 1];
        self.prefix_hashes(above).enumerate().any(|(n, hash)| {
            self.by_hash
                .get(&hash)
                .is_some_and(|paths| paths.iter().any(|p| *p == &path[..=n]))
        })
    }

    /// Hashes of `path[..1]`, `path[..2]`, ..., each from the one before.
    fn prefix_hashes<'p>(&self, path: &'p [String]) -> impl Iterator<Item = u64> + 'p {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = self.state.build_hasher();
        path.iter().map(move |step| {
            hasher.write(step.as_bytes());
            hasher.write_u8(0xFF);
            hasher.finish()
        })
    }
}

/// The message as a whole could not be inspected: `problem` names the limit.
pub fn message_uninspectable(problem: &str) -> Violation {
    Violation::new(
        &UNINSPECTABLE,
        format!("message cannot be inspected completely: {problem}"),
    )
    .with("file", "(message)")
    .with("limit", problem)
}

fn exec_kind(k: ExecKind) -> &'static str {
    match k {
        ExecKind::Pe => "PE executable",
        ExecKind::Dos => "DOS executable",
        ExecKind::Elf => "ELF executable",
        ExecKind::MachO => "Mach-O executable",
        ExecKind::Msi => "Windows Installer package",
        ExecKind::JavaClass => "Java class file",
        ExecKind::Script => "script (#!)",
        ExecKind::Chm => "Compiled HTML Help (CHM)",
    }
}

fn kind_name(kind: &FileKind) -> String {
    match kind {
        FileKind::Archive(a) => match a {
            ArchiveKind::Zip => "zip archive".into(),
            ArchiveKind::SevenZip => "7z archive".into(),
            ArchiveKind::Tar => "tar archive".into(),
            ArchiveKind::Gzip => "gzip file".into(),
            ArchiveKind::Bzip2 => "bzip2 file".into(),
            ArchiveKind::Xz => "xz file".into(),
            ArchiveKind::Rar4 | ArchiveKind::Rar5 => "rar archive".into(),
            ArchiveKind::Cab => "cab archive".into(),
            ArchiveKind::Iso => "iso image".into(),
            ArchiveKind::Lha => "lzh archive".into(),
            ArchiveKind::Cpio => "cpio archive".into(),
            ArchiveKind::Ar => "ar archive".into(),
            ArchiveKind::Unsupported(f) => format!("{f} archive"),
        },
        FileKind::Document(d) => format!("{d} document"),
        FileKind::Executable(k) => exec_kind(*k).into(),
        FileKind::Other(_) => "file".into(),
    }
}

/// For the reply: the name, or the path inside archives and attached messages
/// joined with " > ", shortened to its first and last steps.
pub(crate) fn short_path(f: &FileFacts) -> String {
    let parts: Vec<String> = f.path.iter().map(|p| display_name(p, 60)).collect();
    match parts.len() {
        0 => f
            .name
            .as_deref()
            .map_or_else(|| "(unnamed)".to_owned(), |n| display_name(n, 60)),
        1..=3 => parts.join(" > "),
        n => format!("{} > … > {}", parts[0], parts[n - 1]),
    }
}

/// For the log: every step, quoted: `"ho so.zip" → "setup.exe"`.
pub(crate) fn long_path(f: &FileFacts) -> String {
    if f.path.is_empty() {
        return format!(
            "\"{}\"",
            display_name(f.name.as_deref().unwrap_or("(unnamed)"), 80)
        );
    }
    f.path
        .iter()
        .map(|p| format!("\"{}\"", display_name(p, 80)))
        .collect::<Vec<_>>()
        .join(" → ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::FileFacts;

    fn facts(path: &[&str], kind: FileKind) -> FileFacts {
        FileFacts {
            sha256: None,
            path: path.iter().map(|s| s.to_string()).collect(),
            name: path.last().map(|s| s.to_string()),
            size: 10,
            kind,
            encrypted: false,
            uninspectable: None,
            signature: None,
            macros: false,
            text: None,
        }
    }

    fn other() -> FileKind {
        FileKind::Other("application/octet-stream".into())
    }

    fn run(files: Vec<FileFacts>) -> Vec<Violation> {
        let inspection = Inspection {
            files,
            ..Default::default()
        };
        evaluate(&inspection, &Policy::default())
    }

    #[test]
    fn extension_table() {
        let p = AttachmentPolicy::default();
        for (name, exe) in [
            ("hoso.pdf.exe", true),
            ("A.EXE.", true),
            ("a.exe  ", true),
            ("danh-sach.com.txt", false),
            ("yahoo.com!bacgiang.gov.vn!1700000000!1700086400.zip", false),
            ("post.htm_kopija.zip", false),
            ("report.csv", false),
            ("x.COM", true),
            ("run.Ps1", true),
            ("noext", false),
            ("x.exe\0.pdf", true),
        ] {
            assert_eq!(p.executable_extension(name).is_some(), exe, "{name:?}");
        }
        let extra = AttachmentPolicy {
            extra_executable_extensions: vec![
                "DLL".into(),
                " Ẽxe ".into(),
                "Program".into(),
                "programs".into(),
            ],
            ..Default::default()
        };
        assert!(extra.executable_extension("x.dll").is_some());
        // Not ASCII, and longer than the extensions compared as numbers.
        assert_eq!(extra.executable_extension("x.ẽXE").as_deref(), Some("ẽxe"));
        assert_eq!(
            extra.executable_extension("x.PROGRAMS").as_deref(),
            Some("programs")
        );
        assert_eq!(
            extra.executable_extension("x.Program").as_deref(),
            Some("program")
        );
        assert_eq!(extra.executable_extension("x.progra\0m"), None);
        assert_eq!(extra.executable_extension("x.progra"), None);
        assert_eq!(extra.executable_extension("x.ẽx"), None);
    }

    #[test]
    fn archive_entry_by_name_and_content() {
        let v = run(vec![
            facts(&["ho so.zip"], FileKind::Archive(ArchiveKind::Zip)),
            facts(
                &["ho so.zip", "setup.exe"],
                FileKind::Executable(ExecKind::Pe),
            ),
            facts(&["a.pdf"], FileKind::Executable(ExecKind::Elf)),
        ]);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].rule.name, "executable");
        assert_eq!(v[0].rule.article, "Điều 4 khoản 7");
        assert_eq!(v[0].var("file"), Some("ho so.zip > setup.exe"));
        assert_eq!(
            v[0].detail,
            "\"ho so.zip\" → \"setup.exe\": PE executable, named .exe"
        );
        assert_eq!(v[1].detail, "\"a.pdf\": ELF executable");
    }

    #[test]
    fn content_check_can_be_turned_off() {
        let mut policy = Policy::default();
        policy.attachments.check_content = false;
        let inspection = Inspection {
            files: vec![facts(&["a.pdf"], FileKind::Executable(ExecKind::Pe))],
            ..Default::default()
        };
        assert!(evaluate(&inspection, &policy).is_empty());
    }

    #[test]
    fn deceptive_encrypted_uninspectable() {
        let mut enc = facts(&["hoso.7z"], FileKind::Archive(ArchiveKind::SevenZip));
        enc.encrypted = true;
        let mut bomb = facts(&["big.zip"], FileKind::Archive(ArchiveKind::Zip));
        bomb.uninspectable = Some("compression ratio over 1000".into());
        let v = run(vec![
            facts(&["hoso\u{202E}fdp.exe"], other()),
            enc,
            bomb,
            facts(
                &["x.cab"],
                FileKind::Archive(ArchiveKind::Unsupported("cab")),
            ),
        ]);
        let rules: Vec<&str> = v.iter().map(|v| v.rule.name).collect();
        assert_eq!(
            rules,
            [
                "deceptive_name",
                "executable",
                "encrypted_archive",
                "uninspectable",
                "uninspectable"
            ]
        );
        assert_eq!(v[0].var("file"), Some("hoso<U+202E>fdp.exe"));
        assert!(!v[0].detail.contains('\u{202E}'));
        assert_eq!(v[3].var("limit"), Some("compression ratio over 1000"));
        assert_eq!(v[4].var("limit"), Some("cab archives cannot be opened"));
    }

    #[test]
    fn alternative_names_are_checked() {
        let inspection = Inspection {
            files: vec![facts(&["report.pdf"], other())],
            alt_names: vec![(0, "report.exe".into())],
            ..Default::default()
        };
        let v = evaluate(&inspection, &Policy::default());
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].var("file"), Some("report.pdf"));
    }

    #[test]
    fn size_and_problems() {
        let mut big = facts(&["big.bin"], other());
        big.size = 16 * 1024 * 1024;
        let inspection = Inspection {
            files: vec![big],
            attachments_size: 16 * 1024 * 1024,
            problems: vec!["more than 10000 MIME parts".into()],
            ..Default::default()
        };
        let v = evaluate(&inspection, &Policy::default());
        assert_eq!(v[0].rule.name, "attachment_size");
        assert_eq!(v[0].rule.article, "Điều 10");
        assert_eq!(v[0].var("size"), Some("16 MiB"));
        assert_eq!(v[0].var("limit"), Some("15 MiB"));
        assert_eq!(v[0].var("file"), Some("big.bin"));
        assert_eq!(v[1].rule.name, "uninspectable");
        assert_eq!(v[1].var("limit"), Some("more than 10000 MIME parts"));
        // Just over: the size is told apart from the limit.
        let inspection = Inspection {
            attachments_size: 15 * 1024 * 1024 + 1000,
            ..Default::default()
        };
        let v = evaluate(&inspection, &Policy::default());
        assert_eq!(v[0].var("size"), Some("15.00 MiB"));
        let inspection = Inspection {
            attachments_size: 15 * 1024 * 1024,
            ..Default::default()
        };
        assert!(evaluate(&inspection, &Policy::default()).is_empty());
    }

    #[test]
    fn dedupe_and_no_cap() {
        let same: Vec<FileFacts> = (0..3).map(|_| facts(&["a.exe"], other())).collect();
        assert_eq!(run(same).len(), 1);
        let many: Vec<FileFacts> = (0..100)
            .map(|i| facts(&[&format!("{i}.exe")], other()))
            .collect();
        assert_eq!(run(many).len(), 100);
    }

    #[test]
    fn reported_paths_hold_their_prefixes() {
        let steps = |n: usize| -> Vec<String> { (0..n).map(|i| format!("m{i}.eml")).collect() };
        let deep = steps(100);
        let mut reported = ReportedPaths::default();
        assert!(!reported.hold_a_prefix_of(&deep));
        reported.insert(&deep[..50]);
        assert!(reported.hold_a_prefix_of(&deep));
        assert!(reported.hold_a_prefix_of(&deep[..51]));
        // The path itself, and paths beside it, are not inside it.
        assert!(!reported.hold_a_prefix_of(&deep[..50]));
        let mut beside = deep.clone();
        beside[49] = "other.eml".into();
        assert!(!reported.hold_a_prefix_of(&beside));
        // Steps are not run together: ["ab", "c"] is not inside ["a"].
        let ab: Vec<String> = vec!["ab".into(), "c".into()];
        let a: Vec<String> = vec!["a".into()];
        let mut reported = ReportedPaths::default();
        reported.insert(&a);
        assert!(!reported.hold_a_prefix_of(&ab));
    }

    #[test]
    fn long_paths_are_shortened() {
        let f = facts(&["a.eml", "b.eml", "c.eml", "d.zip", "x.exe"], other());
        assert_eq!(short_path(&f), "a.eml > … > x.exe");
    }

    #[test]
    fn policy_file_section() {
        use crate::policy::LoadedPolicy;
        use std::path::Path;
        let ok = LoadedPolicy::from_text(
            "[attachments]\nextra_executable_extensions = [\"dll\", \"SYS\"]\ncheck_content = false\n",
            Path::new("p.toml"),
        )
        .unwrap();
        let a = &ok.policy.attachments;
        assert!(a.executable_extension("driver.sys").is_some());
        assert!(a.executable_extension("x.exe").is_some(), "defaults kept");
        assert!(!a.check_content);
        let err = LoadedPolicy::from_text(
            "[attachments]\nextra_executable_extensions = [\".dll\"]\n",
            Path::new("p.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("p.toml:2: error: attachments.extra_executable_extensions"),
            "{err}"
        );
        assert!(
            LoadedPolicy::from_text("[attachments]\nblock = []\n", Path::new("p.toml")).is_err()
        );
    }

    #[test]
    fn validation() {
        let p = AttachmentPolicy {
            executable_extensions: vec!["exe".into(), ".com".into(), "".into(), "a b".into()],
            extra_executable_extensions: vec!["tar.gz".into(), "*".into(), "DLL".into()],
            check_content: true,
        };
        let problems = p.validate(&Policy::default());
        let errors: Vec<&str> = problems
            .iter()
            .filter(|p| p.severity == crate::policy::load::Severity::Error)
            .map(|p| p.message.as_str())
            .collect();
        assert_eq!(errors.len(), 5, "{problems:?}");
        // ".com" is not "com": the warning about com shows up too.
        assert!(
            problems
                .iter()
                .any(|p| p.message.contains("\"com\" is not listed"))
        );
        assert!(
            AttachmentPolicy::default()
                .validate(&Policy::default())
                .is_empty()
        );
    }
}
