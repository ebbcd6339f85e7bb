//! The text layer of a PDF: page content streams (and form XObjects) decoded
//! (FlateDecode or none), their text operators (`Tj`, `TJ`, `'`, `"`) walked,
//! and the shown strings mapped to Unicode through each font's `/ToUnicode`
//! CMap (`bfchar`, `bfrange`) when it has one, else read as single bytes
//! (WinAnsi, and the legacy TCVN3/VNI bytes when a font dictionary names such
//! a font). A line ends where the text moves to another line (`T*`, a `Td` or
//! `TD` with a vertical move, a `Tm` with another baseline).
//!
//! The objects are found by the bounded scanner of src/inspect/pdf.rs (one
//! pass, no recursion); fonts inside object streams are not looked up (their
//! text is read as single bytes). A PDF that shows no text at all (a scan) or
//! is encrypted is unreadable for stamps.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Read;

use flate2::read::ZlibDecoder;

use super::legacy::LegacyFonts;
use super::stamp::StampFinder;
use super::{DocumentText, charge, cut_reason, refund};
use crate::inspect::archive::{Keep, read_entry};
use crate::inspect::budget::Budget;
use crate::inspect::pdf::{
    Filter, Scanner, filters, has_key, has_name_value, key_value, literal_string_and_length,
    normalize_names,
};

/// Objects looked at between two looks at the clock.
const OBJECTS_PER_CLOCK_CHECK: usize = 256;
/// Content bytes walked between two looks at the clock.
const CONTENT_PER_CLOCK_CHECK: usize = 256 * 1024;
/// Most code-to-text entries kept from one CMap.
const MAX_CMAP_ENTRIES: usize = 1 << 16;
/// Memory counted per object remembered while scanning.
const OBJECT_MEMORY: u64 = 64;

/// A stream that may hold text: its object number, dictionary and raw bytes.
struct Candidate<'a> {
    number: u32,
    dict: Cow<'a, [u8]>,
    data: &'a [u8],
}

/// Reads a PDF's text layer for stamps.
pub fn read(data: &[u8], budget: &mut Budget) -> Option<DocumentText> {
    let mut held = 0u64;
    let outcome = read_held(data, budget, &mut held);
    budget.release(held);
    outcome
}

