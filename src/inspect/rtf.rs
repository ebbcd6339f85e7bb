//! Objects embedded in RTF (`{\object\objemb ... {\*\objdata HEX}}`): Word
//! shows each as an icon that opens what it holds. The hex is an OLE1 object
//! (MS-OLEDS 2.2.4: version, format, class name, topic, item, native data). A
//! `Package` object (the Windows Packager) carries a file: its name and bytes
//! go to the sink like an archive entry. Any other object's native data (an
//! OLE2 document, usually) goes to the sink as it is, to be typed by content.
//!
//! Word reads `\objdata` leniently, and so does this reader: whitespace,
//! control words and groups inside the hex are skipped. One pass over the
//! text; every object's bytes are held from the budget while inspected.

use super::archive::{Opened, Sink};
use super::budget::Budget;
use super::carrier::{HexDecoder, hand_damaged, hand_decoded};

/// `{\rt`: what Word checks (it opens `{\rtf1`, and `{\rt0` as well).
pub fn is_rtf(data: &[u8]) -> bool {
    data.starts_with(b"{\\rt")
}

/// Hands every embedded object of the RTF `data` to `sink`.
pub fn open(data: &[u8], budget: &mut Budget, sink: &mut Sink<'_>) -> Opened {
    let mut opened = Opened::default();
    let finder = memchr::memmem::Finder::new(b"\\objdata");
    let mut from = 0;
    while let Some(at) = finder.find(&data[from..]) {
        let start = from + at + b"\\objdata".len();
        if data.get(start).is_some_and(u8::is_ascii_alphabetic) {
            from = start;
            continue;
        }
        if let Err(reason) = budget.check_limits() {
            opened.problem(reason);
            break;
        }
        let (hex_end, object) = objdata(&data[start..]);
        from = start + hex_end;
        let held = object.capacity() as u64;
        if let Err(reason) = budget.hold(held) {
            opened.problem(reason);
            break;
        }
        let go_on = hand_object(&object, &mut opened, budget, sink);
        budget.release(held);
        if !go_on {
            break;
        }
    }
    opened
}

/// The bytes of the hex after `\objdata`, up to the end of its group, and
/// where that end is.
fn objdata(text: &[u8]) -> (usize, Vec<u8>) {
    let mut out = Vec::new();
    let mut hex = HexDecoder::default();
    let mut depth = 0usize;
    let mut i = 0;
    while i < text.len() {
        let c = text[i];
        i += 1;
        match c {
            b'{' => depth += 1,
            b'}' if depth == 0 => return (i, out),
            b'}' => depth -= 1,
            b'\\' => {
                // A control word (letters, an optional number, one space) or a
                // control symbol: not data.
                let letters = text[i..]
                    .iter()
                    .take_while(|b| b.is_ascii_alphabetic())
                    .count();
                if letters == 0 {
                    i += 1;
                    continue;
                }
                i += letters;
                if text.get(i) == Some(&b'-') {
                    i += 1;
                }
                i += text[i..].iter().take_while(|b| b.is_ascii_digit()).count();
                if text.get(i) == Some(&b' ') {
                    i += 1;
                }
            }
            _ if depth > 0 => {}
            _ => hex.push(c, &mut out),
        }
    }
    (text.len(), out)
}

/// Reads an OLE1 object and hands what it carries to the sink. False when the
/// budget stops the carrier.
fn hand_object(
    object: &[u8],
    opened: &mut Opened,
    budget: &mut Budget,
    sink: &mut Sink<'_>,
) -> bool {
    let Some(ole1) = Ole1::parse(object) else {
        // Not an OLE1 object: its bytes, typed by content (an OLE2 file put
        // there directly, say).
        if object.is_empty() {
            return true;
        }
        return hand_decoded("(embedded object)".into(), object, opened, budget, sink);
    };
    if ole1.class.eq_ignore_ascii_case("Package")
        && let Some(package) = Package::parse(ole1.native)
    {
        let cut = ole1.cut_short || package.cut_short;
        return hand(package.name(), package.data, cut, opened, budget, sink);
    }
    let name = format!("({} object)", ole1.class);
    hand(name, ole1.native, ole1.cut_short, opened, budget, sink)
}

