//! What a classification stamp is (Điều 15 khoản 2): "MẬT", "TỐI MẬT" or "TUYỆT
//! MẬT" in capitals, standing alone on its line (a paragraph, a text box, a table
//! cell); or, in a Subject, at its start followed by a separator (`MẬT:`, `[MẬT]`,
//! `MẬT - ...`). Text is compared in NFC, so a decomposed (NFD) stamp is one too.
//!
//! Everything else is running text and never a stamp: "mật khẩu", "bí mật",
//! "Mật độ", a lower-case "mật", and capital titles that merely contain the word
//! ("LUẬT BẢO VỆ BÍ MẬT NHÀ NƯỚC").

use unicode_normalization::UnicodeNormalization;

use super::legacy::{LegacyFonts, decode_tcvn3, decode_vni};

/// The three stamps, strongest first, in NFC.
pub const STAMPS: [&str; 3] = ["TUYỆT MẬT", "TỐI MẬT", "MẬT"];

/// Longest line worth comparing: a stamp with generous spacing around it.
const MAX_STAMP_LINE: usize = 64;

/// Characters that frame a stamp on its line without being part of it: spaces
/// (no-break and zero-width ones included) and the box or quote a writer may
/// draw around it.
fn is_frame(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{FEFF}' | '"' | '\'' | '“' | '”' | '*'
        )
}

/// The stamp a line is, if it is one.
pub fn line_stamp(line: &str) -> Option<&'static str> {
    let line = line.trim_matches(is_frame);
    // A cheap reject before normalising: every stamp has an M and a T and is short
    // (NFD takes at most three code points per letter).
    if line.is_empty() || line.len() > MAX_STAMP_LINE * 3 || !line.contains('M') {
        return None;
    }
    // Running text has small letters or digits; a stamp has neither.
    if line
        .bytes()
        .any(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return None;
    }
    let words: Vec<String> = line
        .nfc()
        .collect::<String>()
        .split(|c: char| is_frame(c))
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect();
    let joined = words.join(" ");
    STAMPS.iter().copied().find(|s| *s == joined)
}

/// Reply and forwarding prefixes a Subject may start with before the stamp.
const SUBJECT_PREFIXES: [&str; 6] = ["re:", "fw:", "fwd:", "tl:", "tr:", "aw:"];

/// The stamp a Subject starts with, if it does: `MẬT: ...`, `[TỐI MẬT] ...`,
/// `(MẬT) ...`, `MẬT - ...`, or a Subject that is only the stamp; after any
/// `Re:`/`Fwd:` prefixes.
pub fn subject_stamp(subject: &str) -> Option<&'static str> {
    let nfc: String = subject.nfc().collect();
    let mut rest = nfc.trim_start_matches(is_frame);
    // Reply prefixes, any number of them.
    while let Some(p) = SUBJECT_PREFIXES.iter().find(|p| {
        rest.get(..p.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(p))
    }) {
        rest = rest[p.len()..].trim_start_matches(is_frame);
    }
    let (opened, body) = match rest.chars().next() {
        Some(c @ ('[' | '(')) => (Some(c), &rest[1..]),
        _ => (None, rest),
    };
    let body = body.trim_start_matches(is_frame);
    for stamp in STAMPS {
        let Some(after) = body.strip_prefix(stamp) else {
            continue;
        };
        let after = after.trim_start_matches(is_frame);
        let closed = match (opened, after.chars().next()) {
            (Some('['), Some(']')) | (Some('('), Some(')')) => true,
            (Some(_), _) => false,
            // Unbracketed: a separator, or nothing more.
            (None, None) => true,
            (None, Some(c)) => matches!(c, ':' | '-' | '–' | '—' | '|' | '/'),
        };
        if closed {
            return Some(stamp);
        }
    }
    None
}

/// Collects lines of a document's text and remembers the first stamp.
#[derive(Debug, Default)]
pub struct StampFinder {
    line: String,
    found: Option<&'static str>,
    /// The legacy fonts the document names: its lines are also read in those
    /// encodings.
    pub legacy: LegacyFonts,
    /// Some text was shown (a PDF with none has no text layer).
    saw_text: bool,
}

impl StampFinder {
    /// Text inside the current line.
    pub fn push_str(&mut self, text: &str) {
        if self.found.is_some() {
            return;
        }
        // A line longer than any stamp is kept short: only its length matters.
        let room = (MAX_STAMP_LINE * 4).saturating_sub(self.line.len());
        if room == 0 {
            return;
        }
        for c in text.chars() {
            if self.line.len() + c.len_utf8() > MAX_STAMP_LINE * 4 {
                // Too long to be a stamp: a marker that can never match.
                self.line.push('x');
                break;
            }
            self.line.push(c);
        }
    }

    pub fn push_char(&mut self, c: char) {
        let mut buf = [0u8; 4];
        self.push_str(c.encode_utf8(&mut buf));
    }

