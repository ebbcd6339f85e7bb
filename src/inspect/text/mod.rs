//! The text of documents, read for classification stamps (Điều 15 khoản 2; the
//! rule is src/rules/classified.rs): plain text, HTML, Office Open XML (docx,
//! xlsx, pptx), OpenDocument (odt, ods, odp), RTF and PDF with a text layer, in
//! Unicode (NFC or NFD) or in the legacy TCVN3 and VNI font encodings.
//!
//! Only what a stamp needs is kept: the text is read line by line (a paragraph,
//! a table cell, a text box, a PDF text line) and each line is compared with the
//! stamps ([`stamp`]); no document's text is held. What is read is charged to the
//! message's [`Budget`]: the memory of what is unpacked (zip entries, PDF
//! streams), the time (the deadline is watched), and at most
//! [`MAX_MESSAGE_TEXT`] bytes of markup and content streams per message
//! ([`MAX_DOCUMENT_TEXT`] per document). A document that cannot be read for
//! stamps (legacy binary Office files, encrypted ones, PDFs without a text
//! layer, text past those limits) is reported as such, for the metrics and the
//! log; the rule does not refuse it.

pub mod legacy;
pub mod markup;
pub mod office;
pub mod pdf;
pub mod rtf;
pub mod stamp;

use std::panic::{AssertUnwindSafe, catch_unwind};

use mail_parser::decoders::charsets::map::charset_decoder;

use super::FileKind;
use super::budget::Budget;
use super::filetype::OFFICE_ENCRYPTED;
use stamp::StampFinder;

/// Document text (markup, content streams) read for stamps per message, at most.
pub const MAX_MESSAGE_TEXT: u64 = 64 * 1024 * 1024;
/// Text read for stamps from one document, at most.
pub const MAX_DOCUMENT_TEXT: u64 = 16 * 1024 * 1024;
/// Bytes of text between two looks at the clock.
const TEXT_PER_CLOCK_CHECK: usize = 256 * 1024;

/// What reading a document for classification stamps found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocumentText {
    /// The document carries this stamp ("MẬT", "TỐI MẬT", "TUYỆT MẬT").
    Stamp(&'static str),
    /// Why the document could not be read for stamps.
    Unreadable(String),
}

/// Reads a whole file for stamps, if it is a document: `None` for what is not
/// a document (programs, archives, pictures) and for a document without a stamp.
/// Never panics; stops at the budget's limits and deadline.
pub fn read_document(
    name: Option<&str>,
    kind: &FileKind,
    data: &[u8],
    budget: &mut Budget,
) -> Option<DocumentText> {
    catch_unwind(AssertUnwindSafe(|| read(name, kind, data, budget))).unwrap_or_else(|_| {
        Some(DocumentText::Unreadable(
            "damaged document: the text reader failed".into(),
        ))
    })
}

fn read(
    name: Option<&str>,
    kind: &FileKind,
    data: &[u8],
    budget: &mut Budget,
) -> Option<DocumentText> {
    match kind {
        FileKind::Document(OFFICE_ENCRYPTED) => {
            Some(DocumentText::Unreadable("encrypted Office document".into()))
        }
        FileKind::Document(
            doc @ ("application/msword"
            | "application/vnd.ms-excel"
            | "application/vnd.ms-powerpoint"),
        ) => Some(DocumentText::Unreadable(format!(
            "legacy binary Office document ({doc}): its text is not read"
        ))),
        FileKind::Document(doc) => office::family(doc).and_then(|f| office::read(f, data, budget)),
        // Zero bytes carry no text.
        FileKind::Other(_) if data.is_empty() => None,
        FileKind::Other(mime) => {
            if super::pdf::is_pdf(data) {
                pdf::read(data, budget)
            } else if super::rtf::is_rtf(data) {
                rtf::read(data, budget)
            } else if super::html::is_html(name, data) {
                let (text, cut) = charge(budget, data.len());
                let mut finder = StampFinder::default();
                let read = markup::feed(&data[..text], &markup::HTML, &mut finder, budget);
                outcome(finder, read, cut)
            } else if is_plain_text(name, mime, data) {
                plain_text(data, budget)
            } else {
                None
            }
        }
        FileKind::Executable(_) | FileKind::Archive(_) => None,
    }
}

