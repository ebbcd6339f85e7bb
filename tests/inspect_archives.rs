//! Per-file inspection against the fixtures in fixtures/archives (made by
//! make-archives.sh with real tools, and by make-hostile.py for bombs and crafted
//! files). Each test names what it proves.

use std::path::PathBuf;
use std::time::Instant;

use std::io::Write;
use std::sync::Arc;

use congvu_milter::inspect::archive;
use congvu_milter::inspect::budget::{Budget, MemoryAccount, MemoryShortfall};
use congvu_milter::inspect::file::inspect_file;
use congvu_milter::inspect::filetype::{
    PREFIX_LEN, TAIL_LEN, classify, classify_streamed, must_hold_whole,
};
use congvu_milter::inspect::{ArchiveKind, ExecKind, FileFacts, FileKind};
use congvu_milter::milter::budget::MemoryBudget;
use congvu_milter::policy::{ByteSize, LimitsSection};

pub(crate) fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/archives")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub(crate) fn inspect_with(name: &str, data: &[u8], limits: &LimitsSection) -> Vec<FileFacts> {
    let mut budget = Budget::new(limits);
    let mut out = Vec::new();
    inspect_file(
        vec![name.to_string()],
        Some(name),
        data,
        0,
        &mut budget,
        &mut out,
    );
    out
}

pub(crate) fn inspect(name: &str) -> Vec<FileFacts> {
    inspect_with(name, &fixture(name), &LimitsSection::default())
}

fn executables(facts: &[FileFacts]) -> Vec<(Vec<String>, ExecKind)> {
    facts
        .iter()
        .filter_map(|f| match f.kind {
            FileKind::Executable(k) => Some((f.path.clone(), k)),
            _ => None,
        })
        .collect()
}

