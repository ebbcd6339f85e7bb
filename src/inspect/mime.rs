//! The MIME walk: finds every file in a message and collects the facts.
//!
//! Multipart at any depth, attached messages (`message/rfc822`, `message/global`,
//! parts of `multipart/digest`) at any depth up to `[limits] max_message_depth`,
//! named inline parts, uuencoded blocks in text, and the files inside TNEF. Broken
//! MIME (missing closing boundary, broken base64, unknown charsets) is inspected
//! as far as it decodes.
//!
//! The walk is its own small MIME splitter rather than `mail_parser::Message`:
//! mail-parser 0.11 parses unencoded nested messages without a depth limit and
//! drops the resulting tree recursively (a 9 MB message nesting 200,000 levels
//! overflows the stack and aborts the process), and for a base64-encoded
//! `message/rfc822` it copies the whole decoded buffer once per nested level
//! (`into_owned`; a 300 KB message took 690 MB). Here the walk keeps an explicit
//! stack, every level is bounded, and part bodies are slices of the input
//! (`Bytes`) where no decoding is needed. mail-parser's charset tables are used
//! for names.
//!
//! What the walk keeps — decoded parts, copies for the virus scanner, the facts
//! with their paths — is held from the message's memory budget
//! (src/inspect/budget.rs) when one is given; the paths of parts waiting on the
//! stack are shared, not copied per part.

use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::budget::{Budget, MemoryAccount};
use super::file::{inspect_file, record};
use super::filetype::classify;
use super::names::{ContentField, display_name, parse_content_field};
use super::transfer::{decode_base64, decode_quoted_printable};
use super::{FileFacts, FileKind, Inspection, ScanPart, Signature, tnef, uuencode};
use crate::policy::LimitsSection;

/// Multipart levels allowed beyond two per attached message (each attached
/// message usually brings one or two levels of its own).
const EXTRA_NESTING: u32 = 32;
/// Longest name kept for a path element (names can be any length).
const MAX_NAME_CHARS: usize = 255;

/// Inspects a raw message (headers and body). Never panics; limits that are hit
/// are reported in [`Inspection::problems`]. Parts that need no decoding are
/// copied once out of `raw`; see [`inspect_message_shared`] to avoid that.
pub fn inspect_message(raw: &[u8], limits: &LimitsSection) -> Inspection {
    Walker::new(limits, None).run(Src::Borrowed(raw))
}

/// Like [`inspect_message`], holding the memory the inspection keeps from
/// `memory`. When it runs short the inspection stops, and the account says why.
pub fn inspect_message_within(
    raw: &[u8],
    limits: &LimitsSection,
    memory: Option<Arc<MemoryAccount>>,
) -> Inspection {
    Walker::new(limits, memory).run(Src::Borrowed(raw))
}

/// Like [`inspect_message`], but parts that need no decoding are slices of `raw`
/// (no copy).
pub fn inspect_message_shared(raw: &Bytes, limits: &LimitsSection) -> Inspection {
    Walker::new(limits, None).run(Src::Shared(raw.clone()))
}

/// The bytes an entity lives in: the input, or a decoded attached message.
#[derive(Clone)]
enum Src<'a> {
    Borrowed(&'a [u8]),
    Shared(Bytes),
}

impl Src<'_> {
    fn as_slice(&self) -> &[u8] {
        match self {
            Src::Borrowed(b) => b,
            Src::Shared(b) => b,
        }
    }

    fn share(&self, range: Range<usize>) -> Bytes {
        match self {
            Src::Borrowed(b) => Bytes::copy_from_slice(&b[range]),
            Src::Shared(b) => b.slice(range),
        }
    }
}

/// One MIME entity (headers and body) waiting to be walked.
struct Item<'a> {
    src: Src<'a>,
    range: Range<usize>,
    /// Inside a `multipart/digest`, a part without `Content-Type` is a message.
    in_digest: bool,
    /// Attached messages above this entity.
    msg_depth: u32,
    /// Multipart and message levels above this entity.
    nesting: u32,
    /// Names of the attached messages above (the start of every file's path),
    /// shared by the parts of one message.
    path: Rc<[String]>,
    /// Position for logs: `2.1`.
    label: String,
}

/// The MIME headers of one entity.
#[derive(Default)]
struct PartHeaders {
    content_type: Option<ContentField>,
    disposition: Option<ContentField>,
    encoding: Option<String>,
    /// Every name given: `filename` values first, then `name` values.
    names: Vec<String>,
}

