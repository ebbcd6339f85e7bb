//! Files uuencoded inside text: `begin 644 name` … `end` blocks (and the
//! `begin-base64` form of `uuencode -m`). Old mailers and some scripts still send
//! attachments this way, and mail clients show them as attachments.
//!
//! Bounded: a block decodes to at most 3/4 of its text, and at most `max` blocks
//! are read from one text.

use std::iter::Peekable;

use super::transfer::decode_base64;

/// One file found in a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UuFile {
    pub name: String,
    pub data: Vec<u8>,
}

/// Finds the uuencoded files in a text, at most `max`. Blocks that decode to
/// nothing (prose that happens to start with `begin 644 x`) are skipped and not
/// counted: 10,000 of them once hid the real block after them.
pub fn find_uuencoded(text: &[u8], max: usize) -> Vec<UuFile> {
    let mut found = Vec::new();
    if max == 0 || memchr::memmem::find(text, b"begin").is_none() {
        return found;
    }
    let mut lines = text
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .peekable();
    while let Some(line) = lines.next() {
        if found.len() >= max {
            break;
        }
        let Some((base64, name)) = parse_begin(line) else {
            continue;
        };
        let data = if base64 {
            let mut encoded = Vec::new();
            for l in lines.by_ref() {
                if l.starts_with(b"====") {
                    break;
                }
                encoded.extend_from_slice(l);
            }
            decode_base64(&encoded)
        } else {
            decode_uu_lines(&mut lines)
        };
        if !data.is_empty() {
            found.push(UuFile { name, data });
        }
    }
    found
}

/// `begin 644 name` → (false, name); `begin-base64 644 name` → (true, name).
fn parse_begin(line: &[u8]) -> Option<(bool, String)> {
    let (base64, rest) = if let Some(r) = line.strip_prefix(b"begin-base64 ") {
        (true, r)
    } else {
        (false, line.strip_prefix(b"begin ")?)
    };
    let rest = String::from_utf8_lossy(rest);
    let rest = rest.trim_start();
    let (mode, name) = rest.split_once([' ', '\t'])?;
    if !(1..=4).contains(&mode.len()) || !mode.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    let name = name.trim();
    (!name.is_empty()).then(|| (base64, name.to_owned()))
}

/// Decodes uuencoded lines up to `end` or the first line that is not uuencode.
/// A line that is not uuencode is left for the caller: it may begin the next
/// block.
fn decode_uu_lines<'a, I: Iterator<Item = &'a [u8]>>(lines: &mut Peekable<I>) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(&line) = lines.peek() {
        if line == b"end" || line.is_empty() {
            lines.next();
            break;
        }
        if !line.iter().all(|&c| (32..=96).contains(&c)) {
            break;
        }
        lines.next();
        let len = ((line[0] - 32) & 63) as usize;
        if len == 0 {
            continue; // the "`" line before "end"
        }
        let start = out.len();
        for group in line[1..].chunks(4) {
            let v = |i: usize| group.get(i).map_or(0u32, |&c| ((c - 32) & 63) as u32);
            let n = v(0) << 18 | v(1) << 12 | v(2) << 6 | v(3);
            out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
        }
        out.truncate(start + len);
    }
    out
}

/// Encodes data as a uuencoded block (for tests and fixtures).
pub fn encode_uu(name: &str, data: &[u8]) -> String {
    let enc = |v: u8| if v == 0 { '`' } else { (v + 32) as char };
    let mut s = format!("begin 644 {name}\n");
    for chunk in data.chunks(45) {
        s.push(enc(chunk.len() as u8));
        for g in chunk.chunks(3) {
            let b = |i: usize| g.get(i).copied().unwrap_or(0);
            let n = (b(0) as u32) << 16 | (b(1) as u32) << 8 | b(2) as u32;
            for shift in [18, 12, 6, 0] {
                s.push(enc((n >> shift & 63) as u8));
            }
        }
        s.push('\n');
    }
    s.push_str("`\nend\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let text = format!("Hello\r\n\r\n{}\r\nBye\r\n", encode_uu("setup.exe", &data));
        let files = find_uuencoded(text.as_bytes(), 10);
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].name, "setup.exe");
        assert_eq!(files[0].data, data);
    }

    #[test]
    fn base64_form_and_limits() {
        let text = b"begin-base64 600 a b.exe\nTVqQAA==\n====\nbegin 644 x\n#86)C\n`\nend\n";
        let files = find_uuencoded(text, 10);
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].name, "a b.exe");
        assert_eq!(files[0].data, b"MZ\x90\x00");
        assert_eq!(files[1].data, b"abc");
        assert_eq!(find_uuencoded(text, 1).len(), 1);
        // Not a block: no mode, or prose.
        assert!(find_uuencoded(b"begin the meeting at 9\nbegin 99 x\n", 10).is_empty());
        // Empty blocks are not files, and do not count towards `max`.
        let mut text = "begin 644 x\n`\nend\n".repeat(20).into_bytes();
        text.extend_from_slice(b"begin 644 setup.exe\n#86)C\n`\nend\n");
        let files = find_uuencoded(&text, 1);
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].name, "setup.exe");
        // A "begin" line right after another is not eaten as its end.
        let text = b"begin 644 x\nbegin 644 setup.exe\n#86)C\n`\nend\n";
        assert_eq!(find_uuencoded(text, 10)[0].name, "setup.exe");
        // Truncated block: decoded as far as it goes.
        assert_eq!(
            find_uuencoded(b"begin 644 t.bin\n#86)C\n", 10)[0].data,
            b"abc"
        );
    }
}
