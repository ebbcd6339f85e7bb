//! The audit record, schema 1 (one JSON object per message, one per line): the one
//! definition shared by the daemon that writes it and by `report`/`trace` that read
//! it, and the reader of audit logs (plain or gzip, several files, stdin).
//!
//! Strings are `Cow<str>` borrowed from the line when the JSON has no escapes, so
//! reading a record copies little; field order is the order of the schema.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The value of the record's `audit` field.
pub const SCHEMA_VERSION: u32 = 1;

/// One message's audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord<'a> {
    pub audit: u32,
    /// UTC, RFC 3339 with milliseconds and `Z`.
    #[serde(borrow)]
    pub time: Cow<'a, str>,
    #[serde(borrow)]
    pub host: Cow<'a, str>,
    #[serde(borrow)]
    pub instance: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub queue_id: Option<Cow<'a, str>>,
    /// As written in the header, angle brackets included.
    #[serde(borrow)]
    pub message_id: Option<Cow<'a, str>>,
    /// Envelope sender without angle brackets; "" for the null sender.
    #[serde(borrow)]
    pub sender: Cow<'a, str>,
    #[serde(borrow)]
    pub sasl_login: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub recipients: Vec<Recipient<'a>>,
    #[serde(borrow)]
    pub client_addr: Option<Cow<'a, str>>,
    pub direction: Direction,
    pub action: Action,
    pub monitor_action: Option<Action>,
    #[serde(borrow)]
    pub reply: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub violations: Vec<ViolationEntry<'a>>,
    #[serde(borrow)]
    pub files: Vec<FileEntry<'a>>,
    pub files_omitted: u64,
    #[serde(borrow)]
    pub signed_documents: Vec<SignedDocument<'a>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient<'a> {
    #[serde(borrow)]
    pub address: Cow<'a, str>,
    /// The address's domain is in the policy's `[domains] local`.
    pub local: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Outgoing,
    Incoming,
}

/// What was done with the message. The declaration order is the severity order
/// for merging duplicates, least severe first (`Ord`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Accept,
    Tag,
    Tempfail,
    Quarantine,
    Discard,
    Reject,
}

impl Action {
    pub const ALL: [Action; 6] = [
        Action::Accept,
        Action::Tag,
        Action::Tempfail,
        Action::Quarantine,
        Action::Discard,
        Action::Reject,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Accept => "accept",
            Action::Tag => "tag",
            Action::Tempfail => "tempfail",
            Action::Quarantine => "quarantine",
            Action::Discard => "discard",
            Action::Reject => "reject",
        }
    }

    /// Reject and discard: the message did not reach its recipients.
    pub fn refuses(self) -> bool {
        matches!(self, Action::Reject | Action::Discard)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViolationEntry<'a> {
    #[serde(borrow)]
    pub rule: Cow<'a, str>,
    #[serde(borrow)]
    pub article: Cow<'a, str>,
    /// Attachment name then entry names; empty for the message itself.
    #[serde(borrow)]
    pub path: Vec<Cow<'a, str>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry<'a> {
    #[serde(borrow)]
    pub path: Vec<Cow<'a, str>>,
    pub size: u64,
    #[serde(borrow, rename = "type")]
    pub file_type: Cow<'a, str>,
    /// Lower-case hex SHA-256 of the decoded bytes; null when not all were read.
    #[serde(borrow)]
    pub sha256: Option<Cow<'a, str>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedDocument<'a> {
    #[serde(borrow)]
    pub path: Vec<Cow<'a, str>>,
    #[serde(borrow)]
    pub format: Cow<'a, str>,
}

/// What one log line is to a reader.
#[derive(Debug)]
pub enum Line<'a> {
    Record(Box<AuditRecord<'a>>),
    /// Not an audit record of this schema: another log line, another version.
    Other,
    /// Looks like a schema-1 record but does not parse (truncated, corrupted).
    Malformed(String),
}

/// What the writer always starts a record with (field order of the schema): the
/// cheap test that lets a reader skip other log lines without parsing them.
const RECORD_PREFIX: &[u8] = br#"{"audit":1,"#;

/// Classifies and parses one line (without its newline).
pub fn parse_line(line: &[u8]) -> Line<'_> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.starts_with(RECORD_PREFIX) {
        return match serde_json::from_slice::<AuditRecord>(line) {
            Ok(r) => Line::Record(Box::new(r)),
            Err(e) => Line::Malformed(e.to_string()),
        };
    }
    let trimmed = line.trim_ascii_start();
    if !trimmed.starts_with(b"{") {
        return Line::Other;
    }
    // A record written by another JSON writer (spaces, another field order).
    match serde_json::from_slice::<AuditRecord>(trimmed) {
        Ok(r) if r.audit == SCHEMA_VERSION => Line::Record(Box::new(r)),
        Ok(_) => Line::Other,
        Err(e) => {
            #[derive(Deserialize)]
            struct Version {
                audit: Option<serde_json::Value>,
            }
            match serde_json::from_slice::<Version>(trimmed) {
                Ok(Version { audit: Some(v) }) if v == SCHEMA_VERSION => {
                    Line::Malformed(e.to_string())
                }
                Ok(_) => Line::Other,
                // Not even a JSON object: a schema-1 record cut short, or another log.
                Err(_) if memchr::memmem::find(trimmed, br#""audit":1,"#).is_some() => {
                    Line::Malformed(e.to_string())
                }
                Err(_) => Line::Other,
            }
        }
    }
}

