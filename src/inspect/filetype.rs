//! The real type of a file, by its bytes alone (never by name or declared type).
//!
//! Which checks are ours and why:
//! - Executables are all ours. `infer` calls every `MZ` file an exe (a text file
//!   starting "MZ" would count), calls every OLE2 file an MSI (so every .doc and .xls
//!   would be an installer), and has no `#!` rule strict enough to tell a script from
//!   text. We check the PE header behind `e_lfanew`, the DOS header's plausibility,
//!   the ELF and Mach-O magics, tell Java class files from Mach-O universal binaries
//!   (both start `CA FE BA BE`), and read the OLE2 root entry's class id for MSI.
//! - Archives we open are ours too, because the archive layer needs to agree exactly
//!   with what it can open (a zip is found by its local header, an empty zip by its
//!   end record, a zip with junk in front by its end record, a tar by a valid header
//!   checksum even without the `ustar` magic).
//! - Zip-based documents (OOXML, ODF, EPUB) are ours: `infer` guesses them from the
//!   first entry only and misses OOXML files whose first entry is not
//!   `[Content_Types].xml`; we read the central directory.
//! - Everything else (images, PDF, audio, ...) is `infer`'s MIME type.
//!
//! A large archive entry is not held in memory to be typed: [`classify_streamed`]
//! tells its type from its first [`PREFIX_LEN`] and last [`TAIL_LEN`] bytes, and
//! gives the same answer as [`classify`] on the whole file for every type that
//! does not need to be opened; [`must_hold_whole`] says from the first bytes which
//! entries do (archives the filter opens, OLE2 containers), and [`zip_behind`]
//! from the last bytes which end in a zip after other data.

use std::io::Cursor;

use super::{ArchiveKind, ExecKind, FileKind};

/// Class ids of Windows Installer files (root entry of the OLE2 container):
/// MSI database {000C1084-0000-0000-C000-000000000046}, patch (MSP)
/// {000C1086-...}, transform (MST) {000C1082-...}. Stored as a GUID: Data1..3 little
/// endian, Data4 as bytes.
const MSI_CLSIDS: [[u8; 16]; 3] = [msi_clsid(0x84), msi_clsid(0x86), msi_clsid(0x82)];

const fn msi_clsid(low: u8) -> [u8; 16] {
    [
        low, 0x10, 0x0C, 0x00, 0x00, 0x00, 0x00, 0x00, 0xC0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x46,
    ]
}

const OLE2_MAGIC: [u8; 8] = [0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];

/// How many first bytes of a file [`classify_streamed`] looks at: every magic,
/// header and fixed-offset signature checked here lies within them (the farthest,
/// an ISO 9660 descriptor, ends at 0x9006).
pub const PREFIX_LEN: usize = 64 * 1024;

/// How many last bytes [`classify_streamed`] looks at: a zip's end record with
/// the longest comment (22 + 65,535 bytes), which also covers the 512-byte
/// footers of disk images.
pub const TAIL_LEN: usize = 22 + 65_535;

/// The real type of `data`.
pub fn classify(data: &[u8]) -> FileKind {
    if let Some(exec) = exec_kind(data) {
        return FileKind::Executable(exec);
    }
    if data.starts_with(&OLE2_MAGIC) {
        return ole2_kind(data);
    }
    if let Some(kind) = archive_kind(data) {
        if kind == ArchiveKind::Zip
            && let Some(doc) = zip_document_kind(data)
        {
            return FileKind::Document(doc);
        }
        return FileKind::Archive(kind);
    }
    other_kind(data)
}

/// The fewest bytes any of `infer`'s matchers accepts: shorter files (the empty
/// parts of a message made of thousands of them) skip its ~200 matchers.
const INFER_MIN_LEN: usize = 2;

