//! File names: parameters of `Content-Type` and `Content-Disposition` with RFC 2231
//! (continuations, charsets) and RFC 2047 (encoded words), the final extension the
//! way Windows sees it, and the Unicode direction controls that disguise a name.
//!
//! mail-parser decodes most of this too, but it puts a space between adjacent
//! encoded words (`=?utf-8?Q?x.ex?= =?utf-8?Q?e?=` becomes `x.ex e`, hiding the
//! `.exe`), and it keeps only one of several names; so names are decoded here from
//! the raw header, and every name a part declares is kept.
//!
//! A header is attacker's input of any length, so every step here is linear in
//! it, and three caps bound what one header may ask for: a header past one is
//! read up to the cap and says so ([`ContentField::over_limit`]); the MIME walk
//! then makes the message `uninspectable`, naming the cap. The caps are far above
//! what mail clients write: a 255-character Vietnamese name, decomposed (NFD)
//! and percent-encoded, is under 4 KB and about 20 encoded words. Before the
//! encoded-word search was made linear, a 1.9 MB message whose parts carried a
//! 96 KB `filename="=?a?B?xx=?a?B?xx…"` took 4.5 s of CPU (each `=?` searched
//! the rest of the value for its `?=`).

use std::collections::HashMap;
use std::collections::HashSet;

use mail_parser::decoders::charsets::map::charset_decoder;

/// Parameters (RFC 2231 sections included) read from one header, at most.
pub const MAX_PARAMS: usize = 256;
/// Longest parameter value, in bytes as written (RFC 2231 sections together).
pub const MAX_PARAM_LEN: usize = 16 * 1024;
/// Encoded words (RFC 2047) decoded in one parameter value, at most.
pub const MAX_ENCODED_WORDS: usize = 256;

/// A structured MIME header: `Content-Type` or `Content-Disposition`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContentField {
    /// The value before the first `;`, lower-cased, without comments and blanks
    /// (`multipart/mixed`, `attachment`).
    pub value: String,
    /// Parameters by lower-cased name, decoded. A name given more than once (or
    /// both plainly and in RFC 2231 form) appears more than once, the form a mail
    /// client prefers (RFC 2231) first.
    pub params: Vec<(String, String)>,
    /// The cap this header passed, if it passed one ("more than 256
    /// parameters"); the header was then read only up to it.
    pub over_limit: Option<String>,
}

