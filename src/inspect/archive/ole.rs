//! OLE2 compound files (.doc, .xls, .ppt, Outlook .msg, the `oleObject*.bin`
//! of OOXML documents): what they carry is handed to the sink like archive
//! entries.
//!
//! - Package objects (`\x01Ole10Native` streams, what Office makes of a file
//!   dropped into a document): the embedded file, under its own name, and its
//!   other names (source and temporary paths) when they differ, since Windows
//!   runs it by the temporary name.
//! - PowerPoint's embedded objects, kept (compressed) in records of the
//!   `PowerPoint Document` stream rather than as storages: each object's
//!   storage, which the sink opens again.
//! - Outlook attachments (`__attach_version1.0_#…` storages): the data stream
//!   `__substg1.0_37010102` under the attachment's long file name (`3707`),
//!   else its short one (`3704`) or display name (`3001`); attached messages
//!   are storages of the same file and are found by the same walk.
//! - Every other stream that is itself a container, an archive or a program
//!   (an OLE2 object embedded in a .doc's `ObjectPool`, an OOXML `Package`
//!   stream, an executable hidden in a stream): the sink opens it again.
//!   Streams that are plain data (text, pictures, tables) are read, typed and
//!   dropped, so an ordinary document gives no entries; types told by two or
//!   three bytes only are taken for data there, and a .msg's MAPI property
//!   streams are not read at all (see [`worth_inspecting`]).
//!
//! A VBA project's storage (`Macros/VBA`, `_VBA_PROJECT_CUR/VBA`, `VBA`)
//! marks the file as a document with macros; its streams are data.
//!
//! Reading goes through [`read_entry`] (budget, ratio cap, clock); the reader's
//! own tables are held from the budget at the file's size, their upper bound.

use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use super::{Entry, Keep, Opened, Sink, Unpacked, deliver, deliver_slice, read_entry};
use crate::inspect::budget::Budget;
use crate::inspect::filetype;
use crate::inspect::{ArchiveKind, ExecKind, FileKind};

const OLE10_NATIVE: &str = "\u{1}Ole10Native";
const POWERPOINT_DOCUMENT: &str = "PowerPoint Document";
/// `RT_ExternalOleObjectStg`: an embedded object's storage.
const EX_OLE_OBJ_STG: u16 = 0x1011;
/// PowerPoint records walked between two looks at the clock.
const RECORDS_PER_CLOCK_CHECK: u32 = 4096;
const ATTACHMENT_PREFIX: &str = "__attach_version1.0_#";
const ATTACHMENT_DATA: &str = "__substg1.0_37010102";
/// Attachment name properties, best first: long file name, file name, display
/// name; each as Unicode (`001F`) and 8-bit (`001E`).
const ATTACHMENT_NAMES: [&str; 6] = [
    "__substg1.0_3707001F",
    "__substg1.0_3707001E",
    "__substg1.0_3704001F",
    "__substg1.0_3704001E",
    "__substg1.0_3001001F",
    "__substg1.0_3001001E",
];
/// Longest attachment name read (MAPI names are short; a name stream could
/// be any size).
const MAX_NAME_BYTES: u64 = 2048;

/// Opens an OLE2 file and hands what it carries to `sink`.
pub fn open(data: &[u8], budget: &mut Budget, sink: &mut Sink<'_>) -> Opened {
    let mut opened = Opened::default();
    let tables = data.len() as u64;
    if let Err(reason) = budget.hold(tables) {
        opened.problem(reason);
        return opened;
    }
    if let Err(e) = walk(data, budget, sink, &mut opened) {
        opened.problem(format!("damaged OLE2 file: {e}"));
    }
    budget.release(tables);
    opened
}

