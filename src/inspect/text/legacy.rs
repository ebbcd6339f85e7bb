//! Vietnamese text in the 8-bit encodings that came before Unicode, still found in
//! documents typed with their fonts: TCVN3 (TCVN 5712:1993 VN3, the ".VnTime"
//! family; the ".VnTimeH" fonts draw the same codes as capitals) and VNI
//! ("VNI-Times" and the other "VNI-" fonts: a base letter followed by a byte for
//! its marks). A document in such a font stores those bytes as if they were
//! Windows-1252 text ("MËT" in .VnTimeH, "MAÄT" in VNI-Times is "MẬT"); a PDF
//! shows them in its font dictionary's `/BaseFont`.
//!
//! Sources of the mappings: TCVN3 from glibc's TCVN5712-1 charmap (`iconv -f
//! TCVN5712-1`), bytes 0xA1-0xFF, whose lower-case letters are the codes the VN3
//! fonts use; VNI from the VNI-Windows code table (the mark bytes after a base
//! letter), as the Unicode consortium's Vietnamese charset tables at
//! vietunicode.sourceforge.net list them. Only the decoding is needed: text is
//! decoded, normalised (NFC) and compared with the stamps.

use unicode_normalization::UnicodeNormalization;

/// The legacy encodings a document's fonts say it uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LegacyFonts {
    /// A ".Vn..." font: TCVN3.
    pub tcvn3: bool,
    /// A ".Vn...H" font: TCVN3 drawn in capitals.
    pub tcvn3_capitals: bool,
    /// A "VNI-..." font.
    pub vni: bool,
}

impl LegacyFonts {
    pub fn any(self) -> bool {
        self.tcvn3 || self.vni
    }

    /// Adds the legacy fonts named anywhere in `data` (font tables, run
    /// properties, PDF font dictionaries): ".Vn" and "VNI-" names.
    pub fn find_in(&mut self, data: &[u8]) {
        for at in memchr::memmem::find_iter(data, b".Vn") {
            let name: Vec<u8> = data[at..]
                .iter()
                .take(40)
                .take_while(|b| b.is_ascii_alphanumeric() || **b == b'.' || **b == b' ')
                .copied()
                .collect();
            if name.len() > 3 && name[3].is_ascii_uppercase() {
                self.tcvn3 = true;
                let word_end = name.iter().position(|b| *b == b' ').unwrap_or(name.len());
                if name[..word_end].ends_with(b"H") {
                    self.tcvn3_capitals = true;
                }
            }
        }
        if memchr::memmem::find(data, b"VNI-").is_some()
            || memchr::memmem::find(data, b"VNI ").is_some()
        {
            self.vni = true;
        }
    }
}

/// TCVN3 bytes 0xA1..=0xFF (glibc TCVN5712-1).
const TCVN3_HIGH: [char; 95] = [
    '\u{0102}', '\u{00C2}', '\u{00CA}', '\u{00D4}', '\u{01A0}', '\u{01AF}', '\u{0110}', '\u{0103}',
    '\u{00E2}', '\u{00EA}', '\u{00F4}', '\u{01A1}', '\u{01B0}', '\u{0111}', '\u{1EB0}', '\u{0300}',
    '\u{0309}', '\u{0303}', '\u{0301}', '\u{0323}', '\u{00E0}', '\u{1EA3}', '\u{00E3}', '\u{00E1}',
    '\u{1EA1}', '\u{1EB2}', '\u{1EB1}', '\u{1EB3}', '\u{1EB5}', '\u{1EAF}', '\u{1EB4}', '\u{1EAE}',
    '\u{1EA6}', '\u{1EA8}', '\u{1EAA}', '\u{1EA4}', '\u{1EC0}', '\u{1EB7}', '\u{1EA7}', '\u{1EA9}',
    '\u{1EAB}', '\u{1EA5}', '\u{1EAD}', '\u{00E8}', '\u{1EC2}', '\u{1EBB}', '\u{1EBD}', '\u{00E9}',
    '\u{1EB9}', '\u{1EC1}', '\u{1EC3}', '\u{1EC5}', '\u{1EBF}', '\u{1EC7}', '\u{00EC}', '\u{1EC9}',
    '\u{1EC4}', '\u{1EBE}', '\u{1ED2}', '\u{0129}', '\u{00ED}', '\u{1ECB}', '\u{00F2}', '\u{1ED4}',
    '\u{1ECF}', '\u{00F5}', '\u{00F3}', '\u{1ECD}', '\u{1ED3}', '\u{1ED5}', '\u{1ED7}', '\u{1ED1}',
    '\u{1ED9}', '\u{1EDD}', '\u{1EDF}', '\u{1EE1}', '\u{1EDB}', '\u{1EE3}', '\u{00F9}', '\u{1ED6}',
    '\u{1EE7}', '\u{0169}', '\u{00FA}', '\u{1EE5}', '\u{1EEB}', '\u{1EED}', '\u{1EEF}', '\u{1EE9}',
    '\u{1EF1}', '\u{1EF3}', '\u{1EF7}', '\u{1EF9}', '\u{00FD}', '\u{1EF5}', '\u{1ED0}',
];