struct Walker<'l> {
    limits: &'l LimitsSection,
    budget: Budget,
    out: Inspection,
    started: Instant,
    max_nesting: u32,
    depth_reported: bool,
}

impl<'l> Walker<'l> {
    fn new(limits: &'l LimitsSection, memory: Option<Arc<MemoryAccount>>) -> Self {
        Walker {
            limits,
            budget: Budget::new(limits).with_memory(memory),
            out: Inspection::default(),
            started: Instant::now(),
            max_nesting: limits
                .max_message_depth
                .saturating_mul(2)
                .saturating_add(EXTRA_NESTING),
            depth_reported: false,
        }
    }

    fn run(mut self, src: Src<'_>) -> Inspection {
        let len = src.as_slice().len();
        let mut stack = vec![Item {
            src,
            range: 0..len,
            in_digest: false,
            msg_depth: 0,
            nesting: 0,
            path: Rc::from([]),
            label: String::new(),
        }];
        let time_limit = self.limits.max_inspect_time.get();
        while let Some(item) = stack.pop() {
            if !self.count_part() {
                break;
            }
            if self.started.elapsed() > time_limit {
                self.out.problems.push(format!(
                    "inspection took longer than {} s",
                    time_limit.as_secs()
                ));
                break;
            }
            self.entity(item, &mut stack);
        }
        self.out
    }

    /// Counts one more part; false (and a problem) once the limit is passed.
    fn count_part(&mut self) -> bool {
        if self.out.parts >= self.limits.max_mime_parts {
            let problem = format!("more than {} MIME parts", self.limits.max_mime_parts);
            if !self.out.problems.contains(&problem) {
                self.out.problems.push(problem);
            }
            return false;
        }
        self.out.parts += 1;
        true
    }

    fn parts_left(&self) -> u64 {
        self.limits.max_mime_parts.saturating_sub(self.out.parts)
    }

    fn entity<'a>(&mut self, item: Item<'a>, stack: &mut Vec<Item<'a>>) {
        let whole = &item.src.as_slice()[item.range.clone()];
        let (head_end, body_start) = split_headers(whole);
        let headers = parse_headers(&whole[..head_end]);
        let body = item.range.start + body_start..item.range.end;

        let default_type = if item.in_digest {
            "message/rfc822"
        } else {
            "text/plain"
        };
        let ctype = match &headers.content_type {
            Some(ct) if ct.value.contains('/') => ct.value.as_str(),
            Some(_) => "application/octet-stream",
            None => default_type,
        };
        let (major, minor) = ctype.split_once('/').unwrap_or((ctype, ""));

        if major == "multipart"
            && let Some(boundary) = headers
                .content_type
                .as_ref()
                .and_then(|ct| ct.param("boundary"))
                .filter(|b| !b.is_empty())
        {
            if item.nesting >= self.max_nesting {
                self.depth_problem(format!(
                    "MIME structure nested deeper than {} levels",
                    self.max_nesting
                ));
                return;
            }
            let body_bytes = &item.src.as_slice()[body.clone()];
            let children = split_multipart(
                body_bytes,
                boundary.as_bytes(),
                self.parts_left().saturating_add(1),
            );
            if !children.is_empty() {
                if item.msg_depth == 0 && minor == "signed" {
                    let protocol = headers
                        .content_type
                        .as_ref()
                        .and_then(|ct| ct.param("protocol"))
                        .unwrap_or("")
                        .to_ascii_lowercase();
                    match protocol.as_str() {
                        "application/pkcs7-signature" | "application/x-pkcs7-signature" => {
                            self.signed(Signature::Smime)
                        }
                        "application/pgp-signature" => self.signed(Signature::OpenPgp),
                        _ => {}
                    }
                }
                for (i, r) in children.into_iter().enumerate().rev() {
                    stack.push(Item {
                        src: item.src.clone(),
                        range: body.start + r.start..body.start + r.end,
                        in_digest: minor == "digest",
                        msg_depth: item.msg_depth,
                        nesting: item.nesting + 1,
                        path: item.path.clone(),
                        label: child_label(&item.label, i + 1),
                    });
                }
                return;
            }
            // No delimiter at all: the body is inspected as one opaque part.
        }

        if major == "message" && matches!(minor, "rfc822" | "global" | "rfc2822") {
            self.attached_message(item, &headers, body, stack);
            return;
        }