impl ContentField {
    /// The preferred value of a parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value given for a parameter, preferred first.
    pub fn params_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.params
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One parameter as written, before RFC 2231 sections are joined.
struct RawParam {
    base: String,
    section: Option<u32>,
    extended: bool,
    /// Length of the value as written (quotes and escapes included).
    written: usize,
    value: Vec<u8>,
}

/// Parses a structured header value (unfolded or not), in time linear in its
/// length. A header past [`MAX_PARAMS`], [`MAX_PARAM_LEN`] or
/// [`MAX_ENCODED_WORDS`] is read up to the cap and says so in `over_limit`.
pub fn parse_content_field(raw: &[u8]) -> ContentField {
    parse_field(raw, None)
}

/// [`parse_content_field`] keeping only the parameters named (lower-case); the
/// others still count towards the caps. A header of 256 parameters costs
/// little when two of them matter.
pub fn parse_content_field_only(raw: &[u8], names: &[&str]) -> ContentField {
    parse_field(raw, Some(names))
}

fn parse_field(raw: &[u8], wanted: Option<&[&str]>) -> ContentField {
    let value_end = find_unquoted(raw, 0, b';');
    let head = &raw[..value_end];
    let value = if head.is_ascii() && memchr::memchr(b'(', head).is_none() {
        // The usual `type/subtype`: one copy, not three.
        let mut value = String::with_capacity(head.len());
        for &b in head {
            if !matches!(b, b' ' | b'\t' | b'\n' | b'\x0B' | b'\x0C' | b'\r') {
                value.push(char::from(b.to_ascii_lowercase()));
            }
        }
        value
    } else {
        String::from_utf8_lossy(&strip_comments(head))
            .split_whitespace()
            .collect::<String>()
            .to_ascii_lowercase()
    };

    let mut over_limit = None;
    let mut count = 0;
    let mut pos = value_end;
    let mut raws: Vec<RawParam> = Vec::new();
    while pos < raw.len() {
        // At a ';'.
        pos += 1;
        let name_start = pos;
        pos += memchr::memchr2(b'=', b';', &raw[pos..]).unwrap_or(raw.len() - pos);
        let name_end = pos;
        if pos >= raw.len() || raw[pos] == b';' {
            continue; // a parameter without a value
        }
        pos += 1; // '='
        while pos < raw.len() && is_space(raw[pos]) {
            pos += 1;
        }
        let name = String::from_utf8_lossy(&raw[name_start..name_end])
            .trim()
            .to_ascii_lowercase();
        let (base, section, extended) = split_param_name(name);
        let keep = wanted.is_none_or(|names| names.contains(&base.as_str()));
        let value_start = pos;
        let value = if !keep {
            pos = find_unquoted(raw, pos, b';');
            Vec::new()
        } else if raw.get(pos) == Some(&b'"') {
            let (v, end) = read_quoted(raw, pos + 1);
            pos = find_unquoted(raw, end, b';');
            v
        } else {
            let end = find_unquoted(raw, pos, b';');
            let v = trim_bytes(&raw[pos..end]).to_vec();
            pos = end;
            v
        };
        if base.is_empty() && section.is_none() && !extended {
            continue; // no name
        }
        if count == MAX_PARAMS {
            over_limit = Some(format!("more than {MAX_PARAMS} parameters in one header"));
            break;
        }
        count += 1;
        let written = pos - value_start;
        if written > MAX_PARAM_LEN {
            // Kept all the same (it is read already): its name still counts.
            over_limit.get_or_insert_with(param_too_long);
        }
        if keep {
            raws.push(RawParam {
                base,
                section,
                extended,
                written,
                value,
            });
        }
    }

    let params = join_params(raws, &mut over_limit);
    ContentField {
        value,
        params,
        over_limit,
    }
}

fn param_too_long() -> String {
    format!("a header parameter longer than {MAX_PARAM_LEN} bytes")
}

/// `filename*1*` → (`filename`, Some(1), true).
fn split_param_name(mut name: String) -> (String, Option<u32>, bool) {
    let extended = name.ends_with('*');
    if extended {
        name.pop();
    }
    if let Some((base, digits)) = name.rsplit_once('*')
        && !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && let Ok(n) = digits.parse::<u32>()
    {
        let base_len = base.len();
        name.truncate(base_len);
        return (name, Some(n), extended);
    }
    (name, None, extended)
}

/// Joins RFC 2231 sections and decodes every value. Pieces are grouped by name
/// in one pass (a name looked up in every other parameter was quadratic in the
/// number of parameters).
fn join_params(raws: Vec<RawParam>, over_limit: &mut Option<String>) -> Vec<(String, String)> {
    // RFC 2231 pieces by name (indices into `raws`), the names in the order
    // they first appear.
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut group_of: HashMap<&str, usize> = HashMap::new();
    for (i, p) in raws.iter().enumerate() {
        if p.section.is_some() || p.extended {
            let next = groups.len();
            let group = *group_of.entry(p.base.as_str()).or_insert(next);
            if group == next {
                groups.push(Vec::new());
            }
            groups[group].push(i);
        }
    }
    let few = raws.len() <= 16;
    let mut out: Vec<(String, String)> = Vec::with_capacity(raws.len());
    for mut pieces in groups {
        pieces.sort_by_key(|&i| raws[i].section.unwrap_or(0));
        if pieces.iter().map(|&i| raws[i].written).sum::<usize>() > MAX_PARAM_LEN {
            over_limit.get_or_insert_with(param_too_long);
        }
        let mut charset: Option<&[u8]> = None;
        let mut bytes = Vec::new();
        for (n, &i) in pieces.iter().enumerate() {
            let piece = &raws[i];
            if piece.extended {
                let mut value = &piece.value[..];
                if n == 0 {
                    // charset'language'value
                    let mut split = value.splitn(3, |&b| b == b'\'');
                    if let (Some(cs), Some(_lang), Some(rest)) =
                        (split.next(), split.next(), split.next())
                    {
                        charset = Some(cs);
                        value = rest;
                    }
                }
                percent_decode_into(value, &mut bytes);
            } else {
                bytes.extend_from_slice(&piece.value);
            }
        }
        let charset = charset.map(String::from_utf8_lossy);
        let decoded = decode_charset(charset.as_deref(), &bytes);
        out.push((raws[pieces[0]].base.clone(), decoded));
    }
    // Plain forms after the RFC 2231 ones, unless they say the same: by list
    // for a few, by set for many (a list searched for each of 256 would be
    // quadratic).
    let plain = raws
        .into_iter()
        .filter(|p| p.section.is_none() && !p.extended);
    if few {
        for p in plain {
            let value = plain_value(p.value, over_limit);
            if !out.iter().any(|(n, v)| *n == p.base && *v == value) {
                out.push((p.base, value));
            }
        }
        return out;
    }
    let plain: Vec<(String, String)> = plain
        .map(|p| (p.base, plain_value(p.value, over_limit)))
        .collect();
    let mut said: HashSet<(&str, &str)> =
        out.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let keep: Vec<bool> = plain
        .iter()
        .map(|(n, v)| said.insert((n.as_str(), v.as_str())))
        .collect();
    out.extend(
        plain
            .into_iter()
            .zip(keep)
            .filter_map(|(p, k)| k.then_some(p)),
    );
    out
}

/// The value of a plain (not RFC 2231) parameter: quoted or not, its encoded
/// words are decoded (mail clients do).
fn plain_value(value: Vec<u8>, over_limit: &mut Option<String>) -> String {
    let text = match String::from_utf8(value) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    let bytes = text.as_bytes();
    // `str::contains` would set up a substring search for every value.
    let has_words = memchr::memchr_iter(b'=', bytes).any(|i| bytes.get(i + 1) == Some(&b'?'));
    if !has_words {
        return text;
    }
    let (decoded, capped) = decode_words(&text, MAX_ENCODED_WORDS);
    if capped {
        over_limit.get_or_insert_with(|| {
            format!("more than {MAX_ENCODED_WORDS} encoded words in one header parameter")
        });
    }
    decoded
}

fn percent_decode_into(value: &[u8], out: &mut Vec<u8>) {
    out.reserve(value.len());
    let mut i = 0;
    while i < value.len() {
        if value[i] == b'%'
            && let (Some(h), Some(l)) = (
                value.get(i + 1).and_then(|&c| hex_val(c)),
                value.get(i + 2).and_then(|&c| hex_val(c)),
            )
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(value[i]);
        i += 1;
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Reads a quoted string starting after its opening quote; returns the unescaped
/// content and the position after the closing quote (or the end).
fn read_quoted(raw: &[u8], mut pos: usize) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    while pos < raw.len() {
        // Plain text up to the next quote, escape or line end is copied whole.
        let stop = memchr::memchr3(b'"', b'\\', b'\n', &raw[pos..]).map_or(raw.len(), |i| pos + i);
        let text = &raw[pos..stop];
        if memchr::memchr(b'\r', text).is_some() {
            out.extend(text.iter().filter(|&&c| c != b'\r'));
        } else {
            out.extend_from_slice(text);
        }
        pos = stop;
        match raw.get(pos) {
            Some(b'"') => return (out, pos + 1),
            Some(b'\\') if pos + 1 < raw.len() => {
                out.push(raw[pos + 1]);
                pos += 2;
            }
            Some(b'\\') => {
                // A backslash that ends the header escapes nothing.
                out.push(b'\\');
                pos += 1;
            }
            Some(_) => pos += 1, // '\n'
            None => {}
        }
    }
    (out, pos)
}

/// Position of the next `needle` outside quoted strings (or the end).
fn find_unquoted(raw: &[u8], mut pos: usize, needle: u8) -> usize {
    while pos < raw.len() {
        let Some(i) = memchr::memchr2(needle, b'"', &raw[pos..]) else {
            return raw.len();
        };
        pos += i;
        if raw[pos] == needle {
            return pos;
        }
        // A quoted string: up to its closing quote, escapes skipped.
        pos += 1;
        loop {
            let Some(i) = memchr::memchr2(b'"', b'\\', &raw[pos.min(raw.len())..]) else {
                return raw.len();
            };
            pos += i;
            if raw[pos] == b'"' {
                pos += 1;
                break;
            }
            pos += 2;
        }
    }
    raw.len()
}

fn strip_comments(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut level = 0u32;
    for &c in raw {
        match c {
            b'(' => level += 1,
            b')' if level > 0 => level -= 1,
            _ if level == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn trim_bytes(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&c| !is_space(c)).unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|&c| !is_space(c))
        .map_or(start, |e| e + 1);
    &b[start..end]
}

/// Decodes bytes in a named charset; unknown charsets fall back to lossy UTF-8.
pub fn decode_charset(charset: Option<&str>, bytes: &[u8]) -> String {
    let mut out = String::new();
    push_decoded(&mut out, charset, bytes);
    out
}

/// Appends bytes decoded from a named charset (as [`decode_charset`]).
fn push_decoded(out: &mut String, charset: Option<&str>, bytes: &[u8]) {
    let cs = charset.unwrap_or("").trim();
    // RFC 2231 allows `charset*language` inside encoded words.
    let cs = cs.split('*').next().unwrap_or("");
    let is_utf8 = cs.is_empty()
        || cs.eq_ignore_ascii_case("utf-8")
        || cs.eq_ignore_ascii_case("utf8")
        || cs.eq_ignore_ascii_case("us-ascii");
    if !is_utf8 && let Some(decoder) = charset_decoder(cs.as_bytes()) {
        out.push_str(&decoder(bytes));
        return;
    }
    out.push_str(&String::from_utf8_lossy(bytes));
}

/// Decodes RFC 2047 encoded words (`=?charset?B|Q?text?=`) in a header text.
/// Blanks between adjacent encoded words are dropped, and adjacent words in the
/// same charset are joined before decoding, so a character split over two words
/// survives.
pub fn decode_rfc2047(text: &str) -> String {
    decode_words(text, usize::MAX).0
}

/// [`decode_rfc2047`], decoding at most `max_words` encoded words (the rest of
/// the text is kept as it is); true when there were more. Linear in the text:
/// every byte is searched about once for the `?=` and the line end that may
/// follow it, however many `=?` there are.
fn decode_words(text: &str, max_words: usize) -> (String, bool) {
    let bytes = text.as_bytes();
    let opener = memchr::memmem::Finder::new("=?");
    let Some(first) = opener.find(bytes) else {
        return (text.to_owned(), false);
    };
    let mut closes = NextMatch::new(bytes, 2, |h| memchr::memmem::find(h, b"?="));
    let mut line_ends = NextMatch::new(bytes, 1, |h| memchr::memchr2(b'\r', b'\n', h));
    let mut out = String::with_capacity(text.len());
    // Decoded bytes of adjacent encoded words, and their charset.
    let mut pending: Vec<u8> = Vec::new();
    let mut pending_cs = "";
    // Text before this is in `out` or `pending`.
    let mut written = 0;
    let mut words = 0;
    let mut search = first;
    while let Some(found) = opener.find(&bytes[search..]) {
        let start = search + found;
        let Some(word) = encoded_word(text, start, &mut closes, &mut line_ends) else {
            // Not an encoded word: "=?" stays in the text.
            search = start + 2;
            continue;
        };
        words += 1;
        if words > max_words {
            flush(&mut out, &mut pending, pending_cs);
            out.push_str(&text[written..]);
            return (out, true);
        }
        // Blanks between adjacent words are dropped.
        let before = &text[written..start];
        let adjacent = !pending.is_empty() && before.chars().all(char::is_whitespace);
        if !adjacent {
            flush(&mut out, &mut pending, pending_cs);
            out.push_str(before);
        } else if !word.charset.eq_ignore_ascii_case(pending_cs) {
            flush(&mut out, &mut pending, pending_cs);
        }
        pending_cs = word.charset;
        if word.base64 {
            super::transfer::decode_base64_into(word.payload, &mut pending);
        } else {
            decode_q_into(word.payload, &mut pending);
        }
        written = word.end;
        search = word.end;
    }
    flush(&mut out, &mut pending, pending_cs);
    out.push_str(&text[written..]);
    (out, false)
}

fn flush(out: &mut String, pending: &mut Vec<u8>, charset: &str) {
    if !pending.is_empty() {
        push_decoded(out, Some(charset), pending);
        pending.clear();
    }
}

/// One encoded word, found in a text.
struct EncodedWord<'a> {
    charset: &'a str,
    base64: bool,
    payload: &'a [u8],
    /// Where the text after it starts.
    end: usize,
}

/// The encoded word starting at `start` (at its `=?`), if it is one.
fn encoded_word<'a>(
    text: &'a str,
    start: usize,
    closes: &mut NextMatch<'_>,
    line_ends: &mut NextMatch<'_>,
) -> Option<EncodedWord<'a>> {
    /// Longest charset name accepted.
    const MAX_CHARSET: usize = 64;
    let bytes = text.as_bytes();
    let charset_start = start + 2;
    let window = &bytes[charset_start..(charset_start + MAX_CHARSET + 1).min(bytes.len())];
    let charset_len = memchr::memchr(b'?', window)?;
    // '?' is ASCII, so both ends are character boundaries.
    let charset = &text[charset_start..charset_start + charset_len];
    if charset.is_empty() || charset.contains(char::is_whitespace) {
        return None;
    }
    // The encoding is one ASCII letter then '?' (checked as bytes: a multi-byte
    // character there once made a slice fall inside it and panic, found by
    // fuzzing, fuzz/regressions/mime_walk/rfc2047-multibyte-encoding.eml).
    let encoding = charset_start + charset_len + 1;
    let base64 = match bytes.get(encoding)?.to_ascii_uppercase() {
        b'B' => true,
        b'Q' => false,
        _ => return None,
    };
    if bytes.get(encoding + 1) != Some(&b'?') {
        return None;
    }
    let payload_start = encoding + 2;
    let close = closes.at_or_after(payload_start)?;
    if line_ends
        .at_or_after(payload_start)
        .is_some_and(|e| e < close)
    {
        return None;
    }
    Some(EncodedWord {
        charset,
        base64,
        payload: &bytes[payload_start..close],
        end: close + 2,
    })
}