fn read_held(data: &[u8], budget: &mut Budget, held: &mut u64) -> Option<DocumentText> {
    let unreadable = |reason: String| Some(DocumentText::Unreadable(reason));
    let mut scanner = Scanner::new(data);
    if has_key(scanner.trailers(), b"/Encrypt") {
        return unreadable("encrypted PDF: its text cannot be read".into());
    }
    let mut legacy = LegacyFonts::default();
    // Resource name (`F1`) to font object, and font object to its ToUnicode.
    let mut resource_fonts: HashMap<Vec<u8>, u32> = HashMap::new();
    let mut to_unicode: HashMap<u32, u32> = HashMap::new();
    // Font resource dictionaries given by reference, and the plain dictionaries.
    let mut font_maps: Vec<u32> = Vec::new();
    let mut dicts: HashMap<u32, Cow<'_, [u8]>> = HashMap::new();
    let mut candidates: Vec<Candidate<'_>> = Vec::new();
    let mut seen = 0usize;
    while let Some((number, dict, stream)) = scanner.next_object() {
        seen += 1;
        if seen.is_multiple_of(OBJECTS_PER_CLOCK_CHECK)
            && let Err(reason) = budget.check_limits()
        {
            return unreadable(reason);
        }
        if let Err(reason) = budget.hold(OBJECT_MEMORY) {
            return unreadable(reason);
        }
        *held += OBJECT_MEMORY;
        let dict = normalize_names(dict);
        if has_name_value(&dict, b"/Type", b"/Font") {
            if let Some(base) = key_value(&dict, b"/BaseFont") {
                legacy.find_in(base);
            }
            if let Some(cmap) = reference_of(&dict, b"/ToUnicode") {
                to_unicode.insert(number, cmap);
            }
        }
        if let Some(fonts) = key_value(&dict, b"/Font") {
            if fonts.starts_with(b"<<") {
                name_references(fonts, &mut resource_fonts);
            } else if let Some(map) = reference_of(&dict, b"/Font") {
                font_maps.push(map);
            }
        }
        match stream {
            Some(stream) => {
                let typed = [b"/Length1".as_slice(), b"/Length2", b"/Length3", b"/Type"]
                    .iter()
                    .any(|k| has_key(&dict, k))
                    || (has_key(&dict, b"/Subtype")
                        && !has_name_value(&dict, b"/Subtype", b"/Form"));
                if !typed || has_name_value(&dict, b"/Subtype", b"/Form") {
                    candidates.push(Candidate {
                        number,
                        dict,
                        data: stream,
                    });
                }
            }
            None => {
                dicts.insert(number, dict);
            }
        }
    }
    if scanner.too_damaged {
        return unreadable("damaged PDF: dictionaries that do not close".into());
    }
    for map in font_maps {
        if let Some(d) = dicts.get(&map) {
            name_references(d, &mut resource_fonts);
        }
    }
    drop(dicts);

    let cmap_objects: std::collections::HashSet<u32> = to_unicode.values().copied().collect();
    let mut cmaps: HashMap<u32, CMap> = HashMap::new();
    let mut finder = StampFinder::default();
    finder.legacy = legacy;
    let mut cut = false;
    let mut undecodable: Option<String> = None;
    // CMaps first, then the content.
    for pass_cmaps in [true, false] {
        for c in candidates
            .iter()
            .filter(|c| cmap_objects.contains(&c.number) == pass_cmaps)
        {
            let decoded = match decode(c, budget) {
                Ok((bytes, was_cut)) => {
                    cut |= was_cut;
                    bytes
                }
                Err(Problem::Filter(what)) => {
                    undecodable.get_or_insert(format!("PDF stream encoded with {what}"));
                    continue;
                }
                Err(Problem::Limit(reason)) => return unreadable(reason),
            };
            if pass_cmaps {
                cmaps.insert(c.number, CMap::parse(&decoded.data));
            } else {
                let fonts = Fonts {
                    resource_fonts: &resource_fonts,
                    to_unicode: &to_unicode,
                    cmaps: &cmaps,
                };
                let walked = walk_content(&decoded.data, &fonts, &mut finder, budget);
                finder.end_line();
                if let Err(reason) = walked {
                    decoded.discard(budget);
                    return unreadable(reason);
                }
            }
            decoded.discard(budget);
            if let Some(stamp) = finder.found() {
                return Some(DocumentText::Stamp(stamp));
            }
        }
    }
    finder.end_line();
    if let Some(stamp) = finder.found() {
        return Some(DocumentText::Stamp(stamp));
    }
    if !finder.saw_text() {
        return unreadable(match undecodable {
            Some(what) => format!("{what}: its text cannot be read"),
            None => "PDF without a text layer (a scan?): its text cannot be read".into(),
        });
    }
    cut.then(|| DocumentText::Unreadable(cut_reason()))
}

enum Problem {
    Filter(String),
    Limit(String),
}

/// A candidate stream, decoded within the budget and the text allowance.
fn decode(
    c: &Candidate<'_>,
    budget: &mut Budget,
) -> Result<(crate::inspect::archive::Unpacked, bool), Problem> {
    let reader: Box<dyn Read + '_> = match filters(&c.dict) {
        Ok(f) if f.is_empty() => Box::new(c.data),
        Ok(f) if f == [Filter::Flate] => Box::new(ZlibDecoder::new(c.data)),
        Ok(_) => return Err(Problem::Filter("ASCIIHexDecode".into())),
        Err(what) => return Err(Problem::Filter(what)),
    };
    let (allowed, _) = charge(budget, c.data.len().saturating_mul(20).max(64 * 1024));
    let mut limited = reader.take(allowed as u64 + 1);
    let mut unpacked = read_entry(
        &mut limited,
        c.data.len() as u64,
        "PDF content stream",
        Keep::Whole,
        budget,
    );
    if let Some(limit) = unpacked.limit.take() {
        unpacked.discard(budget);
        return Err(Problem::Limit(limit));
    }
    let cut = unpacked.data.len() > allowed;
    unpacked.data.truncate(allowed);
    refund(budget, allowed - unpacked.data.len());
    Ok((unpacked, cut))
}

/// The object number of the `N G R` value of `key` in `dict`.
fn reference_of(dict: &[u8], key: &[u8]) -> Option<u32> {
    // `key_value` gives the first word of the value, a slice of `dict`.
    let first = key_value(dict, key)?;
    let at = (first.as_ptr() as usize).checked_sub(dict.as_ptr() as usize)?;
    reference(dict.get(at..)?)
}

