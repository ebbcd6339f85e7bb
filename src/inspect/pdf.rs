//! Files embedded in a PDF (`/Type /EmbeddedFile` streams, named by the file
//! specifications that point at them): what Acrobat and other readers list as
//! attachments and let the reader save or open.
//!
//! A small scanner of our own rather than a PDF library: lopdf (the kept Rust
//! PDF crate) parses nested arrays and dictionaries by recursion, so a file
//! nesting a few hundred thousand `[` overflows the stack, which aborts the
//! process (no `catch_unwind` stops that); it also loads every object of the
//! document, with no deadline to watch. Here one pass finds every `N G obj`
//! dictionary (no recursion: nesting is counted), and only the streams that
//! matter are decoded: embedded files, and object streams (`/Type /ObjStm`,
//! PDF 1.5), where the file specifications with the names may be compressed.
//! Embedded file streams themselves are never inside object streams (the
//! format forbids streams there).
//!
//! Every embedded stream is inspected, whether or not a file specification
//! names it (an unreferenced one is still there for a tool to extract). Filters:
//! FlateDecode and ASCIIHexDecode (what writers use); another filter, a
//! predictor, or an encrypted document leaves the file `uninspectable`.
//!
//! The same pass tells a digitally signed PDF: a signature dictionary with the
//! byte range it signs (detected, not verified).

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{Cursor, Read};

use flate2::read::ZlibDecoder;

use super::SignatureFormat;
use super::archive::{Keep, Opened, Sink, read_entry};
use super::budget::Budget;
use super::carrier::{decode_hex, hand_damaged, hand_decoded, hand_owned, hand_unpacked};

/// Longest dictionary read (real ones are a few hundred bytes); a longer one is
/// skipped.
const MAX_DICT: usize = 64 * 1024;
/// Objects looked at between two looks at the clock.
const OBJECTS_PER_CLOCK_CHECK: usize = 256;
/// Bytes the search for the ends of dictionaries may read, as a multiple of the
/// file's size: each byte of a well-formed file is read once, but a dictionary
/// that never closes is read up to [`MAX_DICT`] bytes for every `obj` in it.
const MAX_DICT_WORK: usize = 4;

/// A PDF: `%PDF-` within its first 1024 bytes, where readers look for it.
pub fn is_pdf(data: &[u8]) -> bool {
    memchr::memmem::find(&data[..data.len().min(1024)], b"%PDF-").is_some()
}

/// One stream object of the file.
struct Stream<'a> {
    number: u32,
    /// Its dictionary, `#xx` escapes in names decoded (a copy only when
    /// there were any).
    dict: Cow<'a, [u8]>,
    data: &'a [u8],
}