        self.leaf(&item, &headers, ctype, body);
    }

    fn attached_message<'a>(
        &mut self,
        item: Item<'a>,
        headers: &PartHeaders,
        body: Range<usize>,
        stack: &mut Vec<Item<'a>>,
    ) {
        let (src, range) = match self.decode(&item.src, body.clone(), headers.encoding.as_deref()) {
            Decoded::Same => (item.src.clone(), body),
            Decoded::New(bytes) => {
                let len = bytes.len();
                (Src::Shared(bytes), 0..len)
            }
        };
        let size = range.len() as u64;
        let name = headers.names.first().map(|n| truncate(n));
        let label = name
            .clone()
            .unwrap_or_else(|| "(attached message)".to_owned());
        let mut path = item.path.to_vec();
        path.push(label);
        if item.msg_depth == 0 {
            self.out.attachments_size += size;
        }
        let index = self.out.files.len();
        record(
            &mut self.out.files,
            FileFacts {
                path: path.clone(),
                name: name.clone(),
                size,
                kind: FileKind::Other("message/rfc822".to_owned()),
                encrypted: false,
                uninspectable: None,
            },
            &mut self.budget,
        );
        self.alt_names(index, &headers.names);
        if item.msg_depth + 1 > self.limits.max_message_depth || item.nesting >= self.max_nesting {
            self.depth_problem(format!(
                "attached messages nested deeper than {}",
                self.limits.max_message_depth
            ));
            let data = self.keep(&src, range);
            self.scan_part(path_label(&path), data);
            return;
        }
        stack.push(Item {
            src,
            range,
            in_digest: false,
            msg_depth: item.msg_depth + 1,
            nesting: item.nesting + 1,
            path: Rc::from(path),
            label: item.label,
        });
    }

    fn leaf(&mut self, item: &Item<'_>, headers: &PartHeaders, ctype: &str, body: Range<usize>) {
        let decoded = self.decode(&item.src, body.clone(), headers.encoding.as_deref());
        // A view for the checks; `Bytes` (a copy, for borrowed input) only when kept.
        let data: &[u8] = match &decoded {
            Decoded::Same => &item.src.as_slice()[body.clone()],
            Decoded::New(bytes) => bytes,
        };
        let keep = |walker: &mut Self| match &decoded {
            Decoded::Same => walker.keep(&item.src, body.clone()),
            Decoded::New(bytes) => bytes.clone(),
        };
        let name = headers.names.first().map(|n| truncate(n));
        let attachment = headers
            .disposition
            .as_ref()
            .is_some_and(|d| d.value == "attachment");
        let is_text = ctype.starts_with("text/");
        let body_text =
            matches!(ctype, "text/plain" | "text/html") && name.is_none() && !attachment;
        let top = item.msg_depth == 0;

        if top {
            let smime_signed =
                matches!(ctype, "application/pkcs7-mime" | "application/x-pkcs7-mime")
                    && headers
                        .content_type
                        .as_ref()
                        .and_then(|ct| ct.param("smime-type"))
                        .is_some_and(|t| t.eq_ignore_ascii_case("signed-data"));
            if smime_signed {
                self.signed(Signature::Smime);
            }
            if body_text
                && memchr::memmem::find(data, b"-----BEGIN PGP SIGNED MESSAGE-----").is_some()
            {
                self.signed(Signature::OpenPgp);
            }
        }

        let label = if item.label.is_empty() {
            "body".to_owned()
        } else {
            format!("part {}", item.label)
        };
        // Body text is a file only when its content is not text after all.
        let is_file = !body_text || !matches!(classify(data), FileKind::Other(_));
        let mut file_path = item.path.to_vec();
        if is_file {
            let data = keep(self);
            file_path.push(name.clone().unwrap_or_else(|| "(unnamed)".to_owned()));
            if top {
                self.out.attachments_size += data.len() as u64;
            }
            let scan_label = if name.is_some() {
                path_label(&file_path)
            } else {
                label.clone()
            };
            self.scan_part(scan_label, data.clone());
            let index = self.out.files.len();
            inspect_file(
                file_path.clone(),
                name.as_deref(),
                &data,
                0,
                &mut self.budget,
                &mut self.out.files,
            );
            self.alt_names(index, &headers.names);
            let tnef_type = matches!(ctype, "application/ms-tnef" | "application/vnd.ms-tnef");
            if tnef_type || tnef::is_tnef(&data) {
                self.tnef(&file_path, &data);
            }
        } else if !top {
            // The body text of an attached message: part of an attachment.
            let data = keep(self);
            self.scan_part(label, data);
        }

        if is_text {
            let max = usize::try_from(self.parts_left()).unwrap_or(usize::MAX);
            for uu in uuencode::find_uuencoded(data, max.saturating_add(1)) {
                if uu.data.is_empty() {
                    continue; // prose that happens to start with "begin 644 x"
                }
                if !self.count_part() {
                    break;
                }
                let uu_name = truncate(&uu.name);
                let mut path = if is_file {
                    file_path.clone()
                } else {
                    item.path.to_vec()
                };
                path.push(uu_name.clone());
                let bytes = Bytes::from(uu.data);
                let _ = self.budget.hold(bytes.len() as u64);
                if top && !is_file {
                    self.out.attachments_size += bytes.len() as u64;
                }
                self.scan_part(path_label(&path), bytes.clone());
                inspect_file(
                    path,
                    Some(&uu_name),
                    &bytes,
                    0,
                    &mut self.budget,
                    &mut self.out.files,
                );
            }
        }
    }

    /// The files inside a TNEF stream (they count as parts, not as size: the
    /// `winmail.dat` was counted).
    fn tnef(&mut self, path: &[String], data: &Bytes) {
        let max = usize::try_from(self.parts_left()).unwrap_or(usize::MAX);
        let parsed = tnef::parse_tnef(data, max.saturating_add(1));
        for att in parsed.attachments {
            if !self.count_part() {
                break;
            }
            let name = att.name.as_deref().map(truncate);
            let mut inner = path.to_vec();
            inner.push(name.clone().unwrap_or_else(|| "(unnamed)".to_owned()));
            let bytes = data.slice(att.data);
            inspect_file(
                inner,
                name.as_deref(),
                &bytes,
                0,
                &mut self.budget,
                &mut self.out.files,
            );
        }
    }

    /// Decodes a body, its memory held from the budget first (the encoded
    /// length, the most any decoding gives, then only what it gave). When the
    /// budget is short the part is read as empty: the shortfall, recorded, decides
    /// the message.
    fn decode(&mut self, src: &Src<'_>, body: Range<usize>, encoding: Option<&str>) -> Decoded {
        let most = body.len() as u64;
        if self.budget.hold(most).is_err() {
            return Decoded::New(Bytes::new());
        }
        let decoded = decode_body(src, body, encoding);
        let kept = match &decoded {
            Decoded::Same => 0,
            Decoded::New(bytes) => bytes.len() as u64,
        };
        self.budget.release(most - kept.min(most));
        decoded
    }

    /// The bytes of `range` to keep: a slice of shared input, or a copy of
    /// borrowed input (held from the budget).
    fn keep(&mut self, src: &Src<'_>, range: Range<usize>) -> Bytes {
        if let Src::Borrowed(_) = src
            && self.budget.hold(range.len() as u64).is_err()
        {
            return Bytes::new();
        }
        src.share(range)
    }

    /// Keeps a part for the virus scanner, its label held from the budget (a
    /// label names every attached message above the part).
    fn scan_part(&mut self, label: String, data: Bytes) {
        let _ = self.budget.hold(label.capacity() as u64);
        self.out.scan_parts.push(ScanPart { label, data });
    }

    fn alt_names(&mut self, index: usize, names: &[String]) {
        if index < self.out.files.len() {
            for n in names.iter().skip(1) {
                self.out.alt_names.push((index, truncate(n)));
            }
        }
    }

    fn signed(&mut self, sig: Signature) {
        self.out.signed.get_or_insert(sig);
    }

    fn depth_problem(&mut self, problem: String) {
        if !self.depth_reported {
            self.depth_reported = true;
            self.out.problems.push(problem);
        }
    }
}