/// Longest line kept in memory; a longer one is counted malformed and skipped.
/// A record with 1,000 files is about 250 KB.
pub const MAX_LINE: usize = 16 << 20;

const CHUNK: usize = 1 << 20;

/// Opens an audit log: `-` is standard input; see [`decompressed`].
pub fn open_log(path: &Path) -> io::Result<Box<dyn Read>> {
    let raw: Box<dyn Read> = if path.as_os_str() == "-" {
        Box::new(io::stdin().lock())
    } else {
        Box::new(File::open(path)?)
    };
    decompressed(BufReader::with_capacity(CHUNK, raw))
}

/// The log's lines: gzip (logrotate's `.gz`, also concatenated members) is
/// recognised by its magic bytes, whatever the file's name.
pub fn decompressed<'a>(mut input: impl io::BufRead + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let head = input.fill_buf()?;
    // A pipe may hand over a single byte first; no text log starts with 0x1f.
    let gzip = head.starts_with(&[0x1f, 0x8b]) || head == [0x1f];
    if gzip {
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(input)))
    } else {
        Ok(Box::new(input))
    }
}

/// Counts of what a reader met besides records.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LineCounts {
    pub records: u64,
    pub other: u64,
    pub malformed: u64,
    /// Where the first malformed line was and why (`FILE:LINE: error`).
    pub first_malformed: Option<String>,
    pub bytes: u64,
}

impl LineCounts {
    /// The lines a run skipped, for standard error (empty when none).
    pub fn summary(&self) -> String {
        let mut out = String::new();
        if self.other > 0 {
            out += &format!(
                "{} lines skipped: not audit records of schema 1\n",
                self.other
            );
        }
        if self.malformed > 0 {
            out += &format!(
                "{} malformed or truncated audit lines skipped (first: {})\n",
                self.malformed,
                self.first_malformed.as_deref().unwrap_or("?")
            );
        }
        out
    }
}

