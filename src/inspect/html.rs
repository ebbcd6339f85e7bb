//! Files inside HTML: `data:` URIs (a link or image whose bytes are in the page,
//! saved by the browser under the link's `download` name) and "HTML
//! smuggling", where a script turns a long base64 string into a Blob and
//! clicks a download link for it, so the file is made on the reader's machine
//! and never crosses the mail filter as an attachment.
//!
//! Every base64 or percent-encoded `data:` URI is inspected as a file. In
//! `<script>` elements, every string literal of at least
//! [`MIN_SMUGGLED_LEN`] base64 symbols is decoded, and kept as a file only
//! when it decodes to something recognised (a program, an archive, a
//! document): long strings of other kinds are common in scripts. Strings put
//! together from pieces, or encoded some other way, are not found. One pass
//! over the page.

use super::FileKind;
use super::archive::{Opened, Sink};
use super::budget::Budget;
use super::carrier::hand_owned;
use super::filetype::classify;
use super::transfer::decode_base64;

/// Shortest string literal decoded as a candidate file: a few hundred bytes
/// is already smaller than any program (clam.exe is 544).
pub const MIN_SMUGGLED_LEN: usize = 256;

/// How far before `data:` the start of its tag is looked for, and how far after
/// the payload its end.
const TAG_REACH: usize = 4096;
/// Longest media type (with its parameters) of a `data:` URI.
const MAX_MEDIA_TYPE: usize = 256;
/// `data:` URIs and script strings looked at between two looks at the clock.
const CANDIDATES_PER_CLOCK_CHECK: usize = 64;

/// HTML by name (`.htm`, `.html`, `.xhtml`, `.shtml`, `.svg`) or content: the
/// first text is a tag, and the first KiB holds one of the tags a page has.
pub fn is_html(name: Option<&str>, data: &[u8]) -> bool {
    let by_name = name.is_some_and(|n| {
        super::names::ends_with_any(n, &[".htm", ".html", ".xhtml", ".shtml", ".svg"])
    });
    if by_name {
        return true;
    }
    let head = &data[..data.len().min(1024)];
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    if !head.trim_ascii_start().starts_with(b"<") {
        return false;
    }
    [
        b"<html".as_slice(),
        b"<!doctype html",
        b"<head",
        b"<body",
        b"<script",
        b"<meta",
    ]
    .iter()
    .any(|tag| find_ci(head, tag, 0).is_some())
}

/// Hands every file in the page `data` to `sink`.
pub fn open(data: &[u8], budget: &mut Budget, sink: &mut Sink<'_>) -> Opened {
    let mut opened = Opened::default();
    if data_uris(data, &mut opened, budget, sink) {
        smuggled(data, &mut opened, budget, sink);
    }
    opened
}

/// The `data:` URIs; false when the budget stopped the carrier.
fn data_uris(data: &[u8], opened: &mut Opened, budget: &mut Budget, sink: &mut Sink<'_>) -> bool {
    let mut from = 0;
    let mut seen = 0usize;
    let mut next_comma = Some(0);
    while let Some(at) = find_ci(data, b"data:", from) {
        let start = at + 5;
        from = start;
        if at > 0 && data[at - 1].is_ascii_alphanumeric() {
            continue; // "metadata:", not a URI
        }
        seen += 1;
        if seen.is_multiple_of(CANDIDATES_PER_CLOCK_CHECK)
            && let Err(reason) = budget.check_limits()
        {
            opened.problem(reason);
            return false;
        }
        // data:[<type>][;base64],<payload>. The next comma is found once for
        // all the candidates before it.
        if next_comma.is_some_and(|c| c < start) {
            next_comma = memchr::memchr(b',', &data[start..]).map(|c| start + c);
        }
        let Some(comma) = next_comma
            .map(|c| c - start)
            .filter(|&c| c <= MAX_MEDIA_TYPE)
            .filter(|&c| !data[start..start + c].iter().any(|b| b"\"'<> ".contains(b)))
        else {
            continue;
        };
        let header = &data[start..start + comma];
        let base64 = find_ci(header, b";base64", 0).is_some();
        let payload_start = start + comma + 1;
        let payload_len = data[payload_start..]
            .iter()
            .position(|&b| b"\"'()<>`".contains(&b) || (!base64 && b.is_ascii_whitespace()))
            .unwrap_or(data.len() - payload_start);
        let payload_end = payload_start + payload_len;
        from = payload_end;
        let payload = &data[payload_start..payload_end];
        let bytes = if base64 {
            decode_base64(payload)
        } else {
            percent_decode(payload)
        };
        if bytes.is_empty() {
            continue;
        }
        let tag_start = data[at.saturating_sub(TAG_REACH)..at]
            .iter()
            .rposition(|&b| b == b'<')
            .map_or(at, |p| at.saturating_sub(TAG_REACH) + p);
        let tail = &data[payload_end..data.len().min(payload_end + TAG_REACH)];
        let tag_end = payload_end + memchr::memchr(b'>', tail).unwrap_or(tail.len());
        let name = attribute(&data[tag_start..at], b"download")
            .or_else(|| attribute(&data[payload_end..tag_end], b"download"))
            .unwrap_or_default();
        if !hand_owned(name, bytes, opened, budget, sink) {
            return false;
        }
    }
    true
}