/// Hands every embedded file of the PDF `data` to `sink`.
pub fn open(data: &[u8], budget: &mut Budget, sink: &mut Sink<'_>) -> Opened {
    let mut opened = Opened::default();
    let mut embedded: Vec<Stream<'_>> = Vec::new();
    let mut object_streams: Vec<Stream<'_>> = Vec::new();
    let mut names: HashMap<u32, String> = HashMap::new();
    let mut referenced: Vec<Stream<'_>> = Vec::new();
    let mut scanner = Scanner::new(data);
    let mut seen = 0usize;
    while let Some((number, dict, stream)) = scanner.next_object() {
        seen += 1;
        if seen.is_multiple_of(OBJECTS_PER_CLOCK_CHECK)
            && let Err(reason) = budget.check_limits()
        {
            opened.problem(reason);
            return opened;
        }
        let dict = normalize_names(dict);
        if opened.signature.is_none() && is_signature(&dict) {
            opened.signature = Some(SignatureFormat::Pdf);
        }
        collect_file_specs(&dict, &mut names);
        let Some(stream) = stream else { continue };
        let s = Stream {
            number,
            dict,
            data: stream,
        };
        if has_name_value(&s.dict, b"/Type", b"/EmbeddedFile") {
            embedded.push(s);
        } else if has_name_value(&s.dict, b"/Type", b"/ObjStm") {
            object_streams.push(s);
        } else {
            // An embedded file may leave out /Type: a file specification's
            // /EF says what it is.
            referenced.push(s);
        }
    }
    if scanner.too_damaged {
        opened.problem(format!(
            "damaged PDF: dictionaries that do not close (reading them would take more than {MAX_DICT_WORK} times the file)"
        ));
        return opened;
    }
    for s in &object_streams {
        read_object_stream(s, &mut opened, budget, |content| {
            for range in top_level_dicts(content) {
                collect_file_specs(&normalize_names(&content[range]), &mut names);
            }
        });
    }
    embedded.extend(
        referenced
            .into_iter()
            .filter(|s| names.contains_key(&s.number)),
    );
    if embedded.is_empty() {
        return opened;
    }
    let encrypted = has_key(scanner.trailers(), b"/Encrypt");
    for s in embedded {
        let name = names.get(&s.number).cloned().unwrap_or_default();
        if encrypted {
            let reason = format!(
                "encrypted PDF: embedded file '{}' cannot be read",
                shown(&name)
            );
            if !hand_damaged(name, None, reason, &mut opened, budget, sink) {
                break;
            }
            continue;
        }
        let go_on = match filters(&s.dict) {
            Ok(filters) if filters.is_empty() => {
                hand_decoded(name, s.data, &mut opened, budget, sink)
            }
            Ok(filters) if filters == [Filter::Flate] => {
                let packed = s.data.len() as u64;
                hand_unpacked(
                    name,
                    packed,
                    || Box::new(ZlibDecoder::new(s.data)),
                    "PDF",
                    &mut opened,
                    budget,
                    sink,
                )
            }
            Ok(filters) => {
                // ASCIIHexDecode, maybe before FlateDecode: the hex is decoded here
                // (half its size), the rest like a plain stream.
                let hex = decode_hex(s.data.split(|&b| b == b'>').next().unwrap_or(&[]));
                if filters.len() == 1 {
                    hand_owned(name, hex, &mut opened, budget, sink)
                } else {
                    let held = hex.capacity() as u64;
                    match budget.hold(held) {
                        Ok(()) => {
                            let go_on = hand_unpacked(
                                name,
                                hex.len() as u64,
                                || Box::new(ZlibDecoder::new(Cursor::new(hex.as_slice()))),
                                "PDF",
                                &mut opened,
                                budget,
                                sink,
                            );
                            budget.release(held);
                            go_on
                        }
                        Err(reason) => {
                            opened.problem(reason);
                            false
                        }
                    }
                }
            }
            Err(what) => {
                let reason = format!(
                    "PDF embedded file '{}' is encoded with {what}, which cannot be decoded here",
                    shown(&name)
                );
                hand_damaged(name, None, reason, &mut opened, budget, sink)
            }
        };
        if !go_on {
            break;
        }
    }
    opened
}

/// A signature dictionary (`/Type /Sig`) that signs bytes of the file
/// (`/ByteRange`): a signed signature field. A document timestamp
/// (`/DocTimeStamp`) or an empty signature field is not a signature. The
/// signature dictionary is never in an object stream: the signed byte range
/// leaves out its `/Contents` in the file itself.
fn is_signature(dict: &[u8]) -> bool {
    // `/ByteRange` first: one pass over the dictionary, and rare.
    has_key(dict, b"/ByteRange") && has_name_value(dict, b"/Type", b"/Sig")
}

fn shown(name: &str) -> &str {
    if name.is_empty() { "(unnamed)" } else { name }
}