pub(crate) fn path(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// Nothing flagged: no executable, nothing encrypted, nothing uninspectable.
pub(crate) fn assert_clean(facts: &[FileFacts]) {
    for f in facts {
        assert!(
            !matches!(f.kind, FileKind::Executable(_)),
            "executable: {f:?}"
        );
        assert!(!f.encrypted, "encrypted: {f:?}");
        assert_eq!(f.uninspectable, None, "{f:?}");
    }
}

// --- executables by content ---

#[test]
fn clam_exe_is_pe() {
    let facts = inspect("clam.exe");
    assert_eq!(facts.len(), 1);
    assert_eq!(facts[0].kind, FileKind::Executable(ExecKind::Pe));
}

#[test]
fn elf_macho_java_and_script_by_content() {
    let true_bin = std::fs::read("/bin/true").expect("/bin/true");
    assert_eq!(classify(&true_bin), FileKind::Executable(ExecKind::Elf));
    let mut macho = vec![0u8; 64];
    macho[..4].copy_from_slice(&[0xCF, 0xFA, 0xED, 0xFE]);
    assert_eq!(classify(&macho), FileKind::Executable(ExecKind::MachO));
    let mut fat = vec![0u8; 64];
    fat[..8].copy_from_slice(&[0xCA, 0xFE, 0xBA, 0xBE, 0, 0, 0, 2]);
    assert_eq!(classify(&fat), FileKind::Executable(ExecKind::MachO));
    // A real class file from javac (Java 8, major 52), also CA FE BA BE.
    assert_eq!(
        classify(&fixture("Hello.class")),
        FileKind::Executable(ExecKind::JavaClass)
    );
    assert_eq!(
        classify(b"#!/bin/sh\nrm -rf ~\n"),
        FileKind::Executable(ExecKind::Script)
    );
}

fn cfb_file(clsid: Option<uuid::Uuid>, stream: &str) -> Vec<u8> {
    use std::io::{Cursor, Write};
    let mut cf = cfb::CompoundFile::create(Cursor::new(Vec::new())).unwrap();
    if let Some(c) = clsid {
        cf.set_storage_clsid("/", c).unwrap();
    }
    cf.create_stream(stream)
        .unwrap()
        .write_all(b"data")
        .unwrap();
    cf.flush().unwrap();
    cf.into_inner().into_inner()
}

#[test]
fn msi_is_executable_but_doc_and_xls_are_not() {
    let msi_clsid = uuid::Uuid::parse_str("000C1084-0000-0000-C000-000000000046").unwrap();
    let msi = cfb_file(Some(msi_clsid), "\u{5}SummaryInformation");
    assert_eq!(classify(&msi), FileKind::Executable(ExecKind::Msi));
    let mst = uuid::Uuid::parse_str("000C1082-0000-0000-C000-000000000046").unwrap();
    assert_eq!(
        classify(&cfb_file(Some(mst), "x")),
        FileKind::Executable(ExecKind::Msi)
    );
    // Word's own class id on a .doc: an OLE2 file, not an installer.
    let word = uuid::Uuid::parse_str("00020906-0000-0000-C000-000000000046").unwrap();
    assert_eq!(
        classify(&cfb_file(Some(word), "WordDocument")),
        FileKind::Document("application/msword")
    );
    // Real OLE2 documents from clamav-testfiles.
    let doc = inspect("clam.ole.doc");
    assert_eq!(doc[0].kind, FileKind::Document("application/msword"));
    let ppt = inspect("clam.ppt");
    assert_eq!(
        ppt[0].kind,
        FileKind::Document("application/vnd.ms-powerpoint")
    );
    let xls = cfb_file(None, "Workbook");
    assert_eq!(
        classify(&xls),
        FileKind::Document("application/vnd.ms-excel")
    );
}

// --- executables inside archives ---

#[test]
fn exe_found_inside_each_archive_format() {
    for (file, exe_path) in [
        ("clam.zip", &["clam.zip", "clam.exe"][..]),
        ("exe-in.zip", &["exe-in.zip", "clam.exe"]),
        ("zip64.zip", &["zip64.zip", "clam.exe"]),
        ("data-descriptor.zip", &["data-descriptor.zip", "-"]),
        ("junk-prefix.zip", &["junk-prefix.zip", "clam.exe"]),
        ("clam.bz2.zip", &["clam.bz2.zip", "clam.exe"]),
        ("clam.7z", &["clam.7z", "clam.exe"]),
        ("exe-in.7z", &["exe-in.7z", "clam.exe"]),
        ("exe-in.tar", &["exe-in.tar", "clam.exe"]),
        ("clam.tar.gz", &["clam.tar.gz", "clam.tar", "clam.exe"]),
        (
            "exe-in.tar.gz",
            &["exe-in.tar.gz", "exe-in.tar", "clam.exe"],
        ),
        (
            "exe-in.tar.bz2",
            &["exe-in.tar.bz2", "exe-in.tar", "clam.exe"],
        ),
        (
            "exe-in.tar.xz",
            &["exe-in.tar.xz", "exe-in.tar", "clam.exe"],
        ),
        ("clam.exe.gz", &["clam.exe.gz", "clam.exe"]),
        ("clam.exe.bz2", &["clam.exe.bz2", "clam.exe"]),
        ("clam.exe.xz", &["clam.exe.xz", "clam.exe"]),
        // By content under an innocent name.
        ("renamed-exe-in.zip", &["renamed-exe-in.zip", "invoice.pdf"]),
        ("report.txt.gz", &["report.txt.gz", "report.txt"]),
    ] {
        let facts = inspect(file);
        assert_eq!(
            executables(&facts),
            vec![(path(exe_path), ExecKind::Pe)],
            "{file}: {facts:#?}"
        );
        assert!(
            facts
                .iter()
                .all(|f| f.uninspectable.is_none() && !f.encrypted),
            "{file}: {facts:#?}"
        );
    }
}

#[test]
fn elf_and_script_inside_zip() {
    let facts = inspect("elf-and-script-in.zip");
    assert_eq!(
        executables(&facts),
        vec![
            (path(&["elf-and-script-in.zip", "true.elf"]), ExecKind::Elf),
            (path(&["elf-and-script-in.zip", "run.sh"]), ExecKind::Script),
        ]
    );
}

#[test]
fn exe_found_three_archives_deep() {
    let facts = inspect("nested.tar.gz");
    assert_eq!(
        executables(&facts),
        vec![(
            path(&[
                "nested.tar.gz",
                "nested.tar",
                "mid.7z",
                "inner.zip",
                "clam.exe"
            ]),
            ExecKind::Pe
        )]
    );
    let kinds: Vec<_> = facts.iter().map(|f| f.kind.clone()).collect();
    assert_eq!(kinds[2], FileKind::Archive(ArchiveKind::SevenZip));
    assert_eq!(kinds[3], FileKind::Archive(ArchiveKind::Zip));
}

#[test]
fn jar_is_an_archive_with_a_class_inside() {
    let facts = inspect("hello.jar");
    assert_eq!(facts[0].kind, FileKind::Archive(ArchiveKind::Zip));
    assert_eq!(
        executables(&facts),
        vec![(
            path(&["hello.jar", "vn/gov/bacgiang/Hello.class"]),
            ExecKind::JavaClass
        )]
    );
}

// --- documents ---

#[test]
fn office_documents_are_documents_and_pass() {
    for (file, mime) in [
        (
            "report.docx",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
        (
            "budget.xlsx",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ),
        ("minutes.odt", "application/vnd.oasis.opendocument.text"),
    ] {
        let facts = inspect(file);
        assert_eq!(facts[0].kind, FileKind::Document(mime), "{file}");
        assert!(facts.len() > 2, "{file}: entries are inspected too");
        assert_clean(&facts);
    }
}

#[test]
fn exe_hidden_in_docx_is_found_and_docx_stays_a_document() {
    let facts = inspect("exe-in.docx");
    assert!(matches!(facts[0].kind, FileKind::Document(_)));
    assert_eq!(
        executables(&facts),
        vec![(
            path(&["exe-in.docx", "word/media/image1.png"]),
            ExecKind::Pe
        )]
    );
}

#[test]
fn dmarc_report_zip_passes() {
    let name = "google.com!bacgiang.gov.vn!1704067200!1704153599.zip";
    let facts = inspect(name);
    assert_eq!(facts.len(), 2);
    assert_eq!(facts[0].kind, FileKind::Archive(ArchiveKind::Zip));
    assert_eq!(facts[1].kind, FileKind::Other("text/xml".into()));
    assert_clean(&facts);
}

#[test]
fn password_protected_office_document_is_encrypted() {
    // Office encrypts a docx into an OLE2 file with an EncryptedPackage stream.
    let data = cfb_file(None, "EncryptedPackage");
    let facts = inspect_with("secret.docx", &data, &LimitsSection::default());
    assert!(matches!(facts[0].kind, FileKind::Document(_)));
    assert!(facts[0].encrypted);
}

#[test]
fn padded_tar_gz_is_not_damaged() {
    // Tape-style zero padding after the gzip member, which gunzip ignores.
    let mut data = fixture("exe-in.tar.gz");
    data.extend([0u8; 1024]);
    let facts = inspect_with("exe-in.tar.gz", &data, &LimitsSection::default());
    assert_eq!(facts[0].uninspectable, None, "{facts:#?}");
    assert_eq!(executables(&facts).len(), 1);
}

#[test]
fn tar_entry_of_an_unknown_type_is_a_file_as_gnu_tar_extracts_it() {
    let facts = inspect("odd-type.tar");
    assert_eq!(
        executables(&facts),
        vec![(path(&["odd-type.tar", "setup.exe"]), ExecKind::Pe)],
        "{facts:#?}"
    );
    assert!(
        facts.iter().all(|f| f.uninspectable.is_none()),
        "{facts:#?}"
    );
}

#[test]
fn archives_behind_other_data_are_opened_as_7zip_opens_them() {
    // 7z after 2 KB of a GIF's start, and a zip with 70 KB after it: 7-Zip
    // opens both at offset 2006 (`7z l`).
    for (file, kind) in [
        ("7z-behind-junk.gif", ArchiveKind::SevenZip),
        ("zip-between-junk.bin", ArchiveKind::Zip),
    ] {
        let facts = inspect(file);
        assert_eq!(facts[0].kind, FileKind::Archive(kind), "{file}");
        assert_eq!(
            executables(&facts),
            vec![(path(&[file, "clam.exe"]), ExecKind::Pe)],
            "{file}: {facts:#?}"
        );
        assert!(
            facts.iter().all(|f| f.uninspectable.is_none()),
            "{file}: {facts:#?}"
        );
    }
    let facts = inspect("rar-behind-junk.gif");
    assert_eq!(facts[0].kind, FileKind::Archive(ArchiveKind::Rar5));
    assert!(
        facts
            .iter()
            .any(|f| f.path.last().is_some_and(|n| n.contains("sub/dir1"))),
        "{facts:#?}"
    );
}

#[test]
fn a_signature_behind_other_data_that_does_not_open_is_ignored() {
    // The 7z's start header checks out, what follows is zeros: a chance match,
    // not an archive to report.
    let seven = fixture("exe-in.7z");
    let mut data = b"GIF89a".to_vec();
    data.extend(&seven[..32]);
    data.extend(vec![0u8; seven.len() - 32]);
    assert!(congvu_milter::inspect::archive::after_prefix::find(&data).is_some());
    let facts = inspect_with("x.gif", &data, &LimitsSection::default());
    assert_eq!(facts.len(), 1, "{facts:#?}");
    assert!(matches!(facts[0].kind, FileKind::Other(_)), "{facts:#?}");
    assert_eq!(facts[0].uninspectable, None);
}

#[test]
fn gzip_entry_is_named_by_the_name_stored_in_its_header() {
    // invoice.pdf.gz holds update.bat (gzip -N): 7-Zip and WinRAR extract it so.
    let facts = inspect("invoice.pdf.gz");
    assert_eq!(facts.len(), 2, "{facts:#?}");
    assert_eq!(facts[1].path, path(&["invoice.pdf.gz", "update.bat"]));
    assert_eq!(facts[1].name.as_deref(), Some("update.bat"));
    // Without a stored name, the entry is named after the archive (gzip -n).
    let facts = inspect("report.txt.gz");
    assert_eq!(facts[1].path, path(&["report.txt.gz", "report.txt"]));
}

#[test]
fn plain_archives_pass() {
    assert_clean(&inspect("plain.zip"));
}

// --- encryption ---

#[test]
fn encrypted_archives_are_flagged() {
    for file in [
        "zipcrypto.zip",
        "zip-aes.zip",
        "encrypted-content.7z",
        "encrypted-headers.7z",
        "rar3-encrypted-files.rar",
        "rar3-encrypted-headers.rar",
        "rar5-encrypted-files.rar",
        "rar5-encrypted-headers.rar",
    ] {
        let facts = inspect(file);
        assert!(facts[0].encrypted, "{file}: {facts:#?}");
        assert!(
            matches!(facts[0].kind, FileKind::Archive(_)),
            "{file}: {facts:#?}"
        );
    }
}

#[test]
fn encrypted_entries_keep_their_names() {
    // 7z and rar with encrypted content but plain headers: the names are visible.
    let facts = inspect("encrypted-content.7z");
    assert_eq!(facts[1].path, path(&["encrypted-content.7z", "readme.txt"]));
    assert!(facts[1].encrypted);
    let facts = inspect("rar5-encrypted-files.rar");
    let names: Vec<_> = facts.iter().filter_map(|f| f.name.clone()).collect();
    assert_eq!(
        names,
        ["rar5-encrypted-files.rar", "stest1.txt", "stest2.txt"]
    );
    // Encrypted headers: no names to give.
    assert_eq!(inspect("encrypted-headers.7z").len(), 1);
    assert_eq!(inspect("rar5-encrypted-headers.rar").len(), 1);
    assert_eq!(inspect("rar3-encrypted-headers.rar").len(), 1);
}

#[test]
fn unencrypted_7z_with_compressed_headers_is_not_encrypted() {
    let data = fixture("plain-compressed-headers.7z");
    // The header really is an encoded (compressed) header: kEncodedHeader (0x17)
    // at the next-header offset.
    let next = u64::from_le_bytes(data[12..20].try_into().unwrap()) as usize;
    assert_eq!(data[32 + next], 0x17);
    let facts = inspect("plain-compressed-headers.7z");
    assert!(facts.iter().all(|f| !f.encrypted), "{facts:#?}");
    assert_eq!(facts.len(), 3);
    assert_eq!(
        executables(&facts),
        vec![(
            path(&["plain-compressed-headers.7z", "run.sh"]),
            ExecKind::Script
        )]
    );
}

#[test]
fn rar_entries_are_listed_with_names_and_no_encryption() {
    for (file, expected) in [
        ("rar3-plain.rar", &["file1.txt", "file2.txt"][..]),
        ("rar5-plain.rar", &["stest1.txt", "stest2.txt"]),
        (
            "rar3-subdirs.rar",
            &[
                "sub/dir2/file2.txt",
                "sub/with space/long fn.txt",
                "sub/üȵĩöḋè/file.txt",
                "sub/dir1/file1.txt",
            ],
        ),
        (
            "rar5-subdirs.rar",
            &[
                "sub/dir2/file2.txt",
                "sub/with space/long fn.txt",
                "sub/üȵĩöḋè/file.txt",
                "sub/dir1/file1.txt",
            ],
        ),
    ] {
        let facts = inspect(file);
        let names: Vec<_> = facts[1..].iter().filter_map(|f| f.name.clone()).collect();
        assert_eq!(names, expected, "{file}");
        assert!(facts.iter().all(|f| !f.encrypted), "{file}");
    }
}

#[test]
fn compressed_rar_entries_are_unpacked_and_inspected() {
    // Compressed text files (RAR 5 solid, RAR 4 and RAR 5 with sub-directories):
    // their bytes are unpacked and handed on, and the archives pass.
    for (file, kind) in [
        ("rar5-plain.rar", ArchiveKind::Rar5),
        ("rar3-subdirs.rar", ArchiveKind::Rar4),
        ("rar5-subdirs.rar", ArchiveKind::Rar5),
    ] {
        assert_clean(&inspect(file));
        let data = fixture(file);
        let mut budget = Budget::new(&LimitsSection::default());
        let mut unpacked = Vec::new();
        let opened = archive::open(kind, Some(file), &data, &mut budget, &mut |_, entry| {
            unpacked.push((entry.name, entry.data.map(<[u8]>::to_vec), entry.note));
        });
        assert_eq!(opened.uninspectable, None, "{file}");
        assert_eq!(unpacked.len(), 4.min(unpacked.len()).max(2), "{file}");
        for (name, bytes, note) in &unpacked {
            assert_eq!(note, &None, "{file}: {name}");
            let bytes = bytes.as_deref().unwrap_or_default();
            assert!(!bytes.is_empty(), "{file}: {name} not unpacked");
            assert!(
                bytes
                    .iter()
                    .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace()),
                "{file}: {name}: {bytes:?}"
            );
        }
    }
    // rar5-plain.rar's first file is "000\n001\n..." (2048 bytes).
    let facts = inspect("rar5-plain.rar");
    assert_eq!(facts[1].size, 2048, "{facts:#?}");
}

#[test]
fn rar_archives_libarchive_cannot_unpack_are_uninspectable() {
    // A solid RAR 4 archive (libarchive 3.6 does not unpack those): listed, and
    // reported rather than passed unread.
    let facts = inspect("rar3-plain.rar");
    let reason = facts[0].uninspectable.as_deref().unwrap_or_default();
    assert!(reason.starts_with("damaged rar archive"), "{facts:#?}");
}

// --- formats opened through libarchive ---

#[test]
fn executables_inside_cab_iso_lzh_ar_and_cpio_are_found_by_content() {
    for (file, kind) in [
        ("exe-in.cab", ArchiveKind::Cab),
        ("exe-in.iso", ArchiveKind::Iso),
        ("exe-in.lzh", ArchiveKind::Lha),
        ("exe-in.ar", ArchiveKind::Ar),
        ("exe-in.cpio", ArchiveKind::Cpio),
    ] {
        let facts = inspect(file);
        assert_eq!(facts[0].kind, FileKind::Archive(kind), "{file}");
        assert_eq!(facts[0].uninspectable, None, "{file}: {facts:#?}");
        let found = executables(&facts);
        assert_eq!(found.len(), 1, "{file}: {facts:#?}");
        // The PE is named invoice.pdf (ISO 9660 without Rock Ridge would say
        // INVOICE.PDF;1; Rock Ridge gives the real name).
        assert_eq!(found[0].0, path(&[file, "invoice.pdf"]), "{file}");
        assert_eq!(found[0].1, ExecKind::Pe);
    }
    // clam.exe in ClamAV's own cab and cpio test files.
    for file in ["clam.cab", "clam.newc.cpio"] {
        let facts = inspect(file);
        assert_eq!(executables(&facts).len(), 1, "{file}: {facts:#?}");
    }
}

#[test]
fn plain_cab_and_iso_pass() {
    for file in ["plain.cab", "plain.iso"] {
        let facts = inspect(file);
        assert_clean(&facts);
        assert_eq!(facts.len(), 2, "{file}: {facts:#?}");
        assert_eq!(facts[1].name.as_deref(), Some("readme.txt"));
    }
}

#[test]
fn truncated_libarchive_formats_are_uninspectable() {
    for file in [
        "exe-in.cab",
        "exe-in.iso",
        "exe-in.lzh",
        "exe-in.ar",
        "exe-in.cpio",
        "rar5-plain.rar",
        "rar3-subdirs.rar",
        "rar5-subdirs.rar",
    ] {
        let whole = fixture(file);
        // Cut inside the PE's bytes: the second entry (or its data) is incomplete.
        let cut = &whole[..whole.len() * 3 / 4];
        let facts = inspect_with(file, cut, &LimitsSection::default());
        let reason = facts[0].uninspectable.as_deref().unwrap_or_default();
        assert!(reason.starts_with("damaged "), "{file}: {facts:#?}");
    }
}

#[test]
fn libarchive_entries_keep_to_the_limits() {
    // Entry limit: the second entry is not read.
    let limits = LimitsSection {
        max_archive_entries: 1,
        ..LimitsSection::default()
    };
    let facts = inspect_with("exe-in.cab", &fixture("exe-in.cab"), &limits);
    assert!(facts[0].uninspectable.is_some(), "{facts:#?}");
    assert!(executables(&facts).is_empty());
    // Byte limit: the PE is cut short; its first bytes still tell its type.
    let limits = LimitsSection {
        max_unpacked_size: ByteSize(300),
        ..LimitsSection::default()
    };
    let facts = inspect_with("exe-in.cpio", &fixture("exe-in.cpio"), &limits);
    assert!(facts[0].uninspectable.is_some(), "{facts:#?}");
}

// --- what cannot be inspected ---

#[test]
fn unsupported_formats_are_uninspectable() {
    for (file, what) in [
        ("clam.arj", "arj"),
        ("exe-in.xar", "xar"),
        ("disk.vhd", "vhd"),
    ] {
        let facts = inspect(file);
        assert_eq!(facts.len(), 1);
        assert_eq!(
            facts[0].kind,
            FileKind::Archive(ArchiveKind::Unsupported(what))
        );
        let reason = facts[0].uninspectable.as_deref().unwrap_or_default();
        assert!(reason.contains(what), "{file}: {reason}");
    }
    // An ISO 9660 descriptor with nothing behind it.
    let facts = inspect("image.iso");
    assert_eq!(facts[0].kind, FileKind::Archive(ArchiveKind::Iso));
    let reason = facts[0].uninspectable.as_deref().unwrap_or_default();
    assert!(reason.starts_with("damaged iso archive"), "{reason}");
}

#[test]
fn damaged_and_unsupported_zip_methods_are_reported() {
    let facts = inspect("truncated.zip");
    let reason = facts[0].uninspectable.as_deref().unwrap_or_default();
    assert!(reason.starts_with("damaged zip archive"), "{reason}");
    // PKWARE implode (method 6): the name is still listed, the archive reported.
    let facts = inspect("clam.impl.zip");
    assert_eq!(facts[1].name.as_deref(), Some("CLAM.EXE"));
    assert!(facts[0].uninspectable.is_some());
}

/// Runs a hostile fixture and returns its facts and the top-level reason; the
/// function must return (no timing assertion, but it must finish).
fn hostile(file: &str, limits: &LimitsSection) -> (Vec<FileFacts>, String) {
    let started = Instant::now();
    let facts = inspect_with(file, &fixture(file), limits);
    eprintln!("{file}: {} facts in {:?}", facts.len(), started.elapsed());
    let reason = facts[0].uninspectable.clone().unwrap_or_default();
    (facts, reason)
}

#[test]
fn high_ratio_entries_are_bombs() {
    let limits = LimitsSection::default();
    for file in ["bomb-ratio.zip", "zeros-1g.bz2", "bomb-solid.7z"] {
        let (facts, reason) = hostile(file, &limits);
        assert!(
            reason.contains("max_compression_ratio = 1000"),
            "{file}: {reason}"
        );
        // The 1 GiB entry is reported with its stated size, not unpacked.
        assert!(facts.iter().any(|f| f.size >= 1 << 20), "{file}");
    }
    // The exe behind the bomb in the same solid 7z block is still listed by name.
    let (facts, _) = hostile("bomb-solid.7z", &limits);
    assert!(
        facts
            .iter()
            .any(|f| f.name.as_deref() == Some("zz-clam.exe"))
    );
}

#[test]
fn nested_zip_bomb_stops_within_the_limits() {
    let (facts, reason) = hostile("bomb-nested.zip", &LimitsSection::default());
    assert!(reason.contains("max_compression_ratio"), "{reason}");
    assert!(facts.len() < 1000, "{}", facts.len());
    // With the ratio check out of the way, the unpacked-bytes limit stops it.
    let limits = LimitsSection {
        max_compression_ratio: u64::MAX,
        max_unpacked_size: ByteSize::mib(64),
        ..LimitsSection::default()
    };
    let (_, reason) = hostile("bomb-nested.zip", &limits);
    assert!(reason.contains("max_unpacked_size"), "{reason}");
    // And with few entries allowed, the entry count does (4 nested zips and two
    // 16 MiB leaves fit in 64 MiB; the 7th entry is refused).
    let limits = LimitsSection {
        max_compression_ratio: u64::MAX,
        max_unpacked_size: ByteSize::mib(64),
        max_archive_entries: 6,
        ..LimitsSection::default()
    };
    let (facts, reason) = hostile("bomb-nested.zip", &limits);
    assert!(reason.contains("max_archive_entries = 6"), "{reason}");
    assert!(facts.len() <= 7);
}

#[test]
fn overlapping_entries_are_a_bomb() {
    let (facts, reason) = hostile("bomb-overlap.zip", &LimitsSection::default());
    assert!(reason.contains("overlapping"), "{reason}");
    // Names listed (1000 entries), nothing unpacked.
    assert_eq!(facts.len(), 1001);
}

#[test]
fn deep_nesting_stops_at_the_depth_limit() {
    let (facts, reason) = hostile("deep-nesting.zip", &LimitsSection::default());
    assert!(reason.contains("max_archive_depth = 8"), "{reason}");
    // Levels 0..=8 are classified; the archive at depth 8 is not opened.
    assert_eq!(facts.len(), 9);
    assert!(facts[8].uninspectable.is_some());
    let limits = LimitsSection {
        max_archive_depth: 30,
        ..LimitsSection::default()
    };
    let (facts, reason) = hostile("deep-nesting.zip", &limits);
    assert_eq!(reason, "");
    assert_eq!(executables(&facts).len(), 1, "clam.exe at the bottom");
}

#[test]
fn time_limit_is_a_last_resort_that_names_itself() {
    let limits = LimitsSection {
        max_inspect_time: congvu_milter::policy::Seconds::secs(0),
        ..LimitsSection::default()
    };
    let facts = inspect_with("exe-in.zip", &fixture("exe-in.zip"), &limits);
    let reason = facts[0].uninspectable.as_deref().unwrap_or_default();
    assert!(reason.contains("max_inspect_time"), "{reason}");
}

#[test]
fn budget_is_shared_across_attachments_of_a_message() {
    let limits = LimitsSection {
        max_archive_entries: 3,
        ..LimitsSection::default()
    };
    let mut budget = Budget::new(&limits);
    let mut out = Vec::new();
    for file in ["exe-in.zip", "exe-in.7z"] {
        inspect_file(
            vec![file.into()],
            Some(file),
            &fixture(file),
            0,
            &mut budget,
            &mut out,
        );
    }
    let second = out.iter().find(|f| f.path == path(&["exe-in.7z"])).unwrap();
    let reason = second.uninspectable.as_deref().unwrap_or_default();
    assert!(reason.contains("max_archive_entries = 3"), "{reason}");
}

// --- large entries: read as streams, or held within the memory budget ---

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in entries {
        w.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// Bytes no signature matches, compressible well under the ratio limit.
fn filler(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn large_entries_are_streamed_and_typed_by_their_first_and_last_bytes() {
    let mut padded_exe = fixture("clam.exe");
    padded_exe.extend(filler(3 << 20));
    let mut vhd = filler(2 << 20);
    let footer = vhd.len() - 512;
    vhd[footer..footer + 8].copy_from_slice(b"conectix");
    let text = b"Bao cao tong hop.\n".repeat(200_000);
    let zip = zip_of(&[
        ("ho-so.pdf", &padded_exe),
        ("disk.bin", &vhd),
        ("bao-cao.txt", &text),
    ]);
    let facts = inspect_with("a.zip", &zip, &LimitsSection::default());
    let by_name = |n: &str| facts.iter().find(|f| f.name.as_deref() == Some(n)).unwrap();
    let exe = by_name("ho-so.pdf");
    assert_eq!(exe.kind, FileKind::Executable(ExecKind::Pe));
    assert_eq!(exe.size, padded_exe.len() as u64);
    let disk = by_name("disk.bin");
    assert_eq!(
        disk.kind,
        FileKind::Archive(ArchiveKind::Unsupported("vhd"))
    );
    assert!(disk.uninspectable.is_some());
    let report = by_name("bao-cao.txt");
    assert_eq!(report.size, text.len() as u64);
    assert_eq!(report.uninspectable, None);
}

#[test]
fn a_zip_behind_other_data_in_a_large_entry_is_read_again_whole_and_opened() {
    // A picture with an archive appended: the end record is in the last bytes.
    let mut picture = filler(1 << 20);
    picture.extend(zip_of(&[("clam.exe", &fixture("clam.exe"))]));
    for outer in [zip_of(&[("anh.jpg", &picture)]), gzip(&picture)] {
        let facts = inspect_with("a", &outer, &LimitsSection::default());
        let exes = executables(&facts);
        assert_eq!(exes.len(), 1, "{facts:?}");
        assert_eq!(exes[0].0.last().map(String::as_str), Some("clam.exe"));
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// An inspection whose memory comes from `pool`, the message's body having
/// charged `allowance` already; at most `ceiling` more.
fn inspect_within(
    data: &[u8],
    pool: &Arc<MemoryBudget>,
    allowance: u64,
    ceiling: u64,
) -> (Vec<FileFacts>, Arc<MemoryAccount>) {
    let account = MemoryAccount::new(pool.clone(), allowance, ceiling);
    let mut budget = Budget::new(&LimitsSection::default()).with_memory(Some(account.clone()));
    let mut out = Vec::new();
    inspect_file(
        vec!["a.zip".into()],
        Some("a.zip"),
        data,
        0,
        &mut budget,
        &mut out,
    );
    (out, account)
}

#[test]
fn a_nested_archive_is_held_whole_within_the_memory_budget() {
    let mut rng = Rng(7);
    let noise: Vec<u8> = (0..4 << 20).map(|_| rng.next() as u8).collect();
    let inner = zip_of(&[("clam.exe", &fixture("clam.exe")), ("noise.bin", &noise)]);
    // Stored, so that the inner zip is as large unpacked as it is here.
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    w.start_file("inner.zip", stored).unwrap();
    w.write_all(&inner).unwrap();
    let outer = w.finish().unwrap().into_inner();
    let mib = 1u64 << 20;

    // Room enough: opened, the executable found, the entry's memory given back.
    let pool = MemoryBudget::new(64 * mib);
    let (facts, account) = inspect_within(&outer, &pool, 0, 64 * mib);
    assert_eq!(executables(&facts).len(), 1, "{facts:?}");
    assert_eq!(account.shortfall(), None);
    assert!(account.peak() >= inner.len() as u64, "{}", account.peak());
    assert!(account.held() < mib, "{}", account.held());
    assert_eq!(pool.used(), account.held());
    drop(account);
    assert_eq!(pool.used(), 0);

    // More than the message may ever hold: uninspectable for good.
    let (facts, account) = inspect_within(&outer, &pool, 0, mib);
    assert!(
        matches!(account.shortfall(), Some(MemoryShortfall::TooLarge { .. })),
        "{account:?}"
    );
    let reason = facts[0].uninspectable.as_deref().unwrap_or_default();
    assert!(reason.contains("more than the whole budget"), "{reason}");
    drop(account);

    // Held by other messages now: busy, try later.
    let pool = MemoryBudget::new(8 * mib);
    let mut others = congvu_milter::milter::budget::Reservation::new(Some(pool.clone()));
    assert!(others.grow(6 * mib));
    let (_, account) = inspect_within(&outer, &pool, 0, 8 * mib);
    assert!(
        matches!(account.shortfall(), Some(MemoryShortfall::Busy { .. })),
        "{account:?}"
    );
    drop(account);
    assert_eq!(pool.used(), 6 * mib);
}

#[test]
fn small_entries_hold_small_buffers_and_a_7z_header_is_read_within_its_limit() {
    let entries: Vec<(String, Vec<u8>)> = (0..10)
        .map(|i| (format!("{i}.txt"), format!("so {i}\n").into_bytes()))
        .collect();
    let pairs: Vec<(&str, &[u8])> = entries
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let pool = MemoryBudget::new(1 << 30);
    let (facts, account) = inspect_within(&zip_of(&pairs), &pool, 0, 1 << 30);
    assert_eq!(facts.len(), 11);
    assert!(account.peak() < 32 * 1024, "{}", account.peak());

    // A 7z's header is read with 16 MiB held: a message that may never hold as
    // much cannot have its 7z opened.
    let (facts, account) = inspect_within(&fixture("exe-in.7z"), &pool, 0, 8 << 20);
    assert!(matches!(
        account.shortfall(),
        Some(MemoryShortfall::TooLarge { .. })
    ));
    assert!(facts[0].uninspectable.is_some());
    let (facts, _) = inspect_within(&fixture("exe-in.7z"), &pool, 0, 17 << 20);
    assert_eq!(executables(&facts).len(), 1, "{facts:?}");
}

#[test]
fn classify_streamed_agrees_with_classify_on_every_fixture() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/archives");
    let mut checked = 0;
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    // Shapes that need the length or the end: a DOS header counting its
    // paragraphs, disk-image footers, a long text.
    let mut dos = vec![0u8; 200 * 1024];
    dos[..2].copy_from_slice(b"MZ");
    dos[2] = 0x10;
    dos[8..10].copy_from_slice(&0x2000u16.to_le_bytes()); // a 128 KiB header
    files.push(("dos".into(), dos));
    for footer in [b"conectix".as_slice(), b"koly"] {
        let mut image = filler(300 * 1024);
        let at = image.len() - 512;
        image[at..at + footer.len()].copy_from_slice(footer);
        files.push((String::from_utf8_lossy(footer).into(), image));
    }
    files.push(("text".into(), b"xin chao\n".repeat(50_000)));
    for (name, data) in &files {
        let prefix = &data[..data.len().min(PREFIX_LEN)];
        if must_hold_whole(prefix) {
            continue;
        }
        let tail = &data[data.len().saturating_sub(TAIL_LEN)..];
        assert_eq!(
            classify_streamed(prefix, tail, data.len() as u64),
            classify(data),
            "{name}"
        );
        checked += 1;
    }
    assert!(checked >= 12, "{checked}");
}

// --- hostile bytes: never a panic ---

/// A small deterministic PRNG (xorshift), so failures reproduce.
pub(crate) struct Rng(pub(crate) u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn mutated_and_truncated_fixtures_never_panic() {
    let files = [
        "exe-in.zip",
        "zip64.zip",
        "data-descriptor.zip",
        "zip-aes.zip",
        "exe-in.7z",
        "plain-compressed-headers.7z",
        "encrypted-headers.7z",
        "exe-in.tar",
        "exe-in.tar.gz",
        "exe-in.tar.bz2",
        "exe-in.tar.xz",
        "rar3-subdirs.rar",
        "rar3-encrypted-files.rar",
        "rar5-subdirs.rar",
        "rar5-encrypted-files.rar",
        "rar5-plain.rar",
        "exe-in.cab",
        "exe-in.iso",
        "exe-in.lzh",
        "exe-in.ar",
        "exe-in.cpio",
        "report.docx",
        "minutes.odt",
        "clam.ole.doc",
        "nested.tar.gz",
        "clam.ppt",
        "exe-in.msg",
        "exe-in-package.doc",
        "exe-in-package.docx",
    ];
    let limits = LimitsSection {
        max_unpacked_size: ByteSize::mib(8),
        ..LimitsSection::default()
    };
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for file in files {
        let original = fixture(file);
        for round in 0..60 {
            let mut data = original.clone();
            match round % 4 {
                0 => data.truncate(rng.below(data.len())),
                1 => {
                    for _ in 0..1 + rng.below(8) {
                        let i = rng.below(data.len());
                        data[i] = rng.next() as u8;
                    }
                }
                2 => {
                    // Overwrite a 4-byte field with an extreme value.
                    let i = rng.below(data.len().saturating_sub(4));
                    let v = [0u32, 0xFFFF_FFFF, 0x7FFF_FFFF, 0x8000_0000][rng.below(4)];
                    data[i..i + 4].copy_from_slice(&v.to_le_bytes());
                }
                _ => {
                    let i = rng.below(data.len());
                    let j = rng.below(data.len());
                    let (a, b) = (i.min(j), i.max(j));
                    data.drain(a..b);
                }
            }
            let facts = inspect_with(file, &data, &limits);
            assert!(!facts.is_empty(), "{file} round {round}");
        }
    }
}

#[test]
fn random_garbage_behind_archive_magics_never_panics() {
    let magics: [&[u8]; 9] = [
        b"PK\x03\x04",
        b"7z\xbc\xaf\x27\x1c\x00\x04",
        b"Rar!\x1a\x07\x00",
        b"Rar!\x1a\x07\x01\x00",
        b"\x1f\x8b\x08",
        b"BZh91AY&SY",
        b"\xfd7zXZ\x00",
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
        b"MZ",
    ];
    let mut rng = Rng(42);
    for magic in magics {
        for _ in 0..200 {
            let len = rng.below(2048);
            let mut data = magic.to_vec();
            data.extend((0..len).map(|_| rng.next() as u8));
            let facts = inspect_with("x", &data, &LimitsSection::default());
            assert!(!facts.is_empty());
        }
    }
}