/// Long base64 string literals in `<script>` elements that decode to a file.
fn smuggled(data: &[u8], opened: &mut Opened, budget: &mut Budget, sink: &mut Sink<'_>) {
    let mut from = 0;
    let mut seen = 0usize;
    while let Some(at) = find_ci(data, b"<script", from) {
        let Some(open_end) = memchr::memchr(b'>', &data[at..]).map(|p| at + p + 1) else {
            return;
        };
        let close = find_ci(data, b"</script", open_end).unwrap_or(data.len());
        from = close;
        let script = &data[open_end..close];
        let name = script_download_name(script).unwrap_or_default();
        let mut i = 0;
        while i < script.len() {
            let q = script[i];
            i += 1;
            if !matches!(q, b'"' | b'\'' | b'`') {
                continue;
            }
            let start = i;
            while i < script.len() && script[i] != q {
                i += if script[i] == b'\\' { 2 } else { 1 };
            }
            let literal = &script[start..i.min(script.len())];
            i += 1;
            if literal.len() < MIN_SMUGGLED_LEN || !literal.iter().all(|&b| is_base64(b)) {
                continue;
            }
            seen += 1;
            if seen.is_multiple_of(CANDIDATES_PER_CLOCK_CHECK)
                && let Err(reason) = budget.check_limits()
            {
                opened.problem(reason);
                return;
            }
            let bytes = decode_base64(literal);
            if matches!(classify(&bytes), FileKind::Other(_)) {
                continue;
            }
            if !hand_owned(name.clone(), bytes, opened, budget, sink) {
                return;
            }
        }
    }
}

fn is_base64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_')
}

/// The name a script gives its download: `a.download = "x.exe"`,
/// `download: 'x.exe'`, `setAttribute("download", "x.exe")`.
fn script_download_name(script: &[u8]) -> Option<String> {
    let at = find_ci(script, b"download", 0)? + b"download".len();
    let rest = &script[at..script.len().min(at + 256)];
    let rest = rest.trim_ascii_start();
    let rest = rest
        .strip_prefix(b"=")
        .or_else(|| rest.strip_prefix(b":"))
        .or_else(|| {
            // setAttribute("download", "x.exe"): past the closing quote.
            let r = rest
                .strip_prefix(b"\"")
                .or_else(|| rest.strip_prefix(b"'"))?;
            r.trim_ascii_start().strip_prefix(b",")
        })?
        .trim_ascii_start();
    quoted(rest)
}

/// The value of `name="..."` (or `'...'`) in a tag's text.
fn attribute(tag: &[u8], name: &[u8]) -> Option<String> {
    let mut from = 0;
    while let Some(at) = find_ci(tag, name, from) {
        from = at + name.len();
        if at > 0 && !tag[at - 1].is_ascii_whitespace() {
            continue;
        }
        let rest = tag[from..].trim_ascii_start();
        if let Some(value) = rest.strip_prefix(b"=") {
            return quoted(value.trim_ascii_start());
        }
    }
    None
}

/// A quoted string at the start of `text`, with HTML's and JavaScript's
/// simplest escapes left as they are.
fn quoted(text: &[u8]) -> Option<String> {
    let q = *text.first().filter(|q| matches!(q, b'"' | b'\'' | b'`'))?;
    let end = memchr::memchr(q, &text[1..])?;
    let value = String::from_utf8_lossy(&text[1..1 + end]).trim().to_owned();
    (!value.is_empty()).then_some(value)
}

fn percent_decode(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if text[i] == b'%'
            && let (Some(h), Some(l)) = (
                text.get(i + 1).and_then(|&c| hex(c)),
                text.get(i + 2).and_then(|&c| hex(c)),
            )
        {
            out.push((h << 4 | l) as u8);
            i += 3;
        } else {
            out.push(text[i]);
            i += 1;
        }
    }
    out
}

/// Where `needle` (lowercase ASCII) first occurs in `hay` at or after `from`,
/// ignoring ASCII case.
fn find_ci(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let first = needle[0];
    let mut i = from;
    while i < hay.len() {
        let p = memchr::memchr2(first, first.to_ascii_uppercase(), &hay[i..])?;
        let at = i + p;
        if hay
            .get(at..at + needle.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(needle))
        {
            return Some(at);
        }
        i = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_tags_and_scripts() {
        assert_eq!(
            attribute(b"<a class=x DOWNLOAD = 'a b.exe' ", b"download").as_deref(),
            Some("a b.exe")
        );
        assert_eq!(attribute(b"<a data-download='x'", b"download"), None);
        assert_eq!(
            script_download_name(b"a.download = \"x.iso\";").as_deref(),
            Some("x.iso")
        );
        assert_eq!(
            script_download_name(b"a.setAttribute('download', 'y.zip')").as_deref(),
            Some("y.zip")
        );
        assert_eq!(percent_decode(b"MZ%90%0"), b"MZ\x90%0");
        assert_eq!(find_ci(b"xx<SCRIPT>", b"<script", 0), Some(2));
    }

    #[test]
    fn html_by_content_or_name() {
        assert!(is_html(None, b"\xEF\xBB\xBF\n <!DOCTYPE html><p>"));
        assert!(is_html(Some("a.HTM"), b"anything"));
        assert!(!is_html(None, b"plain text with <html> later"));
    }
}