/// Gives `read` the objects of an object stream, decoded (held whole, within
/// the budget, while `read` looks at them).
fn read_object_stream(
    s: &Stream<'_>,
    opened: &mut Opened,
    budget: &mut Budget,
    read: impl FnOnce(&[u8]),
) {
    let reader: Box<dyn Read> = match filters(&s.dict) {
        Ok(f) if f.is_empty() => Box::new(s.data),
        Ok(f) if f == [Filter::Flate] => Box::new(ZlibDecoder::new(s.data)),
        // A writer that hides names behind other filters: the embedded files
        // are still inspected, unnamed.
        _ => return,
    };
    let mut reader = reader;
    let unpacked = read_entry(
        &mut reader,
        s.data.len() as u64,
        "PDF object stream",
        Keep::Whole,
        budget,
    );
    if let Some(limit) = &unpacked.limit {
        opened.problem(limit.clone());
    }
    read(&unpacked.data);
    unpacked.discard(budget);
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Filter {
    Flate,
    AsciiHex,
}

/// The stream's filters, in order; Err names one that is not decoded here (or
/// a predictor).
pub(crate) fn filters(dict: &[u8]) -> Result<Vec<Filter>, String> {
    let mut out = Vec::new();
    let Some(value) = key_value(dict, b"/Filter") else {
        return Ok(out);
    };
    let value = value.strip_prefix(b"[").unwrap_or(value);
    for name in value
        .split(|&b| b == b'/' || b == b']')
        .map(|n| n.trim_ascii())
        .filter(|n| !n.is_empty())
        .take_while(|n| n.iter().all(u8::is_ascii_alphanumeric))
    {
        match name {
            b"FlateDecode" | b"Fl" => out.push(Filter::Flate),
            b"ASCIIHexDecode" | b"AHx" => out.push(Filter::AsciiHex),
            other => return Err(format!("/{}", String::from_utf8_lossy(other))),
        }
    }
    if out.len() > 2
        || out.iter().skip(1).any(|f| *f == Filter::AsciiHex)
        || (out.len() == 2 && out[0] != Filter::AsciiHex)
    {
        return Err("a chain of filters".into());
    }
    if let Some(parms) = key_value(dict, b"/DecodeParms")
        && let Some(predictor) = key_value(parms, b"/Predictor")
        && predictor.trim_ascii() != b"1"
    {
        return Err("a predictor".into());
    }
    Ok(out)
}

/// Finds the file specifications in a dictionary (`/EF << /F N G R >>`, with the
/// name in `/UF` or `/F`) and records which stream object each names.
fn collect_file_specs(dict: &[u8], names: &mut HashMap<u32, String>) {
    let mut from = 0;
    while let Some(at) = find_key(&dict[from..], b"/EF") {
        let ef_at = from + at;
        from = ef_at + 3;
        let rest = dict[from..].trim_ascii_start();
        let Some(inner) = rest.strip_prefix(b"<<") else {
            continue;
        };
        let inner = &inner[..memchr::memmem::find(inner, b">>").unwrap_or(inner.len())];
        let Some(number) = first_reference(inner) else {
            continue;
        };
        // The name: /UF (a text string) before /F (bytes), in the dictionary
        // around /EF (its start is not known: the whole of it is searched, /EF's
        // own /F being a reference, not a string).
        let name = [b"/UF".as_slice(), b"/F"]
            .iter()
            .find_map(|key| string_value(dict, key))
            .map(|raw| text_string(&raw))
            .unwrap_or_default();
        names
            .entry(number)
            .and_modify(|n| {
                if n.is_empty() {
                    n.clone_from(&name)
                }
            })
            .or_insert(name);
    }
}

/// The object number of the first `N G R` in `text`.
fn first_reference(text: &[u8]) -> Option<u32> {
    let words: Vec<&[u8]> = text
        .split(|b| b.is_ascii_whitespace() || *b == b'/')
        .filter(|w| !w.is_empty())
        .take(16)
        .collect();
    words.windows(3).find_map(|w| {
        (w[2] == b"R" && w[1].iter().all(u8::is_ascii_digit))
            .then(|| std::str::from_utf8(w[0]).ok()?.parse().ok())
            .flatten()
    })
}

/// The first string value (`(...)` or `<...>`) of `key` in `dict`, raw bytes.
fn string_value(dict: &[u8], key: &[u8]) -> Option<Vec<u8>> {
    let mut from = 0;
    while let Some(at) = find_key(&dict[from..], key) {
        from += at + key.len();
        let rest = dict[from..].trim_ascii_start();
        if rest.starts_with(b"(") {
            return Some(literal_string(rest));
        }
        if rest.starts_with(b"<") && !rest.starts_with(b"<<") {
            let end = memchr::memchr(b'>', rest).unwrap_or(rest.len());
            return Some(decode_hex(&rest[1..end]));
        }
    }
    None
}

/// A literal string `( ... )` at the start of `text`, its escapes decoded.
fn literal_string(text: &[u8]) -> Vec<u8> {
    literal_string_and_length(text).0
}

/// [`literal_string`], and how many bytes of `text` it took.
pub(crate) fn literal_string_and_length(text: &[u8]) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < text.len() {
        let c = text[i];
        i += 1;
        match c {
            b'(' => {
                depth += 1;
                if depth == 1 {
                    continue;
                }
            }
            b')' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            b'\\' => {
                let Some(&e) = text.get(i) else { break };
                i += 1;
                let decoded = match e {
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'b' => 8,
                    b'f' => 12,
                    b'0'..=b'7' => {
                        let mut v = u32::from(e - b'0');
                        for _ in 0..2 {
                            match text.get(i) {
                                Some(&d @ b'0'..=b'7') => {
                                    v = v * 8 + u32::from(d - b'0');
                                    i += 1;
                                }
                                _ => break,
                            }
                        }
                        v as u8
                    }
                    b'\r' | b'\n' => {
                        if e == b'\r' && text.get(i) == Some(&b'\n') {
                            i += 1;
                        }
                        continue;
                    }
                    other => other,
                };
                out.push(decoded);
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    (out, i)
}

/// A PDF text string: UTF-16BE after a byte order mark, UTF-8 after its mark,
/// else PDFDocEncoding (read as Latin-1, which it matches for names).
fn text_string(raw: &[u8]) -> String {
    if let Some(utf16) = raw.strip_prefix(&[0xFE, 0xFF]) {
        let units: Vec<u16> = utf16
            .chunks_exact(2)
            .map(|p| u16::from_be_bytes([p[0], p[1]]))
            .collect();
        return String::from_utf16_lossy(&units);
    }
    if let Some(utf8) = raw.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        return String::from_utf8_lossy(utf8).into_owned();
    }
    raw.iter().map(|&b| char::from(b)).collect()
}

/// The raw value after `key`, up to the next key or the end of the dictionary
/// (enough for names, numbers, arrays of names and a small dictionary).
pub(crate) fn key_value<'d>(dict: &'d [u8], key: &[u8]) -> Option<&'d [u8]> {
    let at = find_key(dict, key)? + key.len();
    let rest = dict[at..].trim_ascii_start();
    let end = if rest.starts_with(b"<<") {
        memchr::memmem::find(rest, b">>").map_or(rest.len(), |e| e + 2)
    } else if rest.starts_with(b"[") {
        memchr::memchr(b']', rest).map_or(rest.len(), |e| e + 1)
    } else {
        // A name or number: up to the next delimiter after its first byte.
        1 + rest
            .iter()
            .skip(1)
            .position(|b| b"/<>[]()".contains(b) || b.is_ascii_whitespace())
            .unwrap_or(rest.len().saturating_sub(1))
    };
    Some(&rest[..end.min(rest.len())])
}

