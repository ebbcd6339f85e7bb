//! The text of an RTF document: control words stripped, `\par`, `\line`,
//! `\cell` and `\row` ending lines, `\'xx` bytes read in the document's code
//! page (`\ansicpg1258` for Vietnamese, Windows-1252 otherwise), `\uN` as
//! Unicode. Groups that hold no text (font and style tables, pictures,
//! objects, `{\*...}` destinations) are skipped. One pass, no recursion: the
//! groups are a stack of flags with a bounded depth.

use super::stamp::StampFinder;
use super::{DocumentText, charge, cp1258_char, outcome};
use crate::inspect::budget::Budget;

/// Destinations whose content is not the document's text.
const SKIPPED: [&[u8]; 24] = [
    b"fonttbl",
    b"colortbl",
    b"stylesheet",
    b"info",
    b"pict",
    b"object",
    b"objdata",
    b"themedata",
    b"colorschememapping",
    b"datastore",
    b"latentstyles",
    b"listtable",
    b"listoverridetable",
    b"rsidtbl",
    b"generator",
    b"xmlnstbl",
    b"fldinst",
    b"filetbl",
    b"revtbl",
    b"userprops",
    b"template",
    b"bkmkstart",
    b"bkmkend",
    b"pgdsctbl",
];

/// Groups deeper than this are read as if at this depth.
const MAX_DEPTH: usize = 1000;
/// Bytes between two looks at the clock.
const BYTES_PER_CLOCK_CHECK: usize = 256 * 1024;

#[derive(Clone, Copy)]
struct Group {
    skip: bool,
    /// `\ucN`: characters that follow a `\u` as its fallback.
    fallback: usize,
}

/// Reads an RTF document for stamps.
pub fn read(data: &[u8], budget: &mut Budget) -> Option<DocumentText> {
    let (len, cut) = charge(budget, data.len());
    let data = &data[..len];
    let mut finder = StampFinder::default();
    finder.legacy.find_in(data);
    let result = feed(data, &mut finder, budget);
    outcome(finder, result, cut)
}

/// Feeds the text of `data` to `finder`.
pub fn feed(data: &[u8], finder: &mut StampFinder, budget: &Budget) -> Result<(), String> {
    let mut stack: Vec<Group> = Vec::new();
    let mut overflow = 0usize;
    let mut group = Group {
        skip: false,
        fallback: 1,
    };
    let mut cp1258 = false;
    // Fallback characters still to drop after a `\u`.
    let mut drop = 0usize;
    // The first control word of a group decides whether it is skipped.
    let mut group_start = false;
    let mut i = 0;
    let mut next_check = BYTES_PER_CLOCK_CHECK;
    while i < data.len() {
        if i >= next_check {
            next_check = i + BYTES_PER_CLOCK_CHECK;
            budget.check_limits()?;
            if finder.found().is_some() {
                return Ok(());
            }
        }
        let c = data[i];
        match c {
            b'{' => {
                if stack.len() < MAX_DEPTH {
                    stack.push(group);
                } else {
                    overflow += 1;
                }
                group_start = true;
                drop = 0;
                i += 1;
                continue;
            }
            b'}' => {
                if overflow > 0 {
                    overflow -= 1;
                } else if let Some(g) = stack.pop() {
                    group = g;
                }
                group_start = false;
                drop = 0;
                i += 1;
                continue;
            }
            b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'\\' => {}
            _ => {
                group_start = false;
                if drop > 0 {
                    drop -= 1;
                } else if !group.skip {
                    finder.push_char(byte_char(c, cp1258));
                }
                i += 1;
                continue;
            }
        }
        // A control symbol or word.
        let Some(&next) = data.get(i + 1) else { break };
        if !next.is_ascii_alphabetic() {
            i += 2;
            let was_start = std::mem::replace(&mut group_start, false);
            match next {
                b'*' if was_start => group.skip = true,
                b'\'' => {
                    let byte = data
                        .get(i..i + 2)
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    if byte.is_some() {
                        i += 2;
                    }
                    if drop > 0 {
                        drop -= 1;
                    } else if let (Some(b), false) = (byte, group.skip) {
                        finder.push_char(byte_char(b, cp1258));
                    }
                }
                b'\\' | b'{' | b'}' if !group.skip => {
                    if drop > 0 {
                        drop -= 1;
                    } else {
                        finder.push_char(char::from(next));
                    }
                }
                b'~' if !group.skip => finder.push_char('\u{a0}'),
                b'\r' | b'\n' if !group.skip => finder.end_line(),
                _ => {}
            }
            continue;
        }
        let word_start = i + 1;
        let mut j = word_start;
        while j < data.len() && j - word_start < 32 && data[j].is_ascii_alphabetic() {
            j += 1;
        }
        let word = &data[word_start..j];
        let param_start = j;
        if data.get(j) == Some(&b'-') {
            j += 1;
        }
        while j < data.len() && j - param_start < 12 && data[j].is_ascii_digit() {
            j += 1;
        }
        let param: Option<i64> = std::str::from_utf8(&data[param_start..j])
            .ok()
            .and_then(|p| p.parse().ok());
        if data.get(j) == Some(&b' ') {
            j += 1;
        }
        i = j;
        let was_start = std::mem::replace(&mut group_start, false);
        if was_start && SKIPPED.contains(&word) {
            group.skip = true;
        }
        match word {
            b"ansicpg" => cp1258 = param == Some(1258),
            b"uc" => group.fallback = param.and_then(|p| usize::try_from(p).ok()).unwrap_or(1),
            b"u" => {
                if let Some(p) = param {
                    let code = if p < 0 { p + 65536 } else { p };
                    if !group.skip
                        && let Some(ch) = u32::try_from(code).ok().and_then(char::from_u32)
                    {
                        finder.push_char(ch);
                    }
                    drop = group.fallback.min(8);
                }
            }
            b"par" | b"line" | b"sect" | b"page" | b"cell" | b"row" | b"nestcell" | b"nestrow"
                if !group.skip =>
            {
                finder.end_line()
            }
            b"tab" if !group.skip => finder.push_char(' '),
            _ => {}
        }
    }
    finder.end_line();
    Ok(())
}