fn walk(
    data: &[u8],
    budget: &mut Budget,
    sink: &mut Sink<'_>,
    opened: &mut Opened,
) -> std::io::Result<()> {
    let mut file = cfb::CompoundFile::open(Cursor::new(data))?;
    let streams: Vec<PathBuf> = file
        .walk()
        .filter(|e| e.is_stream())
        .map(|e| e.path().to_path_buf())
        .collect();
    opened.macros |= streams.iter().any(|p| is_vba_project_dir(p));
    for path in &streams {
        if let Err(reason) = budget.check_limits() {
            opened.problem(reason);
            return Ok(());
        }
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let in_attachment = path
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(ATTACHMENT_PREFIX));
        let shown = display_path(path);
        let parser: Option<StreamParser> = match name {
            OLE10_NATIVE => Some(package),
            POWERPOINT_DOCUMENT => Some(powerpoint_objects),
            _ => None,
        };
        if let Some(parse) = parser {
            let stream = read(&mut file, path, Keep::Whole, budget);
            if stream.limit.is_some() || stream.error.is_some() {
                // Not read whole: handed over as it is, the limit or damage noted.
                take_and_deliver(shown, stream, opened, budget, sink);
            } else {
                parse(shown, stream, opened, budget, sink);
            }
        } else if in_attachment && name == ATTACHMENT_DATA {
            let label = path
                .parent()
                .and_then(|storage| attachment_name(&mut file, storage, budget))
                .unwrap_or(shown);
            let stream = read(&mut file, path, Keep::AsNeeded, budget);
            take_and_deliver(label, stream, opened, budget, sink);
        } else if !is_mapi_property(name) {
            let stream = read(&mut file, path, Keep::AsNeeded, budget);
            if carries_something(&stream) {
                take_and_deliver(shown, stream, opened, budget, sink);
            } else {
                stream.discard(budget);
            }
        }
    }
    Ok(())
}

/// The `dir` stream of a `VBA` storage: a VBA project, where Word keeps it
/// (`Macros/VBA`), Excel (`_VBA_PROJECT_CUR/VBA`) or an OOXML `vbaProject.bin`
/// (`VBA`). PowerPoint keeps its project in an `ExOleObjStg` record, opened as
/// an OLE2 file of its own (see [`powerpoint_objects`]).
fn is_vba_project_dir(stream: &Path) -> bool {
    let name = |p: Option<&std::ffi::OsStr>| p.and_then(|n| n.to_str()).map(str::to_owned);
    name(stream.file_name()).is_some_and(|n| n.eq_ignore_ascii_case("dir"))
        && name(stream.parent().and_then(Path::file_name))
            .is_some_and(|n| n.eq_ignore_ascii_case("VBA"))
}

