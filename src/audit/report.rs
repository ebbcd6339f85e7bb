//! The `report` command: compliance figures from audit logs, by agency, mailbox,
//! article, rule or day, as a Vietnamese summary, CSV or JSON lines.
//!
//! Streaming: each log is read a chunk at a time and each record counted as it
//! comes. What grows with the input is the group table (one row per agency,
//! mailbox, article, rule or day) and the duplicate table: for every counted
//! message with a Message-ID, a 64-bit hash of (Message-ID, sender, recipient set)
//! and 16 bytes of what it was counted as (action, day, rules, document counts),
//! 24 bytes before the hash table's slack and growth: 25–75 bytes per message
//! (311 MB peak RSS for 4.3 million messages in bench/report.sh; about 2.5 GB at
//! worst for 50 million). Two
//! messages whose hashes collide (odds about n²/2⁶⁵) would be merged. A duplicate (the submission host and the outbound
//! hop logging the same message) is counted once: when the later record is more
//! severe, the earlier counting (documents included) is taken back and the later
//! one counted instead, so a message's documents count once, from the copy that
//! counts.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use super::agency::{self, Agencies};
use super::record::{self, Action, AuditRecord, Direction, LineCounts};

/// The groups a message counts in, each once.
fn group_keys<'a>(
    by: GroupBy,
    agencies: &'a Agencies,
    rules: &'a [(String, String)],
    record: &'a AuditRecord,
    counted: &Counted,
) -> Vec<Cow<'a, str>> {
    let mut keys: Vec<Cow<str>> = match by {
        GroupBy::Agency => agencies.of_message(record),
        GroupBy::Mailbox => agency::accountable_mailboxes(record)
            .into_iter()
            .map(|m| {
                if m.bytes().any(|b| b.is_ascii_uppercase()) {
                    Cow::Owned(m.to_ascii_lowercase())
                } else {
                    Cow::Borrowed(m)
                }
            })
            .collect(),
        GroupBy::Rule => bits(counted.rules)
            .map(|i| Cow::Borrowed(&*rules[i].0))
            .collect(),
        GroupBy::Article => bits(counted.rules)
            .map(|i| Cow::Borrowed(&*rules[i].1))
            .collect(),
        GroupBy::Day => vec![Cow::Owned(counted.day().iso())],
    };
    if keys.len() > 1 {
        keys.sort_unstable();
        keys.dedup();
    }
    if keys.is_empty() {
        keys.push(Cow::Borrowed(match by {
            GroupBy::Rule | GroupBy::Article => NO_VIOLATION,
            _ => agency::UNKNOWN,
        }));
    }
    keys
}

/// What the groups of a report are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GroupBy {
    Agency,
    Mailbox,
    Article,
    Rule,
    Day,
}

impl GroupBy {
    fn column(self) -> &'static str {
        match self {
            GroupBy::Agency => "agency",
            GroupBy::Mailbox => "mailbox",
            GroupBy::Article => "article",
            GroupBy::Rule => "rule",
            GroupBy::Day => "day",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Text,
    Csv,
    Json,
}

/// `congvu-milter report`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// Audit log, plain or gzip (by content); `-` for standard input. Repeatable:
    /// the logs of several hosts and rotations.
    #[arg(long, required = true, num_args = 1..)]
    pub log: Vec<PathBuf>,
    /// First day, YYYY-MM-DD in Vietnam's time (UTC+7), inclusive.
    #[arg(long, value_name = "DATE", value_parser = parse_day)]
    pub from: Option<Day>,
    /// Last day, YYYY-MM-DD in Vietnam's time (UTC+7), inclusive.
    #[arg(long, value_name = "DATE", value_parser = parse_day)]
    pub to: Option<Day>,
    /// The groups: the sender's agency (outgoing) or each local recipient's
    /// (incoming), the same for mailboxes, the articles or rules violated, the day.
    #[arg(long, value_enum, default_value = "agency")]
    pub by: GroupBy,
    /// A Vietnamese summary, CSV with a header row, or one JSON object per group.
    #[arg(long, value_enum, default_value = "text")]
    pub format: ReportFormat,
    /// Also list, per group, the mailboxes that sent at least N refused messages.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub repeat: Option<u32>,
    /// TOML map of agency names and of addresses outside the naming convention.
    #[arg(long, value_name = "FILE")]
    pub agencies: Option<PathBuf>,
}

/// A calendar day as a count of days since 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(pub i32);

impl Day {
    fn from_civil(y: i32, m: u32, d: u32) -> Day {
        // Howard Hinnant's days_from_civil.
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy as i32;
        Day(era * 146097 + doe - 719468)
    }

    fn civil(self) -> (i32, u32, u32) {
        let z = self.0 + 719468;
        let era = z.div_euclid(146097);
        let doe = z - era * 146097;
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let y = yoe + era * 400 + i32::from(m <= 2);
        (y, m, d)
    }

    /// `YYYY-MM-DD`.
    pub fn iso(self) -> String {
        let (y, m, d) = self.civil();
        format!("{y:04}-{m:02}-{d:02}")
    }

    /// `DD/MM/YYYY`, as Vietnamese documents write dates.
    fn vietnamese(self) -> String {
        let (y, m, d) = self.civil();
        format!("{d:02}/{m:02}/{y:04}")
    }
}

fn digits(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0, |n, &b| n * 10 + u32::from(b - b'0')))
}

fn civil_day(s: &[u8]) -> Option<Day> {
    if s.len() != 10 || s[4] != b'-' || s[7] != b'-' {
        return None;
    }
    let (y, m, d) = (digits(&s[..4])?, digits(&s[5..7])?, digits(&s[8..10])?);
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let days_in_month = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    (1..=days_in_month)
        .contains(&d)
        .then(|| Day::from_civil(y as i32, m, d))
}

