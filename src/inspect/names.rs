//! File names: parameters of `Content-Type` and `Content-Disposition` with RFC 2231
//! (continuations, charsets) and RFC 2047 (encoded words), the final extension the
//! way Windows sees it, and the Unicode direction controls that disguise a name.
//!
//! mail-parser decodes most of this too, but it puts a space between adjacent
//! encoded words (`=?utf-8?Q?x.ex?= =?utf-8?Q?e?=` becomes `x.ex e`, hiding the
//! `.exe`), and it keeps only one of several names; so names are decoded here from
//! the raw header, and every name a part declares is kept.

use std::borrow::Cow;

use mail_parser::decoders::charsets::map::charset_decoder;

/// At most this many parameters (and RFC 2231 sections) are read from one header.
const MAX_PARAMS: usize = 256;

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
    quoted: bool,
    value: Vec<u8>,
}

/// Parses a structured header value (unfolded or not).
pub fn parse_content_field(raw: &[u8]) -> ContentField {
    let mut pos = 0;
    let value_end = find_unquoted(raw, 0, b';');
    let value = strip_comments(&raw[..value_end]);
    let value = String::from_utf8_lossy(&value)
        .split_whitespace()
        .collect::<String>()
        .to_ascii_lowercase();
    pos = pos.max(value_end);

    let mut raws: Vec<RawParam> = Vec::new();
    while pos < raw.len() && raws.len() < MAX_PARAMS {
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
            let (v, end) = read_quoted(raw, pos + 1);
            pos = find_unquoted(raw, end, b';');
            (v, true)
        } else {
            let end = find_unquoted(raw, pos, b';');
            let v = trim_bytes(&raw[pos..end]).to_vec();
            pos = end;
            (v, false)
        };
        if name.is_empty() {
            continue;
        }
        let (base, section, extended) = split_param_name(&name);
        raws.push(RawParam {
            base,
            section,
            extended,
            quoted,
            value,
        });
    }

    ContentField {
        value,
        params: join_params(raws),
    }
}

/// `filename*1*` → (`filename`, Some(1), true).
fn split_param_name(name: &str) -> (String, Option<u32>, bool) {
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
fn join_params(raws: Vec<RawParam>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut plain: Vec<(String, String)> = Vec::new();
    let mut done: Vec<&str> = Vec::new();
    for p in &raws {
        if p.section.is_none() && !p.extended {
            let text = bytes_to_string(&p.value);
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
        let mut pieces: Vec<&RawParam> = raws
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
                bytes.extend(percent_decode(value));
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

fn percent_decode(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
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
    out
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
fn find_unquoted(raw: &[u8], mut pos: usize, needle: u8) -> usize {
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

/// Raw 8-bit header bytes as text: UTF-8 when valid, otherwise lossy.
fn bytes_to_string(b: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(b)
}

/// Decodes bytes in a named charset; unknown charsets fall back to lossy UTF-8.
pub fn decode_charset(charset: Option<&str>, bytes: &[u8]) -> String {
    let cs = charset.unwrap_or("").trim();
    // RFC 2231 allows `charset*language` inside encoded words.
    let cs = cs.split('*').next().unwrap_or("");
    let is_utf8 = cs.is_empty()
        || cs.eq_ignore_ascii_case("utf-8")
        || cs.eq_ignore_ascii_case("utf8")
        || cs.eq_ignore_ascii_case("us-ascii");
    if !is_utf8 && let Some(decoder) = charset_decoder(cs.as_bytes()) {
        return decoder(bytes);
    }
    String::from_utf8_lossy(bytes).into_owned()
}

/// Decodes RFC 2047 encoded words (`=?charset?B|Q?text?=`) in a header text.
/// Blanks between adjacent encoded words are dropped, and adjacent words in the
/// same charset are joined before decoding, so a character split over two words
/// survives.
pub fn decode_rfc2047(text: &str) -> String {
    if !text.contains("=?") {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    // Pending decoded bytes of adjacent encoded words, and their charset.
    let mut pending: Vec<u8> = Vec::new();
    let mut pending_cs = String::new();
    // Blanks seen after an encoded word, written only if plain text follows.
    let mut gap = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("=?") {
        let Some((charset, decoded, len)) = parse_encoded_word(&rest[start..]) else {
            // Not an encoded word: keep the text up to and including "=?".
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
        // Blanks right after the word are held back.
        let blanks = rest.len() - rest.trim_start().len();
        gap.push_str(&rest[..blanks]);
        rest = &rest[blanks..];
    }
    flush(&mut out, &mut pending, &pending_cs);
    out.push_str(&gap);
    out.push_str(rest);
    out
}

fn flush(out: &mut String, pending: &mut Vec<u8>, charset: &str) {
    if !pending.is_empty() {
        out.push_str(&decode_charset(Some(charset), pending));
        pending.clear();
    }
}

/// Parses one encoded word at the start of `s`: (charset, bytes, length in `s`).
fn parse_encoded_word(s: &str) -> Option<(String, Vec<u8>, usize)> {
    let body = s.strip_prefix("=?")?;
    let q1 = body.find('?')?;
    let charset = &body[..q1];
    if charset.is_empty() || charset.len() > 64 || charset.contains(char::is_whitespace) {
        return None;
    }
    // The encoding is one ASCII letter then '?'. Checked by bytes before slicing:
    // a multi-byte character there made `payload_start` (which counts one byte
    // for it) fall inside that character and the slice below panic (found by
    // fuzzing, fuzz/regressions/mime_walk/rfc2047-multibyte-encoding.eml).
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
    let decoded = match enc {
        b'B' => super::transfer::decode_base64(payload.as_bytes()),
        b'Q' => decode_q(payload.as_bytes()),
        _ => return None,
    };
    Some((charset.to_owned(), decoded, payload_start + end + 2))
}

fn decode_q(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len());
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
    out
}

/// The extension that decides how Windows opens a file: the part after the last
/// dot of the last path component, lower-cased, once trailing dots and blanks are
/// stripped (Windows drops them). `None` when the name has no dot.
pub fn final_extension(name: &str) -> Option<String> {
    let trimmed = name.trim_end_matches(|c: char| c == '.' || c.is_whitespace());
    let base = trimmed.rsplit(['/', '\\']).next().unwrap_or(trimmed);
    let (_, ext) = base.rsplit_once('.')?;
    (!ext.is_empty()).then(|| ext.to_lowercase())
}

/// Unicode controls that change the display order of text (bidi embedding,
/// override and isolate controls, and the direction marks).
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// The first bidi control in a name, if any.
pub fn bidi_control(name: &str) -> Option<char> {
    name.chars().find(|&c| is_bidi_control(c))
}

/// A name made safe for logs and replies: controls, bidi and zero-width characters
/// are written as `<U+202E>`, and a long name is cut to `max` characters.
pub fn display_name(name: &str, max: usize) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
