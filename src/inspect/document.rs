//! Signatures and macros of zip-based office documents, told by the parts
//! they hold (the entry names of the package): OOXML signatures in
//! `_xmlsignatures/`, ODF signatures in `META-INF/documentsignatures.xml`; VBA
//! projects (`vbaProject.bin`, in docm/xlsm/pptm and the templates), Excel 4.0
//! macro sheets (`xl/macrosheets/`), ODF Basic modules (`Basic/LIBRARY/MODULE.xml`)
//! and ODF scripts (`Scripts/`). OLE2 documents (.doc, .xls) and PDFs are told
//! by their own readers (src/inspect/archive/ole.rs, src/inspect/pdf.rs).
//!
//! Only presence: a signature is not verified, a macro not read.

use super::SignatureFormat;

/// What the parts of one document say about it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Marks {
    pub signature: Option<SignatureFormat>,
    pub macros: bool,
}

impl Marks {
    /// Adds what the part `name` (a path inside the package) says.
    pub fn note_part(&mut self, name: &str) {
        if let Some(format) = signature_part(name) {
            self.signature.get_or_insert(format);
        }
        self.macros |= macro_part(name);
    }
}

fn signature_part(name: &str) -> Option<SignatureFormat> {
    if name == "META-INF/documentsignatures.xml" {
        return Some(SignatureFormat::Odf);
    }
    // `_xmlsignatures/sig1.xml`; not the origin part, nor the relationships.
    let part = name.strip_prefix("_xmlsignatures/")?;
    (!part.contains('/') && ends_with_ignore_case(part, ".xml")).then_some(SignatureFormat::Ooxml)
}

fn macro_part(name: &str) -> bool {
    let file = name.rsplit('/').next().unwrap_or(name);
    if file.eq_ignore_ascii_case("vbaProject.bin") || name.starts_with("xl/macrosheets/") {
        return true;
    }
    if name.starts_with("Scripts/") {
        return true;
    }
    // `Basic/script-lc.xml` lists the libraries and `script-lb.xml` a library's
    // modules; a module is any other file of a library.
    let mut steps = name.split('/');
    steps.next() == Some("Basic")
        && matches!(
            (steps.next(), steps.next(), steps.next()),
            (Some(_), Some(module), None) if module != "script-lb.xml" && !module.is_empty()
        )
}

fn ends_with_ignore_case(text: &str, suffix: &str) -> bool {
    text.len() >= suffix.len()
        && text.as_bytes()[text.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marks(parts: &[&str]) -> Marks {
        let mut m = Marks::default();
        for p in parts {
            m.note_part(p);
        }
        m
    }

    #[test]
    fn signature_parts() {
        assert_eq!(
            marks(&["_xmlsignatures/origin.sigs", "_xmlsignatures/sig1.xml"]).signature,
            Some(SignatureFormat::Ooxml)
        );
        assert_eq!(
            marks(&[
                "_xmlsignatures/origin.sigs",
                "_xmlsignatures/_rels/origin.sigs.rels"
            ])
            .signature,
            None
        );
        assert_eq!(
            marks(&["META-INF/manifest.xml", "META-INF/documentsignatures.xml"]).signature,
            Some(SignatureFormat::Odf)
        );
        assert_eq!(marks(&["META-INF/macrosignatures.xml"]).signature, None);
    }

    #[test]
    fn macro_parts() {
        assert!(marks(&["word/vbaProject.bin"]).macros);
        assert!(marks(&["xl/vbaproject.bin"]).macros);
        assert!(marks(&["xl/macrosheets/sheet1.xml"]).macros);
        assert!(marks(&["Basic/Standard/Module1.xml"]).macros);
        assert!(marks(&["Scripts/python/hello.py"]).macros);
        // A library list, or an empty library, runs nothing.
        assert!(!marks(&["Basic/script-lc.xml", "Basic/Standard/script-lb.xml"]).macros);
        assert!(!marks(&["word/document.xml", "word/embeddings/oleObject1.bin"]).macros);
    }
}