/// Hands a carried file to the sink; one cut short is marked damaged.
fn hand(
    name: String,
    data: &[u8],
    cut_short: bool,
    opened: &mut Opened,
    budget: &mut Budget,
    sink: &mut Sink<'_>,
) -> bool {
    if !cut_short {
        return hand_decoded(name, data, opened, budget, sink);
    }
    let reason = format!("damaged RTF: embedded object '{name}' is cut short");
    hand_damaged(name, Some(data), reason, opened, budget, sink)
}

/// An OLE1 embedded object (MS-OLEDS 2.2.4 ObjectHeader and EmbeddedObject).
struct Ole1<'a> {
    class: String,
    native: &'a [u8],
    /// The native data is shorter than its stated size.
    cut_short: bool,
}

impl<'a> Ole1<'a> {
    fn parse(b: &'a [u8]) -> Option<Ole1<'a>> {
        let mut r = Reader { b, at: 0 };
        let _version = r.u32()?;
        let format = r.u32()?;
        if format != 2 {
            // 1 is a linked object (no data here), 5 a static picture.
            return None;
        }
        let class = r.ansi_string()?;
        let _topic = r.ansi_string()?;
        let _item = r.ansi_string()?;
        let size = r.u32()? as usize;
        let rest = &b[r.at..];
        let cut_short = size > rest.len();
        Some(Ole1 {
            class: String::from_utf8_lossy(class).into_owned(),
            native: &rest[..size.min(rest.len())],
            cut_short,
        })
    }
}

/// The Packager's native data: a file with its label and paths.
struct Package<'a> {
    label: &'a [u8],
    source: &'a [u8],
    temp: &'a [u8],
    data: &'a [u8],
    cut_short: bool,
}

impl<'a> Package<'a> {
    fn parse(b: &'a [u8]) -> Option<Package<'a>> {
        let mut r = Reader { b, at: 0 };
        let _kind = r.u16()?;
        let label = r.c_string()?;
        let source = r.c_string()?;
        let _reserved = r.u16()?;
        let _embedded = r.u16()?;
        let _temp_len = r.u32()?;
        let temp = r.c_string()?;
        let size = r.u32()? as usize;
        let rest = &b[r.at..];
        Some(Package {
            label,
            source,
            temp,
            data: &rest[..size.min(rest.len())],
            cut_short: size > rest.len(),
        })
    }

    /// The name the file is written under when opened (the temporary path's,
    /// whose extension decides what runs), else the source's, else the label.
    fn name(&self) -> String {
        let base = |p: &[u8]| {
            let p = String::from_utf8_lossy(p).into_owned();
            p.rsplit(['\\', '/']).next().unwrap_or("").to_owned()
        };
        [self.temp, self.source]
            .into_iter()
            .map(base)
            .find(|n| !n.is_empty())
            .unwrap_or_else(|| String::from_utf8_lossy(self.label).into_owned())
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|s| u16::from_le_bytes([s[0], s[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }

    /// A length-prefixed string, its final NUL dropped.
    fn ansi_string(&mut self) -> Option<&'a [u8]> {
        let len = self.u32()? as usize;
        let s = self.take(len)?;
        Some(s.strip_suffix(b"\0").unwrap_or(s))
    }

    /// A NUL-terminated string.
    fn c_string(&mut self) -> Option<&'a [u8]> {
        let rest = self.b.get(self.at..)?;
        let end = memchr::memchr(0, rest)?;
        self.at += end + 1;
        Some(&rest[..end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objdata_skips_blanks_control_words_and_groups() {
        let (end, bytes) = objdata(b" 4d\r\n5a{\\*\\junk 00}\\par 90} tail");
        assert_eq!(bytes, b"MZ\x90");
        assert_eq!(end, 27);
        // No closing brace: to the end.
        assert_eq!(objdata(b"4d5").1, b"M");
    }

    #[test]
    fn ole1_package_gives_the_temporary_name() {
        let mut native = vec![2, 0];
        native.extend(b"invoice.pdf\0C:\\a\\invoice.pdf\0\0\0\x03\0");
        native.extend(&[17, 0, 0, 0]);
        native.extend(b"C:\\t\\invoice.exe\0");
        native.extend(&[2, 0, 0, 0]);
        native.extend(b"MZ");
        let p = Package::parse(&native).unwrap();
        assert_eq!(p.name(), "invoice.exe");
        assert_eq!(p.data, b"MZ");
        assert!(!p.cut_short);
        native.truncate(native.len() - 1);
        assert!(Package::parse(&native).unwrap().cut_short);
    }
}
