//! TNEF (`winmail.dat`, `application/ms-tnef`): Outlook's wrapper that carries
//! attachments inside one opaque file. Mail clients and gateways unpack it, so
//! the files inside are inspected like any attachment.
//!
//! The stream is a signature (0x223E9F78), a key, then attributes: level (1 =
//! message, 2 = attachment), id, length, data, checksum. An attachment starts at
//! `attAttachRendData`; its name is `attAttachTitle` (often an 8.3 name) or, better,
//! `PR_ATTACH_LONG_FILENAME` (0x3707) in its MAPI properties (`attAttachment`);
//! its bytes are `attAttachData`. Everything is bounds-checked; a damaged stream
//! yields the attachments read so far.

use std::ops::Range;

use super::names::decode_charset;

pub const TNEF_SIGNATURE: u32 = 0x223E_9F78;
const ATT_ATTACH_REND_DATA: u32 = 0x0006_9002;
const ATT_ATTACH_TITLE: u32 = 0x0001_8010;
const ATT_ATTACH_DATA: u32 = 0x0006_800F;
const ATT_ATTACHMENT: u32 = 0x0006_9005;
const PR_ATTACH_LONG_FILENAME: u16 = 0x3707;
const PR_ATTACH_FILENAME: u16 = 0x3704;
const PT_STRING8: u16 = 0x001E;
const PT_UNICODE: u16 = 0x001F;
/// MAPI properties read per attachment, at most.
const MAX_PROPS: u32 = 4096;

/// One file inside a TNEF stream: its name and where its bytes are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TnefAttachment {
    pub name: Option<String>,
    /// Range in the TNEF data (empty when the attachment had no data).
    pub data: Range<usize>,
}

/// The result of reading a TNEF stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tnef {
    pub attachments: Vec<TnefAttachment>,
    /// The stream ended early or held a malformed attribute.
    pub damaged: bool,
}

/// True when the data starts with the TNEF signature.
pub fn is_tnef(data: &[u8]) -> bool {
    data.starts_with(&TNEF_SIGNATURE.to_le_bytes())
}

/// Reads the attachments of a TNEF stream, at most `max`.
pub fn parse_tnef(data: &[u8], max: usize) -> Tnef {
    let mut out = Tnef::default();
    if !is_tnef(data) {
        out.damaged = true;
        return out;
    }
    let mut pos = 6; // signature + legacy key
    let mut current: Option<(TnefAttachment, Option<String>)> = None;
    let finish = |cur: Option<(TnefAttachment, Option<String>)>, out: &mut Tnef| {
        if let Some((mut a, long)) = cur {
            if long.is_some() {
                a.name = long;
            }
            out.attachments.push(a);
        }
    };
    while pos < data.len() {
        let Some(header) = data.get(pos..pos + 9) else {
            out.damaged = true;
            break;
        };
        let level = header[0];
        let id = u32::from_le_bytes([header[1], header[2], header[3], header[4]]);
        let len = u32::from_le_bytes([header[5], header[6], header[7], header[8]]) as usize;
        let start = pos + 9;
        let Some(end) = start.checked_add(len).filter(|&e| e + 2 <= data.len()) else {
            out.damaged = true;
            break;
        };
        pos = end + 2; // checksum
        if level != 2 {
            continue;
        }
        if id == ATT_ATTACH_REND_DATA || current.is_none() {
            finish(current.take(), &mut out);
            if out.attachments.len() >= max {
                return out;
            }
            current = Some((TnefAttachment::default(), None));
        }
        let Some((att, long)) = current.as_mut() else {
            continue;
        };
        let value = &data[start..end];
        match id {
            ATT_ATTACH_TITLE => att.name = Some(ansi_string(value)),
            ATT_ATTACH_DATA => att.data = start..end,
            ATT_ATTACHMENT => {
                if let Some(name) = long_filename(value) {
                    *long = Some(name);
                }
            }
            _ => {}
        }
    }
    finish(current.take(), &mut out);
    out.attachments.truncate(max);
    out
}

/// An 8-bit string in the sender's code page, without its terminating NULs.
fn ansi_string(b: &[u8]) -> String {
    let b = b.split(|&c| c == 0).next().unwrap_or(b);
    match std::str::from_utf8(b) {
        Ok(s) => s.to_owned(),
        Err(_) => decode_charset(Some("windows-1252"), b),
    }
}

fn utf16_string(b: &[u8]) -> String {
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16_lossy(&units)
}

/// Cursor over a MAPI property stream.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// A length-prefixed value padded to 4 bytes.
    fn counted(&mut self) -> Option<&'a [u8]> {
        let len = self.u32()? as usize;
        let v = self.take(len)?;
        self.take((4 - len % 4) % 4)?;
        Some(v)
    }
}