/// The first match of a pattern at or after a position, for positions that
/// grow (or step back a little): each byte is searched about once however many
/// times the question is asked.
struct NextMatch<'a> {
    haystack: &'a [u8],
    /// Pattern length less one: how far a match may reach past where it starts.
    overlap: usize,
    find: fn(&[u8]) -> Option<usize>,
    /// The first match at or after `from`, if there is one.
    from: usize,
    found: Option<usize>,
}

impl<'a> NextMatch<'a> {
    fn new(haystack: &'a [u8], pattern_len: usize, find: fn(&[u8]) -> Option<usize>) -> Self {
        let mut m = NextMatch {
            haystack,
            overlap: pattern_len.saturating_sub(1),
            find,
            from: 0,
            found: None,
        };
        m.found = m.search(0, haystack.len());
        m
    }

    fn at_or_after(&mut self, at: usize) -> Option<usize> {
        if at < self.from {
            // Only the stretch before the one searched is new.
            let end = (self.from + self.overlap).min(self.haystack.len());
            return self.search(at, end).or(self.found);
        }
        match self.found {
            Some(f) if f < at => {
                self.from = at;
                self.found = self.search(at, self.haystack.len());
                self.found
            }
            found => found,
        }
    }

    fn search(&self, start: usize, end: usize) -> Option<usize> {
        let start = start.min(end);
        let found = (self.find)(&self.haystack[start..end]).map(|i| start + i);
        #[cfg(test)]
        {
            // A search reads up to the end of its match, or to `end`.
            let read = found.map_or(end, |f| (f + self.overlap + 1).min(end));
            tests::SEARCHED.with(|s| s.set(s.get() + (read - start)));
        }
        found
    }
}