/// `infer`'s MIME type for a file that is none of ours.
fn other_kind(data: &[u8]) -> FileKind {
    let found = if data.len() < INFER_MIN_LEN {
        None
    } else {
        infer::get(data)
    };
    match found {
        Some(t) => FileKind::Other(t.mime_type().to_string()),
        None => FileKind::Other("application/octet-stream".to_string()),
    }
}

fn u16_le(data: &[u8], at: usize) -> Option<u16> {
    let b = data.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

fn u32_le(data: &[u8], at: usize) -> Option<u32> {
    let b = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn u32_be(data: &[u8], at: usize) -> Option<u32> {
    let b = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn u16_be(data: &[u8], at: usize) -> Option<u16> {
    let b = data.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// The real type of a file seen only by its first bytes (`prefix`, at least
/// [`PREFIX_LEN`] of them unless the file is shorter), its last bytes (`tail`, at
/// most [`TAIL_LEN`]) and its length. For a file [`must_hold_whole`] does not
/// claim, the same answer as [`classify`] on the whole file.
pub fn classify_streamed(prefix: &[u8], tail: &[u8], len: u64) -> FileKind {
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if let Some(exec) = exec_kind_sized(prefix, len) {
        return FileKind::Executable(exec);
    }
    if prefix.starts_with(&OLE2_MAGIC) {
        return ole2_kind(prefix);
    }
    if let Some(kind) = archive_kind_at_start(prefix).or_else(|| footer_kind(tail)) {
        return FileKind::Archive(kind);
    }
    if zip_behind(tail) {
        return FileKind::Archive(ArchiveKind::Zip);
    }
    other_kind(prefix)
}

/// An OLE2 compound file (Office 97-2003 documents, Outlook .msg, installers).
pub fn is_ole2(data: &[u8]) -> bool {
    data.starts_with(&OLE2_MAGIC)
}

/// True when a file starting with `prefix` (and longer than it) must be held
/// whole to be inspected: an archive the filter opens (zip-based documents
/// included) or an OLE2 container (an installer or Office document is told by
/// its directory, which may lie anywhere in the file). A zip behind other data
/// shows at the end instead ([`zip_behind`]).
pub fn must_hold_whole(prefix: &[u8]) -> bool {
    prefix.starts_with(&OLE2_MAGIC)
        || archive_kind_at_start(prefix).is_some_and(|k| !matches!(k, ArchiveKind::Unsupported(_)))
}

/// True when the last bytes of a file hold a zip's end record: a zip behind other
/// data (a picture with an archive appended), which only the whole file can
/// confirm and open.
pub fn zip_behind(tail: &[u8]) -> bool {
    has_zip_end_record(tail)
}

/// Executable content, if `data` is a program or script. MSI is included (it needs
/// the OLE2 root entry).
pub fn exec_kind(data: &[u8]) -> Option<ExecKind> {
    exec_kind_sized(data, data.len())
}

/// [`exec_kind`] of a file of `len` bytes that starts with `data`.
fn exec_kind_sized(data: &[u8], len: usize) -> Option<ExecKind> {
    if let Some(k) = mz_kind(data, len) {
        return Some(k);
    }
    if is_elf(data) {
        return Some(ExecKind::Elf);
    }
    if let Some(k) = cafebabe_kind(data) {
        return Some(k);
    }
    if is_thin_macho(data) {
        return Some(ExecKind::MachO);
    }
    if data.starts_with(b"#!") {
        return Some(ExecKind::Script);
    }
    if is_chm(data) {
        return Some(ExecKind::Chm);
    }
    if data.starts_with(&OLE2_MAGIC) && is_msi(data) {
        return Some(ExecKind::Msi);
    }
    None
}

/// `MZ` (or the old `ZM`): PE when `e_lfanew` points at `PE\0\0`; otherwise a DOS
/// program if the DOS header is plausible (bytes in last page < 512, header
/// paragraphs inside the file), so that a text file starting "MZ" is not one.
/// `len` is the whole file's length (`data` may be its start only).
fn mz_kind(data: &[u8], len: usize) -> Option<ExecKind> {
    if !(data.starts_with(b"MZ") || data.starts_with(b"ZM")) {
        return None;
    }
    if let Some(lfanew) = u32_le(data, 0x3C) {
        let at = lfanew as usize;
        if data.get(at..at.saturating_add(4)) == Some(b"PE\0\0".as_slice()) {
            return Some(ExecKind::Pe);
        }
    }
    let last_page = u16_le(data, 2)?;
    let header_paragraphs = u16_le(data, 8)?;
    let header_len = usize::from(header_paragraphs) * 16;
    (data.len() >= 28 && last_page < 512 && header_paragraphs >= 2 && header_len <= len)
        .then_some(ExecKind::Dos)
}

/// Compiled HTML Help: `ITSF`, format version 2 or 3, then the header length
/// (0x58 or 0x60), as hhc.exe writes it.
fn is_chm(data: &[u8]) -> bool {
    data.starts_with(b"ITSF")
        && u32_le(data, 4).is_some_and(|v| matches!(v, 2 | 3))
        && u32_le(data, 8).is_some_and(|len| matches!(len, 0x58 | 0x60))
}

fn is_elf(data: &[u8]) -> bool {
    data.len() >= 16
        && data.starts_with(b"\x7fELF")
        && matches!(data[4], 1 | 2)
        && matches!(data[5], 1 | 2)
}

fn is_thin_macho(data: &[u8]) -> bool {
    matches!(
        data.get(..4),
        Some([0xFE, 0xED, 0xFA, 0xCE | 0xCF]) | Some([0xCE | 0xCF, 0xFA, 0xED, 0xFE])
    ) && data.len() >= 28
}

/// `CA FE BA BE` is both the Mach-O universal (fat) magic and the Java class magic.
/// A fat header follows with the number of architectures (a handful, never 45 or
/// more); a class file follows with minor and major version, the major at least 45
/// (JDK 1.0.2). `CA FE BA BF` is the 64-bit fat magic.
fn cafebabe_kind(data: &[u8]) -> Option<ExecKind> {
    let magic = u32_be(data, 0)?;
    let next = u32_be(data, 4)?;
    match magic {
        0xCAFE_BABF if (1..45).contains(&next) => Some(ExecKind::MachO),
        0xCAFE_BABE if (1..45).contains(&next) => Some(ExecKind::MachO),
        0xCAFE_BABE if u16_be(data, 6).is_some_and(|major| major >= 45) => {
            Some(ExecKind::JavaClass)
        }
        _ => None,
    }
}

/// The root directory entry of an OLE2 (compound file) container, parsed by hand
/// and bounded: the header gives the sector size and the first directory sector; the
/// root entry is the first 128 bytes there.
fn ole2_root_clsid(data: &[u8]) -> Option<[u8; 16]> {
    if !data.starts_with(&OLE2_MAGIC) {
        return None;
    }
    let shift = u16_le(data, 0x1E)?;
    if !(7..=16).contains(&shift) {
        return None;
    }
    let sector = 1usize << shift;
    let first_dir = u32_le(data, 0x30)? as usize;
    let offset = first_dir.checked_add(1)?.checked_mul(sector)?;
    let entry = data.get(offset..offset.checked_add(128)?)?;
    // Object type 5 is the root storage.
    if entry[0x42] != 5 {
        return None;
    }
    let mut clsid = [0u8; 16];
    clsid.copy_from_slice(&entry[0x50..0x60]);
    Some(clsid)
}

/// Windows Installer database, patch or transform: the root class id says so. An
/// MSI whose class id was zeroed is still caught by its table streams, whose names
/// begin with the MSI name-encoding marker U+4840.
pub fn is_msi(data: &[u8]) -> bool {
    if ole2_root_clsid(data).is_some_and(|c| MSI_CLSIDS.contains(&c)) {
        return true;
    }
    ole2_root_names(data).is_some_and(|names| {
        names
            .iter()
            .any(|n| n.chars().next().is_some_and(|c| c == '\u{4840}'))
    })
}

/// Names of the streams and storages at the root of an OLE2 file (via the `cfb`
/// crate, at most 4096 of them).
fn ole2_root_names(data: &[u8]) -> Option<Vec<String>> {
    let parsed = std::panic::catch_unwind(|| {
        let cf = cfb::CompoundFile::open(Cursor::new(data)).ok()?;
        Some(
            cf.read_root_storage()
                .take(4096)
                .map(|e| e.name().to_string())
                .collect::<Vec<_>>(),
        )
    });
    parsed.ok().flatten()
}

/// An OLE2 file that is not an MSI: which Office document it is.
fn ole2_kind(data: &[u8]) -> FileKind {
    let names = ole2_root_names(data).unwrap_or_default();
    let has = |n: &str| names.iter().any(|x| x.eq_ignore_ascii_case(n));
    let mime = if has("EncryptedPackage") {
        // A password-protected OOXML document (the zip is encrypted inside OLE2).
        OFFICE_ENCRYPTED
    } else if has("WordDocument") {
        "application/msword"
    } else if has("Workbook") || has("Book") {
        "application/vnd.ms-excel"
    } else if has("PowerPoint Document") {
        "application/vnd.ms-powerpoint"
    } else if has("VisioDocument") {
        "application/vnd.visio"
    } else if names.iter().any(|n| n.starts_with("__substg1.0_")) {
        "application/vnd.ms-outlook"
    } else {
        "application/x-ole-storage"
    };
    FileKind::Document(mime)
}

/// Document type of a password-protected Office document (OOXML encrypted into an
/// OLE2 `EncryptedPackage` stream); its facts carry `encrypted = true`.
pub const OFFICE_ENCRYPTED: &str = "application/x-ms-office-encrypted";

/// The archive format of `data`, by content.
pub fn archive_kind(data: &[u8]) -> Option<ArchiveKind> {
    if let Some(kind) = archive_kind_at_start(data).or_else(|| footer_kind(data)) {
        return Some(kind);
    }
    // A zip with something in front (self-extractors are caught as PE before this):
    // found by its end-of-central-directory record near the end.
    if has_zip_end_record(data) && zip::ZipArchive::new(Cursor::new(data)).is_ok() {
        return Some(ArchiveKind::Zip);
    }
    None
}

/// The archive format told by the first bytes of a file.
fn archive_kind_at_start(data: &[u8]) -> Option<ArchiveKind> {
    let starts = |m: &[u8]| data.starts_with(m);
    if starts(b"PK\x03\x04") || starts(b"PK\x05\x06") || starts(b"PK\x07\x08PK\x03\x04") {
        return Some(ArchiveKind::Zip);
    }
    if starts(&[0x37, 0x7A, 0xBC, 0xAF, 0x27, 0x1C]) {
        return Some(ArchiveKind::SevenZip);
    }
    if starts(b"Rar!\x1a\x07\x01\x00") {
        return Some(ArchiveKind::Rar5);
    }
    if starts(b"Rar!\x1a\x07\x00") {
        return Some(ArchiveKind::Rar4);
    }
    // Old RAR (1.4) signature: "RE~^".
    if starts(b"RE~^") {
        return Some(ArchiveKind::Unsupported("rar1.4"));
    }
    if starts(&[0x1F, 0x8B, 0x08]) {
        return Some(ArchiveKind::Gzip);
    }
    if data.len() >= 10
        && starts(b"BZh")
        && (b'1'..=b'9').contains(&data[3])
        && (data[4..10] == [0x31, 0x41, 0x59, 0x26, 0x53, 0x59]
            || data[4..10] == [0x17, 0x72, 0x45, 0x38, 0x50, 0x90])
    {
        return Some(ArchiveKind::Bzip2);
    }
    if starts(&[0xFD, b'7', b'z', b'X', b'Z', 0x00]) {
        return Some(ArchiveKind::Xz);
    }
    if is_tar(data) {
        return Some(ArchiveKind::Tar);
    }
    libarchive_kind(data).or_else(|| unsupported_kind(data).map(ArchiveKind::Unsupported))
}

/// True when `data` holds `m` at `off`.
fn bytes_at(data: &[u8], off: usize, m: &[u8]) -> bool {
    off.checked_add(m.len())
        .and_then(|end| data.get(off..end))
        .is_some_and(|s| s == m)
}

/// Formats opened through libarchive (src/inspect/archive/libarchive.rs).
fn libarchive_kind(data: &[u8]) -> Option<ArchiveKind> {
    let starts = |m: &[u8]| data.starts_with(m);
    let at = |off: usize, m: &[u8]| bytes_at(data, off, m);
    if starts(b"MSCF\0\0\0\0") {
        return Some(ArchiveKind::Cab);
    }
    // LHA/LZH: "-lh?-" / "-lz?-" at offset 2.
    if data.len() > 7
        && data[2] == b'-'
        && data[3] == b'l'
        && matches!(data[4], b'h' | b'z')
        && data[6] == b'-'
    {
        return Some(ArchiveKind::Lha);
    }
    if [0x8001, 0x8801, 0x9001].iter().any(|o| at(*o, b"CD001")) {
        return Some(ArchiveKind::Iso);
    }
    if starts(&[0xC7, 0x71]) || starts(&[0x71, 0xC7]) || starts(b"07070") {
        return Some(ArchiveKind::Cpio);
    }
    if starts(b"!<arch>\n") {
        return Some(ArchiveKind::Ar);
    }
    None
}

/// Disk images told by a footer in their last 512 bytes (`data` is the file, or
/// its last bytes).
fn footer_kind(data: &[u8]) -> Option<ArchiveKind> {
    let footer = |m: &[u8]| {
        data.len()
            .checked_sub(512)
            .and_then(|end| data.get(end..end + m.len()))
            .is_some_and(|s| s == m)
    };
    if footer(b"conectix") {
        Some(ArchiveKind::Unsupported("vhd"))
    } else if footer(b"koly") {
        Some(ArchiveKind::Unsupported("dmg"))
    } else {
        None
    }
}

fn has_zip_end_record(data: &[u8]) -> bool {
    let window = data.len().saturating_sub(TAIL_LEN);
    data.get(window..)
        // Whether there is one: a forward search, which is vectorised.
        .is_some_and(|tail| memchr::memmem::find(tail, b"PK\x05\x06").is_some())
}

/// A tar header: the `ustar` magic, or (old v7 tars) a valid header checksum.
fn is_tar(data: &[u8]) -> bool {
    let Some(header) = data.get(..512) else {
        return false;
    };
    if &header[257..262] == b"ustar" {
        return true;
    }
    // v7: checksum field (octal, at 148..156) equals the sum of the header bytes
    // with the checksum field counted as spaces; the name must not be empty.
    if header[0] == 0 {
        return false;
    }
    let field = &header[148..156];
    let text: String = field
        .iter()
        .take_while(|b| **b != 0 && **b != b' ')
        .skip_while(|b| **b == b' ')
        .map(|b| *b as char)
        .collect();
    let Ok(stated) = u32::from_str_radix(text.trim(), 8) else {
        return false;
    };
    let sum: u32 = header
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                u32::from(b' ')
            } else {
                u32::from(*b)
            }
        })
        .sum();
    sum == stated && !text.is_empty()
}

/// Archive and disk-image formats recognised here, by their first bytes, but
/// not opened: the archive gets the "uninspectable" verdict. (Disk images told
/// by a footer: [`footer_kind`].)
fn unsupported_kind(data: &[u8]) -> Option<&'static str> {
    let starts = |m: &[u8]| data.starts_with(m);
    let at = |off: usize, m: &[u8]| bytes_at(data, off, m);
    // InstallShield cabinets, which libarchive does not read.
    if starts(b"ISc(") {
        return Some("cab");
    }
    // ARJ: 0x60 0xEA, then the basic header size (at most 2600).
    if starts(&[0x60, 0xEA]) && u16_le(data, 2).is_some_and(|n| n > 0 && n <= 2600) {
        return Some("arj");
    }
    if at(7, b"**ACE**") {
        return Some("ace");
    }
    // xar: libarchive parses its whole table of contents (zlib-compressed XML)
    // before handing out a first entry, beyond any limit set here.
    if starts(b"xar!") {
        return Some("xar");
    }
    if starts(b"vhdxfile") {
        return Some("vhdx");
    }
    if starts(b"conectix") {
        return Some("vhd");
    }
    // UDF without an ISO 9660 bridge.
    if [0x8001, 0x8801, 0x9001].iter().any(|o| at(*o, b"BEA01")) {
        return Some("udf");
    }
    if is_disk_image(data) {
        return Some("img");
    }
    if starts(b"MSWIM\0\0\0") {
        return Some("wim");
    }
    if starts(&[0x28, 0xB5, 0x2F, 0xFD]) {
        return Some("zstd");
    }
    if starts(b"LZIP") {
        return Some("lzip");
    }
    None
}

