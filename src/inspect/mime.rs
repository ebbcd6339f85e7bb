//! The MIME walk: finds every file in a message and collects the facts.
//!
//! Multipart at any depth, attached messages (`message/rfc822`, `message/global`,
//! parts of `multipart/digest`) at any depth up to `[limits] max_message_depth`,
//! named inline parts, uuencoded blocks in text, the files inside TNEF, and the
//! content of opaque S/MIME signatures (encrypted S/MIME and PGP/MIME cannot be
//! read: src/inspect/mime/sealed.rs). Broken
//! MIME (missing closing boundary, broken base64, unknown charsets) is inspected
//! as far as it decodes; a multipart whose boundary matches no delimiter is
//! walked by the first delimiter-like line it has, or else as one text part
//! (see [`Walker::entity`]), never passed as one opaque file.
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
//! The work is linear in the size of the message. Nesting is what could make it
//! grow faster: each multipart level searches its whole body for its delimiter,
//! each encoded attached message decodes its whole body, and every file copies
//! the names of the attached messages above it (its path). Measured on 2 MB
//! messages: 230 nested multiparts whose delimiters all start the same way,
//! 0.078 s of CPU per MB (35 times the ordinary mix); 100 quoted-printable
//! attached messages whose decoding leaves the text as it is, 0.17 s; 9,000
//! small parts under 100 attached messages with long names, 0.58 s and 400 MB.
//! So the walk counts that work in bytes and does at most [`MAX_WALK_WORK`]
//! times the size of the message. Past that, and past the header caps here and
//! in `names` (fields and names per part; parameters, their length and their
//! encoded words per header), the message is `uninspectable` with a reply
//! naming the cap. Every cap is far above what mail clients write. The time
//! limit (`max_inspect_time`) is watched between parts and inside long headers.
//!
//! What the walk keeps — decoded parts, copies for the virus scanner, the facts
//! with their paths — is held from the message's memory budget
//! (src/inspect/budget.rs) when one is given; the paths of parts waiting on the
//! stack are shared, not copied per part.

use std::borrow::Cow;
use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::budget::{Budget, MemoryAccount};
use super::file::{inspect_file, record};
use super::filetype::classify;
use super::names::{ContentField, display_name, parse_content_field_only};
use super::text;
use super::transfer::{decode_base64, decode_quoted_printable};
use super::{
    FileFacts, FileKind, Inspection, ScanPart, Signature, binhex, saved_message, tnef, uuencode,
};
use crate::policy::LimitsSection;

mod sealed;

/// Multipart levels allowed beyond two per attached message (each attached
/// message usually brings one or two levels of its own).
const EXTRA_NESTING: u32 = 32;
/// Longest name kept for a path element (names can be any length).
const MAX_NAME_CHARS: usize = 255;
/// `Content-*` header fields read per MIME part, at most (mail clients write
/// three or four).
pub const MAX_MIME_FIELDS: usize = 64;
/// Different names one MIME part may give itself (`filename`, `name`, their
/// RFC 2231 forms: mail clients give one to four).
pub const MAX_NAMES_PER_PART: usize = 16;
/// Work the walk may do, as a multiple of the size of the message. Work is
/// counted in bytes: delimiter lines checked by multipart splits, bodies of
/// encoded attached messages decoded, and paths copied for files. Ordinary mail
/// does less than twice its size: delimiter lines are short, an attached
/// message is seldom encoded (base64 shrinks at each level), paths are short.
pub const MAX_WALK_WORK: u64 = 8;
/// Work allowed whatever the size of the message (small messages may nest deep:
/// it costs little).
const MIN_WALK_WORK: u64 = 1024 * 1024;
/// The work of copying one step of a path, beyond its bytes (an allocation;
/// the rules format it again for every file).
const PATH_STEP_WORK: u64 = 64;
/// Header fields parsed between two looks at the clock.
const FIELDS_PER_CLOCK_CHECK: usize = 16;

/// Inspects a raw message (headers and body). Never panics; limits that are hit
/// are reported in [`Inspection::problems`]. Parts that need no decoding are
/// copied once out of `raw`; see [`inspect_message_shared`] to avoid that.
pub fn inspect_message(raw: &[u8], limits: &LimitsSection) -> Inspection {
    Walker::new(limits, None).run(Src::Borrowed(raw))
}

/// Like [`inspect_message`], holding the memory the inspection keeps from
/// `memory`. When it runs short the inspection stops, and the account says why.
/// `read_stamps`: whether documents and body text are read for classification
/// stamps (a message to state mailboxes only does not need it).
pub fn inspect_message_within(
    raw: &[u8],
    limits: &LimitsSection,
    memory: Option<Arc<MemoryAccount>>,
    read_stamps: bool,
) -> Inspection {
    let mut walker = Walker::new(limits, memory);
    walker.budget.reads_text = read_stamps;
    walker.run(Src::Borrowed(raw))
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
    /// shared by the parts of a message.
    path: Rc<[String]>,
    /// The work of copying `path` (see [`PATH_STEP_WORK`]).
    path_work: u64,
    /// Position for logs (`2.1`): the position of the multipart above, shared by
    /// its parts, and this part's number in it (0 for the message itself).
    parent_label: Rc<str>,
    number: usize,
}

