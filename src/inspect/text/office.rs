//! The text of zip-based office documents: Office Open XML (docx, xlsx, pptx)
//! and OpenDocument (odt, ods, odp). Only the few XML entries that hold the
//! text are read, whole, within the budget (the archive walk of
//! src/inspect/archive/zip.rs keeps only the first and last bytes of entries
//! that are not archives): Word's body, headers and footers, Excel's shared
//! strings and sheets, PowerPoint's slides, OpenDocument's content and styles
//! (where headers and footers are). Font tables are read first, for the
//! legacy fonts ([`super::legacy`]).

use std::io::{Cursor, Read};

use zip::ZipArchive;

use super::markup::{self, Vocabulary};
use super::stamp::StampFinder;
use super::{DocumentText, charge, cut_reason, refund};
use crate::inspect::archive::{Keep, read_entry};
use crate::inspect::budget::Budget;

/// Which kind of office document, for the entries and elements to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Word,
    Excel,
    PowerPoint,
    OpenDocument,
}

/// The family of a zip-based document type (src/inspect/filetype.rs).
pub fn family(doc: &str) -> Option<Family> {
    Some(match doc {
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => Family::Word,
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => Family::Excel,
        "application/vnd.openxmlformats-officedocument.presentationml.presentation" => {
            Family::PowerPoint
        }
        d if d.starts_with("application/vnd.oasis.opendocument.text")
            || d.starts_with("application/vnd.oasis.opendocument.spreadsheet")
            || d.starts_with("application/vnd.oasis.opendocument.presentation") =>
        {
            Family::OpenDocument
        }
        _ => return None,
    })
}

const WORD: Vocabulary = Vocabulary {
    breaks: &["w:p", "w:tc", "w:br", "w:cr", "w:txbxContent"],
    spaces: &["w:tab"],
    skipped: &[],
    ignore_case: false,
};

const EXCEL: Vocabulary = Vocabulary {
    breaks: &["si", "c", "is", "row"],
    spaces: &[],
    skipped: &[],
    ignore_case: false,
};

const POWERPOINT: Vocabulary = Vocabulary {
    breaks: &["a:p", "a:br", "a:tc", "p:txBody"],
    spaces: &["a:tab"],
    skipped: &[],
    ignore_case: false,
};

const OPEN_DOCUMENT: Vocabulary = Vocabulary {
    breaks: &[
        "text:p",
        "text:h",
        "text:line-break",
        "table:table-cell",
        "draw:text-box",
        "style:header",
        "style:footer",
    ],
    spaces: &["text:tab", "text:s"],
    skipped: &[],
    ignore_case: false,
};

impl Family {
    /// Entries whose only use is naming fonts.
    fn font_entries(self, name: &str) -> bool {
        match self {
            Family::Word => name == "word/fontTable.xml" || name == "word/styles.xml",
            Family::Excel => name == "xl/styles.xml",
            Family::PowerPoint => name.starts_with("ppt/theme/") && name.ends_with(".xml"),
            Family::OpenDocument => false,
        }
    }

    /// Entries whose text is read (fonts named there count too).
    fn text_entries(self, name: &str) -> bool {
        let in_dir = |dir: &str, stem: &str| {
            name.strip_prefix(dir)
                .is_some_and(|n| n.starts_with(stem) && n.ends_with(".xml") && !n.contains('/'))
        };
        match self {
            Family::Word => {
                name == "word/document.xml"
                    || in_dir("word/", "header")
                    || in_dir("word/", "footer")
            }
            Family::Excel => name == "xl/sharedStrings.xml" || in_dir("xl/worksheets/", "sheet"),
            Family::PowerPoint => in_dir("ppt/slides/", "slide"),
            Family::OpenDocument => name == "content.xml" || name == "styles.xml",
        }
    }

    fn vocabulary(self) -> &'static Vocabulary {
        match self {
            Family::Word => &WORD,
            Family::Excel => &EXCEL,
            Family::PowerPoint => &POWERPOINT,
            Family::OpenDocument => &OPEN_DOCUMENT,
        }
    }
}

/// Most entries looked at in one document's listing.
const MAX_LISTED: usize = 10_000;

/// Reads the document's text for stamps.
pub fn read(family: Family, data: &[u8], budget: &mut Budget) -> Option<DocumentText> {
    let mut archive = match ZipArchive::new(Cursor::new(data)) {
        Ok(a) => a,
        Err(e) => return Some(DocumentText::Unreadable(format!("damaged document: {e}"))),
    };
    let names: Vec<String> = archive
        .file_names()
        .take(MAX_LISTED)
        .filter_map(Result::ok)
        .filter(|n| family.font_entries(n) || family.text_entries(n))
        .map(|n| n.into_owned())
        .collect();
    // Font tables first, then the text in its natural order (sheet2 after sheet10
    // does not matter: any line may carry the stamp).
    let mut order: Vec<&String> = names.iter().filter(|n| family.font_entries(n)).collect();
    order.extend(names.iter().filter(|n| family.text_entries(n)));
    let mut finder = StampFinder::default();
    let mut cut = false;
    for name in order {
        let is_text = family.text_entries(name);
        let mut file = match archive.by_name(name) {
            Ok(f) => f,
            Err(e) => {
                return Some(DocumentText::Unreadable(format!(
                    "document entry '{name}' cannot be read: {e}"
                )));
            }
        };
        let (allowed, _) = charge(budget, usize::try_from(file.size()).unwrap_or(usize::MAX));
        let packed = file.compressed_size();
        let mut limited = (&mut file).take(allowed as u64 + 1);
        let unpacked = read_entry(&mut limited, packed, name, Keep::Whole, budget);
        let mut xml = &unpacked.data[..];
        if xml.len() > allowed {
            xml = &xml[..allowed];
            cut = true;
        }
        refund(budget, allowed - xml.len());
        let problem = unpacked.limit.clone().or_else(|| {
            unpacked
                .error
                .clone()
                .map(|e| format!("damaged document: {e}"))
        });
        finder.legacy.find_in(xml);
        let read = if is_text {
            markup::feed(xml, family.vocabulary(), &mut finder, budget)
        } else {
            Ok(())
        };
        unpacked.discard(budget);
        if let Some(stamp) = finder.found() {
            return Some(DocumentText::Stamp(stamp));
        }
        if let Some(reason) = problem.or(read.err()) {
            return Some(DocumentText::Unreadable(reason));
        }
    }
    if let Some(stamp) = finder.finish() {
        return Some(DocumentText::Stamp(stamp));
    }
    cut.then(|| DocumentText::Unreadable(cut_reason()))
}