/// A raw disk image: a FAT/NTFS/exFAT boot sector, an MBR with a sane partition
/// table, or a GPT header.
fn is_disk_image(data: &[u8]) -> bool {
    if data.len() < 1024 || data[510..512] != [0x55, 0xAA] {
        return false;
    }
    let boot_jump = matches!(data[0], 0xEB | 0xE9);
    let fs = &data[0x36..0x39] == b"FAT"
        || &data[0x52..0x55] == b"FAT"
        || &data[3..11] == b"NTFS    "
        || &data[3..11] == b"EXFAT   ";
    if boot_jump && fs {
        return true;
    }
    if &data[512..520] == b"EFI PART" {
        return true;
    }
    let parts: Vec<&[u8]> = (0..4)
        .map(|i| &data[446 + 16 * i..446 + 16 * (i + 1)])
        .collect();
    parts.iter().all(|p| matches!(p[0], 0x00 | 0x80))
        && parts
            .iter()
            .any(|p| p[4] != 0 && u32_le(p, 12).is_some_and(|n| n > 0))
}

/// A zip that is an office document: OOXML (has `[Content_Types].xml`), ODF or
/// EPUB (first entry `mimetype`, stored, naming the type).
pub fn zip_document_kind(data: &[u8]) -> Option<&'static str> {
    if let Some(doc) = odf_kind(data) {
        return Some(doc);
    }
    let archive = zip::ZipArchive::new(Cursor::new(data)).ok()?;
    archive.index_for_name("[Content_Types].xml")?;
    let mut word = false;
    let mut xl = false;
    let mut ppt = false;
    let mut visio = false;
    for name in archive.file_names_raw().take(100_000) {
        word |= name.starts_with(b"word/");
        xl |= name.starts_with(b"xl/");
        ppt |= name.starts_with(b"ppt/");
        visio |= name.starts_with(b"visio/");
    }
    Some(if word {
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    } else if xl {
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    } else if ppt {
        "application/vnd.openxmlformats-officedocument.presentationml.presentation"
    } else if visio {
        "application/vnd.ms-visio.drawing"
    } else {
        "application/vnd.openxmlformats-package"
    })
}