/// A path for log labels, with control and bidi characters made visible.
fn path_label(path: &[String]) -> String {
    path.iter()
        .map(|p| display_name(p, 80))
        .collect::<Vec<_>>()
        .join(" > ")
}

fn child_label(parent: &str, n: usize) -> String {
    if parent.is_empty() {
        n.to_string()
    } else {
        format!("{parent}.{n}")
    }
}

/// Shortens an absurdly long name for logs and replies, keeping its start and
/// its end: the final extension decides whether a file is an executable, so it
/// must survive (`aaaa…aaaa.exe`).
fn truncate(name: &str) -> String {
    let count = name.chars().count();
    if count <= MAX_NAME_CHARS {
        return name.to_owned();
    }
    let keep = MAX_NAME_CHARS / 2;
    let head: String = name.chars().take(keep).collect();
    let tail: String = name.chars().skip(count - keep).collect();
    format!("{head}…{tail}")
}

enum Decoded {
    /// The body as it is (7bit, 8bit, binary, unknown encodings).
    Same,
    New(Bytes),
}

fn decode_body(src: &Src<'_>, body: Range<usize>, encoding: Option<&str>) -> Decoded {
    let raw = &src.as_slice()[body];
    match encoding.map(str::trim) {
        Some(e) if e.eq_ignore_ascii_case("base64") => Decoded::New(decode_base64(raw).into()),
        Some(e) if e.eq_ignore_ascii_case("quoted-printable") => {
            Decoded::New(decode_quoted_printable(raw).into())
        }
        Some(e)
            if ["x-uuencode", "x-uue", "uuencode", "x-uu"]
                .iter()
                .any(|u| e.eq_ignore_ascii_case(u)) =>
        {
            match uuencode::find_uuencoded(raw, 1).pop() {
                Some(f) => Decoded::New(f.data.into()),
                None => Decoded::Same,
            }
        }
        _ => Decoded::Same,
    }
}