/// One legacy code (a byte, or a character that stands for the byte as
/// Windows-1252 would show it) in TCVN3.
fn tcvn3_char(code: char) -> char {
    match u32::from(code) {
        c @ 0xA1..=0xFF => TCVN3_HIGH[(c - 0xA1) as usize],
        _ => code,
    }
}

/// Decodes a line typed in a TCVN3 font; `capitals` for the ".Vn...H" fonts.
/// `None` when the line has no TCVN3 code at all (Unicode text beside the legacy
/// runs stays as it is: a Unicode "mật" is not made a capital "MẬT").
pub fn decode_tcvn3(line: &str, capitals: bool) -> Option<String> {
    if !line.chars().any(|c| matches!(u32::from(c), 0xA1..=0xFF)) {
        return None;
    }
    let decoded: String = line.chars().map(tcvn3_char).nfc().collect();
    Some(if capitals {
        decoded.to_uppercase()
    } else {
        decoded
    })
}

/// The marks a VNI mark byte (as its Windows-1252 character) puts on the letter
/// before it: a tone alone, or a circumflex with a tone (on a, e, o only).
fn vni_marks(mark: char, base: char) -> Option<&'static [char]> {
    let circumflex_base = matches!(base, 'a' | 'e' | 'o' | 'A' | 'E' | 'O');
    let vowel = circumflex_base || matches!(base, 'i' | 'u' | 'y' | 'I' | 'U' | 'Y');
    if !vowel {
        return None;
    }
    let tone: Option<&'static [char]> = match mark {
        'ù' | 'Ù' => Some(&['\u{301}']),
        'ø' | 'Ø' => Some(&['\u{300}']),
        'û' | 'Û' => Some(&['\u{309}']),
        'õ' | 'Õ' => Some(&['\u{303}']),
        'ï' | 'Ï' => Some(&['\u{323}']),
        _ => None,
    };
    if tone.is_some() {
        return tone;
    }
    if !circumflex_base {
        return None;
    }
    match mark {
        'â' | 'Â' => Some(&['\u{302}']),
        'á' | 'Á' => Some(&['\u{302}', '\u{301}']),
        'à' | 'À' => Some(&['\u{302}', '\u{300}']),
        'å' | 'Å' => Some(&['\u{302}', '\u{309}']),
        'ã' | 'Ã' => Some(&['\u{302}', '\u{303}']),
        'ä' | 'Ä' => Some(&['\u{302}', '\u{323}']),
        _ => None,
    }
}

/// Decodes a line typed in a VNI font; `None` when no VNI mark is in it.
pub fn decode_vni(line: &str) -> Option<String> {
    let mut marked = false;
    let mut out = String::with_capacity(line.len());
    let mut previous: Option<char> = None;
    for c in line.chars() {
        match previous.and_then(|base| vni_marks(c, base)) {
            Some(marks) => {
                out.extend(marks);
                marked = true;
                previous = None;
            }
            None => {
                out.push(c);
                previous = Some(c);
            }
        }
    }
    marked.then(|| out.nfc().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcvn3_stamps_decode() {
        // iconv -f TCVN5712-1: ậ = 0xCB, ố = 0xE8, ệ = 0xD6.
        let decode = |s: &str, capitals: bool| decode_tcvn3(s, capitals).unwrap();
        assert_eq!(decode("M\u{CB}T", true), "MẬT");
        assert_eq!(decode("T\u{E8}I M\u{CB}T", true), "TỐI MẬT");
        assert_eq!(decode("TUY\u{D6}T M\u{CB}T", true), "TUYỆT MẬT");
        assert_eq!(decode("m\u{CB}t", false), "mật");
        assert_eq!(decode_tcvn3("mật", true), None);
    }

    #[test]
    fn vni_stamps_decode() {
        let decode = |s: &str| decode_vni(s).unwrap();
        assert_eq!(decode("MAÄT"), "MẬT");
        assert_eq!(decode("TOÁI MAÄT"), "TỐI MẬT");
        assert_eq!(decode("TUYEÄT MAÄT"), "TUYỆT MẬT");
        assert_eq!(decode("maät khaåu"), "mật khẩu");
        assert_eq!(decode_vni("MẬT KHẨU"), None);
    }

    #[test]
    fn fonts_are_found_by_name() {
        let mut f = LegacyFonts::default();
        f.find_in(b"<w:rFonts w:ascii=\".VnTimeH\"/>");
        assert!(f.tcvn3 && f.tcvn3_capitals && !f.vni);
        let mut f = LegacyFonts::default();
        f.find_in(b"/BaseFont /ABCDEF+.VnTime");
        assert!(f.tcvn3 && !f.tcvn3_capitals);
        let mut f = LegacyFonts::default();
        f.find_in(b"{\\f1 VNI-Times;}");
        assert!(f.vni && !f.tcvn3);
        let mut f = LegacyFonts::default();
        f.find_in(b"see www.vnexpress.net .vn domains");
        assert!(!f.any());
    }
}