/// True when `dict` has `key` whose value is the name `value`.
pub(crate) fn has_name_value(dict: &[u8], key: &[u8], value: &[u8]) -> bool {
    let mut from = 0;
    while let Some(at) = find_key(&dict[from..], key) {
        from += at + key.len();
        if let Some(v) = key_value(&dict[from - key.len()..], key)
            && v == value
        {
            return true;
        }
    }
    false
}

pub(crate) fn has_key(text: &[u8], key: &[u8]) -> bool {
    find_key(text, key).is_some()
}

/// Where the name `key` (`/EF`) stands as a whole name: not the start of a
/// longer one (`/EmbeddedFiles` is not `/EmbeddedFile`).
fn find_key(text: &[u8], key: &[u8]) -> Option<usize> {
    let finder = memchr::memmem::Finder::new(key);
    let mut from = 0;
    while let Some(at) = finder.find(&text[from..]) {
        let start = from + at;
        let end = start + key.len();
        if text.get(end).is_none_or(|b| !is_regular(*b)) {
            return Some(start);
        }
        from = end;
    }
    None
}

/// A byte that may continue a name (not whitespace, not a delimiter).
fn is_regular(b: u8) -> bool {
    !(b.is_ascii_whitespace() || b"()<>[]{}/%".contains(&b) || b == 0)
}