/// Splits an entity into its header block and body: (end of headers, start of
/// body). The headers end at the first empty line, or at the first line that is
/// neither a header field nor a continuation (then the body starts there).
fn split_headers(data: &[u8]) -> (usize, usize) {
    let mut pos = 0;
    let mut first = true;
    while pos < data.len() {
        let line_end = memchr::memchr(b'\n', &data[pos..]).map_or(data.len(), |i| pos + i + 1);
        let line = &data[pos..line_end];
        let content = line
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(line);
        if content.is_empty() {
            return (pos, line_end);
        }
        let continuation = !first && matches!(content[0], b' ' | b'\t');
        let mbox_from = first && (content.starts_with(b"From ") || content.starts_with(b">From "));
        if !(continuation || mbox_from || is_header_field(content)) {
            return (pos, pos);
        }
        first = false;
        pos = line_end;
    }
    (data.len(), data.len())
}

fn is_header_field(line: &[u8]) -> bool {
    match memchr::memchr(b':', line) {
        Some(colon) if colon > 0 => {
            // Obsolete syntax allows blanks between the name and the colon.
            let name = line[..colon].trim_ascii_end();
            !name.is_empty() && name.iter().all(|c| (33..=126).contains(c))
        }
        _ => false,
    }
}

/// Reads the MIME headers of a header block.
fn parse_headers(block: &[u8]) -> PartHeaders {
    let mut h = PartHeaders::default();
    let mut filenames = Vec::new();
    let mut ct_names = Vec::new();
    for (name, value) in header_fields(block) {
        let name = String::from_utf8_lossy(name);
        let name = name.trim();
        if name.eq_ignore_ascii_case("content-type") {
            let f = parse_content_field(&value);
            ct_names.extend(f.params_named("name").map(str::to_owned));
            h.content_type.get_or_insert(f);
        } else if name.eq_ignore_ascii_case("content-disposition") {
            let f = parse_content_field(&value);
            filenames.extend(f.params_named("filename").map(str::to_owned));
            h.disposition.get_or_insert(f);
        } else if name.eq_ignore_ascii_case("content-transfer-encoding") && h.encoding.is_none() {
            let v = String::from_utf8_lossy(&value);
            let v = v.split(['(', ';']).next().unwrap_or("").trim().to_owned();
            h.encoding = Some(v);
        }
    }
    for n in filenames.into_iter().chain(ct_names) {
        let n = n.trim().to_owned();
        if !n.is_empty() && !h.names.contains(&n) {
            h.names.push(n);
        }
    }
    h
}

/// Header fields of a block, unfolded: (name, value without line ends).
fn header_fields(block: &[u8]) -> Vec<(&[u8], Vec<u8>)> {
    let mut fields: Vec<(&[u8], Vec<u8>)> = Vec::new();
    // Only the MIME headers are needed; the others are not copied.
    let mut keep = false;
    for line in block.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if matches!(line[0], b' ' | b'\t') {
            if keep && let Some((_, value)) = fields.last_mut() {
                value.extend_from_slice(line);
            }
            continue;
        }
        keep = false;
        if let Some(colon) = memchr::memchr(b':', line) {
            let name = &line[..colon];
            if name.len() >= 12 && name[..8].eq_ignore_ascii_case(b"content-") {
                keep = true;
                fields.push((name, line[colon + 1..].to_vec()));
            }
        }
    }
    fields
}