/// `PR_ATTACH_LONG_FILENAME` (or `PR_ATTACH_FILENAME`) from an attachment's MAPI
/// properties.
fn long_filename(props: &[u8]) -> Option<String> {
    let mut r = Reader {
        data: props,
        pos: 0,
    };
    let count = r.u32()?.min(MAX_PROPS);
    let mut short = None;
    for _ in 0..count {
        let ptype = r.u16()?;
        let pid = r.u16()?;
        if pid >= 0x8000 {
            // Named property: GUID, kind, then an id or a name.
            r.take(16)?;
            if r.u32()? == 0 {
                r.u32()?;
            } else {
                r.counted()?;
            }
        }
        let base = ptype & 0x0FFF;
        let multi = ptype & 0x1000 != 0;
        let variable = matches!(base, 0x001E | 0x001F | 0x0102 | 0x000D);
        let values = if multi || variable { r.u32()? } else { 1 };
        for _ in 0..values.min(MAX_PROPS) {
            let value = match base {
                0x0001 | 0x0002 | 0x0003 | 0x0004 | 0x000A | 0x000B => r.take(4)?,
                0x0005 | 0x0006 | 0x0007 | 0x0014 | 0x0040 => r.take(8)?,
                0x0048 => r.take(16)?,
                0x001E | 0x001F | 0x0102 | 0x000D => r.counted()?,
                _ => return short,
            };
            if multi {
                continue;
            }
            let text = match ptype {
                PT_STRING8 => Some(ansi_string(value)),
                PT_UNICODE => Some(utf16_string(value)),
                _ => None,
            };
            match (pid, text) {
                (PR_ATTACH_LONG_FILENAME, Some(t)) if !t.is_empty() => return Some(t),
                (PR_ATTACH_FILENAME, Some(t)) if !t.is_empty() => short = Some(t),
                _ => {}
            }
        }
    }
    short
}

/// Builds a TNEF stream (tests and fixtures): each attachment as (8.3 title,
/// optional long file name, data).
pub fn build_tnef(attachments: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    fn attr(out: &mut Vec<u8>, level: u8, id: u32, data: &[u8]) {
        out.push(level);
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        let sum = data.iter().fold(0u16, |s, &b| s.wrapping_add(b as u16));
        out.extend_from_slice(&sum.to_le_bytes());
    }
    let mut out = Vec::new();
    out.extend_from_slice(&TNEF_SIGNATURE.to_le_bytes());
    out.extend_from_slice(&0x0001u16.to_le_bytes());
    attr(&mut out, 1, 0x0008_9006, &0x0001_0000u32.to_le_bytes()); // attTnefVersion
    for (title, long, data) in attachments {
        attr(&mut out, 2, ATT_ATTACH_REND_DATA, &[0u8; 14]);
        let mut t = title.as_bytes().to_vec();
        t.push(0);
        attr(&mut out, 2, ATT_ATTACH_TITLE, &t);
        attr(&mut out, 2, ATT_ATTACH_DATA, data);
        if let Some(long) = long {
            let mut props = Vec::new();
            props.extend_from_slice(&2u32.to_le_bytes());
            // PR_ATTACH_METHOD (PT_LONG) = 1
            props.extend_from_slice(&0x0003u16.to_le_bytes());
            props.extend_from_slice(&0x3705u16.to_le_bytes());
            props.extend_from_slice(&1u32.to_le_bytes());
            // PR_ATTACH_LONG_FILENAME (PT_UNICODE)
            props.extend_from_slice(&PT_UNICODE.to_le_bytes());
            props.extend_from_slice(&PR_ATTACH_LONG_FILENAME.to_le_bytes());
            props.extend_from_slice(&1u32.to_le_bytes());
            let mut s: Vec<u8> = long.encode_utf16().flat_map(u16::to_le_bytes).collect();
            s.extend_from_slice(&[0, 0]);
            props.extend_from_slice(&(s.len() as u32).to_le_bytes());
            let pad = (4 - s.len() % 4) % 4;
            props.extend_from_slice(&s);
            props.extend(std::iter::repeat_n(0u8, pad));
            attr(&mut out, 2, ATT_ATTACHMENT, &props);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_titles_long_names_and_data() {
        let tnef = build_tnef(&[
            ("SETUP~1.EXE", Some("cài đặt.exe"), b"MZ\x90\x00payload"),
            ("note.txt", None, b"hello"),
        ]);
        let t = parse_tnef(&tnef, 10);
        assert!(!t.damaged);
        assert_eq!(t.attachments.len(), 2);
        assert_eq!(t.attachments[0].name.as_deref(), Some("cài đặt.exe"));
        assert_eq!(&tnef[t.attachments[0].data.clone()], b"MZ\x90\x00payload");
        assert_eq!(t.attachments[1].name.as_deref(), Some("note.txt"));
        assert_eq!(&tnef[t.attachments[1].data.clone()], b"hello");
        assert_eq!(parse_tnef(&tnef, 1).attachments.len(), 1);
    }

    #[test]
    fn damaged_streams_never_panic() {
        let tnef = build_tnef(&[("A.EXE", Some("a.exe"), b"MZ")]);
        for cut in 0..tnef.len() {
            let _ = parse_tnef(&tnef[..cut], 10);
        }
        let mut evil = tnef.clone();
        // An attribute that claims 4 GB.
        evil.extend_from_slice(&[2, 0x0F, 0x80, 0x06, 0x00, 0xFF, 0xFF, 0xFF, 0xFF]);
        let t = parse_tnef(&evil, 10);
        assert!(t.damaged);
        assert_eq!(t.attachments.len(), 1);
        assert!(!is_tnef(b"not tnef"));
        // Garbage MAPI properties.
        assert_eq!(long_filename(&[0xFF; 64]), None);
    }
}