/// The object number of an `N G R` value.
fn reference(value: &[u8]) -> Option<u32> {
    let mut words = value
        .split(|b| b.is_ascii_whitespace() || b"/<>[]".contains(b))
        .filter(|w| !w.is_empty());
    let number = std::str::from_utf8(words.next()?).ok()?.parse().ok()?;
    let _generation = words.next()?;
    (words.next()? == b"R").then_some(number)
}

/// `/Name N G R` pairs of a dictionary.
fn name_references(dict: &[u8], out: &mut HashMap<Vec<u8>, u32>) {
    let body = dict.strip_prefix(b"<<").unwrap_or(dict);
    let words: Vec<&[u8]> = body
        .split(|b| b.is_ascii_whitespace() || *b == b'>')
        .filter(|w| !w.is_empty())
        .take(4096)
        .collect();
    for w in words.windows(4) {
        if let Some(name) = w[0].strip_prefix(b"/")
            && w[3] == b"R"
            && let Some(n) = std::str::from_utf8(w[1]).ok().and_then(|n| n.parse().ok())
        {
            out.insert(name.to_vec(), n);
        }
    }
}

/// A ToUnicode CMap: codes of `width` bytes to text.
#[derive(Default)]
struct CMap {
    width: usize,
    map: HashMap<u32, String>,
}

impl CMap {
    fn parse(data: &[u8]) -> CMap {
        let mut cmap = CMap::default();
        let tokens = cmap_tokens(data);
        let mut i = 0;
        let mut section: &[u8] = b"";
        while i < tokens.len() && cmap.map.len() < MAX_CMAP_ENTRIES {
            match &tokens[i] {
                Token::Word(w) if w == b"beginbfchar" || w == b"beginbfrange" => {
                    section = if w == b"beginbfchar" {
                        b"char"
                    } else {
                        b"range"
                    };
                    i += 1;
                }
                Token::Word(_) => {
                    section = b"";
                    i += 1;
                }
                Token::Hex(src) if section == b"char" => {
                    if let Some(Token::Hex(dst)) = tokens.get(i + 1) {
                        cmap.add(src, utf16(dst));
                    }
                    i += 2;
                }
                Token::Hex(lo) if section == b"range" => {
                    let (Some(Token::Hex(hi)), Some(dst)) = (tokens.get(i + 1), tokens.get(i + 2))
                    else {
                        break;
                    };
                    let (lo_n, hi_n) = (code(lo), code(hi));
                    let count = hi_n.saturating_sub(lo_n).min(MAX_CMAP_ENTRIES as u32);
                    match dst {
                        Token::Hex(start) => {
                            let base = utf16(start);
                            for k in 0..=count {
                                let mut text = base.clone();
                                if let Some(last) = text.pop() {
                                    let shifted =
                                        char::from_u32(u32::from(last) + k).unwrap_or(last);
                                    text.push(shifted);
                                }
                                cmap.add_code(lo.len(), lo_n + k, text);
                            }
                        }
                        Token::Array(items) => {
                            for (k, item) in items.iter().enumerate().take(count as usize + 1) {
                                cmap.add_code(lo.len(), lo_n + k as u32, utf16(item));
                            }
                        }
                        Token::Word(_) => {}
                    }
                    i += 3;
                }
                _ => i += 1,
            }
        }
        cmap
    }

    fn add(&mut self, src: &[u8], text: String) {
        self.add_code(src.len(), code(src), text);
    }

    fn add_code(&mut self, width: usize, code: u32, text: String) {
        if self.width == 0 {
            self.width = width.clamp(1, 4);
        }
        self.map.insert(code, text);
    }

    fn decode(&self, bytes: &[u8], out: &mut StampFinder) {
        let width = self.width.max(1);
        for chunk in bytes.chunks(width) {
            match self.map.get(&code(chunk)) {
                Some(text) => out.push_str(text),
                None if width == 1 => out.push_char(char::from(chunk[0])),
                None => {}
            }
        }
    }
}

fn code(bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .take(4)
        .fold(0, |acc, b| (acc << 8) | u32::from(*b))
}

fn utf16(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
        .collect();
    String::from_utf16_lossy(&units)
}

enum Token {
    Word(Vec<u8>),
    Hex(Vec<u8>),
    Array(Vec<Vec<u8>>),
}