/// A `--from`/`--to` value.
pub fn parse_day(s: &str) -> Result<Day, String> {
    civil_day(s.as_bytes()).ok_or_else(|| format!("`{s}` is not a date YYYY-MM-DD"))
}

/// Vietnam's offset from UTC; no daylight saving time.
const VIETNAM_UTC_OFFSET_HOURS: u32 = 7;

/// The day in Vietnam of a record's UTC time (`2026-12-06T17:00:00.000Z` is
/// 2026-12-07 in Vietnam).
pub fn vietnam_day(time: &str) -> Option<Day> {
    let t = time.as_bytes();
    if t.len() < 20 || t[10] != b'T' || t[13] != b':' || !time.ends_with('Z') {
        return None;
    }
    let day = civil_day(&t[..10])?;
    let hour = digits(&t[11..13]).filter(|h| *h < 24)?;
    Some(if hour + VIETNAM_UTC_OFFSET_HOURS >= 24 {
        Day(day.0 + 1)
    } else {
        day
    })
}

/// The group named for messages without a violation in `--by rule|article`.
const NO_VIOLATION: &str = "(khong vi pham)";

/// Distinct rule names beyond this share the last one's column, `refused_other`.
const MAX_RULES: usize = 64;

/// What one message was counted as: kept per Message-ID to merge duplicates, in
/// 16 bytes (the duplicate table holds one per message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counted {
    /// Bit i: the message violated rule i of [`Report::rules`].
    rules: u64,
    /// The day in the low 24 bits, two's complement (years 0000–9999 need 23);
    /// the action's index in [`Action::ALL`] in bits 24–26; the monitor action's
    /// index plus one (0: none) in bits 27–29.
    day_and_actions: u32,
    /// Outgoing messages only: document files, and those of them signed.
    documents: u16,
    signed_documents: u16,
}

const _: () = assert!(std::mem::size_of::<Counted>() == 16);

const DAY_BITS: u32 = 24;

impl Counted {
    fn new(
        action: Action,
        monitor_action: Option<Action>,
        day: Day,
        rules: u64,
        (documents, signed_documents): (u16, u16),
    ) -> Self {
        let day_bits = (day.0 as u32) & ((1 << DAY_BITS) - 1);
        let monitor_bits = monitor_action.map_or(0, |a| a as u32 + 1);
        Counted {
            rules,
            day_and_actions: day_bits
                | (action as u32) << DAY_BITS
                | monitor_bits << (DAY_BITS + 3),
            documents,
            signed_documents,
        }
    }

    fn action(&self) -> Action {
        Action::ALL[(self.day_and_actions >> DAY_BITS & 7) as usize]
    }

    fn monitor_action(&self) -> Option<Action> {
        match self.day_and_actions >> (DAY_BITS + 3) & 7 {
            0 => None,
            i => Some(Action::ALL[i as usize - 1]),
        }
    }

    fn day(&self) -> Day {
        let shift = 32 - DAY_BITS;
        Day(((self.day_and_actions << shift) as i32) >> shift)
    }

    fn severity(&self) -> (Action, Option<Action>) {
        (self.action(), self.monitor_action())
    }
}

/// The figures of one group.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Figures {
    pub messages: i64,
    pub accepted: i64,
    pub refused: i64,
    pub quarantined: i64,
    pub tempfailed: i64,
    pub would_refuse: i64,
    /// Documents in outgoing messages (see [`DOCUMENT_TYPES`]), and those of
    /// them listed in the record's `signed_documents`.
    pub documents: i64,
    pub signed_documents: i64,
    /// Refused messages per rule, by index into [`Report::rules`].
    pub refused_by_rule: Vec<i64>,
}

impl Figures {
    fn add(&mut self, c: &Counted, sign: i64) {
        self.messages += sign;
        match c.action() {
            Action::Accept | Action::Tag => self.accepted += sign,
            Action::Reject | Action::Discard => self.refused += sign,
            Action::Quarantine => self.quarantined += sign,
            Action::Tempfail => self.tempfailed += sign,
        }
        if c.monitor_action().is_some_and(Action::refuses) {
            self.would_refuse += sign;
        }
        self.documents += sign * i64::from(c.documents);
        self.signed_documents += sign * i64::from(c.signed_documents);
        if c.action().refuses() {
            for rule in bits(c.rules) {
                if self.refused_by_rule.len() <= rule {
                    self.refused_by_rule.resize(rule + 1, 0);
                }
                self.refused_by_rule[rule] += sign;
            }
        }
    }

    fn refused_for(&self, rule: usize) -> i64 {
        self.refused_by_rule.get(rule).copied().unwrap_or(0)
    }
}

/// The detected types (the record's `files[].type`) that are documents for the
/// signed share: PDF, OOXML, ODF text/spreadsheet/presentation, legacy Office
/// and RTF.
const DOCUMENT_TYPES: [&str; 11] = [
    "application/pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.oasis.opendocument.text",
    "application/vnd.oasis.opendocument.spreadsheet",
    "application/vnd.oasis.opendocument.presentation",
    "application/msword",
    "application/vnd.ms-excel",
    "application/vnd.ms-powerpoint",
    "application/rtf",
];