/// `/Embedded#46ile` is `/EmbeddedFile`: names with `#xx` escapes, decoded.
pub(crate) fn normalize_names(dict: &[u8]) -> Cow<'_, [u8]> {
    if memchr::memchr(b'#', dict).is_none() {
        return Cow::Borrowed(dict);
    }
    let mut out = Vec::with_capacity(dict.len());
    let mut in_name = false;
    let mut i = 0;
    while i < dict.len() {
        let c = dict[i];
        if c == b'/' {
            in_name = true;
        } else if !is_regular(c) {
            in_name = false;
        }
        if in_name
            && c == b'#'
            && let Some(v) = dict
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(c);
        i += 1;
    }
    Cow::Owned(out)
}

/// The ranges of the dictionaries at the top level of `text` (the objects of an
/// object stream).
fn top_level_dicts(text: &[u8]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(at) = memchr::memmem::find(&text[i..], b"<<") {
        let start = i + at;
        match dict_end(text, start, &mut 0) {
            Some(end) => {
                out.push(start..end);
                i = end;
            }
            None => break,
        }
    }
    out
}

/// The end (after `>>`) of the dictionary starting at `start` (`<<`), nesting
/// counted, strings and comments skipped; `None` past [`MAX_DICT`] bytes or the
/// end of `text`. The bytes it may have read are added to `work`.
fn dict_end(text: &[u8], start: usize, work: &mut usize) -> Option<usize> {
    let limit = text.len().min(start.saturating_add(MAX_DICT));
    let end = dict_end_before(text, start, limit);
    *work += end.unwrap_or(limit) - start;
    end
}

fn dict_end_before(text: &[u8], start: usize, limit: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    while i < limit {
        match text[i] {
            b'<' if text.get(i + 1) == Some(&b'<') => {
                depth += 1;
                i += 2;
            }
            b'>' if text.get(i + 1) == Some(&b'>') => {
                depth = depth.checked_sub(1)?;
                i += 2;
                if depth == 0 {
                    return Some(i);
                }
            }
            b'<' => {
                i = i + 1 + memchr::memchr(b'>', &text[i + 1..limit])? + 1;
            }
            b'(' => {
                let mut nest = 0usize;
                while i < limit {
                    match text[i] {
                        b'\\' => i += 1,
                        b'(' => nest += 1,
                        b')' => {
                            nest -= 1;
                            if nest == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                i += 1;
            }
            b'%' => {
                i += memchr::memchr2(b'\n', b'\r', &text[i..limit])?;
            }
            _ => i += 1,
        }
    }
    None
}

/// An object's number, its dictionary, and its stream if it has one.
pub(crate) type RawObject<'a> = (u32, &'a [u8], Option<&'a [u8]>);

/// One pass over the file: each `N G obj` with a dictionary, and its stream.
pub(crate) struct Scanner<'a> {
    data: &'a [u8],
    pos: usize,
    /// The next `endstream` at or after `endstream_from`, found once and reused
    /// by every stream that starts before it (many streams without one would
    /// otherwise search the rest of the file each).
    endstream: Option<usize>,
    endstream_from: usize,
    /// Bytes read looking for the ends of dictionaries.
    dict_work: usize,
    /// Set when that passed [`MAX_DICT_WORK`] times the file: the scan ends.
    pub(crate) too_damaged: bool,
}

impl<'a> Scanner<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Scanner {
            data,
            pos: 0,
            endstream: None,
            endstream_from: 0,
            dict_work: 0,
            too_damaged: false,
        }
    }

    /// The trailer dictionaries (classic and cross-reference stream ones both
    /// follow the last object): where `/Encrypt` is.
    pub(crate) fn trailers(&self) -> &'a [u8] {
        let d = self.data;
        match memchr::memmem::rfind(d, b"trailer") {
            Some(at) => &d[at..],
            // A cross-reference stream: its dictionary carries /Encrypt; the
            // whole file is searched (the name appears nowhere else).
            None => d,
        }
    }

    pub(crate) fn next_object(&mut self) -> Option<RawObject<'a>> {
        let d = self.data;
        let finder = memchr::memmem::Finder::new(b"obj");
        while let Some(at) = finder.find(&d[self.pos..]) {
            let obj = self.pos + at;
            self.pos = obj + 3;
            let Some(number) = object_number(&d[..obj]) else {
                continue;
            };
            if d.get(obj + 3).is_some_and(|b| is_regular(*b)) {
                continue;
            }
            let after = skip_blanks(d, obj + 3);
            if !d[after..].starts_with(b"<<") {
                continue;
            }
            let Some(end) = dict_end(d, after, &mut self.dict_work) else {
                if self.dict_work > MAX_DICT_WORK * d.len() + MAX_DICT {
                    self.too_damaged = true;
                    return None;
                }
                continue;
            };
            let dict = &d[after..end];
            self.pos = end;
            let body = skip_blanks(d, end);
            if !d[body..].starts_with(b"stream") {
                return Some((number, dict, None));
            }
            let mut start = body + 6;
            if d[start..].starts_with(b"\r\n") {
                start += 2;
            } else if d[start..].starts_with(b"\n") || d[start..].starts_with(b"\r") {
                start += 1;
            }
            let stream_end = self.stream_end(dict, start);
            self.pos = stream_end;
            return Some((number, dict, Some(&d[start..stream_end])));
        }
        self.pos = d.len();
        None
    }

    /// Where the stream starting at `start` ends: `/Length` when it is a number
    /// that lands on `endstream`, else the next `endstream` (its line end
    /// dropped).
    fn stream_end(&mut self, dict: &[u8], start: usize) -> usize {
        let d = self.data;
        if let Some(len) = key_value(dict, b"/Length")
            .filter(|v| v.iter().all(u8::is_ascii_digit))
            .and_then(|v| std::str::from_utf8(v).ok()?.parse::<usize>().ok())
            && let Some(end) = start.checked_add(len).filter(|&e| e <= d.len())
            && d[skip_blanks(d, end)..].starts_with(b"endstream")
        {
            return end;
        }
        if self.endstream.is_none_or(|e| e < start) || self.endstream_from > start {
            self.endstream_from = start;
            self.endstream = memchr::memmem::find(&d[start..], b"endstream").map(|i| start + i);
        }
        let Some(mut end) = self.endstream else {
            return d.len();
        };
        if d[..end].ends_with(b"\r\n") {
            end -= 2;
        } else if d[..end].ends_with(b"\n") || d[..end].ends_with(b"\r") {
            end -= 1;
        }
        end.max(start)
    }
}