/// Reads the lines of one log in chunks, hands each audit record to `on_record`,
/// and counts the rest. Memory: one chunk plus the longest line (at most
/// [`MAX_LINE`]). `progress` is called after each chunk with the bytes read so far.
pub fn for_each_record(
    name: &str,
    mut input: impl Read,
    counts: &mut LineCounts,
    mut progress: impl FnMut(&LineCounts),
    mut on_record: impl FnMut(&AuditRecord),
) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    let mut filled = 0;
    let mut line_no = 0u64;
    // Skipping the rest of an overlong line.
    let mut discarding = false;
    loop {
        if filled == buf.len() {
            if buf.len() >= MAX_LINE {
                counts.malformed += 1;
                counts.first_malformed.get_or_insert_with(|| {
                    format!("{name}:{}: line longer than {MAX_LINE} bytes", line_no + 1)
                });
                discarding = true;
                filled = 0;
            } else {
                buf.resize(buf.len() * 2, 0);
            }
        }
        let n = match input.read(&mut buf[filled..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        counts.bytes += n as u64;
        let end = filled + n;
        let mut start = 0;
        let mut scan_from = filled;
        while let Some(pos) = memchr::memchr(b'\n', &buf[scan_from..end]) {
            let line_end = scan_from + pos;
            line_no += 1;
            if discarding {
                discarding = false;
            } else {
                handle_line(name, line_no, &buf[start..line_end], counts, &mut on_record);
            }
            start = line_end + 1;
            scan_from = start;
        }
        if n == 0 {
            // End of input: a last line without newline (often a truncated write).
            if start < end && !discarding {
                line_no += 1;
                handle_line(name, line_no, &buf[start..end], counts, &mut on_record);
            }
            return Ok(());
        }
        buf.copy_within(start..end, 0);
        filled = end - start;
        progress(counts);
    }
}

fn handle_line(
    name: &str,
    line_no: u64,
    line: &[u8],
    counts: &mut LineCounts,
    on_record: &mut impl FnMut(&AuditRecord),
) {
    if line.trim_ascii().is_empty() {
        return;
    }
    match parse_line(line) {
        Line::Record(r) => {
            counts.records += 1;
            on_record(&r);
        }
        Line::Other => counts.other += 1,
        Line::Malformed(e) => {
            counts.malformed += 1;
            counts
                .first_malformed
                .get_or_insert_with(|| format!("{name}:{line_no}: {e}"));
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A schema-1 record as the writer lays it out, for the reader tests.
    pub fn sample(message_id: Option<&str>, action: Action) -> AuditRecord<'static> {
        AuditRecord {
            audit: 1,
            time: "2026-12-06T03:13:48.123Z".into(),
            host: "mail".into(),
            instance: Some("inbound".into()),
            queue_id: Some("8AFD2B6042".into()),
            message_id: message_id.map(|m| Cow::Owned(m.to_owned())),
            sender: "ngocnt_stttt@bacgiang.gov.vn".into(),
            sasl_login: Some("ngocnt_stttt".into()),
            recipients: vec![
                Recipient {
                    address: "a@gmail.com".into(),
                    local: false,
                },
                Recipient {
                    address: "hongnt_baodai_lucnam@bacgiang.gov.vn".into(),
                    local: true,
                },
            ],
            client_addr: Some("192.0.2.7".into()),
            direction: Direction::Outgoing,
            action,
            monitor_action: None,
            reply: None,
            violations: vec![],
            files: vec![FileEntry {
                path: vec!["hoso.zip".into()],
                size: 1234,
                file_type: "application/zip".into(),
                sha256: Some("ab".repeat(32).into()),
            }],
            files_omitted: 0,
            signed_documents: vec![],
        }
    }

    #[test]
    fn written_record_starts_with_the_fast_prefix_and_reads_back_borrowed() {
        let record = sample(Some("<a@b>"), Action::Reject);
        let line = serde_json::to_string(&record).unwrap();
        assert!(line.as_bytes().starts_with(RECORD_PREFIX), "{line}");
        let Line::Record(back) = parse_line(line.as_bytes()) else {
            panic!("{line}")
        };
        assert_eq!(*back, record);
        assert!(matches!(back.sender, Cow::Borrowed(_)));
    }

    #[test]
    fn schema_example_parses() {
        let example = r#"{"audit":1,"time":"2026-12-06T03:13:48.123Z","host":"mail","instance":"inbound","queue_id":"8AFD2B6042","message_id":"<abc.123@bacgiang.gov.vn>","sender":"ngocnt_stttt@bacgiang.gov.vn","sasl_login":"ngocnt_stttt","recipients":[{"address":"a@gmail.com","local":false},{"address":"hongnt_baodai_lucnam@bacgiang.gov.vn","local":true}],"client_addr":"192.0.2.7","direction":"outgoing","action":"reject","monitor_action":null,"reply":"550 5.7.1 ...","violations":[{"rule":"executable","article":"Điều 4 khoản 7","path":["hoso.zip","hoso.pdf.exe"]}],"files":[{"path":["hoso.zip"],"size":1234,"type":"application/zip","sha256":null}],"files_omitted":0,"signed_documents":[]}"#;
        let Line::Record(r) = parse_line(example.as_bytes()) else {
            panic!()
        };
        assert_eq!(r.action, Action::Reject);
        assert_eq!(r.violations[0].article, "Điều 4 khoản 7");
    }

    #[test]
    fn other_lines_and_malformed_lines_are_told_apart() {
        assert!(matches!(
            parse_line(b"Dec  6 03:13:48 mail postfix/smtpd[1]: connect"),
            Line::Other
        ));
        assert!(matches!(
            parse_line(br#"{"audit":2,"time":"x"}"#),
            Line::Other
        ));
        assert!(matches!(
            parse_line(br#"{"level":"INFO","msg":"accepted"}"#),
            Line::Other
        ));
        let line = serde_json::to_string(&sample(None, Action::Accept)).unwrap();
        let cut = &line.as_bytes()[..line.len() / 2];
        assert!(matches!(parse_line(cut), Line::Malformed(_)));
        assert!(matches!(
            parse_line(br#"{"audit":1,"time":"x"}"#),
            Line::Malformed(_)
        ));
        let spaced = r#"{ "audit": 1, "time": 5 }"#;
        assert!(matches!(parse_line(spaced.as_bytes()), Line::Malformed(_)));
    }

    #[test]
    fn reader_counts_lines_across_chunks_and_a_last_line_without_newline() {
        let good = serde_json::to_string(&sample(Some("<a@b>"), Action::Accept)).unwrap();
        let mut log = String::new();
        for i in 0..5000 {
            log += &good;
            log.push('\n');
            if i % 1000 == 0 {
                log += "postfix/smtpd: connect from x\n\n";
            }
        }
        log += &good[..good.len() - 10];
        let mut counts = LineCounts::default();
        let mut seen = 0;
        for_each_record("t", log.as_bytes(), &mut counts, |_| {}, |_| seen += 1).unwrap();
        assert_eq!(
            (seen, counts.records, counts.other, counts.malformed),
            (5000, 5000, 5, 1)
        );
        assert!(counts.first_malformed.unwrap().starts_with("t:5011:"));
    }

    #[test]
    fn gzip_is_recognised_by_magic_not_name() {
        use std::io::Write;
        let good = serde_json::to_string(&sample(Some("<a@b>"), Action::Accept)).unwrap() + "\n";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl.1");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(good.as_bytes()).unwrap();
        let mut bytes = gz.finish().unwrap();
        // A second member, as `cat a.gz b.gz` leaves it.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(good.as_bytes()).unwrap();
        bytes.extend(gz.finish().unwrap());
        std::fs::write(&path, bytes).unwrap();
        let mut counts = LineCounts::default();
        let input = open_log(&path).unwrap();
        for_each_record("t", input, &mut counts, |_| {}, |_| {}).unwrap();
        assert_eq!((counts.records, counts.other), (2, 0));
    }
}