/// The documents of an outgoing message (attachments and archive entries alike,
/// each file entry once) and how many of them are signed: those whose path is
/// listed in `signed_documents`. Counts past `u16::MAX` saturate (the writer
/// lists at most 1,000 files).
fn document_counts(record: &AuditRecord) -> (u16, u16) {
    if record.direction != Direction::Outgoing {
        return (0, 0);
    }
    let (mut documents, mut signed) = (0u16, 0u16);
    for file in &record.files {
        if !DOCUMENT_TYPES.contains(&&*file.file_type) {
            continue;
        }
        documents = documents.saturating_add(1);
        if record.signed_documents.iter().any(|s| s.path == file.path) {
            signed = signed.saturating_add(1);
        }
    }
    (documents, signed)
}

fn bits(mut set: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        (set != 0).then(|| {
            let i = set.trailing_zeros() as usize;
            set &= set - 1;
            i
        })
    })
}

/// The duplicate table's keys are already hashes.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("only u64 keys")
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The identity of a message for merging duplicates: Message-ID, sender and the
/// set of recipients. None without a Message-ID (never merged).
fn message_key(record: &AuditRecord) -> Option<u64> {
    let message_id = record.message_id.as_deref()?;
    let mut recipients: Vec<&str> = record.recipients.iter().map(|r| &*r.address).collect();
    recipients.sort_unstable();
    recipients.dedup();
    let mut h = std::hash::DefaultHasher::new();
    message_id.hash(&mut h);
    record.sender.hash(&mut h);
    recipients.hash(&mut h);
    Some(h.finish())
}

/// A report being built: feed records with [`Report::add`], then write it.
pub struct Report {
    by: GroupBy,
    from: Option<Day>,
    to: Option<Day>,
    repeat: Option<u32>,
    agencies: Agencies,
    /// Rule names in the order first seen, and the article of each.
    rules: Vec<(String, String)>,
    rule_index: HashMap<String, usize>,
    groups: HashMap<String, Figures>,
    total: Figures,
    /// (group, mailbox) → refused messages sent, for `--repeat`.
    offenders: HashMap<(String, String), i64>,
    total_offenders: HashMap<String, i64>,
    seen: HashMap<u64, Counted, BuildHasherDefault<PassThrough>>,
    pub duplicates: u64,
    pub out_of_period: u64,
    pub bad_time: u64,
    first_day: Option<Day>,
    last_day: Option<Day>,
}

impl Report {
    pub fn new(
        by: GroupBy,
        from: Option<Day>,
        to: Option<Day>,
        repeat: Option<u32>,
        agencies: Agencies,
    ) -> Self {
        Report {
            by,
            from,
            to,
            repeat,
            agencies,
            rules: Vec::new(),
            rule_index: HashMap::new(),
            groups: HashMap::new(),
            total: Figures::default(),
            offenders: HashMap::new(),
            total_offenders: HashMap::new(),
            seen: HashMap::default(),
            duplicates: 0,
            out_of_period: 0,
            bad_time: 0,
            first_day: None,
            last_day: None,
        }
    }

    fn rule_id(&mut self, rule: &str, article: &str) -> usize {
        if let Some(&i) = self.rule_index.get(rule) {
            return i;
        }
        if self.rules.len() == MAX_RULES - 1 {
            self.rules.push(("other".into(), String::new()));
        }
        if self.rules.len() >= MAX_RULES {
            return MAX_RULES - 1;
        }
        self.rules.push((rule.to_owned(), article.to_owned()));
        self.rule_index
            .insert(rule.to_owned(), self.rules.len() - 1);
        self.rules.len() - 1
    }