impl<'a> Item<'a> {
    /// The whole of a message.
    fn message(src: Src<'a>) -> Self {
        let len = src.as_slice().len();
        Item {
            src,
            range: 0..len,
            in_digest: false,
            msg_depth: 0,
            nesting: 0,
            path: Rc::from([]),
            path_work: 0,
            parent_label: Rc::from(""),
            number: 0,
        }
    }

    /// Position for logs: `2.1`, or empty for the message itself.
    fn label(&self) -> String {
        match (self.parent_label.is_empty(), self.number) {
            (_, 0) => self.parent_label.to_string(),
            (true, n) => n.to_string(),
            (false, n) => format!("{}.{n}", self.parent_label),
        }
    }
}

/// The MIME headers of one entity.
#[derive(Default)]
struct PartHeaders {
    content_type: Option<ContentField>,
    disposition: Option<ContentField>,
    encoding: Option<String>,
    /// Every name given: `filename` values first, then `name` values.
    names: Vec<String>,
    /// Set when more names were given than [`MAX_NAMES_PER_PART`].
    names_capped: bool,
    /// The caps these headers passed, and the time limit if it passed.
    over_limit: Vec<String>,
}

impl PartHeaders {
    /// The `protocol` of a `multipart/signed` or `multipart/encrypted`, in
    /// lower case.
    fn protocol(&self) -> String {
        self.content_type
            .as_ref()
            .and_then(|ct| ct.param("protocol"))
            .unwrap_or("")
            .to_ascii_lowercase()
    }
}

struct Walker<'l> {
    limits: &'l LimitsSection,
    budget: Budget,
    out: Inspection,
    max_nesting: u32,
    depth_reported: bool,
    /// Work done so far, and the most allowed (see [`MAX_WALK_WORK`]).
    work: u64,
    max_work: u64,
    /// Set when a limit ends the walk.
    stopped: bool,
}

impl<'l> Walker<'l> {
    fn new(limits: &'l LimitsSection, memory: Option<Arc<MemoryAccount>>) -> Self {
        Walker {
            limits,
            budget: Budget::new(limits).with_memory(memory),
            out: Inspection::default(),
            max_nesting: limits
                .max_message_depth
                .saturating_mul(2)
                .saturating_add(EXTRA_NESTING),
            depth_reported: false,
            work: 0,
            max_work: MIN_WALK_WORK,
            stopped: false,
        }
    }

    fn run(mut self, src: Src<'_>) -> Inspection {
        let len = src.as_slice().len();
        self.max_work = (len as u64)
            .saturating_mul(MAX_WALK_WORK)
            .max(MIN_WALK_WORK);
        let mut stack = vec![Item::message(src)];
        while let Some(item) = stack.pop() {
            if self.stopped || !self.count_part() {
                break;
            }
            if let Err(problem) = self.budget.check_limits() {
                self.problem(problem);
                break;
            }
            self.entity(item, &mut stack);
        }
        self.out
    }

    /// Counts one more part; false (and a problem) once the limit is passed.
    fn count_part(&mut self) -> bool {
        if self.out.parts >= self.limits.max_mime_parts {
            self.problem(format!(
                "more than {} MIME parts",
                self.limits.max_mime_parts
            ));
            return false;
        }
        self.out.parts += 1;
        true
    }

    /// Records why the message cannot be inspected completely (once per reason).
    fn problem(&mut self, problem: String) {
        if !self.out.problems.contains(&problem) {
            self.out.problems.push(problem);
        }
    }

    /// Counts `work` more (see [`MAX_WALK_WORK`]); false (a problem, and the
    /// walk ends) once it passes the limit.
    fn charge(&mut self, work: u64) -> bool {
        self.work = self.work.saturating_add(work);
        if self.work > self.max_work {
            self.problem(format!(
                "MIME structure nested too deep for its size (inspecting it would read more than {MAX_WALK_WORK} times the message)"
            ));
            self.stopped = true;
            return false;
        }
        true
    }

    fn parts_left(&self) -> u64 {
        self.limits.max_mime_parts.saturating_sub(self.out.parts)
    }

    fn entity<'a>(&mut self, item: Item<'a>, stack: &mut Vec<Item<'a>>) {
        let whole = &item.src.as_slice()[item.range.clone()];
        let (head_end, body_start) = split_headers(whole);
        let mut headers = parse_headers(&whole[..head_end], &self.budget);
        for limit in std::mem::take(&mut headers.over_limit) {
            self.problem(limit);
        }
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

