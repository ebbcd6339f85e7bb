//! OLE2 containers (fixtures/archives/make-ole.sh: LibreOffice documents with
//! embedded objects, Outlook .msg files and Package objects written with the
//! cfb crate): what they carry is inspected like archive entries.

use congvu_milter::inspect::{ExecKind, FileFacts, FileKind, Inspection};
use congvu_milter::policy::LimitsSection;

use crate::inspect_archives::{fixture, inspect, inspect_with};
use crate::inspect_messages::rules_and_files;

/// (rule, file) of every violation the attachment rules find.
fn violations(facts: Vec<FileFacts>) -> Vec<(String, String)> {
    rules_and_files(&Inspection {
        files: facts,
        ..Inspection::default()
    })
}

fn rule(r: &str, file: &str) -> (String, String) {
    (r.to_owned(), file.to_owned())
}

#[test]
fn package_object_in_a_docx_is_unwrapped() {
    let facts = inspect("exe-in-package.docx");
    let exe = facts
        .iter()
        .find(|f| f.name.as_deref() == Some("hoso.pdf.exe"))
        .expect("the packaged file is an entry");
    assert_eq!(
        exe.path,
        [
            "exe-in-package.docx",
            "word/embeddings/oleObject1.bin",
            "hoso.pdf.exe"
        ]
    );
    assert_eq!(exe.kind, FileKind::Executable(ExecKind::Pe));
    assert_eq!(exe.size, fixture("clam.exe").len() as u64);
    assert_eq!(
        violations(facts),
        [rule(
            "executable",
            "exe-in-package.docx > word/embeddings/oleObject1.bin > hoso.pdf.exe"
        )]
    );
}

#[test]
fn package_object_in_a_doc_object_pool_is_unwrapped() {
    assert_eq!(
        violations(inspect("exe-in-package.doc")),
        [rule("executable", "exe-in-package.doc > hoso.pdf.exe")]
    );
}

#[test]
fn outlook_message_attachments_are_inspected() {
    assert_eq!(
        violations(inspect("exe-in.msg")),
        [rule("executable", "exe-in.msg > hoso.pdf.exe")]
    );
    let facts = inspect("plain.msg");
    assert_eq!(
        facts[0].kind,
        FileKind::Document("application/vnd.ms-outlook")
    );
    let csv = facts
        .iter()
        .find(|f| f.name.as_deref() == Some("so-lieu.csv"))
        .expect("the attachment is an entry");
    assert_eq!(csv.size, 15);
    assert_eq!(violations(facts), []);
}

#[test]
fn documents_with_embedded_sheets_and_equations_pass() {
    for name in [
        "embedded-objects.docx",
        "embedded-objects.doc",
        "embedded-objects.ppt",
    ] {
        let facts = inspect(name);
        assert_eq!(violations(facts.clone()), [], "{name}: {facts:#?}");
    }
    // The .doc's embedded Calc sheet is an OLE2 storage in its ObjectPool:
    // not an entry (its streams are data), and nothing is uninspectable.
    let doc = inspect("embedded-objects.doc");
    assert_eq!(doc[0].kind, FileKind::Document("application/msword"));
    assert!(doc.iter().all(|f| f.uninspectable.is_none()), "{doc:#?}");
}

#[test]
fn an_ole2_file_that_cannot_be_opened_is_uninspectable() {
    // OLE2 magic and nothing that parses: it cannot be opened.
    let mut junk = vec![0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
    junk.resize(4096, 0x41);
    let facts = inspect_with("x.doc", &junk, &LimitsSection::default());
    let reason = facts[0].uninspectable.as_deref().unwrap_or_default();
    assert!(reason.starts_with("damaged OLE2 file"), "{facts:#?}");

    // Cut and flipped copies of the OLE2 fixtures: inspect_archives'
    // mutated_and_truncated_fixtures_never_panic.
}

#[test]
fn a_package_over_the_unpacked_limit_is_uninspectable() {
    let limits = LimitsSection {
        max_unpacked_size: congvu_milter::policy::ByteSize(300),
        ..LimitsSection::default()
    };
    let facts = inspect_with("exe-in.msg", &fixture("exe-in.msg"), &limits);
    assert!(
        facts[0]
            .uninspectable
            .as_deref()
            .is_some_and(|r| r.contains("max_unpacked_size")),
        "{facts:#?}"
    );
}

#[test]
fn powerpoint_embedded_objects_are_opened() {
    // ClamAV's clam.ppt keeps clam.exe in a Package object, stored
    // zlib-compressed in an ExOleObjStg record of its PowerPoint Document.
    let facts = inspect("clam.ppt");
    let exe = facts
        .iter()
        .find(|f| matches!(f.kind, FileKind::Executable(_)))
        .expect("the packaged program is found");
    assert_eq!(
        exe.path,
        [
            "clam.ppt",
            "PowerPoint Document/embedded object 1",
            "clam.exe"
        ]
    );
    assert_eq!(exe.size, fixture("clam.exe").len() as u64);

    // LibreOffice's sheet and formula in a .ppt: both objects are opened,
    // neither carries anything.
    let facts = inspect("embedded-objects.ppt");
    let kinds: Vec<_> = facts.iter().map(|f| (f.path.len(), &f.kind)).collect();
    assert_eq!(
        kinds,
        [
            (1, &FileKind::Document("application/vnd.ms-powerpoint")),
            (2, &FileKind::Document("application/vnd.ms-excel")),
            (2, &FileKind::Document("application/x-ole-storage")),
        ]
    );
}