fn skip_blanks(d: &[u8], mut i: usize) -> usize {
    while i < d.len() && (d[i].is_ascii_whitespace() || d[i] == 0) {
        i += 1;
    }
    i
}

/// The object number of `N G ` ending `before` (the text before `obj`).
fn object_number(before: &[u8]) -> Option<u32> {
    let t = before.trim_ascii_end();
    let gen_start = t
        .iter()
        .rposition(|b| !b.is_ascii_digit())
        .map_or(0, |p| p + 1);
    if gen_start == t.len() || t.len() - gen_start > 5 {
        return None;
    }
    let t2 = t[..gen_start].trim_ascii_end();
    if t2.len() == gen_start {
        return None;
    }
    let num_start = t2
        .iter()
        .rposition(|b| !b.is_ascii_digit())
        .map_or(0, |p| p + 1);
    if num_start == t2.len() || t2.len() - num_start > 10 {
        return None;
    }
    std::str::from_utf8(&t2[num_start..]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_signature_dictionary_with_its_byte_range_is_a_signature() {
        assert!(is_signature(
            b"/Type /Sig /Filter /Adobe.PPKLite /ByteRange [0 10 20 30] /Contents <00>"
        ));
        // An empty signature field, a field pointing at its value, a timestamp.
        assert!(!is_signature(b"/FT /Sig /T (ChuKySo) /Rect [0 0 0 0]"));
        assert!(!is_signature(b"/FT /Sig /V 12 0 R /Type /Annot"));
        assert!(!is_signature(
            b"/Type /DocTimeStamp /ByteRange [0 10 20 30] /Contents <00>"
        ));
        assert!(!is_signature(b"/Type /SigRef /ByteRange [0 1 2 3]"));
    }

    #[test]
    fn names_and_keys() {
        assert!(find_key(b"/Names<</EmbeddedFiles 3 0 R>>", b"/EmbeddedFile").is_none());
        assert!(has_name_value(
            &normalize_names(b"<</Type/Embedded#46ile/Length 3>>"),
            b"/Type",
            b"/EmbeddedFile"
        ));
        assert_eq!(object_number(b"junk\n12 0 "), Some(12));
        assert_eq!(object_number(b"end"), None);
        assert_eq!(literal_string(b"(a\\(b\\)c\\101(d)) tail"), b"a(b)cA(d)");
        assert_eq!(text_string(&[0xFE, 0xFF, 0, b'a', 0, b'.', 0, b'e']), "a.e");
        assert_eq!(
            filters(b"<</Filter [/AHx /FlateDecode]>>"),
            Ok(vec![Filter::AsciiHex, Filter::Flate])
        );
        assert!(filters(b"<</Filter /LZWDecode>>").is_err());
        assert!(filters(b"<</Filter/FlateDecode/DecodeParms<</Predictor 12>>>>").is_err());
    }

    #[test]
    fn file_spec_names_the_stream() {
        let mut names = HashMap::new();
        collect_file_specs(
            b"<</Type/Filespec/F(a.txt)/UF<FEFF0062002E006500780065>/EF<</F 7 0 R/UF 7 0 R>>>>",
            &mut names,
        );
        assert_eq!(names.get(&7).map(String::as_str), Some("b.exe"));
    }

    /// A file handed to the sink: name, bytes, note.
    type Carried = (String, Vec<u8>, Option<String>);

    /// The files `open` hands to the sink.
    fn carried(pdf: &[u8]) -> (Opened, Vec<Carried>) {
        let mut budget = Budget::new(&crate::policy::LimitsSection::default());
        let mut found = Vec::new();
        let mut sink = |_: &mut Budget, e: super::super::archive::Entry<'_>| {
            found.push((e.name, e.data.unwrap_or_default().to_vec(), e.note));
        };
        let opened = open(pdf, &mut budget, &mut sink);
        (opened, found)
    }

    #[test]
    fn hex_encoded_unreferenced_and_escaped_streams() {
        // ASCIIHexDecode; an embedded file without /Type named by its file
        // specification; /Type written with #xx escapes.
        let pdf = b"%PDF-1.4\n\
            1 0 obj <</Type/EmbeddedFile/Filter/AHx/Length 9>> stream\n4d 5a 90>\nendstream endobj\n\
            2 0 obj <</Length 2>> stream\nhi\nendstream endobj\n\
            3 0 obj <</Type/Filespec/UF(b.exe)/EF<</F 2 0 R>>>> endobj\n\
            4 0 obj <</Type/Embedded#46ile>> stream\nplain\nendstream endobj\n";
        let (opened, found) = carried(pdf);
        assert_eq!(opened.uninspectable, None);
        let found: Vec<(&str, &[u8])> = found
            .iter()
            .map(|(n, d, _)| (n.as_str(), d.as_slice()))
            .collect();
        assert_eq!(
            found,
            [("", &b"MZ\x90"[..]), ("", b"plain"), ("b.exe", b"hi")]
        );
    }

    #[test]
    fn other_filters_and_encryption_are_uninspectable() {
        let (opened, found) = carried(
            b"%PDF-1.4\n1 0 obj <</Type/EmbeddedFile/Filter/LZWDecode>> stream\nx\nendstream endobj",
        );
        assert!(opened.uninspectable.unwrap().contains("/LZWDecode"));
        assert_eq!(found.len(), 1);
        let (opened, _) = carried(
            b"%PDF-1.4\n1 0 obj <</Type/EmbeddedFile>> stream\nx\nendstream endobj\ntrailer <</Encrypt 5 0 R>>",
        );
        assert!(opened.uninspectable.unwrap().starts_with("encrypted PDF"));
    }

    #[test]
    fn nesting_is_counted_not_recursed() {
        let mut text = b"1 0 obj\n".to_vec();
        text.extend(std::iter::repeat_n(b'<', 1_000_000));
        let mut s = Scanner::new(&text);
        assert!(s.next_object().is_none());
    }
}