/// The tokens of a CMap that matter: words, hex strings, arrays of hex strings.
fn cmap_tokens(data: &[u8]) -> Vec<Token> {
    let mut out = Vec::new();
    let mut i = 0;
    let mut array: Option<Vec<Vec<u8>>> = None;
    while i < data.len() && out.len() < 4 * MAX_CMAP_ENTRIES {
        match data[i] {
            b'<' if data.get(i + 1) != Some(&b'<') => {
                let end = memchr::memchr(b'>', &data[i..]).map_or(data.len(), |e| i + e);
                let hex = crate::inspect::carrier::decode_hex(&data[i + 1..end]);
                match &mut array {
                    Some(a) => a.push(hex),
                    None => out.push(Token::Hex(hex)),
                }
                i = end + 1;
            }
            b'[' => {
                array = Some(Vec::new());
                i += 1;
            }
            b']' => {
                out.push(Token::Array(array.take().unwrap_or_default()));
                i += 1;
            }
            c if c.is_ascii_alphabetic() => {
                let start = i;
                while i < data.len() && data[i].is_ascii_alphanumeric() {
                    i += 1;
                }
                out.push(Token::Word(data[start..i].to_vec()));
            }
            _ => i += 1,
        }
    }
    out
}

/// What the content walk needs to map shown strings to text.
struct Fonts<'f> {
    resource_fonts: &'f HashMap<Vec<u8>, u32>,
    to_unicode: &'f HashMap<u32, u32>,
    cmaps: &'f HashMap<u32, CMap>,
}

impl Fonts<'_> {
    fn cmap(&self, resource: &[u8]) -> Option<&CMap> {
        let font = self.resource_fonts.get(resource)?;
        self.cmaps.get(self.to_unicode.get(font)?)
    }
}

/// One operand of a content operator.
enum Operand {
    Number(f64),
    Name(Vec<u8>),
    String(Vec<u8>),
    /// A `TJ` array: its strings, and a space for a wide gap.
    Array(Vec<Option<Vec<u8>>>),
    Other,
}

/// Most operands kept before an operator.
const MAX_OPERANDS: usize = 16;

/// Walks the text operators of a content stream.
fn walk_content(
    data: &[u8],
    fonts: &Fonts<'_>,
    finder: &mut StampFinder,
    budget: &Budget,
) -> Result<(), String> {
    let mut operands: Vec<Operand> = Vec::new();
    let mut array: Option<Vec<Option<Vec<u8>>>> = None;
    let mut font: Option<&CMap> = None;
    let mut baseline: Option<f64> = None;
    let mut i = 0;
    let mut next_check = CONTENT_PER_CLOCK_CHECK;
    let show = |bytes: &[u8], font: Option<&CMap>, finder: &mut StampFinder| {
        finder.mark_text();
        match font {
            Some(cmap) => cmap.decode(bytes, finder),
            None => bytes.iter().for_each(|b| finder.push_char(char::from(*b))),
        }
    };
    while i < data.len() {
        if i >= next_check {
            next_check = i + CONTENT_PER_CLOCK_CHECK;
            budget.check_limits()?;
            if finder.found().is_some() {
                return Ok(());
            }
        }
        let c = data[i];
        let operand = match c {
            b'(' => {
                let (s, length) = literal_string_and_length(&data[i..]);
                i += length.max(1);
                Some(Operand::String(s))
            }
            b'<' if data.get(i + 1) == Some(&b'<') => {
                i += 2;
                Some(Operand::Other)
            }
            b'>' => {
                i += 1;
                None
            }
            b'<' => {
                let end = memchr::memchr(b'>', &data[i..]).map_or(data.len(), |e| i + e);
                let hex = crate::inspect::carrier::decode_hex(&data[i + 1..end]);
                i = end + 1;
                Some(Operand::String(hex))
            }
            b'[' => {
                array = Some(Vec::new());
                i += 1;
                None
            }
            b']' => {
                i += 1;
                Some(Operand::Array(array.take().unwrap_or_default()))
            }
            b'/' => {
                let start = i + 1;
                i = start;
                while i < data.len() && is_regular(data[i]) {
                    i += 1;
                }
                Some(Operand::Name(data[start..i].to_vec()))
            }
            b'%' => {
                i = memchr::memchr2(b'\n', b'\r', &data[i..]).map_or(data.len(), |e| i + e);
                None
            }
            b'+' | b'-' | b'.' | b'0'..=b'9' => {
                let start = i;
                i += 1;
                while i < data.len() && matches!(data[i], b'0'..=b'9' | b'.') {
                    i += 1;
                }
                let n = std::str::from_utf8(&data[start..i])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0.0);
                Some(Operand::Number(n))
            }
            c if is_regular(c) => {
                let start = i;
                while i < data.len() && is_regular(data[i]) {
                    i += 1;
                }
                let op = &data[start..i];
                match op {
                    b"Tf" => {
                        font = match operands.iter().rev().nth(1) {
                            Some(Operand::Name(name)) => fonts.cmap(name),
                            _ => None,
                        };
                    }
                    b"Tm" => {
                        if let Some(Operand::Number(y)) = operands.last() {
                            if baseline.is_some_and(|b| (b - y).abs() > 0.5) {
                                finder.end_line();
                            }
                            baseline = Some(*y);
                        }
                    }
                    b"Td" | b"TD" => {
                        if let Some(Operand::Number(ty)) = operands.last()
                            && ty.abs() > 0.01
                        {
                            finder.end_line();
                            baseline = baseline.map(|b| b + ty);
                        }
                    }
                    b"T*" => finder.end_line(),
                    b"Tj" | b"'" | b"\"" => {
                        if op != b"Tj" {
                            finder.end_line();
                        }
                        if let Some(Operand::String(s)) = operands.last() {
                            show(s, font, finder);
                        }
                    }
                    b"TJ" => {
                        if let Some(Operand::Array(items)) = operands.last() {
                            for item in items {
                                match item {
                                    Some(s) => show(s, font, finder),
                                    None => finder.push_char(' '),
                                }
                            }
                        }
                    }
                    b"ID" => {
                        // Inline image data: up to `EI` standing alone.
                        let mut at = i;
                        i = data.len();
                        while let Some(e) = memchr::memmem::find(&data[at..], b"EI") {
                            let end = at + e + 2;
                            let before = at + e;
                            if before > 0
                                && data[before - 1].is_ascii_whitespace()
                                && data.get(end).is_none_or(|b| !is_regular(*b))
                            {
                                i = end;
                                break;
                            }
                            at = end;
                        }
                    }
                    _ => {}
                }
                operands.clear();
                None
            }
            _ => {
                i += 1;
                None
            }
        };
        if let Some(op) = operand {
            match (&mut array, op) {
                (Some(items), Operand::String(s)) => items.push(Some(s)),
                (Some(items), Operand::Number(n)) => {
                    if n < -200.0 {
                        items.push(None);
                    }
                }
                (Some(_), _) => {}
                (None, op) => {
                    if operands.len() == MAX_OPERANDS {
                        operands.remove(0);
                    }
                    operands.push(op);
                }
            }
        }
    }
    Ok(())
}