    /// The current line ends (a paragraph, a cell, a line break).
    pub fn end_line(&mut self) {
        if self.found.is_none() && !self.line.is_empty() {
            let line = self.line.as_str();
            let legacy = self.legacy;
            self.found = line_stamp(line)
                .or_else(|| {
                    legacy
                        .tcvn3
                        .then(|| decode_tcvn3(line, legacy.tcvn3_capitals))
                        .flatten()
                        .and_then(|l| line_stamp(&l))
                })
                .or_else(|| {
                    legacy
                        .vni
                        .then(|| decode_vni(line))
                        .flatten()
                        .and_then(|l| line_stamp(&l))
                });
        }
        self.line.clear();
    }

    /// Plain text: every line break ends a line.
    pub fn push_text(&mut self, text: &str) {
        for (i, part) in text
            .split(['\n', '\r', '\u{b}', '\u{c}', '\u{2028}', '\u{2029}'])
            .enumerate()
        {
            if i > 0 {
                self.end_line();
            }
            self.push_str(part);
        }
    }

    /// Notes that the document shows text (even text that maps to nothing).
    pub fn mark_text(&mut self) {
        self.saw_text = true;
    }

    pub fn saw_text(&self) -> bool {
        self.saw_text
    }

    pub fn found(&self) -> Option<&'static str> {
        self.found
    }

    /// The stamp, the last line ended.
    pub fn finish(mut self) -> Option<&'static str> {
        self.end_line();
        self.found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_alone_on_their_line() {
        assert_eq!(line_stamp("MẬT"), Some("MẬT"));
        assert_eq!(line_stamp("  TỐI  MẬT \u{a0}"), Some("TỐI MẬT"));
        assert_eq!(line_stamp("TUYỆT MẬT"), Some("TUYỆT MẬT"));
        assert_eq!(line_stamp("\"MẬT\""), Some("MẬT"));
    }

    #[test]
    fn decomposed_stamps_are_stamps() {
        let nfd: String = "TUYỆT MẬT".nfd().collect();
        assert_ne!(nfd, "TUYỆT MẬT");
        assert_eq!(line_stamp(&nfd), Some("TUYỆT MẬT"));
        let nfd: String = "[MẬT] Ke hoach".nfd().collect();
        assert_eq!(subject_stamp(&nfd), Some("MẬT"));
    }

    #[test]
    fn running_text_and_titles_are_not_stamps() {
        for line in [
            "mật",
            "Mật",
            "mật khẩu",
            "Mật khẩu",
            "MẬT KHẨU",
            "bí mật",
            "Mật độ",
            "LUẬT BẢO VỆ BÍ MẬT NHÀ NƯỚC",
            "BÍ MẬT",
            "MẬT ĐỘ",
            "MAT",
            "Điều 15. Bảo vệ bí mật nhà nước",
        ] {
            assert_eq!(line_stamp(line), None, "{line}");
        }
    }

    #[test]
    fn subjects_start_with_the_stamp() {
        assert_eq!(subject_stamp("MẬT: Ke hoach"), Some("MẬT"));
        assert_eq!(subject_stamp("[TỐI MẬT] Ke hoach"), Some("TỐI MẬT"));
        assert_eq!(subject_stamp("(MẬT) Ke hoach"), Some("MẬT"));
        assert_eq!(subject_stamp("TUYỆT MẬT - Ke hoach"), Some("TUYỆT MẬT"));
        assert_eq!(subject_stamp("Re: Fwd: MẬT: Ke hoach"), Some("MẬT"));
        assert_eq!(subject_stamp("MẬT"), Some("MẬT"));
        for s in [
            "Mật khẩu mới",
            "MẬT KHẨU mới",
            "Doi mat khau: MẬT",
            "[MẬT KHẨU] quên",
            "Bí mật: ...",
            "mật: x",
            "[MẬT x",
            "LUẬT BẢO VỆ BÍ MẬT NHÀ NƯỚC",
        ] {
            assert_eq!(subject_stamp(s), None, "{s}");
        }
    }

    #[test]
    fn finder_sees_a_stamp_on_any_line() {
        let mut f = StampFinder::default();
        f.push_text("Bảo vệ bí mật nhà nước\r\n  TỐI MẬT  \r\nNội dung");
        assert_eq!(f.finish(), Some("TỐI MẬT"));
        let mut f = StampFinder::default();
        f.push_text("Mật khẩu của bạn\nMẬT KHẨU\n");
        assert_eq!(f.finish(), None);
        let mut f = StampFinder::default();
        f.push_str(&"MẬT ".repeat(100));
        assert_eq!(f.finish(), None);
    }

    #[test]
    fn legacy_lines_are_read_only_in_documents_naming_those_fonts() {
        let mut f = StampFinder::default();
        f.push_text("M\u{CB}T\n");
        assert_eq!(f.finish(), None);
        let mut f = StampFinder::default();
        f.legacy.tcvn3 = true;
        f.legacy.tcvn3_capitals = true;
        f.push_text("bí mật\nM\u{CB}T\n");
        assert_eq!(f.finish(), Some("MẬT"));
        let mut f = StampFinder::default();
        f.legacy.vni = true;
        f.push_text("TUYEÄT MAÄT");
        assert_eq!(f.finish(), Some("TUYỆT MẬT"));
    }
}