/// The body parts of a multipart body, as ranges in `body`, at most `max`.
/// Delimiter lines are `--boundary` (with optional blanks after it); `--boundary--`
/// closes. Without a closing delimiter the last part runs to the end.
fn split_multipart(body: &[u8], boundary: &[u8], max: u64) -> Vec<Range<usize>> {
    let mut delim = Vec::with_capacity(boundary.len() + 3);
    delim.extend_from_slice(b"\n--");
    delim.extend_from_slice(boundary);
    let finder = memchr::memmem::Finder::new(&delim);

    let mut parts = Vec::new();
    let mut open: Option<usize> = None;
    // Candidate line starts: the body's first line, then every "\n--boundary".
    let mut search_from = 0;
    let mut candidate = if body.starts_with(&delim[1..]) {
        Some(0)
    } else {
        None
    };
    loop {
        let line_start = match candidate.take() {
            Some(s) => s,
            None => match finder.find(&body[search_from..]) {
                Some(i) => search_from + i + 1,
                None => break,
            },
        };
        search_from = line_start + 1;
        let after = line_start + delim.len() - 1;
        let line_end = memchr::memchr(b'\n', &body[after..]).map_or(body.len(), |i| after + i + 1);
        let rest = &body[after..line_end];
        let close = rest.starts_with(b"--");
        if !close && !rest.iter().all(|c| c.is_ascii_whitespace()) {
            continue; // a longer boundary that starts the same way
        }
        if let Some(start) = open.take() {
            // The line end before the delimiter belongs to the delimiter.
            let mut end = line_start.saturating_sub(1).max(start);
            if end > start && body[end - 1] == b'\r' {
                end -= 1;
            }
            parts.push(start..end);
            if parts.len() as u64 >= max {
                return parts;
            }
        }
        if close {
            return parts;
        }
        open = Some(line_end);
        search_from = line_end.saturating_sub(1).max(search_from);
    }
    if let Some(start) = open {
        parts.push(start..body.len());
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_split() {
        let body = b"preamble\r\n--b\r\nA: 1\r\n\r\none\r\n--b \r\n\r\ntwo\r\n--bb\r\nstill two\r\n--b--\r\nepilogue";
        let parts = split_multipart(body, b"b", 100);
        let texts: Vec<&[u8]> = parts.iter().map(|r| &body[r.clone()]).collect();
        assert_eq!(
            texts,
            [&b"A: 1\r\n\r\none"[..], b"\r\ntwo\r\n--bb\r\nstill two"]
        );
        // No closing delimiter, LF line ends, delimiter on the first line.
        let body = b"--b\nx\n--b\ny\n";
        let parts = split_multipart(body, b"b", 100);
        let texts: Vec<&[u8]> = parts.iter().map(|r| &body[r.clone()]).collect();
        assert_eq!(texts, [&b"x"[..], b"y\n"]);
        assert_eq!(split_multipart(body, b"b", 1).len(), 1);
        assert!(split_multipart(b"no delimiters", b"b", 10).is_empty());
        // Empty parts.
        let body = b"--b\r\n--b\r\n--b--";
        assert_eq!(split_multipart(body, b"b", 10).len(), 2);
    }

    #[test]
    fn header_split() {
        assert_eq!(split_headers(b"A: 1\r\nB: 2\r\n\r\nbody"), (12, 14));
        assert_eq!(split_headers(b"\r\nbody"), (0, 2));
        assert_eq!(split_headers(b"A: 1\nnot a header line\nmore"), (5, 5));
        assert_eq!(split_headers(b"A: 1\n folded\n\nx"), (13, 14));
        assert_eq!(split_headers(b"From x@y Mon\nA: 1\n\nbody"), (18, 19));
        assert_eq!(split_headers(b"A: 1"), (4, 4));
    }

    #[test]
    fn headers_give_names_and_encoding() {
        let h = parse_headers(
            b"Content-Type: application/pdf;\r\n name=\"b.exe\"\r\nContent-Disposition: attachment; filename=\"a.pdf\"\r\nContent-Transfer-Encoding: Base64 (x)\r\nSubject: s\r\n",
        );
        assert_eq!(h.names, ["a.pdf", "b.exe"]);
        assert_eq!(h.encoding.as_deref(), Some("Base64"));
        assert_eq!(h.content_type.unwrap().value, "application/pdf");
        assert_eq!(h.disposition.unwrap().value, "attachment");
    }
}