    /// Counts one record (or merges it into the message it duplicates).
    pub fn add(&mut self, record: &AuditRecord) {
        let Some(day) = vietnam_day(&record.time) else {
            self.bad_time += 1;
            return;
        };
        if self.from.is_some_and(|f| day < f) || self.to.is_some_and(|t| day > t) {
            self.out_of_period += 1;
            return;
        }
        let mut rules = 0u64;
        for v in &record.violations {
            rules |= 1 << self.rule_id(&v.rule, &v.article);
        }
        let counted = Counted::new(
            record.action,
            record.monitor_action,
            day,
            rules,
            document_counts(record),
        );
        if let Some(key) = message_key(record) {
            match self.seen.entry(key) {
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(counted);
                }
                std::collections::hash_map::Entry::Occupied(mut e) => {
                    self.duplicates += 1;
                    let earlier = *e.get();
                    if counted.severity() <= earlier.severity() {
                        return;
                    }
                    e.insert(counted);
                    self.count(record, &earlier, -1);
                }
            }
        }
        self.first_day = Some(self.first_day.map_or(day, |d| d.min(day)));
        self.last_day = Some(self.last_day.map_or(day, |d| d.max(day)));
        self.count(record, &counted, 1);
    }

    fn count(&mut self, record: &AuditRecord, counted: &Counted, sign: i64) {
        let keys = group_keys(self.by, &self.agencies, &self.rules, record, counted);
        let offender = (self.repeat.is_some()
            && counted.action().refuses()
            && record.direction == Direction::Outgoing)
            .then(|| record.sender.to_ascii_lowercase());
        for key in keys {
            if let Some(mailbox) = &offender {
                *self
                    .offenders
                    .entry((key.clone().into_owned(), mailbox.clone()))
                    .or_default() += sign;
            }
            match self.groups.get_mut(&*key) {
                Some(f) => f.add(counted, sign),
                None => {
                    let mut f = Figures::default();
                    f.add(counted, sign);
                    self.groups.insert(key.into_owned(), f);
                }
            }
        }
        if let Some(mailbox) = offender {
            *self.total_offenders.entry(mailbox).or_default() += sign;
        }
        self.total.add(counted, sign);
    }

    /// Rule indexes in column order (by name).
    fn rule_columns(&self) -> Vec<usize> {
        let mut ids: Vec<usize> = (0..self.rules.len()).collect();
        ids.sort_by(|a, b| self.rules[*a].0.cmp(&self.rules[*b].0));
        ids
    }

    fn sorted_groups(&self) -> Vec<(&String, &Figures)> {
        let mut groups: Vec<_> = self.groups.iter().filter(|(_, f)| f.messages > 0).collect();
        groups.sort_by(|a, b| a.0.cmp(b.0));
        groups
    }

    /// Mailboxes with at least `--repeat` refusals, most first.
    fn repeat_offenders<'a>(&'a self, group: Option<&str>) -> Vec<(&'a str, i64)> {
        let Some(n) = self.repeat else {
            return Vec::new();
        };
        let mut out: Vec<(&str, i64)> = match group {
            Some(g) => self
                .offenders
                .iter()
                .filter(|((k, _), c)| k == g && **c >= i64::from(n))
                .map(|((_, m), c)| (m.as_str(), *c))
                .collect(),
            None => self
                .total_offenders
                .iter()
                .filter(|(_, c)| **c >= i64::from(n))
                .map(|(m, c)| (m.as_str(), *c))
                .collect(),
        };
        out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        out
    }

    pub fn total(&self) -> &Figures {
        &self.total
    }

    pub fn write_csv(&self, out: &mut impl Write) -> io::Result<()> {
        let rules = self.rule_columns();
        let mut header = vec![self.by.column().to_owned()];
        header.extend(
            [
                "messages",
                "accepted",
                "refused",
                "quarantined",
                "tempfailed",
                "would_refuse",
                "documents",
                "signed_documents",
                SIGNED_SHARE,
            ]
            .map(String::from),
        );
        header.extend(
            rules
                .iter()
                .map(|&i| format!("refused_{}", self.rules[i].0)),
        );
        if self.repeat.is_some() {
            header.push("repeat_mailboxes".into());
        }
        writeln!(
            out,
            "{}",
            header
                .iter()
                .map(|h| csv_field(h))
                .collect::<Vec<_>>()
                .join(",")
        )?;
        for (key, f) in self.sorted_groups() {
            let mut row = vec![csv_field(key)];
            row.extend(main_columns(f).map(|(_, v)| v.to_string()));
            row.push(signed_share(f));
            row.extend(rules.iter().map(|&i| f.refused_for(i).to_string()));
            if self.repeat.is_some() {
                let list: Vec<&str> = self
                    .repeat_offenders(Some(key))
                    .into_iter()
                    .map(|(m, _)| m)
                    .collect();
                row.push(csv_field(&list.join(" ")));
            }
            writeln!(out, "{}", row.join(","))?;
        }
        Ok(())
    }

    pub fn write_json(&self, out: &mut impl Write) -> io::Result<()> {
        let rules = self.rule_columns();
        for (key, f) in self.sorted_groups() {
            let mut line = format!("{{{}:{}", json_str(self.by.column()), json_str(key));
            if self.by == GroupBy::Agency
                && let Some(name) = self.agencies.name(key)
            {
                line += &format!(",\"name\":{}", json_str(name));
            }
            for (column, v) in main_columns(f) {
                line += &format!(",\"{column}\":{v}");
            }
            match tenths_of_percent(f.signed_documents, f.documents) {
                Some(_) => line += &format!(",\"{SIGNED_SHARE}\":{}", signed_share(f)),
                None => line += &format!(",\"{SIGNED_SHARE}\":null"),
            }
            for &i in &rules {
                line += &format!(
                    ",{}:{}",
                    json_str(&format!("refused_{}", self.rules[i].0)),
                    f.refused_for(i)
                );
            }
            if self.repeat.is_some() {
                let list: Vec<serde_json::Value> = self
                    .repeat_offenders(Some(key))
                    .into_iter()
                    .map(|(m, c)| serde_json::json!({"mailbox": m, "refused": c}))
                    .collect();
                line += &format!(",\"repeat_mailboxes\":{}", serde_json::Value::Array(list));
            }
            line.push('}');
            writeln!(out, "{line}")?;
        }
        Ok(())
    }

    /// The Vietnamese summary for the yearly report.
    pub fn write_text(
        &self,
        out: &mut impl Write,
        counts: &LineCounts,
        files: usize,
    ) -> io::Result<()> {
        let t = &self.total;
        writeln!(
            out,
            "BÁO CÁO TÌNH HÌNH THỰC HIỆN QUY CHẾ QUẢN LÝ, SỬ DỤNG THƯ ĐIỆN TỬ CÔNG VỤ"
        )?;
        let (from, to) = (self.from.or(self.first_day), self.to.or(self.last_day));
        match (from, to) {
            (Some(f), Some(l)) => writeln!(
                out,
                "Kỳ báo cáo: từ ngày {} đến ngày {} (giờ Việt Nam)",
                f.vietnamese(),
                l.vietnamese()
            )?,
            _ => writeln!(out, "Kỳ báo cáo: không có thư nào trong kỳ")?,
        }
        writeln!(
            out,
            "Nguồn số liệu: {} tệp nhật ký, {} bản ghi; {} bản ghi trùng (cùng một thư ghi ở hai máy chủ) được tính một lần.",
            files,
            number(counts.records as i64),
            number(self.duplicates as i64)
        )?;
        writeln!(out)?;
        writeln!(out, "1. Tổng hợp chung")?;
        writeln!(out, "- Tổng số thư được kiểm tra: {}", number(t.messages))?;
        writeln!(
            out,
            "- Chấp nhận: {}{}",
            number(t.accepted),
            percent(t.accepted, t.messages)
        )?;
        writeln!(
            out,
            "- Từ chối: {}{}",
            number(t.refused),
            percent(t.refused, t.messages)
        )?;
        for i in self.rule_columns() {
            let n = t.refused_for(i);
            if n > 0 {
                let (rule, article) = &self.rules[i];
                let article = if article.is_empty() {
                    String::new()
                } else {
                    format!(" ({article})")
                };
                writeln!(out, "  + {rule}{article}: {}", number(n))?;
            }
        }
        writeln!(out, "- Cách ly: {}", number(t.quarantined))?;
        writeln!(
            out,
            "- Tạm hoãn (lỗi tạm thời, máy gửi thử lại): {}",
            number(t.tempfailed)
        )?;
        if t.would_refuse > 0 {
            writeln!(
                out,
                "- Sẽ bị từ chối nếu áp dụng (chế độ giám sát): {}",
                number(t.would_refuse)
            )?;
        }
        writeln!(
            out,
            "- Văn bản điện tử gửi đi có chữ ký số: {}/{}{}",
            number(t.signed_documents),
            number(t.documents),
            percent(t.signed_documents, t.documents)
        )?;
        writeln!(out)?;
        let heading = match self.by {
            GroupBy::Agency => "Theo cơ quan, đơn vị",
            GroupBy::Mailbox => "Theo hộp thư",
            GroupBy::Article => "Theo điều, khoản của Quy chế",
            GroupBy::Rule => "Theo quy tắc kiểm tra",
            GroupBy::Day => "Theo ngày",
        };
        writeln!(out, "2. {heading}")?;
        for (key, f) in self.sorted_groups() {
            let label = match (self.by, self.agencies.name(key)) {
                (GroupBy::Agency, Some(name)) => format!("{name} ({key})"),
                _ => key.clone(),
            };
            let mut line = format!(
                "- {label}: {} thư; chấp nhận {}; từ chối {}",
                number(f.messages),
                number(f.accepted),
                number(f.refused)
            );
            let by_rule: Vec<String> = self
                .rule_columns()
                .into_iter()
                .filter(|&i| f.refused_for(i) > 0)
                .map(|i| format!("{} {}", self.rules[i].0, number(f.refused_for(i))))
                .collect();
            if !by_rule.is_empty() {
                line += &format!(" ({})", by_rule.join(", "));
            }
            line += &format!(
                "; cách ly {}; tạm hoãn {}",
                number(f.quarantined),
                number(f.tempfailed)
            );
            if f.would_refuse > 0 {
                line += &format!("; sẽ bị từ chối (giám sát) {}", number(f.would_refuse));
            }
            if f.documents > 0 {
                line += &format!(
                    "; văn bản có chữ ký số {}/{}{}",
                    number(f.signed_documents),
                    number(f.documents),
                    percent(f.signed_documents, f.documents)
                );
            }
            writeln!(out, "{line}.")?;
        }
        if let Some(n) = self.repeat {
            writeln!(out)?;
            writeln!(out, "3. Hộp thư gửi thư bị từ chối từ {n} lần trở lên")?;
            let offenders = self.repeat_offenders(None);
            if offenders.is_empty() {
                writeln!(out, "- Không có.")?;
            }
            for (mailbox, c) in offenders {
                writeln!(out, "- {mailbox}: {} lần", number(c))?;
            }
        }
        Ok(())
    }
}