/// Decodes the payload of a `Q` encoded word, appending to `out`.
fn decode_q_into(payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(payload.len());
    let mut i = 0;
    while i < payload.len() {
        match payload[i] {
            b'_' => out.push(b' '),
            b'=' => {
                if let (Some(h), Some(l)) = (
                    payload.get(i + 1).and_then(|&c| hex_val(c)),
                    payload.get(i + 2).and_then(|&c| hex_val(c)),
                ) {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                out.push(b'=');
            }
            c => out.push(c),
        }
        i += 1;
    }
}

/// The extension that decides how Windows opens a file: the part after the last
/// dot of the last path component, lower-cased, once trailing dots and blanks are
/// stripped (Windows drops them). `None` when the name has no dot.
pub fn final_extension(name: &str) -> Option<String> {
    final_extension_as_written(name).map(str::to_lowercase)
}

/// [`final_extension`] as the name writes it (not lower-cased).
pub fn final_extension_as_written(name: &str) -> Option<&str> {
    let trimmed = name.trim_end_matches(|c: char| c == '.' || c.is_whitespace());
    let base_start = memchr::memrchr2(b'/', b'\\', trimmed.as_bytes()).map_or(0, |i| i + 1);
    let base = &trimmed[base_start..];
    let dot = memchr::memrchr(b'.', base.as_bytes())?;
    let ext = &base[dot + 1..];
    (!ext.is_empty()).then_some(ext)
}

/// Unicode controls that change the display order of text (bidi embedding,
/// override and isolate controls, and the direction marks).
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// The first bidi control in a name, if any.
pub fn bidi_control(name: &str) -> Option<char> {
    if name.is_ascii() {
        return None; // every direction control is outside ASCII
    }
    name.chars().find(|&c| is_bidi_control(c))
}

/// A name made safe for logs and replies: controls, bidi and zero-width characters
/// are written as `<U+202E>`, and a long name is cut to `max` characters.
pub fn display_name(name: &str, max: usize) -> String {
    // Printable ASCII (most names) is shown as it is: copied, not rebuilt by
    // character (a path is shown for every file of a message).
    let shown = &name.as_bytes()[..name.len().min(max)];
    // Without an early exit the check is vectorised.
    if shown
        .iter()
        .fold(true, |printable, b| printable & (b' '..=b'~').contains(b))
    {
        let mut out = String::with_capacity(shown.len() + 3);
        out.push_str(&name[..shown.len()]);
        if name.len() > max {
            out.push('…');
        }
        return out;
    }
    let mut out = String::new();
    for (count, c) in name.chars().enumerate() {
        if count >= max {
            out.push('…');
            break;
        }
        if c.is_control()
            || is_bidi_control(c)
            || matches!(
                c,
                '\u{200B}'..='\u{200D}' | '\u{FEFF}' | '\u{2028}' | '\u{2029}'
            )
        {
            out.push_str(&format!("<U+{:04X}>", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether `name` ends with one of `suffixes` (lower-case, such as `".html"`),
/// ignoring ASCII case and trailing dots and spaces (which Windows drops).
pub fn ends_with_any(name: &str, suffixes: &[&str]) -> bool {
    let name = name.trim_end_matches(['.', ' ']).as_bytes();
    suffixes.iter().any(|suffix| {
        name.len() >= suffix.len()
            && name[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_match_ignoring_case_and_trailing_dots() {
        let html = [".htm", ".html"];
        assert!(ends_with_any("Trang.HTML", &html));
        assert!(ends_with_any("trang.htm. .", &html));
        assert!(!ends_with_any("trang.html.exe", &html));
        assert!(!ends_with_any("htm", &html));
        assert!(!ends_with_any("", &html));
    }
    use std::cell::Cell;

    thread_local! {
        /// Bytes searched by [`NextMatch`] on this thread.
        pub(super) static SEARCHED: Cell<usize> = const { Cell::new(0) };
    }

    fn searched_by<T>(f: impl FnOnce() -> T) -> (T, usize) {
        SEARCHED.with(|s| s.set(0));
        let out = f();
        (out, SEARCHED.with(Cell::get))
    }

    fn filename(header: &str) -> Option<String> {
        parse_content_field(header.as_bytes())
            .param("filename")
            .map(str::to_owned)
    }

    #[test]
    fn plain_and_quoted_parameters() {
        let f = parse_content_field(b"Attachment ; filename=\"a \\\"b\\\".pdf\"; size=12");
        assert_eq!(f.value, "attachment");
        assert_eq!(f.param("filename"), Some("a \"b\".pdf"));
        assert_eq!(f.param("size"), Some("12"));
        let ct = parse_content_field(b"multipart/mixed (comment);\r\n boundary=\"=_a;b\"");
        assert_eq!(ct.value, "multipart/mixed");
        assert_eq!(ct.param("boundary"), Some("=_a;b"));
        assert_eq!(
            filename("attachment; filename=hoso.pdf.exe"),
            Some("hoso.pdf.exe".into())
        );
    }

    #[test]
    fn rfc2231_continuations_and_charsets() {
        assert_eq!(
            filename("attachment;\r\n filename*0*=UTF-8''ho%20so;\r\n filename*1=.exe"),
            Some("ho so.exe".into())
        );
        // Sections out of order, mixed encoded and plain.
        assert_eq!(
            filename("attachment; filename*1*=%2E%65xe; filename*0*=utf-8'vi'h%E1%BB%93%20s%C6%A1"),
            Some("hồ sơ.exe".into())
        );
        // A single extended value in a legacy charset.
        assert_eq!(
            filename("attachment; filename*=iso-8859-1''caf%E9.exe"),
            Some("café.exe".into())
        );
        // Both forms: RFC 2231 first, the plain one kept too.
        let f = parse_content_field(
            b"attachment; filename=\"report.pdf\"; filename*=UTF-8''report.exe",
        );
        assert_eq!(
            f.params_named("filename").collect::<Vec<_>>(),
            ["report.exe", "report.pdf"]
        );
    }

    #[test]
    fn rfc2047_words_in_parameters() {
        assert_eq!(
            filename("attachment; filename=\"=?UTF-8?B?aOG7kyBzxqEuZXhl?=\""),
            Some("hồ sơ.exe".into())
        );
        // Adjacent words join without the blank between them.
        assert_eq!(
            filename("attachment; filename=\"=?utf-8?Q?x.ex?= =?utf-8?Q?e?=\""),
            Some("x.exe".into())
        );
        // A UTF-8 character split over two words.
        assert_eq!(
            decode_rfc2047("=?utf-8?Q?h=E1=BB?= =?utf-8?Q?=93.exe?="),
            "hồ.exe"
        );
        assert_eq!(decode_rfc2047("a =?utf-8?q?b?= c"), "a b c");
        assert_eq!(decode_rfc2047("=?bogus"), "=?bogus");
        assert_eq!(
            decode_rfc2047("=?utf-8?X?abc?= tail"),
            "=?utf-8?X?abc?= tail"
        );
    }

    #[test]
    fn extension_table() {
        for (name, ext) in [
            ("hoso.pdf.exe", Some("exe")),
            ("A.EXE.", Some("exe")),
            ("a.exe  ", Some("exe")),
            ("a.exe . .", Some("exe")),
            ("danh-sach.com.txt", Some("txt")),
            (
                "yahoo.com!bacgiang.gov.vn!1700000000!1700086400.zip",
                Some("zip"),
            ),
            ("post.htm_kopija.zip", Some("zip")),
            ("report.csv", Some("csv")),
            ("dir.exe/readme", None),
            ("C:\\temp\\x.Scr", Some("scr")),
            ("noext", None),
            ("", None),
            ("...", None),
        ] {
            assert_eq!(final_extension(name).as_deref(), ext, "{name:?}");
        }
    }

    #[test]
    fn bidi_controls_are_found_and_escaped() {
        assert_eq!(bidi_control("hoso\u{202E}fdp.exe"), Some('\u{202E}'));
        assert_eq!(bidi_control("a\u{2067}b"), Some('\u{2067}'));
        assert_eq!(bidi_control("a\u{061C}b"), Some('\u{061C}'));
        assert_eq!(bidi_control("hồ sơ.pdf"), None);
        assert_eq!(
            display_name("hoso\u{202E}fdp.exe", 80),
            "hoso<U+202E>fdp.exe"
        );
        assert_eq!(display_name("abcdef", 3), "abc…");
        assert_eq!(display_name("abc", 3), "abc");
        assert_eq!(display_name("", 0), "");
        assert_eq!(display_name("a", 0), "…");
        assert_eq!(display_name("ab\u{7f}", 2), "ab…");
        assert_eq!(display_name("ab\u{7f}", 3), "ab<U+007F>");
        assert_eq!(display_name("hồ sơ.pdf", 4), "hồ s…");
    }

    /// The decoder before the search was made linear: the reference for what a
    /// text decodes to.
    fn reference_rfc2047(text: &str) -> String {
        fn word(s: &str) -> Option<(String, Vec<u8>, usize)> {
            let body = s.strip_prefix("=?")?;
            let q1 = body.find('?')?;
            let charset = &body[..q1];
            if charset.is_empty() || charset.len() > 64 || charset.contains(char::is_whitespace) {
                return None;
            }
            let after = &body.as_bytes()[q1 + 1..];
            let enc = after.first()?.to_ascii_uppercase();
            if after.get(1) != Some(&b'?') {
                return None;
            }
            let payload_start = 2 + q1 + 1 + 2;
            let payload_all = &s[payload_start..];
            let end = payload_all.find("?=")?;
            let payload = &payload_all[..end];
            if payload.contains(['\r', '\n']) {
                return None;
            }
            let mut decoded = Vec::new();
            match enc {
                b'B' => decoded = crate::inspect::transfer::decode_base64(payload.as_bytes()),
                b'Q' => decode_q_into(payload.as_bytes(), &mut decoded),
                _ => return None,
            }
            Some((charset.to_owned(), decoded, payload_start + end + 2))
        }
        let mut out = String::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut pending_cs = String::new();
        let mut gap = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("=?") {
            let Some((charset, decoded, len)) = word(&rest[start..]) else {
                flush(&mut out, &mut pending, &pending_cs);
                out.push_str(&gap);
                gap.clear();
                out.push_str(&rest[..start + 2]);
                rest = &rest[start + 2..];
                continue;
            };
            let before = &rest[..start];
            let adjacent = !pending.is_empty() && before.chars().all(char::is_whitespace);
            if !adjacent {
                flush(&mut out, &mut pending, &pending_cs);
                out.push_str(&gap);
                out.push_str(before);
            } else if !charset.eq_ignore_ascii_case(&pending_cs) {
                flush(&mut out, &mut pending, &pending_cs);
            }
            gap.clear();
            pending_cs = charset;
            pending.extend(decoded);
            rest = &rest[start + len..];
            let blanks = rest.len() - rest.trim_start().len();
            gap.push_str(&rest[..blanks]);
            rest = &rest[blanks..];
        }
        flush(&mut out, &mut pending, &pending_cs);
        out.push_str(&gap);
        out.push_str(rest);
        out
    }

    // The header parser before it was made linear: the reference for what a
    // header means.
    struct OldParam {
        base: String,
        section: Option<u32>,
        extended: bool,
        quoted: bool,
        value: Vec<u8>,
    }

    /// Parses a structured header value (unfolded or not).
    fn old_parse(raw: &[u8]) -> (String, Vec<(String, String)>) {
        let mut pos = 0;
        let value_end = old_find_unquoted(raw, 0, b';');
        let value = strip_comments(&raw[..value_end]);
        let value = String::from_utf8_lossy(&value)
            .split_whitespace()
            .collect::<String>()
            .to_ascii_lowercase();
        pos = pos.max(value_end);

        let mut raws: Vec<OldParam> = Vec::new();
        while pos < raw.len() && raws.len() < 256 {
            // At a ';'.
            pos += 1;
            let name_start = pos;
            while pos < raw.len() && raw[pos] != b'=' && raw[pos] != b';' {
                pos += 1;
            }
            let name = String::from_utf8_lossy(&raw[name_start..pos])
                .trim()
                .to_ascii_lowercase();
            if pos >= raw.len() || raw[pos] == b';' {
                continue; // a parameter without a value
            }
            pos += 1; // '='
            while pos < raw.len() && is_space(raw[pos]) {
                pos += 1;
            }
            let (value, quoted) = if raw.get(pos) == Some(&b'"') {
                let (v, end) = old_read_quoted(raw, pos + 1);
                pos = old_find_unquoted(raw, end, b';');
                (v, true)
            } else {
                let end = old_find_unquoted(raw, pos, b';');
                let v = trim_bytes(&raw[pos..end]).to_vec();
                pos = end;
                (v, false)
            };
            if name.is_empty() {
                continue;
            }
            let (base, section, extended) = old_split_name(&name);
            raws.push(OldParam {
                base,
                section,
                extended,
                quoted,
                value,
            });
        }

        (value, old_join(raws))
    }

    /// `filename*1*` → (`filename`, Some(1), true).
    fn old_split_name(name: &str) -> (String, Option<u32>, bool) {
        let (name, extended) = match name.strip_suffix('*') {
            Some(n) => (n, true),
            None => (name, false),
        };
        if let Some((base, digits)) = name.rsplit_once('*')
            && !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && let Ok(n) = digits.parse::<u32>()
        {
            return (base.to_owned(), Some(n), extended);
        }
        (name.to_owned(), None, extended)
    }

    /// Joins RFC 2231 sections and decodes every value.
    fn old_join(raws: Vec<OldParam>) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut plain: Vec<(String, String)> = Vec::new();
        let mut done: Vec<&str> = Vec::new();
        for p in &raws {
            if p.section.is_none() && !p.extended {
                let text = String::from_utf8_lossy(&p.value);
                let decoded = if p.quoted || text.contains("=?") {
                    decode_rfc2047(&text)
                } else {
                    text.into_owned()
                };
                plain.push((p.base.clone(), decoded));
                continue;
            }
            if done.contains(&p.base.as_str()) {
                continue;
            }
            done.push(&p.base);
            // Every RFC 2231 piece of this name, in section order.
            let mut pieces: Vec<&OldParam> = raws
                .iter()
                .filter(|q| q.base == p.base && (q.section.is_some() || q.extended))
                .collect();
            pieces.sort_by_key(|q| q.section.unwrap_or(0));
            let mut charset: Option<String> = None;
            let mut bytes = Vec::new();
            for (i, piece) in pieces.iter().enumerate() {
                if piece.extended {
                    let mut value = &piece.value[..];
                    if i == 0 {
                        // charset'language'value
                        let mut split = value.splitn(3, |&b| b == b'\'');
                        if let (Some(cs), Some(_lang), Some(rest)) =
                            (split.next(), split.next(), split.next())
                        {
                            charset = Some(String::from_utf8_lossy(cs).into_owned());
                            value = rest;
                        }
                    }
                    bytes.extend(old_percent_decode(value));
                } else {
                    bytes.extend_from_slice(&piece.value);
                }
            }
            out.push((p.base.clone(), decode_charset(charset.as_deref(), &bytes)));
        }
        // Plain forms after the RFC 2231 ones, unless they say the same.
        for (name, value) in plain {
            if !out.iter().any(|(n, v)| *n == name && *v == value) {
                out.push((name, value));
            }
        }
        out
    }

    fn old_percent_decode(value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        percent_decode_into(value, &mut out);
        out
    }
    /// Reads a quoted string starting after its opening quote; returns the unescaped
    /// content and the position after the closing quote (or the end).
    fn old_read_quoted(raw: &[u8], mut pos: usize) -> (Vec<u8>, usize) {
        let mut out = Vec::new();
        while pos < raw.len() {
            match raw[pos] {
                b'"' => return (out, pos + 1),
                b'\\' if pos + 1 < raw.len() => {
                    out.push(raw[pos + 1]);
                    pos += 2;
                }
                b'\r' | b'\n' => pos += 1,
                c => {
                    out.push(c);
                    pos += 1;
                }
            }
        }
        (out, pos)
    }

    /// Position of the next `needle` outside quoted strings (or the end).
    fn old_find_unquoted(raw: &[u8], mut pos: usize, needle: u8) -> usize {
        let mut quoted = false;
        while pos < raw.len() {
            let c = raw[pos];
            if quoted {
                if c == b'\\' {
                    pos += 1;
                } else if c == b'"' {
                    quoted = false;
                }
            } else if c == needle {
                return pos;
            } else if c == b'"' {
                quoted = true;
            }
            pos += 1;
        }
        raw.len()
    }

    #[test]
    fn header_parsing_matches_the_reference() {
        let pieces = [
            "attachment",
            "inline",
            "text/plain",
            ";",
            "; ",
            ";\r\n ",
            "=",
            "\"",
            "\\",
            "(",
            ")",
            "filename",
            "FileName",
            "name",
            "*",
            "*0",
            "*1",
            "*0*",
            "*1*",
            "*2",
            "utf-8''",
            "iso-8859-1'vi'",
            "'",
            "%41",
            "%E9",
            "%",
            "a",
            "b.exe",
            " ",
            "\t",
            "=?utf-8?Q?x?=",
            "=?utf-8?B?aOG7kw==?=",
            "ồ",
            "\r",
            "\n",
            "boundary",
            "size=12",
        ];
        let mut seed = 0x0123_4567_89AB_CDEFu64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..30_000 {
            let mut header = String::new();
            // Mostly short headers; some long enough to hold many parameters.
            let count = if next() % 10 == 0 {
                next() % 400
            } else {
                next() % 24
            };
            for _ in 0..count {
                header.push_str(pieces[(next() % pieces.len() as u64) as usize]);
            }
            let new = parse_content_field(header.as_bytes());
            assert_eq!(new.over_limit, None, "{header:?}");
            // Keeping some names is keeping what the whole parse gives for them.
            let only = parse_content_field_only(header.as_bytes(), &["filename", "name"]);
            let kept: Vec<_> = new
                .params
                .iter()
                .filter(|(n, _)| n == "filename" || n == "name")
                .cloned()
                .collect();
            assert_eq!(
                (&only.value, &only.params),
                (&new.value, &kept),
                "{header:?}"
            );
            assert_eq!(
                (new.value, new.params),
                old_parse(header.as_bytes()),
                "{header:?}"
            );
        }
    }

    #[test]
    fn rfc2047_decoding_matches_the_reference() {
        let pieces = [
            "=?",
            "?=",
            "utf-8",
            "UTF-8",
            "iso-8859-1",
            "?Q?",
            "?q?",
            "?B?",
            "?X?",
            "?",
            "=",
            " ",
            "  ",
            "\t",
            "\r\n",
            "a",
            "x.ex",
            "e",
            "=41",
            "_",
            "aOG7kw==",
            "ồ",
            "\u{202E}",
            "=?utf-8?Q?a?=",
            "=?utf-8?B?aOG7kyBzxqEuZXhl?=",
            "=?iso-8859-1?Q?caf=E9?=",
            "=?a?B?xx",
            "=?ab cd?Q?x?=",
            ".exe",
        ];
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..20_000 {
            let mut text = String::new();
            for _ in 0..(seed % 12) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                text.push_str(pieces[(seed % pieces.len() as u64) as usize]);
            }
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            assert_eq!(decode_rfc2047(&text), reference_rfc2047(&text), "{text:?}");
        }
    }

    /// A value that opens encoded words and never closes them was searched to
    /// its end from every `=?`: 96 KB took seconds. Now each byte is searched
    /// about once.
    #[test]
    fn unclosed_encoded_words_are_searched_once() {
        let value = "=?a?B?xx".repeat(12_000);
        let (decoded, searched) = searched_by(|| decode_rfc2047(&value));
        assert_eq!(decoded, value);
        assert!(searched <= 3 * value.len(), "{searched} bytes searched");
        // The same with a line end after every word start, and one close at the end.
        let value = format!("{}?=", "=?a?B?x\n".repeat(12_000));
        let (_, searched) = searched_by(|| decode_rfc2047(&value));
        assert!(searched <= 3 * value.len(), "{searched} bytes searched");
        // Charsets of every length make the search step back; still linear.
        let value: String = (0..4_000)
            .map(|i| format!("=?{}?Q?", "c".repeat(1 + i % 64)))
            .collect();
        let (_, searched) = searched_by(|| decode_rfc2047(&value));
        assert!(searched <= 3 * value.len(), "{searched} bytes searched");
    }

    #[test]
    fn caps_are_reported() {
        let words = "=?utf-8?Q?a?=".repeat(MAX_ENCODED_WORDS + 1);
        let f = parse_content_field(format!("attachment; filename=\"{words}.exe\"").as_bytes());
        let limit = f.over_limit.as_deref().unwrap();
        assert!(limit.contains("256 encoded words"), "{limit}");
        // Up to the cap, the words are decoded.
        let words = "=?utf-8?Q?a?=".repeat(MAX_ENCODED_WORDS);
        let f = parse_content_field(format!("attachment; filename=\"{words}.exe\"").as_bytes());
        assert_eq!(f.over_limit, None);
        assert_eq!(
            f.param("filename").unwrap(),
            format!("{}.exe", "a".repeat(256))
        );

        let long = format!("attachment; filename=\"{}.exe\"", "a".repeat(MAX_PARAM_LEN));
        let f = parse_content_field(long.as_bytes());
        assert!(f.over_limit.unwrap().contains("longer than 16384 bytes"));
        // RFC 2231 sections count together.
        let sections: String = (0..8)
            .map(|i| format!("; filename*{i}=\"{}\"", "a".repeat(MAX_PARAM_LEN / 4)))
            .collect();
        let f = parse_content_field(format!("attachment{sections}").as_bytes());
        assert!(f.over_limit.unwrap().contains("longer than 16384 bytes"));

        let many: String = (0..MAX_PARAMS).map(|i| format!("; p{i}=v")).collect();
        let f = parse_content_field(format!("attachment{many}").as_bytes());
        assert_eq!((f.params.len(), f.over_limit), (MAX_PARAMS, None));
        let f = parse_content_field(format!("attachment{many}; filename=x.exe").as_bytes());
        assert!(f.over_limit.unwrap().contains("more than 256 parameters"));
        // Parameters not kept still count, and are still measured.
        let f = parse_content_field_only(
            format!("attachment{many}; filename=x.exe").as_bytes(),
            &["filename"],
        );
        assert_eq!(f.params, []);
        assert!(f.over_limit.unwrap().contains("more than 256 parameters"));
        let f = parse_content_field_only(long.as_bytes(), &["name"]);
        assert!(f.over_limit.unwrap().contains("longer than 16384 bytes"));
        // An over-long value is kept all the same.
        let f = parse_content_field(long.as_bytes());
        assert!(f.param("filename").unwrap().ends_with(".exe"));
    }

    #[test]
    fn many_sectioned_names_are_joined() {
        let header: String = (0..MAX_PARAMS / 2 - 1)
            .rev()
            .flat_map(|i| [format!("; p{i}*1=b"), format!("; p{i}*0*=utf-8''a%41")])
            .collect();
        let f = parse_content_field(format!("attachment{header}; p0=aAb").as_bytes());
        assert_eq!(f.over_limit, None);
        // p0 given plainly says the same as its sections: kept once.
        assert_eq!(f.params.len(), MAX_PARAMS / 2 - 1);
        assert_eq!(f.param("p0"), Some("aAb"));
        assert_eq!(f.param("p126"), Some("aAb"));
        assert_eq!(f.params[0].0, "p126");
    }
}
