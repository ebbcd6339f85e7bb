//! Office documents with macros (Điều 4 khoản 6): the commonest carrier of
//! malware that antivirus signatures miss. A document holding a VBA project
//! (docm, xlsm, pptm, a .doc or .xls with macro storages), Excel 4.0 macro
//! sheets, or ODF Basic modules or scripts is tagged by default; admins may
//! set `reject`. Found in attachments, inside archives and attached messages
//! at any depth (the facts come from src/inspect/document.rs and the OLE2
//! reader).

use super::Detector;
use super::attachments::{long_path, short_path};
use crate::inspect::Inspection;
use crate::rule::{Control, Rule, RuleAction, Violation};

pub const MACRO_DOCUMENT: Rule = Rule {
    name: "macro_document",
    article: "Điều 4 khoản 6",
    default_action: RuleAction::Tag,
    code: 550,
    enhanced: "5.7.1",
    reply: "Tai lieu \"{file}\" chua macro, co the mang ma doc (Quy che, Dieu 4 khoan 6) / document with macros not allowed",
    control: Control::RulesTable,
};

pub const DETECTOR: Detector = Detector {
    rules: &[&MACRO_DOCUMENT],
    at_end_of_message: Some(|e| evaluate(e.inspection)),
};

/// One violation per document with macros; a document inside one already
/// reported (the `vbaProject.bin` of a docm) adds nothing.
pub fn evaluate(inspection: &Inspection) -> Vec<Violation> {
    let mut reported: Vec<&[String]> = Vec::new();
    let mut out = Vec::new();
    for f in inspection.files.iter().filter(|f| f.macros) {
        if reported.iter().any(|outer| f.path.starts_with(outer)) {
            continue;
        }
        reported.push(&f.path);
        out.push(
            Violation::new(
                &MACRO_DOCUMENT,
                format!("{}: document with macros", long_path(f)),
            )
            .with("file", short_path(f)),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::{FileFacts, FileKind};

    fn doc(path: &[&str], macros: bool) -> FileFacts {
        FileFacts {
            path: path.iter().map(|s| s.to_string()).collect(),
            name: path.last().map(|s| s.to_string()),
            size: 10,
            kind: FileKind::Document("application/msword"),
            encrypted: false,
            uninspectable: None,
            signature: None,
            macros,
            sha256: None,
            text: None,
        }
    }

    #[test]
    fn a_document_is_reported_once_and_plain_ones_not_at_all() {
        let inspection = Inspection {
            files: vec![
                doc(&["a.zip"], false),
                doc(&["a.zip", "bao-cao.docm"], true),
                doc(&["a.zip", "bao-cao.docm", "word/vbaProject.bin"], true),
                doc(&["a.zip", "plain.docx"], false),
                doc(&["b.xls"], true),
            ],
            ..Inspection::default()
        };
        let v = evaluate(&inspection);
        let files: Vec<_> = v.iter().map(|v| v.var("file").unwrap()).collect();
        assert_eq!(files, ["a.zip > bao-cao.docm", "b.xls"]);
        assert!(v.iter().all(|v| v.rule == &MACRO_DOCUMENT));
    }
}