fn main_columns(f: &Figures) -> [(&'static str, i64); 8] {
    [
        ("messages", f.messages),
        ("accepted", f.accepted),
        ("refused", f.refused),
        ("quarantined", f.quarantined),
        ("tempfailed", f.tempfailed),
        ("would_refuse", f.would_refuse),
        ("documents", f.documents),
        ("signed_documents", f.signed_documents),
    ]
}

/// The column after [`main_columns`]: signed documents as a share of documents.
const SIGNED_SHARE: &str = "signed_share";

/// `part` as a percentage of `whole` in tenths, rounded half up; None when
/// `whole` is 0.
fn tenths_of_percent(part: i64, whole: i64) -> Option<i64> {
    (whole != 0).then(|| (part * 1000 + whole / 2) / whole)
}

/// The signed share for CSV and JSON: `12.5`, empty when there are no documents.
fn signed_share(f: &Figures) -> String {
    tenths_of_percent(f.signed_documents, f.documents)
        .map_or_else(String::new, |t| format!("{}.{}", t / 10, t % 10))
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

/// 1234567 → "1.234.567", as Vietnamese documents group digits.
fn number(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('.');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn percent(part: i64, whole: i64) -> String {
    tenths_of_percent(part, whole)
        .map_or_else(String::new, |t| format!(" ({},{}%)", t / 10, t % 10))
}

/// Progress on standard error for large inputs: every [`PROGRESS_EVERY`] bytes
/// read when standard error is a terminal or an input file is over
/// [`LARGE_INPUT`].
pub struct Progress {
    enabled: bool,
    next: u64,
    started: Instant,
}

const PROGRESS_EVERY: u64 = 256 << 20;
const LARGE_INPUT: u64 = 1 << 30;

impl Progress {
    pub fn new(logs: &[PathBuf]) -> Self {
        let large = logs
            .iter()
            .any(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > LARGE_INPUT));
        Progress {
            enabled: io::stderr().is_terminal() || large,
            next: PROGRESS_EVERY,
            started: Instant::now(),
        }
    }

    pub fn update(&mut self, counts: &LineCounts) {
        if !self.enabled || counts.bytes < self.next {
            return;
        }
        self.next = counts.bytes + PROGRESS_EVERY;
        let mb = counts.bytes as f64 / 1e6;
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        eprintln!(
            "congvu-milter: {mb:.0} MB read, {} records, {:.0} MB/s",
            counts.records,
            mb / secs
        );
    }
}

/// Reads every log, handing each record to `on_record`. A log that cannot be
/// opened stops the run (exit 2); a read error inside one (a truncated gzip file)
/// is reported and the next log read.
pub fn read_logs(
    command: &str,
    logs: &[PathBuf],
    counts: &mut LineCounts,
    mut on_record: impl FnMut(&AuditRecord),
) -> Result<(), ExitCode> {
    let mut progress = Progress::new(logs);
    for path in logs {
        let name = path.display().to_string();
        let input = record::open_log(path).map_err(|e| {
            eprintln!("congvu-milter {command}: {name}: {e}");
            ExitCode::from(2)
        })?;
        if let Err(e) =
            record::for_each_record(&name, input, counts, |c| progress.update(c), &mut on_record)
        {
            eprintln!("congvu-milter {command}: {name}: read error, rest of the file skipped: {e}");
        }
    }
    Ok(())
}

/// `congvu-milter report`.
pub fn run(args: &ReportArgs) -> ExitCode {
    let agencies = match &args.agencies {
        Some(path) => match Agencies::load(path) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("congvu-milter report: {e}");
                return ExitCode::from(2);
            }
        },
        None => Agencies::default(),
    };
    if let (Some(f), Some(t)) = (args.from, args.to)
        && f > t
    {
        eprintln!(
            "congvu-milter report: --from {} is after --to {}",
            f.iso(),
            t.iso()
        );
        return ExitCode::from(2);
    }
    let mut report = Report::new(args.by, args.from, args.to, args.repeat, agencies);
    let mut counts = LineCounts::default();
    if let Err(code) = read_logs("report", &args.log, &mut counts, |r| report.add(r)) {
        return code;
    }
    let mut out = io::BufWriter::new(io::stdout().lock());
    let written = match args.format {
        ReportFormat::Text => report.write_text(&mut out, &counts, args.log.len()),
        ReportFormat::Csv => report.write_csv(&mut out),
        ReportFormat::Json => report.write_json(&mut out),
    }
    .and_then(|()| out.flush());
    if let Err(e) = written {
        eprintln!("congvu-milter report: writing the report: {e}");
        return ExitCode::from(2);
    }
    eprint!("{}", counts.summary());
    if report.bad_time > 0 {
        eprintln!(
            "{} audit records skipped: time not RFC 3339 UTC",
            report.bad_time
        );
    }
    eprintln!(
        "{} records read, {} duplicates merged, {} outside the period",
        counts.records, report.duplicates, report.out_of_period
    );
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::tests::sample;
    use crate::audit::record::{FileEntry, Recipient, SignedDocument, ViolationEntry};

    fn refused(message_id: Option<&str>, rule: &str) -> AuditRecord<'static> {
        let mut r = sample(message_id, Action::Reject);
        r.violations.push(ViolationEntry {
            rule: rule.to_owned().into(),
            article: "Điều 4 khoản 7".into(),
            path: vec![],
        });
        r
    }

    fn csv(report: &Report) -> String {
        let mut out = Vec::new();
        report.write_csv(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn text(report: &Report) -> String {
        let mut out = Vec::new();
        report
            .write_text(&mut out, &LineCounts::default(), 1)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    fn report(by: GroupBy) -> Report {
        Report::new(by, None, None, None, Agencies::default())
    }

    #[test]
    fn vietnam_day_crosses_midnight_at_17_utc() {
        let d = |s| vietnam_day(s).map(Day::iso);
        assert_eq!(d("2026-12-31T16:59:59.999Z").as_deref(), Some("2026-12-31"));
        assert_eq!(d("2026-12-31T17:00:00.000Z").as_deref(), Some("2027-01-01"));
        assert_eq!(d("2024-02-28T20:00:00.000Z").as_deref(), Some("2024-02-29"));
        assert_eq!(d("2026-02-29T01:00:00.000Z"), None);
        assert_eq!(d("2026-12-31 17:00:00"), None);
        assert_eq!(parse_day("2026-01-01").unwrap().iso(), "2026-01-01");
        assert!(parse_day("2026-13-01").is_err());
        assert_eq!(Day::from_civil(1970, 1, 1), Day(0));
    }

    #[test]
    fn period_bounds_are_inclusive_in_vietnam_time() {
        let from = parse_day("2026-01-01").ok();
        let to = parse_day("2026-06-30").ok();
        let mut rep = Report::new(GroupBy::Day, from, to, None, Agencies::default());
        for (time, id) in [
            ("2025-12-31T16:59:59.999Z", "<a@x>"), // 2025-12-31 23:59 in Vietnam: out
            ("2025-12-31T17:00:00.000Z", "<b@x>"), // 2026-01-01 00:00: in
            ("2026-06-30T16:59:59.999Z", "<c@x>"), // 2026-06-30 23:59: in
            ("2026-06-30T17:00:00.000Z", "<d@x>"), // 2026-07-01 00:00: out
        ] {
            let mut r = sample(Some(id), Action::Accept);
            r.time = time.into();
            rep.add(&r);
        }
        assert_eq!(rep.total().messages, 2);
        assert_eq!(rep.out_of_period, 2);
        let out = csv(&rep);
        assert!(out.contains("\n2026-01-01,1,1,"), "{out}");
        assert!(out.contains("\n2026-06-30,1,1,"), "{out}");
    }

    #[test]
    fn duplicates_count_once_and_the_most_severe_action_wins() {
        let mut rep = report(GroupBy::Agency);
        rep.add(&sample(Some("<m1@x>"), Action::Accept));
        let mut outbound = refused(Some("<m1@x>"), "executable");
        outbound.host = "relay".into();
        // Same recipient set in another order.
        outbound.recipients.reverse();
        rep.add(&outbound);
        // A less severe third copy does not undo the refusal.
        rep.add(&sample(Some("<m1@x>"), Action::Tempfail));
        assert_eq!(rep.duplicates, 2);
        let t = rep.total();
        assert_eq!(
            (t.messages, t.accepted, t.refused, t.tempfailed),
            (1, 0, 1, 0)
        );
        assert_eq!(
            csv(&rep),
            "agency,messages,accepted,refused,quarantined,tempfailed,would_refuse,documents,signed_documents,signed_share,refused_executable\n\
             stttt,1,0,1,0,0,0,0,0,,1\n"
        );
    }

    #[test]
    fn records_without_message_id_or_with_other_recipients_are_not_merged() {
        let mut rep = report(GroupBy::Agency);
        rep.add(&sample(None, Action::Accept));
        rep.add(&sample(None, Action::Accept));
        rep.add(&sample(Some("<m@x>"), Action::Accept));
        let mut other = sample(Some("<m@x>"), Action::Accept);
        other.recipients.push(Recipient {
            address: "c@x".into(),
            local: false,
        });
        rep.add(&other);
        assert_eq!((rep.total().messages, rep.duplicates), (4, 0));
    }

    #[test]
    fn by_rule_and_article_moves_a_message_when_a_duplicate_supersedes_it() {
        let mut rep = report(GroupBy::Rule);
        rep.add(&sample(Some("<m@x>"), Action::Accept));
        rep.add(&refused(Some("<m@x>"), "virus"));
        rep.add(&refused(Some("<n@x>"), "executable"));
        assert_eq!(
            csv(&rep),
            "rule,messages,accepted,refused,quarantined,tempfailed,would_refuse,documents,signed_documents,signed_share,refused_executable,refused_virus\n\
             executable,1,0,1,0,0,0,0,0,,1,0\n\
             virus,1,0,1,0,0,0,0,0,,0,1\n"
        );
        let mut rep = report(GroupBy::Article);
        rep.add(&sample(Some("<m@x>"), Action::Tag));
        rep.add(&refused(Some("<n@x>"), "executable"));
        let out = csv(&rep);
        assert!(out.contains("\n(khong vi pham),1,1,0,"), "{out}");
        assert!(out.contains("\nĐiều 4 khoản 7,1,0,1,"), "{out}");
    }

    /// An outgoing message with a signed PDF, an unsigned docx, a signed odt and
    /// an unsigned xls inside a zip, and a picture.
    fn with_documents(message_id: &str, action: Action) -> AuditRecord<'static> {
        let mut r = sample(Some(message_id), action);
        let file = |path: &[&'static str], file_type: &'static str| FileEntry {
            path: path.iter().map(|p| Cow::Borrowed(*p)).collect(),
            size: 10,
            file_type: file_type.into(),
            sha256: None,
        };
        r.files = vec![
            file(&["ky_so.pdf"], "application/pdf"),
            file(
                &["ban_thao.docx"],
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            ),
            file(&["anh.jpg"], "image/jpeg"),
            file(&["ho_so.zip"], "application/zip"),
            file(
                &["ho_so.zip", "to_trinh.odt"],
                "application/vnd.oasis.opendocument.text",
            ),
            file(&["ho_so.zip", "bang.xls"], "application/vnd.ms-excel"),
        ];
        r.signed_documents = vec![
            SignedDocument {
                path: vec!["ky_so.pdf".into()],
                format: "pdf".into(),
            },
            SignedDocument {
                path: vec!["ho_so.zip".into(), "to_trinh.odt".into()],
                format: "odf".into(),
            },
        ];
        r
    }

    #[test]
    fn signed_share_counts_outgoing_documents_once_per_message() {
        let mut rep = report(GroupBy::Agency);
        rep.add(&with_documents("<m@x>", Action::Accept));
        // The outbound hop's copy, equally severe, then a more severe one: the
        // documents are taken back with the earlier counting, never added twice.
        let mut relay = with_documents("<m@x>", Action::Accept);
        relay.host = "relay".into();
        rep.add(&relay);
        relay.action = Action::Quarantine;
        rep.add(&relay);
        // Incoming mail's documents are not the agency's outgoing documents.
        let mut incoming = with_documents("<n@x>", Action::Accept);
        incoming.direction = Direction::Incoming;
        rep.add(&incoming);
        let t = rep.total();
        assert_eq!(
            (t.messages, t.documents, t.signed_documents, rep.duplicates),
            (2, 4, 2, 2)
        );
        // The incoming message counts under its local recipient's agency, without
        // documents; the outgoing one once, quarantined.
        assert_eq!(
            csv(&rep).lines().skip(1).collect::<Vec<_>>(),
            [
                "baodai_lucnam,1,1,0,0,0,0,0,0,",
                "stttt,1,0,0,1,0,0,4,2,50.0"
            ]
        );
        let mut json = Vec::new();
        rep.write_json(&mut json).unwrap();
        let lines: Vec<serde_json::Value> = serde_json::Deserializer::from_slice(&json)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(lines[0]["signed_share"], serde_json::Value::Null);
        assert_eq!(lines[1]["signed_share"], 50.0);
        let text = text(&rep);
        assert!(
            text.contains("- Văn bản điện tử gửi đi có chữ ký số: 2/4 (50,0%)"),
            "{text}"
        );
        assert!(text.contains("văn bản có chữ ký số 2/4 (50,0%)."), "{text}");
    }

    #[test]
    fn counted_keeps_every_action_and_the_days_of_years_0000_to_9999() {
        let days = [
            parse_day("0000-01-01").unwrap(),
            Day(-1),
            Day(0),
            parse_day("2026-12-06").unwrap(),
            parse_day("9999-12-31").unwrap(),
        ];
        for day in days {
            for action in Action::ALL {
                for monitor in std::iter::once(None).chain(Action::ALL.map(Some)) {
                    let c = Counted::new(action, monitor, day, 1 << 63, (1000, 999));
                    assert_eq!(
                        (c.day(), c.action(), c.monitor_action(), c.rules),
                        (day, action, monitor, 1 << 63)
                    );
                    assert_eq!((c.documents, c.signed_documents), (1000, 999));
                }
            }
        }
    }

    #[test]
    fn signed_share_rounds_to_a_tenth_and_is_empty_without_documents() {
        let mut f = Figures::default();
        assert_eq!(signed_share(&f), "");
        f.documents = 3;
        f.signed_documents = 2;
        assert_eq!(signed_share(&f), "66.7");
        f.documents = 7;
        f.signed_documents = 7;
        assert_eq!(signed_share(&f), "100.0");
    }

    #[test]
    fn monitor_mode_counts_would_refuse() {
        let mut rep = report(GroupBy::Agency);
        let mut r = sample(Some("<m@x>"), Action::Accept);
        r.monitor_action = Some(Action::Discard);
        rep.add(&r);
        let mut r = sample(Some("<n@x>"), Action::Accept);
        r.monitor_action = Some(Action::Tempfail);
        rep.add(&r);
        assert_eq!((rep.total().accepted, rep.total().would_refuse), (2, 1));
    }

    #[test]
    fn repeat_lists_senders_with_at_least_n_refusals() {
        let mut rep = Report::new(GroupBy::Agency, None, None, Some(2), Agencies::default());
        for i in 0..3 {
            rep.add(&refused(Some(&format!("<{i}@x>")), "executable"));
        }
        let mut once = refused(Some("<z@x>"), "executable");
        once.sender = "lan_stttt@bacgiang.gov.vn".into();
        rep.add(&once);
        let out = csv(&rep);
        assert!(
            out.lines().next().unwrap().ends_with(",repeat_mailboxes"),
            "{out}"
        );
        assert!(
            out.contains("\nstttt,4,0,4,0,0,0,0,0,,4,ngocnt_stttt@bacgiang.gov.vn\n"),
            "{out}"
        );
        let text = text(&rep);
        assert!(
            text.contains("- ngocnt_stttt@bacgiang.gov.vn: 3 lần"),
            "{text}"
        );
        assert!(!text.contains("lan_stttt@bacgiang.gov.vn: "), "{text}");
    }

    #[test]
    fn agencies_map_names_groups_in_json_and_text() {
        let agencies = Agencies::parse(
            "[agencies]\nstttt = \"Sở Thông tin và Truyền thông\"\n[addresses]\n\"vanthu@bacgiang.gov.vn\" = \"stttt\"\n",
        )
        .unwrap();
        let mut rep = Report::new(GroupBy::Agency, None, None, None, agencies);
        rep.add(&sample(Some("<a@x>"), Action::Accept));
        let mut r = sample(Some("<b@x>"), Action::Accept);
        r.sender = "vanthu@bacgiang.gov.vn".into();
        rep.add(&r);
        let mut r = sample(Some("<c@x>"), Action::Accept);
        r.sender = "admin@bacgiang.gov.vn".into();
        rep.add(&r);
        let mut out = Vec::new();
        rep.write_json(&mut out).unwrap();
        let lines: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["agency"], "(khong ro)");
        assert_eq!(lines[1]["agency"], "stttt");
        assert_eq!(lines[1]["name"], "Sở Thông tin và Truyền thông");
        assert_eq!(lines[1]["messages"], 2);
    }

    #[test]
    fn csv_quotes_fields_and_numbers_use_vietnamese_grouping() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"x\""), "\"say \"\"x\"\"\"");
        assert_eq!(number(1234567), "1.234.567");
        assert_eq!(number(12), "12");
        assert_eq!(percent(1, 3), " (33,3%)");
    }
}