/// A byte of the document's code page.
fn byte_char(b: u8, cp1258: bool) -> char {
    if cp1258 {
        cp1258_char(b)
    } else {
        char::from(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::LimitsSection;

    fn stamp(rtf: &[u8]) -> Option<DocumentText> {
        let mut b = Budget::new(&LimitsSection::default());
        read(rtf, &mut b)
    }

    #[test]
    fn paragraphs_code_pages_and_unicode() {
        let rtf = br"{\rtf1\ansi\ansicpg1258{\fonttbl{\f0 Times;}}{\*\generator x;}\f0 K\'ea ho\'a3ch\par M\'c2\'f2T\par}";
        assert_eq!(stamp(rtf), Some(DocumentText::Stamp("MẬT")));
        let rtf = br"{\rtf1\ansi\uc1 T\u7888?I M\u7852?T\par}";
        assert_eq!(stamp(rtf), Some(DocumentText::Stamp("TỐI MẬT")));
        let rtf = br"{\rtf1\ansi b\'ed M\u7852?T\par M\u7852?T KH\u7848?U\par}";
        assert_eq!(stamp(rtf), None);
        // The stamp only in the font table is no stamp.
        let rtf = br"{\rtf1{\fonttbl{\f0 M\u7852?T;}}x\par}";
        assert_eq!(stamp(rtf), None);
    }

    #[test]
    fn legacy_fonts() {
        let rtf = br"{\rtf1\ansi\ansicpg1252{\fonttbl{\f0 .VnTimeH;}}\f0 M\'cbT\par}";
        assert_eq!(stamp(rtf), Some(DocumentText::Stamp("MẬT")));
        let rtf = br"{\rtf1\ansi\ansicpg1252{\fonttbl{\f0 VNI-Times;}}\f0 TUYE\'c4T MA\'c4T\par}";
        assert_eq!(stamp(rtf), Some(DocumentText::Stamp("TUYỆT MẬT")));
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let mut rtf = b"{\\rtf1 ".to_vec();
        rtf.extend(std::iter::repeat_n(b'{', 100_000));
        rtf.extend(b"MAT");
        assert_eq!(stamp(&rtf), None);
    }
}