        if major == "multipart" && minor == "encrypted" {
            self.encrypted_multipart(&item, &headers, body);
            return;
        }
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
            let (children, checked) = split_multipart(
                body_bytes,
                boundary.as_bytes(),
                self.parts_left().saturating_add(1),
            );
            if !self.charge(checked) {
                return;
            }
            if !children.is_empty() {
                if item.msg_depth == 0 && minor == "signed" {
                    let protocol = headers.protocol();
                    match protocol.as_str() {
                        "application/pkcs7-signature" | "application/x-pkcs7-signature" => {
                            self.signed(Signature::Smime)
                        }
                        "application/pgp-signature" => self.signed(Signature::OpenPgp),
                        _ => {}
                    }
                }
                push_parts(&item, body.start, children, minor == "digest", stack);
                return;
            }
            // No delimiter matches the boundary. Thunderbird reads the whole body
            // as the preamble and shows nothing; mail-parser shows it as one text
            // part; a reader that guesses takes the first line that looks like a
            // delimiter. So the body's parts under such a line, when one is
            // followed by a header field, are walked as the parts of this
            // multipart; without one, the body is walked as one text part (typed
            // by its content, uuencoded files in it found), never as an opaque
            // file.
            let (guess, looked_at) = delimiter_lookalike(body_bytes);
            if !self.charge(looked_at as u64) {
                return;
            }
            if let Some(guessed) = guess {
                let (children, checked) =
                    split_multipart(body_bytes, guessed, self.parts_left().saturating_add(1));
                if !self.charge(checked) {
                    return;
                }
                if !children.is_empty() {
                    push_parts(&item, body.start, children, minor == "digest", stack);
                    return;
                }
            }
            self.leaf(&item, &headers, "text/plain", body);
            return;
        }

        if major == "message" && matches!(minor, "rfc822" | "global" | "rfc2822") {
            self.attached_message(item, &headers, body, stack);
            return;
        }
        if major != "multipart" && is_saved_message(&item, &headers, ctype, body.clone()) {
            self.attached_message(item, &headers, body, stack);
            return;
        }

        let Some(item) = self.pkcs7(item, &headers, ctype, body.clone(), stack) else {
            return;
        };
        self.leaf(&item, &headers, ctype, body);
    }

    fn attached_message<'a>(
        &mut self,
        item: Item<'a>,
        headers: &PartHeaders,
        body: Range<usize>,
        stack: &mut Vec<Item<'a>>,
    ) {
        if is_decoded(headers.encoding.as_deref()) && !self.charge(body.len() as u64) {
            return;
        }
        let (src, range) = match self.decode(&item.src, body.clone(), headers.encoding.as_deref()) {
            Decoded::Same => (item.src.clone(), body),
            Decoded::New(bytes) => {
                let len = bytes.len();
                (Src::Shared(bytes), 0..len)
            }
        };
        self.enter_message(item, headers, "message/rfc822", src, range, stack);
    }

    /// Records a message carried by a part (an attached message, the content
    /// of an opaque S/MIME signature) as a file of type `kind` and puts it on
    /// the stack to be walked like the message itself, one message level down.
    fn enter_message<'a>(
        &mut self,
        item: Item<'a>,
        headers: &PartHeaders,
        kind: &str,
        src: Src<'a>,
        range: Range<usize>,
        stack: &mut Vec<Item<'a>>,
    ) {
        let size = range.len() as u64;
        let name = headers.names.first().map(|n| truncate(n));
        let label = name
            .clone()
            .unwrap_or_else(|| "(attached message)".to_owned());
        let path_work = item.path_work + step_work(&label);
        let path: Rc<[String]> = item.path.iter().cloned().chain([label]).collect();
        if !self.charge(path_work) {
            return;
        }
        if item.msg_depth == 0 {
            self.out.attachments_size += size;
        }
        let index = self.out.files.len();
        record(
            &mut self.out.files,
            FileFacts {
                path: path.to_vec(),
                name: name.clone(),
                size,
                kind: FileKind::Other(kind.to_owned()),
                encrypted: false,
                uninspectable: None,
                signature: None,
                macros: false,
                // Only an attached message of the message itself: hashing every
                // level of messages nested in messages would read the innermost
                // once per level (its attachments are hashed all the same).
                sha256: (item.msg_depth == 0)
                    .then(|| Sha256::digest(&src.as_slice()[range.clone()]).into()),
                text: None,
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
            path,
            path_work,
            parent_label: item.parent_label,
            number: item.number,
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

        let label = || {
            if item.number == 0 && item.parent_label.is_empty() {
                "body".to_owned()
            } else {
                format!("part {}", item.label())
            }
        };
        // Body text is a file only when its content is not text after all, or
        // is text that carries a file (BinHex, which old Mac mailers put there).
        let is_file =
            !body_text || !matches!(classify(data), FileKind::Other(_)) || binhex::is_binhex(data);
        // Where the part's own fact is in `out.files` (with its path), if it is a file.
        let mut file_index = None;
        if is_file {
            let data = keep(self);
            let mut file_path = Vec::with_capacity(item.path.len() + 1);
            file_path.extend_from_slice(&item.path);
            file_path.push(name.clone().unwrap_or_else(|| "(unnamed)".to_owned()));
            if top {
                self.out.attachments_size += data.len() as u64;
            }
            let scan_label = if name.is_some() {
                path_label(&file_path)
            } else {
                label()
            };
            self.scan_part(scan_label, data.clone());
            let index = self.out.files.len();
            let tnef_type = matches!(ctype, "application/ms-tnef" | "application/vnd.ms-tnef");
            let is_tnef = tnef_type || tnef::is_tnef(&data);
            file_index = Some(index);
            inspect_file(
                file_path,
                name.as_deref(),
                &data,
                0,
                &mut self.budget,
                &mut self.out.files,
            );
            self.alt_names(index, &headers.names);
            // Every file found (the attachment, the entries of an archive) and
            // its log label copied the path above it.
            let copies = (self.out.files.len() - index) as u64 + 1;
            if !self.charge(copies * item.path_work) {
                return;
            }
            if is_tnef {
                let path = self.out.files[index].path.clone();
                self.tnef(&path, item.path_work, &data);
            }
        } else if !top {
            // The body text of an attached message: part of an attachment.
            let data = keep(self);
            self.scan_part(label(), data);
        }
        if !is_file && self.budget.reads_text {
            let charset = headers
                .content_type
                .as_ref()
                .and_then(|ct| ct.param("charset"));
            let html = ctype == "text/html";
            if let Some(stamp) = text::body_stamp(data, html, charset, &mut self.budget) {
                let place = if item.path.is_empty() {
                    "body".to_owned()
                } else {
                    format!("{} (body)", path_label(&item.path))
                };
                self.out.body_stamps.push((place, stamp));
            }
        }

        if is_text {
            let max = usize::try_from(self.parts_left()).unwrap_or(usize::MAX);
            for uu in uuencode::find_uuencoded(data, max.saturating_add(1)) {
                if !self.count_part() {
                    break;
                }
                let uu_name = truncate(&uu.name);
                let mut path = match file_index {
                    Some(index) => self.out.files[index].path.clone(),
                    None => item.path.to_vec(),
                };
                path.push(uu_name.clone());
                let bytes = Bytes::from(uu.data);
                let _ = self.budget.hold(bytes.len() as u64);
                if top && !is_file {
                    self.out.attachments_size += bytes.len() as u64;
                }
                self.scan_part(path_label(&path), bytes.clone());
                let index = self.out.files.len();
                inspect_file(
                    path,
                    Some(&uu_name),
                    &bytes,
                    0,
                    &mut self.budget,
                    &mut self.out.files,
                );
                let copies = (self.out.files.len() - index) as u64 + 1;
                if !self.charge(copies * item.path_work) {
                    break;
                }
            }
        }
    }

    /// The files inside a TNEF stream (they count as parts, not as size: the
    /// `winmail.dat` was counted). `path_work`: the work of copying the path of
    /// the attached messages above.
    fn tnef(&mut self, path: &[String], path_work: u64, data: &Bytes) {
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
            let index = self.out.files.len();
            inspect_file(
                inner,
                name.as_deref(),
                &bytes,
                0,
                &mut self.budget,
                &mut self.out.files,
            );
            if !self.charge((self.out.files.len() - index) as u64 * path_work) {
                break;
            }
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

/// A part that is not the body text but a message saved as a file (an `.eml`
/// sent as octet-stream or text): its first bytes, decoded, are a message
/// header (src/inspect/saved_message.rs).
fn is_saved_message(
    item: &Item<'_>,
    headers: &PartHeaders,
    ctype: &str,
    body: Range<usize>,
) -> bool {
    let attachment = headers
        .disposition
        .as_ref()
        .is_some_and(|d| d.value == "attachment");
    let body_text =
        matches!(ctype, "text/plain" | "text/html") && headers.names.is_empty() && !attachment;
    if body_text {
        return false;
    }
    let raw = &item.src.as_slice()[body];
    let start = &raw[..raw.len().min(saved_message::SNIFF_LEN)];
    match decode_body(
        &Src::Borrowed(start),
        0..start.len(),
        headers.encoding.as_deref(),
    ) {
        Decoded::Same => saved_message::looks_like_message(start),
        Decoded::New(bytes) => saved_message::looks_like_message(&bytes),
    }
}

/// Pushes the parts of a multipart entity (`parts`: ranges in its body, which
/// starts at `body_start`) to be walked next, the first on top.
fn push_parts<'a>(
    item: &Item<'a>,
    body_start: usize,
    parts: Vec<Range<usize>>,
    in_digest: bool,
    stack: &mut Vec<Item<'a>>,
) {
    let parent_label: Rc<str> = Rc::from(item.label());
    for (i, r) in parts.into_iter().enumerate().rev() {
        stack.push(Item {
            src: item.src.clone(),
            range: body_start + r.start..body_start + r.end,
            in_digest,
            msg_depth: item.msg_depth,
            nesting: item.nesting + 1,
            path: Rc::clone(&item.path),
            path_work: item.path_work,
            parent_label: Rc::clone(&parent_label),
            number: i + 1,
        });
    }
}

/// The boundary of the first line of `body` that looks like a delimiter
/// (`--` and at most 70 characters, RFC 2046's longest boundary) and is
/// followed by a header field, as a part's first line would be; and the bytes
/// looked at to find it (each line once).
fn delimiter_lookalike(body: &[u8]) -> (Option<&[u8]>, usize) {
    const MAX_BOUNDARY: usize = 70;
    let mut start = 0;
    loop {
        let line_end = memchr::memchr(b'\n', &body[start..]).map_or(body.len(), |i| start + i);
        let line = body[start..line_end].trim_ascii_end();
        if let Some(boundary) = line.strip_prefix(b"--")
            && (1..=MAX_BOUNDARY).contains(&boundary.len())
        {
            let next_start = (line_end + 1).min(body.len());
            let next_end =
                memchr::memchr(b'\n', &body[next_start..]).map_or(body.len(), |i| next_start + i);
            if is_header_field(body[next_start..next_end].trim_ascii_end()) {
                return (Some(boundary), next_end);
            }
        }
        if line_end >= body.len() {
            return (None, body.len());
        }
        start = line_end + 1;
    }
}

/// The work of copying one step of a path (see [`PATH_STEP_WORK`]).
fn step_work(step: &str) -> u64 {
    step.len() as u64 + PATH_STEP_WORK
}

/// A path for log labels, with control and bidi characters made visible.
fn path_label(path: &[String]) -> String {
    match path {
        [one] => display_name(one, 80),
        _ => path
            .iter()
            .map(|p| display_name(p, 80))
            .collect::<Vec<_>>()
            .join(" > "),
    }
}

/// Shortens an absurdly long name for logs and replies, keeping its start and
/// its end: the final extension decides whether a file is an executable, so it
/// must survive (`aaaa…aaaa.exe`).
fn truncate(name: &str) -> String {
    if name.len() <= MAX_NAME_CHARS {
        return name.to_owned(); // no more characters than bytes
    }
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

/// True for the transfer encodings [`decode_body`] decodes (into a new buffer).
fn is_decoded(encoding: Option<&str>) -> bool {
    match encoding.map(str::trim) {
        Some(e) => ["base64", "quoted-printable"]
            .iter()
            .chain(UUENCODINGS)
            .any(|d| e.eq_ignore_ascii_case(d)),
        None => false,
    }
}

const UUENCODINGS: &[&str] = &["x-uuencode", "x-uue", "uuencode", "x-uu"];

fn decode_body(src: &Src<'_>, body: Range<usize>, encoding: Option<&str>) -> Decoded {
    let raw = &src.as_slice()[body];
    match encoding.map(str::trim) {
        Some(e) if e.eq_ignore_ascii_case("base64") => Decoded::New(decode_base64(raw).into()),
        Some(e) if e.eq_ignore_ascii_case("quoted-printable") => {
            Decoded::New(decode_quoted_printable(raw).into())
        }
        Some(e) if UUENCODINGS.iter().any(|u| e.eq_ignore_ascii_case(u)) => {
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

/// Reads the MIME headers of a header block: at most [`MAX_MIME_FIELDS`]
/// fields and [`MAX_NAMES_PER_PART`] names, looking at the clock as it goes.
fn parse_headers(block: &[u8], budget: &Budget) -> PartHeaders {
    let mut h = PartHeaders::default();
    // `filename` values go straight into `h.names`; `name` values follow them.
    let mut ct_names = Vec::new();
    let (fields, more) = header_fields(block);
    if more {
        h.over_limit.push(format!(
            "more than {MAX_MIME_FIELDS} Content-* header fields in one MIME part"
        ));
    }
    for (i, (name, value)) in fields.into_iter().enumerate() {
        if i % FIELDS_PER_CLOCK_CHECK == FIELDS_PER_CLOCK_CHECK - 1
            && let Err(problem) = budget.check_limits()
        {
            h.over_limit.push(problem);
            break;
        }
        let name = String::from_utf8_lossy(name);
        let name = name.trim();
        // The parameters the walk uses; the others are only counted.
        let (is_type, wanted, used) = if name.eq_ignore_ascii_case("content-type") {
            let used: &[&str] = &["name", "boundary", "protocol", "smime-type"];
            (true, "name", used)
        } else if name.eq_ignore_ascii_case("content-disposition") {
            (false, "filename", &["filename"][..])
        } else {
            if name.eq_ignore_ascii_case("content-transfer-encoding") && h.encoding.is_none() {
                let v = String::from_utf8_lossy(&value);
                let v = v.split(['(', ';']).next().unwrap_or("").trim().to_owned();
                h.encoding = Some(v);
            }
            continue;
        };
        let mut f = parse_content_field_only(&value, used);
        if let Some(limit) = f.over_limit.take() {
            h.over_limit.push(limit);
        }
        // The names are moved out: the walk reads them from `h.names` only.
        let names = f
            .params
            .iter_mut()
            .filter(|(n, _)| n == wanted)
            .map(|(_, v)| std::mem::take(v));
        if is_type {
            ct_names.extend(names);
            h.content_type.get_or_insert(f);
        } else {
            for n in names {
                h.add_name(n);
            }
            h.disposition.get_or_insert(f);
        }
    }
    for n in ct_names {
        h.add_name(n);
    }
    h
}

impl PartHeaders {
    /// Adds a name unless it is blank or known. The list searched for each
    /// name is at most [`MAX_NAMES_PER_PART`] long (unbounded, that search was
    /// quadratic); past it, the cap is recorded once and further names ignored.
    fn add_name(&mut self, name: String) {
        let trimmed = name.trim();
        if self.names_capped || trimmed.is_empty() || self.names.iter().any(|n| n == trimmed) {
            return;
        }
        if self.names.len() == MAX_NAMES_PER_PART {
            self.names_capped = true;
            self.over_limit.push(format!(
                "more than {MAX_NAMES_PER_PART} file names for one MIME part"
            ));
            return;
        }
        let name = if trimmed.len() == name.len() {
            name
        } else {
            trimmed.to_owned()
        };
        if self.names.capacity() == 0 {
            self.names = Vec::with_capacity(2); // allocated once, not grown
        }
        self.names.push(name);
    }
}

/// A header field, unfolded: its name, and its value without line ends (a
/// slice of the header block unless it was folded).
type Field<'a> = (&'a [u8], Cow<'a, [u8]>);

/// The `Content-*` fields of a header block, at most [`MAX_MIME_FIELDS`] (true
/// when there were more).
fn header_fields(block: &[u8]) -> (Vec<Field<'_>>, bool) {
    // Room for what mail clients write (type, disposition, encoding), allocated
    // once rather than grown.
    let mut fields: Vec<Field<'_>> = Vec::with_capacity(4);
    // Only the MIME headers are needed; the others are not copied.
    let mut keep = false;
    let mut start = 0;
    while start < block.len() {
        let end = memchr::memchr(b'\n', &block[start..]).map_or(block.len(), |i| start + i);
        let line = &block[start..end];
        start = end + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if matches!(line[0], b' ' | b'\t') {
            if keep && let Some((_, value)) = fields.last_mut() {
                value.to_mut().extend_from_slice(line);
            }
            continue;
        }
        keep = false;
        if let Some(colon) = memchr::memchr(b':', line) {
            let name = &line[..colon];
            if name.len() >= 12 && name[..8].eq_ignore_ascii_case(b"content-") {
                if fields.len() == MAX_MIME_FIELDS {
                    return (fields, true);
                }
                keep = true;
                fields.push((name, Cow::Borrowed(&line[colon + 1..])));
            }
        }
    }
    (fields, false)
}

/// The body parts of a multipart body, as ranges in `body`, at most `max`, and
/// the bytes of the lines that had to be checked for a delimiter (lines that
/// start with `--boundary`: the search skips the others at memchr speed).
/// Delimiter lines are `--boundary` (with optional blanks after it); `--boundary--`
/// closes. Without a closing delimiter the last part runs to the end.
fn split_multipart(body: &[u8], boundary: &[u8], max: u64) -> (Vec<Range<usize>>, u64) {
    let mut delim = Vec::with_capacity(boundary.len() + 3);
    delim.extend_from_slice(b"\n--");
    delim.extend_from_slice(boundary);
    let finder = memchr::memmem::Finder::new(&delim);

    let mut parts = Vec::new();
    let mut checked = 0;
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
        checked += (line_end - line_start) as u64;
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
                return (parts, checked);
            }
        }
        if close {
            return (parts, checked);
        }
        open = Some(line_end);
        search_from = line_end.saturating_sub(1).max(search_from);
    }
    if let Some(start) = open {
        parts.push(start..body.len());
    }
    (parts, checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delimiter_lookalikes() {
        let found = |body: &[u8]| delimiter_lookalike(body).0.map(<[u8]>::to_vec);
        assert_eq!(
            found(b"--B\r\nContent-Type: text/plain\r\n\r\nx"),
            Some(b"B".to_vec())
        );
        assert_eq!(
            found(b"text\r\n--a b  \r\nX-Any: 1\r\n"),
            Some(b"a b".to_vec())
        );
        // A signature separator, a line not followed by a header, an overlong line.
        assert_eq!(found(b"hi\r\n-- \r\nNguyen: 1\r\n"), None);
        assert_eq!(found(b"--B\r\n\r\nContent-Type: x\r\n"), None);
        let long = [b"--".as_slice(), &[b'b'; 71], b"\nContent-Type: x\n"].concat();
        assert_eq!(found(&long), None);
        assert_eq!(found(b""), None);
        assert_eq!(found(b"--B"), None);
    }

    #[test]
    fn multipart_split() {
        let body = b"preamble\r\n--b\r\nA: 1\r\n\r\none\r\n--b \r\n\r\ntwo\r\n--bb\r\nstill two\r\n--b--\r\nepilogue";
        let (parts, checked) = split_multipart(body, b"b", 100);
        let texts: Vec<&[u8]> = parts.iter().map(|r| &body[r.clone()]).collect();
        // The delimiter lines and "--bb", not the rest.
        assert_eq!(checked, 5 + 6 + 6 + 7);
        assert_eq!(
            texts,
            [&b"A: 1\r\n\r\none"[..], b"\r\ntwo\r\n--bb\r\nstill two"]
        );
        // No closing delimiter, LF line ends, delimiter on the first line.
        let body = b"--b\nx\n--b\ny\n";
        let (parts, _) = split_multipart(body, b"b", 100);
        let texts: Vec<&[u8]> = parts.iter().map(|r| &body[r.clone()]).collect();
        assert_eq!(texts, [&b"x"[..], b"y\n"]);
        assert_eq!(split_multipart(body, b"b", 1).0.len(), 1);
        assert_eq!(split_multipart(b"no delimiters", b"b", 10), (vec![], 0));
        // Empty parts.
        let body = b"--b\r\n--b\r\n--b--";
        assert_eq!(split_multipart(body, b"b", 10).0.len(), 2);
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
            &budget(),
        );
        assert_eq!(h.names, ["a.pdf", "b.exe"]);
        assert_eq!(h.encoding.as_deref(), Some("Base64"));
        assert_eq!(h.content_type.unwrap().value, "application/pdf");
        assert_eq!(h.disposition.unwrap().value, "attachment");
        assert!(h.over_limit.is_empty());
    }

    fn budget() -> Budget {
        Budget::new(&LimitsSection::default())
    }

    fn disposition_fields(names: impl Iterator<Item = String>) -> Vec<u8> {
        names
            .map(|n| format!("Content-Disposition: attachment; filename=\"{n}\"\r\n"))
            .collect::<String>()
            .into_bytes()
    }

    #[test]
    fn repeated_fields_and_names_are_capped() {
        // The same name again and again is one name.
        let block = disposition_fields((0..MAX_MIME_FIELDS).map(|_| "a.pdf".to_owned()));
        let h = parse_headers(&block, &budget());
        assert_eq!((h.names.len(), h.over_limit.len()), (1, 0));

        let block = disposition_fields((0..=MAX_MIME_FIELDS).map(|_| "a.pdf".to_owned()));
        let h = parse_headers(&block, &budget());
        assert_eq!(
            h.over_limit,
            ["more than 64 Content-* header fields in one MIME part"]
        );
        // Other fields do not count.
        let mut block = "X-A: b\r\n".repeat(10_000).into_bytes();
        block.extend(disposition_fields(std::iter::once("a.pdf".to_owned())));
        assert!(parse_headers(&block, &budget()).over_limit.is_empty());

        let block = disposition_fields((0..=MAX_NAMES_PER_PART).map(|i| format!("f{i}.pdf")));
        let h = parse_headers(&block, &budget());
        assert_eq!(h.names.len(), MAX_NAMES_PER_PART);
        assert_eq!(h.over_limit, ["more than 16 file names for one MIME part"]);

        // The caps of one header come through.
        let block = format!(
            "Content-Type: text/plain; name=\"{}\"\r\n",
            "a".repeat(super::super::names::MAX_PARAM_LEN + 1)
        );
        let h = parse_headers(block.as_bytes(), &budget());
        assert_eq!(h.over_limit, ["a header parameter longer than 16384 bytes"]);
    }

    #[test]
    fn long_headers_watch_the_clock() {
        let limits = LimitsSection {
            max_inspect_time: crate::policy::Seconds::secs(0),
            ..LimitsSection::default()
        };
        let block = disposition_fields((0..FIELDS_PER_CLOCK_CHECK).map(|i| format!("{i}")));
        let h = parse_headers(&block, &Budget::new(&limits));
        assert_eq!(h.names.len(), FIELDS_PER_CLOCK_CHECK - 1);
        assert!(
            h.over_limit[0].contains("max_inspect_time"),
            "{:?}",
            h.over_limit
        );
    }

    const WORK_PROBLEM: &str = "MIME structure nested too deep for its size (inspecting it would read more than 8 times the message)";

    /// The walk's result, and the work the same walk does unbounded, as a
    /// multiple of the message's size.
    fn walk(raw: &[u8]) -> (Inspection, u64) {
        let limits = LimitsSection::default();
        let len = raw.len() as u64;
        let work = {
            let mut unbounded = Walker::new(&limits, None);
            unbounded.max_work = u64::MAX;
            let mut stack = vec![Item::message(Src::Borrowed(raw))];
            while let Some(item) = stack.pop() {
                unbounded.count_part();
                unbounded.entity(item, &mut stack);
            }
            unbounded.work
        };
        (
            Walker::new(&limits, None).run(Src::Borrowed(raw)),
            work / len.max(1),
        )
    }

    /// Multipart nested `levels` deep, whose boundaries all start the same way,
    /// and `bulk` bytes at the bottom of lines that start like every delimiter:
    /// each level checks every line.
    fn nested_multipart(levels: usize, bulk: usize) -> Vec<u8> {
        let boundary = |level: usize| "b".repeat(level + 1);
        let mut raw = format!(
            "Content-Type: multipart/mixed; boundary={}\r\n\r\n",
            boundary(0)
        )
        .into_bytes();
        for level in 0..levels {
            raw.extend(
                format!(
                    "--{}\r\nContent-Type: multipart/mixed; boundary={}\r\n\r\n",
                    boundary(level),
                    boundary(level + 1)
                )
                .as_bytes(),
            );
        }
        raw.extend(format!("--{}\r\n\r\n", boundary(levels)).as_bytes());
        let line = format!("--{}x\r\n", boundary(levels));
        raw.extend(line.repeat(bulk / line.len()).as_bytes());
        raw
    }

    #[test]
    fn nested_multipart_work_is_bounded() {
        // Ordinary depth: little work, no problem.
        let (i, work) = walk(&nested_multipart(4, 1 << 20));
        assert!(i.problems.is_empty(), "{:?}", i.problems);
        assert!(work <= 5, "{work} times the message");
        // 100 levels would check every line 100 times; the walk stops at 8.
        let (i, work) = walk(&nested_multipart(100, 1 << 20));
        assert!(work >= 90, "{work} times the message");
        assert_eq!(i.problems, [WORK_PROBLEM]);
        assert!(i.parts <= MAX_WALK_WORK + 2, "{} parts", i.parts);
        // Small messages may nest deep: it costs little.
        let (i, _) = walk(&nested_multipart(100, 1000));
        assert!(i.problems.is_empty(), "{:?}", i.problems);
    }

    /// Attached messages nested `levels` deep, each `encoding`-encoded (with
    /// nothing to decode) and named `name`, `files` small files at the bottom.
    fn nested_messages(levels: usize, encoding: &str, name: &str, files: usize) -> Vec<u8> {
        let mut raw = Vec::new();
        for _ in 0..levels {
            raw.extend(
                format!(
                    "Content-Type: message/rfc822; name=\"{name}\"\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n"
                )
                .as_bytes(),
            );
        }
        raw.extend(b"Content-Type: multipart/mixed; boundary=b\r\n\r\n");
        for i in 0..files {
            raw.extend(
                format!("--b\r\nContent-Type: application/pdf; name=f{i}.pdf\r\n\r\nx\r\n")
                    .as_bytes(),
            );
        }
        raw.extend(format!("{}\r\n", "cong van so ve viec".repeat(100_000)).as_bytes());
        raw
    }

    #[test]
    fn nested_message_work_is_bounded() {
        // Quoted-printable that decodes to itself, 100 levels: each decodes it all.
        let (i, work) = walk(&nested_messages(100, "quoted-printable", "m.eml", 1));
        assert!(work >= 90, "{work} times the message");
        assert_eq!(i.problems, [WORK_PROBLEM]);
        let (i, work) = walk(&nested_messages(4, "quoted-printable", "m.eml", 1));
        assert!(i.problems.is_empty(), "{:?}", i.problems);
        assert!(work <= 5, "{work} times the message");
        // 8bit levels are slices, not decoded: no work, however deep.
        let (i, work) = walk(&nested_messages(100, "8bit", "m.eml", 1));
        assert!(i.problems.is_empty(), "{:?}", i.problems);
        assert_eq!(work, 0);
        // Long names 100 deep, copied for each of many files.
        let name = "n".repeat(250);
        let (i, work) = walk(&nested_messages(100, "8bit", &name, 5000));
        assert!(work >= 50, "{work} times the message");
        assert_eq!(i.problems, [WORK_PROBLEM]);
        // ... and for a few files, the whole path is kept.
        let (i, _) = walk(&nested_messages(100, "8bit", &name, 3));
        assert!(i.problems.is_empty(), "{:?}", i.problems);
        assert_eq!(i.files.last().unwrap().path.len(), 101);
    }
}