/// The stamp in a message's body text (plain or HTML, in its `charset`), if any.
pub fn body_stamp(
    data: &[u8],
    html: bool,
    charset: Option<&str>,
    budget: &mut Budget,
) -> Option<&'static str> {
    let (len, _) = charge(budget, data.len());
    let data = &data[..len];
    let utf8 = charset.is_none_or(|cs| {
        ["utf-8", "utf8", "us-ascii", "ascii"]
            .iter()
            .any(|u| cs.trim().eq_ignore_ascii_case(u))
    });
    let decoded: Option<String> = if utf8 {
        None
    } else {
        charset
            .and_then(|cs| charset_decoder(cs.trim().as_bytes()))
            .map(|decode| decode(data))
    };
    let held = decoded.as_ref().map_or(0, |d| d.capacity() as u64);
    let _ = budget.hold(held);
    let text = decoded.as_ref().map_or(data, |d| d.as_bytes());
    let mut finder = StampFinder::default();
    // A body cut short by the deadline is judged on what was read; the walk
    // reports the deadline itself.
    let _ = if html {
        markup::feed(text, &markup::HTML, &mut finder, budget)
    } else {
        feed_plain(text, &mut finder, budget)
    };
    budget.release(held);
    finder.finish()
}

/// A document of which only the first bytes were unpacked (an archive entry read
/// as a stream, or one cut short by a limit): plain text and HTML are read from
/// their start, where a stamp stands; whatever is not found there, the rest
/// was not read, so the document is unreadable for stamps.
pub fn partial_document(
    name: Option<&str>,
    kind: &FileKind,
    prefix: &[u8],
    budget: &mut Budget,
) -> Option<DocumentText> {
    let (whole_only, document) = match kind {
        FileKind::Document(_) => (true, true),
        FileKind::Other(mime) => {
            let whole_only = super::pdf::is_pdf(prefix) || super::rtf::is_rtf(prefix);
            let text = super::html::is_html(name, prefix) || is_plain_text(name, mime, prefix);
            (whole_only, whole_only || text)
        }
        FileKind::Executable(_) | FileKind::Archive(_) => (false, false),
    };
    if !document {
        return None;
    }
    if !whole_only && let Some(DocumentText::Stamp(stamp)) = read(name, kind, prefix, budget) {
        return Some(DocumentText::Stamp(stamp));
    }
    Some(DocumentText::Unreadable(format!(
        "only its first {} KiB were unpacked (read as a stream inside an archive, or cut short by a limit)",
        prefix.len() / 1024
    )))
}

/// The finder's stamp; else why the text could not all be read, if so.
fn outcome(finder: StampFinder, read: Result<(), String>, cut: bool) -> Option<DocumentText> {
    if let Some(stamp) = finder.finish() {
        return Some(DocumentText::Stamp(stamp));
    }
    match read {
        Err(reason) => Some(DocumentText::Unreadable(reason)),
        Ok(()) if cut => Some(DocumentText::Unreadable(cut_reason())),
        Ok(()) => None,
    }
}

fn cut_reason() -> String {
    format!(
        "only the first {} MiB of a document's text (and {} MiB per message) are read for stamps",
        MAX_DOCUMENT_TEXT >> 20,
        MAX_MESSAGE_TEXT >> 20
    )
}

/// Takes up to `len` bytes of text from the message's allowance: how many may
/// be read, and whether that is fewer than `len`.
pub(crate) fn charge(budget: &mut Budget, len: usize) -> (usize, bool) {
    let allowed = (len as u64).min(MAX_DOCUMENT_TEXT).min(budget.text_left);
    budget.text_left -= allowed;
    (allowed as usize, allowed < len as u64)
}

/// Gives back to the message's allowance text taken by [`charge`] but not read.
pub(crate) fn refund(budget: &mut Budget, unread: usize) {
    budget.text_left = budget
        .text_left
        .saturating_add(unread as u64)
        .min(MAX_MESSAGE_TEXT);
}

/// A file whose content is text: named as text, or typed by nothing else and
/// free of NUL bytes.
fn is_plain_text(name: Option<&str>, mime: &str, data: &[u8]) -> bool {
    let named_text = name.is_some_and(|n| {
        crate::inspect::names::ends_with_any(n, &[".txt", ".text", ".csv", ".log", ".md"])
    });
    let untyped = mime == "application/octet-stream" || mime.starts_with("text/");
    let head = &data[..data.len().min(4096)];
    (named_text || untyped) && memchr::memchr(0, head).is_none()
}