/// Reads the things a stream read whole carries (its name in the file, the
/// stream) and hands them to the sink.
type StreamParser = fn(String, Unpacked, &mut Opened, &mut Budget, &mut Sink<'_>);

/// Embedded objects of a PowerPoint 97-2003 file: `ExOleObjStg` records in
/// the `PowerPoint Document` stream, each an OLE2 storage (zlib-compressed
/// when the record's instance is 1), handed to the sink to be opened in turn.
/// The records are walked in order: a container's children follow its header.
fn powerpoint_objects(
    shown: String,
    stream: Unpacked,
    opened: &mut Opened,
    budget: &mut Budget,
    sink: &mut Sink<'_>,
) {
    let data = &stream.data;
    let mut at = 0usize;
    let mut objects = 0;
    let mut records = 0u32;
    while let Some(header) = data.get(at..at.saturating_add(8)) {
        records = records.wrapping_add(1);
        if records.is_multiple_of(RECORDS_PER_CLOCK_CHECK)
            && let Err(reason) = budget.check_limits()
        {
            opened.problem(reason);
            break;
        }
        let ver_instance = u16::from_le_bytes([header[0], header[1]]);
        let record_type = u16::from_le_bytes([header[2], header[3]]);
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let body_start = at + 8;
        if ver_instance & 0xF == 0xF {
            at = body_start;
            continue;
        }
        // A record past the end: the stream is cut, nothing more to find.
        let Some(body) = data.get(body_start..body_start.saturating_add(len)) else {
            break;
        };
        at = body_start + len;
        if record_type != EX_OLE_OBJ_STG {
            continue;
        }
        if let Err(reason) = budget.take_entry() {
            opened.problem(reason);
            break;
        }
        objects += 1;
        let name = format!("{shown}/embedded object {objects}");
        if ver_instance >> 4 == 1 {
            let declared = body.get(..4).map_or(0, |b| {
                u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            });
            let packed = body.get(4..).unwrap_or(&[]);
            let mut decoder = flate2::read::ZlibDecoder::new(packed);
            let unpacked = read_entry(
                &mut decoder,
                packed.len() as u64,
                &name,
                Keep::AsNeeded,
                budget,
            );
            deliver(
                name,
                declared,
                unpacked,
                "PowerPoint object",
                opened,
                budget,
                sink,
            );
        } else {
            // (Its bytes count twice against the unpacked budget, as a
            // Package's do.)
            deliver_slice(name, body, budget, sink);
        }
    }
    stream.discard(budget);
}

/// A stream's path inside the file, without the leading `/`.
fn display_path(path: &Path) -> String {
    let text = path.to_string_lossy();
    text.trim_start_matches('/').to_string()
}

fn read(
    file: &mut cfb::CompoundFile<Cursor<&[u8]>>,
    path: &Path,
    keep: Keep,
    budget: &mut Budget,
) -> Unpacked {
    match file.open_stream(path) {
        Ok(mut stream) => {
            let len = stream.len();
            read_entry(&mut stream, len, &display_path(path), keep, budget)
        }
        Err(e) => Unpacked {
            error: Some(e.to_string()),
            ..Unpacked::default()
        },
    }
}

/// True when a stream must go to the sink: it is not plain data, or reading
/// it stopped (a limit, damage), which must be reported.
fn carries_something(stream: &Unpacked) -> bool {
    if stream.limit.is_some() || stream.error.is_some() {
        return true;
    }
    let kind = match &stream.tail {
        Some(tail) => filetype::classify_streamed(&stream.data, tail, stream.total),
        None => filetype::classify(&stream.data),
    };
    worth_inspecting(&kind)
}

/// Whether a stream of this type is inspected as a file. The types told by
/// two or three bytes (a `#!` script, cpio, arj, lzh) are left out: binary
/// data (picture headers, random ids) starts that way now and then, and no
/// Office application runs or unpacks a stream that does.
fn worth_inspecting(kind: &FileKind) -> bool {
    match kind {
        FileKind::Executable(ExecKind::Script) => false,
        FileKind::Archive(ArchiveKind::Unsupported(_) | ArchiveKind::Cpio | ArchiveKind::Lha) => {
            false
        }
        FileKind::Executable(_) | FileKind::Archive(_) | FileKind::Document(_) => true,
        FileKind::Other(_) => false,
    }
}

/// MAPI property streams of a .msg (`__substg1.0_…`, `__properties_version1.0`,
/// the named-property map): data by definition; the one that carries a file
/// (an attachment's `37010102`) is read apart.
fn is_mapi_property(name: &str) -> bool {
    name.starts_with("__")
}

fn take_and_deliver(
    name: String,
    stream: Unpacked,
    opened: &mut Opened,
    budget: &mut Budget,
    sink: &mut Sink<'_>,
) {
    if let Err(reason) = budget.take_entry() {
        opened.problem(reason);
        stream.discard(budget);
        return;
    }
    let declared = stream.total;
    deliver(name, declared, stream, "OLE2 file", opened, budget, sink);
}

/// The name of an Outlook attachment, from its storage's name properties.
fn attachment_name(
    file: &mut cfb::CompoundFile<Cursor<&[u8]>>,
    storage: &Path,
    budget: &mut Budget,
) -> Option<String> {
    ATTACHMENT_NAMES.iter().find_map(|property| {
        let mut stream = file.open_stream(storage.join(property)).ok()?;
        let mut bytes = Vec::new();
        let _ = budget.hold(MAX_NAME_BYTES);
        let read = (&mut stream).take(MAX_NAME_BYTES).read_to_end(&mut bytes);
        budget.release(MAX_NAME_BYTES);
        read.ok()?;
        budget.spend_bytes(bytes.len() as u64);
        let text = if property.ends_with("001F") {
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16_lossy(&units)
        } else {
            String::from_utf8_lossy(&bytes).into_owned()
        };
        let text = text.trim_end_matches('\0').to_string();
        (!text.is_empty()).then_some(text)
    })
}

/// An `\x01Ole10Native` stream: a Package's embedded file, or (another OLE1
/// object) its native data.
fn package(
    shown: String,
    stream: Unpacked,
    opened: &mut Opened,
    budget: &mut Budget,
    sink: &mut Sink<'_>,
) {
    let parsed = parse_package(&stream.data);
    let Some(package) = parsed else {
        // Not a Package: the native data after the size field is typed.
        let native = stream.data.get(4..).unwrap_or(&[]);
        if worth_inspecting(&filetype::classify(native)) {
            match budget.take_entry() {
                Ok(()) => deliver_slice(shown, native, budget, sink),
                Err(reason) => opened.problem(reason),
            }
        }
        return stream.discard(budget);
    };
    if let Err(reason) = budget.take_entry() {
        opened.problem(reason);
        return stream.discard(budget);
    }
    let mut names = package.names.iter().filter(|n| !n.is_empty());
    let first = names.next().cloned().unwrap_or_else(|| shown.clone());
    if package.truncated {
        opened.problem(format!("damaged OLE2 file: package '{first}' is cut short"));
    }
    let payload = &stream.data[package.data.clone()];
    // (Its bytes count twice against the unpacked budget: once read, once
    // handed over; the stream holds little else.)
    deliver_slice(first.clone(), payload, budget, sink);
    // Its other names, which Windows may use to run it, are checked too.
    let mut seen = vec![first];
    for other in names {
        if seen.iter().any(|n| n.eq_ignore_ascii_case(other)) {
            continue;
        }
        if let Err(reason) = budget.take_entry() {
            opened.problem(reason);
            break;
        }
        seen.push(other.clone());
        sink(
            budget,
            Entry {
                name: other.clone(),
                size: payload.len() as u64,
                encrypted: false,
                data: None,
                tail: None,
                sha256: None,
                note: None,
            },
        );
    }
    stream.discard(budget);
}

/// A Package's embedded file: its names (label, then the base names of the
/// source and temporary paths) and where its bytes lie in the stream.
#[derive(Debug, PartialEq, Eq)]
pub struct Package {
    pub names: Vec<String>,
    pub data: std::ops::Range<usize>,
    /// The stated size runs past the stream: `data` is what there is.
    pub truncated: bool,
}

/// Reads the OLE1 Package layout of an `\x01Ole10Native` stream: size (u32),
/// a u16, the label and the source path (NUL-terminated), u16 reserved, u16
/// type (3: an embedded file; 1 is a link, which carries no bytes), the
/// temporary path (u32 length, bytes), the data (u32 length, bytes).
pub fn parse_package(stream: &[u8]) -> Option<Package> {
    let mut at = 6;
    let label = c_string(stream, &mut at)?;
    let source = c_string(stream, &mut at)?;
    let _reserved = u16_at(stream, &mut at)?;
    let kind = u16_at(stream, &mut at)?;
    let names = |temp: &str| {
        vec![
            label.clone(),
            base_name(&source).to_string(),
            base_name(temp).to_string(),
        ]
    };
    if kind != 3 {
        return (kind == 1).then(|| Package {
            names: names(""),
            data: 0..0,
            truncated: false,
        });
    }
    let temp_len = u32_at(stream, &mut at)? as usize;
    let temp_end = at.checked_add(temp_len)?;
    let temp = stream.get(at..temp_end)?;
    let temp = String::from_utf8_lossy(temp.split(|b| *b == 0).next().unwrap_or(&[])).into_owned();
    at = temp_end;
    let data_len = u32_at(stream, &mut at)? as usize;
    let end = at.saturating_add(data_len);
    let truncated = end > stream.len();
    Some(Package {
        names: names(&temp),
        data: at..end.min(stream.len()),
        truncated,
    })
}

fn base_name(path: &str) -> &str {
    path.rsplit(['\\', '/']).next().unwrap_or(path)
}

/// A NUL-terminated 8-bit string (at most 1 KiB: paths are short).
fn c_string(data: &[u8], at: &mut usize) -> Option<String> {
    let rest = data.get(*at..)?;
    let len = memchr::memchr(0, &rest[..rest.len().min(1024)])?;
    *at += len + 1;
    Some(String::from_utf8_lossy(&rest[..len]).into_owned())
}

fn u16_at(data: &[u8], at: &mut usize) -> Option<u16> {
    let b = data.get(*at..*at + 2)?;
    *at += 2;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

fn u32_at(data: &[u8], at: &mut usize) -> Option<u32> {
    let b = data.get(*at..*at + 4)?;
    *at += 4;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Package stream make-ole.rs wrote into a fixture.
    fn fixture_package() -> Vec<u8> {
        let doc = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/archives/exe-in-package.doc"
        ))
        .unwrap();
        let mut file = cfb::CompoundFile::open(Cursor::new(&doc[..])).unwrap();
        let mut stream = file
            .open_stream("/ObjectPool/_1700000001/\u{1}Ole10Native")
            .unwrap();
        let mut out = Vec::new();
        stream.read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn streams_are_entries_only_when_they_carry_something() {
        use crate::inspect::file::inspect_file;
        use crate::policy::LimitsSection;
        use std::io::Write;
        let pe = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/archives/clam.exe"
        ))
        .unwrap();
        let mut cf = cfb::CompoundFile::create(Cursor::new(Vec::new())).unwrap();
        for (name, data) in [
            ("/WordDocument", &b"\xEC\xA5text"[..]),
            // Binary data that starts like cpio or a script: data here.
            ("/Data", b"\x71\xC7\x01\x02picture"),
            ("/1Table", b"#!table"),
            ("/__substg1.0_0FFF0102", &pe),
            ("/Hidden", &pe),
        ] {
            cf.create_stream(name).unwrap().write_all(data).unwrap();
        }
        cf.flush().unwrap();
        let doc = cf.into_inner().into_inner();
        let mut budget = Budget::new(&LimitsSection::default());
        let mut out = Vec::new();
        inspect_file(vec!["a.doc".into()], None, &doc, 0, &mut budget, &mut out);
        let paths: Vec<_> = out.iter().map(|f| f.path.join(" > ")).collect();
        assert_eq!(paths, ["a.doc", "a.doc > Hidden"]);
        assert_eq!(out[1].kind, FileKind::Executable(ExecKind::Pe));
        assert!(out.iter().all(|f| f.uninspectable.is_none()), "{out:#?}");
    }

    /// An OLE2 file whose `PowerPoint Document` stream is `records`.
    fn presentation(records: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut cf = cfb::CompoundFile::create(Cursor::new(Vec::new())).unwrap();
        cf.create_stream("/PowerPoint Document")
            .unwrap()
            .write_all(records)
            .unwrap();
        cf.flush().unwrap();
        cf.into_inner().into_inner()
    }

    fn record(ver_instance: u16, record_type: u16, body: &[u8]) -> Vec<u8> {
        let mut out = ver_instance.to_le_bytes().to_vec();
        out.extend(record_type.to_le_bytes());
        out.extend((body.len() as u32).to_le_bytes());
        out.extend(body);
        out
    }

    #[test]
    fn powerpoint_records_are_bounded() {
        use crate::inspect::file::inspect_file;
        use crate::policy::LimitsSection;
        use std::io::Write;
        let inspect = |data: &[u8]| {
            let mut budget = Budget::new(&LimitsSection::default());
            let mut out = Vec::new();
            inspect_file(vec!["a.ppt".into()], None, data, 0, &mut budget, &mut out);
            out
        };
        // 64 MiB of zeros, compressed 1000:1 and more, as an embedded object.
        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        for _ in 0..64 {
            zlib.write_all(&[0; 1 << 20]).unwrap();
        }
        let mut body = (64u32 << 20).to_le_bytes().to_vec();
        body.extend(zlib.finish().unwrap());
        let bomb = [
            record(0x000F, 0x03E8, &[]),
            record(0x0010, EX_OLE_OBJ_STG, &body),
        ]
        .concat();
        let out = inspect(&presentation(&bomb));
        let reason = out[0].uninspectable.as_deref().unwrap_or_default();
        assert!(reason.contains("compression ratio"), "{out:#?}");
        // Container headers only, and a record running past the end: nothing
        // found, nothing flagged.
        let mut headers = record(0x000F, 0x03E8, &[]).repeat(100_000);
        headers.extend(&record(0x0000, EX_OLE_OBJ_STG, b"short")[..10]);
        let out = inspect(&presentation(&headers));
        assert_eq!(out.len(), 1, "{out:#?}");
        assert_eq!(out[0].uninspectable, None);
    }

    #[test]
    fn package_layout() {
        let s = fixture_package();
        let p = parse_package(&s).unwrap();
        assert_eq!(p.names, ["hoso.pdf.exe", "hoso.pdf.exe", "hoso.pdf.exe"]);
        assert!(s[p.data.clone()].starts_with(b"MZ"));
        assert_eq!(p.data.end, s.len());
        assert!(!p.truncated);
        // Cut anywhere: no panic; the data is never read past the end.
        for n in 0..s.len() {
            if let Some(p) = parse_package(&s[..n]) {
                assert!(p.data.end <= n);
                assert!(p.truncated);
            }
        }
        assert_eq!(parse_package(b""), None);
    }
}