#[cfg(test)]
mod arbitrary_input {
    use super::*;
    use proptest::prelude::*;

    fn run_report(log: &[u8]) -> LineCounts {
        let mut report = Report::new(GroupBy::Rule, None, None, Some(1), Agencies::default());
        let mut counts = LineCounts::default();
        record::for_each_record("p", log, &mut counts, |_| {}, |r| report.add(r)).unwrap();
        report.write_text(&mut Vec::new(), &counts, 1).unwrap();
        report.write_csv(&mut Vec::new()).unwrap();
        counts
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Any bytes: no panic, and every non-empty line is counted once.
        #[test]
        fn arbitrary_bytes_are_counted_never_fatal(log in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let counts = run_report(&log);
            let lines = log.split(|&b| b == b'\n').filter(|l| !l.trim_ascii().is_empty()).count() as u64;
            prop_assert_eq!(counts.records + counts.other + counts.malformed, lines);
        }

        /// A record cut anywhere is malformed, never a panic or a record.
        #[test]
        fn truncated_records_are_malformed(cut in 11usize..600) {
            let mut r = crate::audit::record::tests::sample(Some("<m@x>"), Action::Reject);
            r.violations.push(crate::audit::record::ViolationEntry { rule: "executable".into(), article: "Điều 4 khoản 7".into(), path: vec![] });
            let line = serde_json::to_vec(&r).unwrap();
            let cut = cut.min(line.len() - 1);
            let counts = run_report(&line[..cut]);
            prop_assert_eq!((counts.records, counts.malformed), (0, 1));
        }
    }
}