/// Plain text (UTF-8, or Windows-1258 when it is not UTF-8), line by line.
pub fn plain_text(data: &[u8], budget: &mut Budget) -> Option<DocumentText> {
    let (len, cut) = charge(budget, data.len());
    let mut finder = StampFinder::default();
    let read = feed_plain(&data[..len], &mut finder, budget);
    outcome(finder, read, cut)
}

/// Feeds plain text to `finder`, one line at a time.
pub fn feed_plain(data: &[u8], finder: &mut StampFinder, budget: &Budget) -> Result<(), String> {
    let data = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    let mut since_check = 0usize;
    for line in data.split(|&b| b == b'\n') {
        since_check += line.len() + 1;
        if since_check >= TEXT_PER_CLOCK_CHECK {
            since_check = 0;
            budget.check_limits()?;
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match std::str::from_utf8(line) {
            Ok(text) => finder.push_text(text),
            Err(_) => finder.push_text(&decode_cp1258(line)),
        }
        finder.end_line();
        if finder.found().is_some() {
            break;
        }
    }
    Ok(())
}

/// Windows-1258 (Vietnamese): Latin-1 but for the letters and tone marks below.
pub fn cp1258_char(b: u8) -> char {
    match b {
        0xC3 => 'Ă',
        0xCC => '\u{300}',
        0xD0 => 'Đ',
        0xD2 => '\u{309}',
        0xD5 => 'Ơ',
        0xDD => 'Ư',
        0xDE => '\u{303}',
        0xE3 => 'ă',
        0xEC => '\u{301}',
        0xF0 => 'đ',
        0xF2 => '\u{323}',
        0xF5 => 'ơ',
        0xFD => 'ư',
        0xFE => '₫',
        0x80..=0x9F => '\u{FFFD}',
        _ => char::from(b),
    }
}

pub fn decode_cp1258(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| cp1258_char(b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::LimitsSection;

    fn read_plain(text: &[u8]) -> Option<DocumentText> {
        let mut b = Budget::new(&LimitsSection::default());
        let kind = FileKind::Other("application/octet-stream".into());
        read_document(Some("a.txt"), &kind, text, &mut b)
    }

    #[test]
    fn plain_text_in_utf8_and_windows_1258() {
        assert_eq!(
            read_plain("Số: 12\r\nTỐI MẬT\r\nKế hoạch".as_bytes()),
            Some(DocumentText::Stamp("TỐI MẬT"))
        );
        // "MẬT" in Windows-1258: M, Â (0xC2), dot below (0xF2), T.
        assert_eq!(
            read_plain(b"Ke hoach\nM\xC2\xF2T\n"),
            Some(DocumentText::Stamp("MẬT"))
        );
        assert_eq!(read_plain("Đổi mật khẩu\nBÍ MẬT\n".as_bytes()), None);
    }

    #[test]
    fn legacy_office_files_are_unreadable_not_clean() {
        let mut b = Budget::new(&LimitsSection::default());
        let got = read_document(
            Some("a.doc"),
            &FileKind::Document("application/msword"),
            b"",
            &mut b,
        );
        assert!(matches!(got, Some(DocumentText::Unreadable(_))), "{got:?}");
    }

    #[test]
    fn unread_allowance_is_given_back() {
        let pdf = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/classified/toi-mat.pdf"
        ))
        .unwrap();
        let mut b = Budget::new(&LimitsSection::default());
        let kind = FileKind::Other("application/pdf".into());
        let got = read_document(None, &kind, &pdf, &mut b);
        assert_eq!(got, Some(DocumentText::Stamp("TỐI MẬT")));
        let taken = MAX_MESSAGE_TEXT - b.text_left;
        assert!(taken > 0 && taken < pdf.len() as u64, "{taken}");
    }

    #[test]
    fn text_past_the_message_allowance_is_unreadable() {
        let mut b = Budget::new(&LimitsSection::default());
        b.text_left = 10;
        let kind = FileKind::Other("application/octet-stream".into());
        let got = read_document(Some("a.txt"), &kind, b"0123456789\nMAT\n", &mut b);
        assert!(matches!(got, Some(DocumentText::Unreadable(_))), "{got:?}");
        assert_eq!(b.text_left, 0);
    }
}