fn is_regular(b: u8) -> bool {
    !(b.is_ascii_whitespace() || b"()<>[]{}/%".contains(&b) || b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::LimitsSection;

    fn walk(content: &[u8]) -> Option<&'static str> {
        let b = Budget::new(&LimitsSection::default());
        let empty = HashMap::new();
        let (a, c) = (HashMap::new(), HashMap::new());
        let fonts = Fonts {
            resource_fonts: &empty,
            to_unicode: &a,
            cmaps: &c,
        };
        let mut f = StampFinder::default();
        f.legacy.tcvn3 = true;
        f.legacy.tcvn3_capitals = true;
        walk_content(content, &fonts, &mut f, &b).unwrap();
        f.finish()
    }

    #[test]
    fn text_operators_and_lines() {
        // Single bytes: TCVN3 (0xCB is ậ).
        assert_eq!(
            walk(b"BT /F1 12 Tf 1 0 0 1 72 700 Tm (M\\313T) Tj ET"),
            Some("MẬT")
        );
        assert_eq!(
            walk(b"BT 72 700 Td (bi) Tj 20 0 Td (M\\313T) Tj ET"),
            None,
            "same line"
        );
        assert_eq!(
            walk(b"BT 72 700 Td (Ke hoach) Tj 0 -14 Td [(M) -10 (\\313T)] TJ ET"),
            Some("MẬT")
        );
        assert_eq!(
            walk(b"BI /W 1 /H 1 ID \x00(M\xCBT) Tj EI BT (x) Tj ET"),
            None
        );
    }

    #[test]
    fn cmaps_map_codes_to_text() {
        let cmap = CMap::parse(
            b"1 begincodespacerange <00> <FF> endcodespacerange\n\
              2 beginbfchar <01> <004D> <02> <1EAC> endbfchar\n\
              1 beginbfrange <03> <04> <0054> endbfrange",
        );
        let mut f = StampFinder::default();
        cmap.decode(&[1, 2, 3], &mut f);
        assert_eq!(f.finish(), Some("MẬT"));
    }
}