/// ODF and EPUB: the first local header names `mimetype` and its stored content
/// is the document type.
fn odf_kind(data: &[u8]) -> Option<&'static str> {
    if !data.starts_with(b"PK\x03\x04") {
        return None;
    }
    let method = u16_le(data, 8)?;
    let size = u32_le(data, 18)? as usize;
    let name_len = usize::from(u16_le(data, 26)?);
    let extra_len = usize::from(u16_le(data, 28)?);
    if data.get(30..30 + name_len)? != b"mimetype" || method != 0 {
        return None;
    }
    let start = 30usize.checked_add(name_len)?.checked_add(extra_len)?;
    let mime = data.get(start..start.checked_add(size.min(100))?)?;
    const KNOWN: [&str; 12] = [
        "application/vnd.oasis.opendocument.text",
        "application/vnd.oasis.opendocument.text-template",
        "application/vnd.oasis.opendocument.text-master",
        "application/vnd.oasis.opendocument.spreadsheet",
        "application/vnd.oasis.opendocument.spreadsheet-template",
        "application/vnd.oasis.opendocument.presentation",
        "application/vnd.oasis.opendocument.presentation-template",
        "application/vnd.oasis.opendocument.graphics",
        "application/vnd.oasis.opendocument.formula",
        "application/vnd.oasis.opendocument.chart",
        "application/vnd.oasis.opendocument.database",
        "application/epub+zip",
    ];
    let mime = std::str::from_utf8(mime).ok()?.trim();
    Some(
        KNOWN
            .iter()
            .find(|k| **k == mime)
            .copied()
            .unwrap_or("application/vnd.oasis.opendocument"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infer_matches_nothing_shorter_than_its_minimum() {
        // The check `other_kind` skips would have said so too.
        // Every buffer shorter than INFER_MIN_LEN (2): the empty one and every byte.
        assert_eq!(INFER_MIN_LEN, 2);
        assert!(infer::get(b"").is_none());
        for b in 0..=255u8 {
            assert!(infer::get(&[b]).is_none(), "{b:#04x}");
        }
    }

    fn pe() -> Vec<u8> {
        let mut d = vec![0u8; 0x100];
        d[0] = b'M';
        d[1] = b'Z';
        d[0x3C] = 0x80;
        d[0x80..0x84].copy_from_slice(b"PE\0\0");
        d
    }

    #[test]
    fn pe_and_dos() {
        assert_eq!(classify(&pe()), FileKind::Executable(ExecKind::Pe));
        let mut dos = pe();
        dos[0x80] = b'X';
        dos[2] = 0x10; // bytes in last page
        dos[8] = 4; // header paragraphs
        assert_eq!(classify(&dos), FileKind::Executable(ExecKind::Dos));
        // e_lfanew out of range: no panic, still DOS
        dos[0x3C..0x40].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(classify(&dos), FileKind::Executable(ExecKind::Dos));
    }

    #[test]
    fn text_starting_with_mz_is_not_a_program() {
        let text = b"MZ Holdings quarterly report, all figures in VND.\r\n".repeat(20);
        assert!(!matches!(classify(&text), FileKind::Executable(_)));
    }

    #[test]
    fn elf_and_real_binary() {
        let true_bin = std::fs::read("/bin/true").unwrap_or_default();
        if !true_bin.is_empty() {
            assert_eq!(classify(&true_bin), FileKind::Executable(ExecKind::Elf));
        }
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        assert_eq!(classify(&elf), FileKind::Executable(ExecKind::Elf));
    }

    #[test]
    fn macho_thin_fat_and_java_class() {
        let mut thin = vec![0u8; 32];
        thin[..4].copy_from_slice(&[0xCF, 0xFA, 0xED, 0xFE]);
        assert_eq!(classify(&thin), FileKind::Executable(ExecKind::MachO));
        let mut fat = vec![0u8; 64];
        fat[..8].copy_from_slice(&[0xCA, 0xFE, 0xBA, 0xBE, 0, 0, 0, 2]);
        assert_eq!(classify(&fat), FileKind::Executable(ExecKind::MachO));
        // Java 8 class: minor 0, major 52
        let mut class = vec![0u8; 64];
        class[..8].copy_from_slice(&[0xCA, 0xFE, 0xBA, 0xBE, 0, 0, 0, 52]);
        assert_eq!(classify(&class), FileKind::Executable(ExecKind::JavaClass));
        // Java 1.1 class: minor 3, major 45
        class[..8].copy_from_slice(&[0xCA, 0xFE, 0xBA, 0xBE, 0, 3, 0, 45]);
        assert_eq!(classify(&class), FileKind::Executable(ExecKind::JavaClass));
    }

    #[test]
    fn scripts() {
        assert_eq!(
            classify(b"#!/bin/sh\necho hi\n"),
            FileKind::Executable(ExecKind::Script)
        );
        assert!(!matches!(
            classify(b"# not a script\n"),
            FileKind::Executable(_)
        ));
    }

    fn cfb_with(clsid: Option<[u8; 16]>, stream: &str) -> Vec<u8> {
        let mut cf = cfb::CompoundFile::create(Cursor::new(Vec::new())).unwrap();
        if let Some(c) = clsid {
            let uuid = uuid::Uuid::from_bytes_le(c);
            cf.set_storage_clsid("/", uuid).unwrap();
        }
        {
            use std::io::Write;
            let mut s = cf.create_stream(stream).unwrap();
            s.write_all(b"hello").unwrap();
        }
        cf.flush().unwrap();
        cf.into_inner().into_inner()
    }

    #[test]
    fn msi_by_class_id_and_not_every_ole2_file() {
        let msi = cfb_with(Some(MSI_CLSIDS[0]), "SummaryInformation");
        assert_eq!(classify(&msi), FileKind::Executable(ExecKind::Msi));
        let msp = cfb_with(Some(MSI_CLSIDS[1]), "x");
        assert_eq!(classify(&msp), FileKind::Executable(ExecKind::Msi));
        let doc = cfb_with(None, "WordDocument");
        assert_eq!(classify(&doc), FileKind::Document("application/msword"));
        let xls = cfb_with(None, "Workbook");
        assert_eq!(
            classify(&xls),
            FileKind::Document("application/vnd.ms-excel")
        );
        // An MSI whose class id was wiped is still an MSI by its table streams.
        let wiped = cfb_with(None, "\u{4840}\u{3F3F}\u{4577}");
        assert_eq!(classify(&wiped), FileKind::Executable(ExecKind::Msi));
    }

    #[test]
    fn archive_magics() {
        assert_eq!(archive_kind(b"MSCF\0\0\0\0rest"), Some(ArchiveKind::Cab));
        assert_eq!(
            archive_kind(b"ISc(rest"),
            Some(ArchiveKind::Unsupported("cab"))
        );
        assert_eq!(archive_kind(b"!<arch>\nrest"), Some(ArchiveKind::Ar));
        assert_eq!(archive_kind(b"070701rest"), Some(ArchiveKind::Cpio));
        assert_eq!(archive_kind(b"xx-lh5-rest"), Some(ArchiveKind::Lha));
        assert_eq!(
            archive_kind(b"xar!rest"),
            Some(ArchiveKind::Unsupported("xar"))
        );
        let mut iso = vec![0u8; 0x8001];
        iso.extend(b"CD001");
        assert_eq!(archive_kind(&iso), Some(ArchiveKind::Iso));
        assert_eq!(archive_kind(b"Rar!\x1a\x07\x00xx"), Some(ArchiveKind::Rar4));
        assert_eq!(
            archive_kind(b"Rar!\x1a\x07\x01\x00x"),
            Some(ArchiveKind::Rar5)
        );
        assert_eq!(archive_kind(b"\xfd7zXZ\x00"), Some(ArchiveKind::Xz));
        assert_eq!(archive_kind(b"hello world"), None);
        assert_eq!(archive_kind(&[]), None);
    }

    #[test]
    fn short_and_empty_inputs_do_not_panic() {
        for n in 0..80 {
            let d = vec![0xCAu8; n];
            let _ = classify(&d);
            let mut z = b"PK\x03\x04".to_vec();
            z.resize(n.max(4), 0);
            let _ = classify(&z);
            let mut o = OLE2_MAGIC.to_vec();
            o.resize(n.max(8), 0xFF);
            let _ = classify(&o);
        }
    }
}
