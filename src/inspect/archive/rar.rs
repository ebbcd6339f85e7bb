//! RAR 4 (also RAR 2.9/3.x) and RAR 5 headers: our own bounded parser. It gives
//! the entries' names, sizes, encryption and dictionary sizes. Archives are
//! unpacked through libarchive (libarchive.rs), which calls [`survey`] first: an
//! encrypted archive, or one whose dictionary is over the decoder memory limit,
//! is only listed here ([`open`]) — names, encryption, and the entries stored
//! without compression (`rar -m0`), whose bytes sit in the archive as they are.
//!
//! RAR 4 (technote of RAR 3.x/4.x): marker `Rar!\x1a\x07\x00`, then blocks of
//! `crc u16, type u8, flags u16, size u16 [, add_size u32]`. The main header
//! (0x73) with flag 0x0080 means the block headers are encrypted; a file header
//! (0x74) with flag 0x0004 is an encrypted file.
//!
//! RAR 5 (rarlab's "RAR 5.0 archive format"): marker `Rar!\x1a\x07\x01\x00`, then
//! headers of `crc u32, size vint, type vint, flags vint [, extra size vint]
//! [, data size vint]`. Type 4 is the archive encryption header (all headers after
//! it are encrypted); a file header (type 2) with an extra record of type 1 is an
//! encrypted file.

use super::{Entry, Opened, Sink};
use crate::inspect::ArchiveKind;
use crate::inspect::budget::Budget;

fn u16_at(d: &[u8], at: usize) -> Option<u16> {
    let b = d.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

fn u32_at(d: &[u8], at: usize) -> Option<u32> {
    let b = d.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// One file as its header describes it.
pub struct FileHeader<'a> {
    pub name: String,
    pub size: u64,
    pub encrypted: bool,
    /// Its bytes, when stored without compression (and not split or encrypted).
    pub stored: Option<&'a [u8]>,
    /// The dictionary its decoder needs (0 when stored).
    pub dictionary: u64,
}

/// Called for each file of the archive; false stops the walk.
type OnFile<'f> = dyn FnMut(&mut Budget, FileHeader<'_>, &mut Opened) -> bool + 'f;

/// What the headers of a RAR archive say before anything is unpacked.
#[derive(Debug, Default)]
pub struct Survey {
    pub encrypted: bool,
    /// The largest dictionary of its compressed files.
    pub dictionary: u64,
    /// Why its headers could not all be read.
    pub damaged: Option<String>,
}

/// Walks the headers of a RAR archive of `kind` without unpacking or listing.
pub fn survey(kind: ArchiveKind, data: &[u8], budget: &mut Budget) -> Survey {
    let mut dictionary = 0;
    let mut on_file = |_: &mut Budget, file: FileHeader<'_>, _: &mut Opened| {
        dictionary = dictionary.max(file.dictionary);
        true
    };
    let opened = walk(kind, data, budget, &mut on_file);
    Survey {
        encrypted: opened.encrypted,
        dictionary,
        damaged: opened.uninspectable,
    }
}

/// Lists a RAR archive of `kind` (see the module documentation).
pub fn open(kind: ArchiveKind, data: &[u8], budget: &mut Budget, sink: &mut Sink<'_>) -> Opened {
    let mut on_file = |budget: &mut Budget, file: FileHeader<'_>, opened: &mut Opened| {
        emit(file, budget, sink, opened)
    };
    walk(kind, data, budget, &mut on_file)
}

fn walk(kind: ArchiveKind, data: &[u8], budget: &mut Budget, on_file: &mut OnFile<'_>) -> Opened {
    if kind == ArchiveKind::Rar5 {
        walk_rar5(data, budget, on_file)
    } else {
        walk_rar4(data, budget, on_file)
    }
}

/// Hands a listed entry to the sink: stored entries with their bytes, others
/// without.
fn emit(
    file: FileHeader<'_>,
    budget: &mut Budget,
    sink: &mut Sink<'_>,
    opened: &mut Opened,
) -> bool {
    let FileHeader {
        name,
        size,
        encrypted,
        stored: stored_data,
        ..
    } = file;
    if let Err(reason) = budget.take_entry() {
        opened.problem(reason);
        return false;
    }
    let data = stored_data.filter(|d| !encrypted && d.len() as u64 <= budget.bytes_left());
    if let Some(d) = data {
        budget.spend_bytes(d.len() as u64);
    }
    sink(
        budget,
        Entry {
            name,
            size,
            encrypted,
            data,
            tail: None,
            sha256: None,
            note: None,
        },
    );
    true
}

const RAR4_MARKER: &[u8] = b"Rar!\x1a\x07\x00";
const RAR5_MARKER: &[u8] = b"Rar!\x1a\x07\x01\x00";

fn walk_rar4(data: &[u8], budget: &mut Budget, on_file: &mut OnFile<'_>) -> Opened {
    let mut opened = Opened::default();
    let mut pos = RAR4_MARKER.len();
    if !data.starts_with(RAR4_MARKER) {
        opened.problem("damaged rar archive: no RAR 4 marker");
        return opened;
    }
    loop {
        if pos >= data.len() {
            // Archives without an end block (older RAR) just stop here.
            break;
        }
        if let Err(reason) = budget.check_limits() {
            opened.problem(reason);
            break;
        }
        let (Some(kind), Some(flags), Some(head_size)) = (
            data.get(pos + 2).copied(),
            u16_at(data, pos + 3),
            u16_at(data, pos + 5),
        ) else {
            opened.problem("damaged rar archive: truncated block header");
            break;
        };
        let head_size = usize::from(head_size);
        if head_size < 7 {
            opened.problem("damaged rar archive: block header too small");
            break;
        }
        let Some(head) = data.get(pos..pos.saturating_add(head_size)) else {
            opened.problem("damaged rar archive: truncated block");
            break;
        };
        let mut add_size: u64 = 0;
        match kind {
            0x73 => {
                // Main header: 0x0080 = block headers encrypted.
                if flags & 0x0080 != 0 {
                    opened.encrypted = true;
                    return opened;
                }
            }
            0x74 | 0x7A => {
                // File header, or service header (comments, streams) of the same form.
                let (Some(pack), Some(unp), Some(method), Some(name_len)) = (
                    u32_at(head, 7),
                    u32_at(head, 11),
                    head.get(25).copied(),
                    u16_at(head, 26),
                ) else {
                    opened.problem("damaged rar archive: truncated file header");
                    break;
                };
                let large = flags & 0x0100 != 0;
                let (high_pack, high_unp, name_at) = if large {
                    (
                        u32_at(head, 32).unwrap_or(0),
                        u32_at(head, 36).unwrap_or(0),
                        40,
                    )
                } else {
                    (0, 0, 32)
                };
                add_size = (u64::from(high_pack) << 32) | u64::from(pack);
                let size = (u64::from(high_unp) << 32) | u64::from(unp);
                let Some(raw_name) = head.get(name_at..name_at + usize::from(name_len)) else {
                    opened.problem("damaged rar archive: file name past its header");
                    break;
                };
                if kind == 0x74 {
                    let encrypted = flags & 0x0004 != 0;
                    opened.encrypted |= encrypted;
                    let is_dir = flags & 0x00E0 == 0x00E0;
                    let split = flags & 0x0003 != 0;
                    if !is_dir {
                        // RAR 4 separates directories with '\\'; entries are named
                        // with '/' as in every other format.
                        let name = if flags & 0x0200 != 0 {
                            decode_rar4_unicode(raw_name)
                        } else {
                            String::from_utf8_lossy(raw_name).into_owned()
                        }
                        .replace('\\', "/");
                        // Method 0x30 is "store": the data is the file itself.
                        let data_start = pos.saturating_add(head_size);
                        let stored = (method == 0x30 && !split)
                            .then(|| {
                                let end =
                                    data_start.checked_add(usize::try_from(add_size).ok()?)?;
                                data.get(data_start..end)
                            })
                            .flatten()
                            .filter(|d| d.len() as u64 == size);
                        // Bits 5-7 of the flags: a 64 KiB << n dictionary.
                        let dictionary = if method == 0x30 {
                            0
                        } else {
                            (64 * 1024) << ((flags >> 5) & 7)
                        };
                        let file = FileHeader {
                            name,
                            size,
                            encrypted,
                            stored,
                            dictionary,
                        };
                        if !on_file(budget, file, &mut opened) {
                            break;
                        }
                    }
                }
            }
            0x7B => break, // end of archive
            _ => {
                if flags & 0x8000 != 0 {
                    add_size = u64::from(u32_at(head, 7).unwrap_or(0));
                }
            }
        }
        let next = u64::try_from(pos)
            .ok()
            .and_then(|p| p.checked_add(head_size as u64))
            .and_then(|p| p.checked_add(add_size));
        match next.and_then(|n| usize::try_from(n).ok()) {
            Some(n) if n > pos => pos = n,
            _ => {
                opened.problem("damaged rar archive: block size out of range");
                break;
            }
        }
    }
    opened
}

/// RAR 4 Unicode names: an OEM name, a zero byte, then the Unicode name packed
/// against the OEM one (unrar's `DecodeFileName`). Falls back to the OEM part.
fn decode_rar4_unicode(raw: &[u8]) -> String {
    let Some(zero) = raw.iter().position(|b| *b == 0) else {
        return String::from_utf8_lossy(raw).into_owned();
    };
    let oem = &raw[..zero];
    let enc = &raw[zero + 1..];
    let decoded = (|| -> Option<Vec<u16>> {
        let mut out: Vec<u16> = Vec::new();
        let high = u16::from(*enc.first()?);
        let mut pos = 1;
        let mut flags = 0u8;
        let mut flag_bits = 0u32;
        while pos < enc.len() && out.len() < 4096 {
            if flag_bits == 0 {
                flags = *enc.get(pos)?;
                pos += 1;
                flag_bits = 8;
            }
            flag_bits -= 2;
            match (flags >> flag_bits) & 3 {
                0 => {
                    out.push(u16::from(*enc.get(pos)?));
                    pos += 1;
                }
                1 => {
                    out.push(u16::from(*enc.get(pos)?) | (high << 8));
                    pos += 1;
                }
                2 => {
                    let lo = u16::from(*enc.get(pos)?);
                    let hi = u16::from(*enc.get(pos + 1)?);
                    out.push(lo | (hi << 8));
                    pos += 2;
                }
                _ => {
                    let length = *enc.get(pos)?;
                    pos += 1;
                    if length & 0x80 != 0 {
                        let correction = *enc.get(pos)?;
                        pos += 1;
                        for _ in 0..(usize::from(length & 0x7F) + 2) {
                            let c = oem.get(out.len())?.wrapping_add(correction);
                            out.push(u16::from(c) | (high << 8));
                        }
                    } else {
                        for _ in 0..(usize::from(length) + 2) {
                            out.push(u16::from(*oem.get(out.len())?));
                        }
                    }
                }
            }
        }
        Some(out)
    })();
    match decoded {
        Some(units) if !units.is_empty() => String::from_utf16_lossy(&units),
        _ => String::from_utf8_lossy(oem).into_owned(),
    }
}

/// A RAR 5 variable-length integer at `*pos` (7 bits a byte, low first).
fn vint(d: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value: u64 = 0;
    for i in 0..10 {
        let b = *d.get(*pos)?;
        *pos += 1;
        value |= u64::from(b & 0x7F).checked_shl(7 * i)?;
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn walk_rar5(data: &[u8], budget: &mut Budget, on_file: &mut OnFile<'_>) -> Opened {
    let mut opened = Opened::default();
    if !data.starts_with(RAR5_MARKER) {
        opened.problem("damaged rar archive: no RAR 5 marker");
        return opened;
    }
    let mut pos = RAR5_MARKER.len();
    while pos < data.len() {
        if let Err(reason) = budget.check_limits() {
            opened.problem(reason);
            break;
        }
        match rar5_block(data, pos, budget, on_file, &mut opened) {
            Rar5Step::Next(n) if n > pos => pos = n,
            Rar5Step::Next(_) => {
                opened.problem("damaged rar archive: header size out of range");
                break;
            }
            Rar5Step::End => break,
            Rar5Step::Damaged(what) => {
                opened.problem(format!("damaged rar archive: {what}"));
                break;
            }
        }
    }
    opened
}

enum Rar5Step {
    Next(usize),
    End,
    Damaged(&'static str),
}

fn rar5_block(
    data: &[u8],
    start: usize,
    budget: &mut Budget,
    on_file: &mut OnFile<'_>,
    opened: &mut Opened,
) -> Rar5Step {
    use Rar5Step::{Damaged, End, Next};
    let mut pos = start + 4; // CRC32
    let Some(head_size) = vint(data, &mut pos) else {
        return Damaged("truncated header");
    };
    let head_start = pos;
    let Some(head_end) = usize::try_from(head_size)
        .ok()
        .and_then(|s| head_start.checked_add(s))
        .filter(|e| *e <= data.len() && head_size <= 2 * 1024 * 1024)
    else {
        return Damaged("header past the end");
    };
    let head = &data[..head_end];
    let (Some(kind), Some(flags)) = (vint(head, &mut pos), vint(head, &mut pos)) else {
        return Damaged("truncated header");
    };
    let extra_size = if flags & 0x0001 != 0 {
        match vint(head, &mut pos) {
            Some(v) => v,
            None => return Damaged("truncated header"),
        }
    } else {
        0
    };
    let data_size = if flags & 0x0002 != 0 {
        match vint(head, &mut pos) {
            Some(v) => v,
            None => return Damaged("truncated header"),
        }
    } else {
        0
    };
    let Some(next) = usize::try_from(data_size)
        .ok()
        .and_then(|s| head_end.checked_add(s))
    else {
        return Damaged("data size out of range");
    };
    match kind {
        4 => {
            // Archive encryption header: everything after it is encrypted.
            opened.encrypted = true;
            return End;
        }
        5 => return End,
        2 => {
            let (Some(file_flags), Some(unpacked)) = (vint(head, &mut pos), vint(head, &mut pos))
            else {
                return Damaged("truncated file header");
            };
            let _attributes = vint(head, &mut pos);
            if file_flags & 0x0002 != 0 {
                pos += 4; // mtime
            }
            if file_flags & 0x0004 != 0 {
                pos += 4; // data CRC32
            }
            let (Some(compression), Some(_host), Some(name_len)) = (
                vint(head, &mut pos),
                vint(head, &mut pos),
                vint(head, &mut pos),
            ) else {
                return Damaged("truncated file header");
            };
            let Some(raw_name) = usize::try_from(name_len)
                .ok()
                .and_then(|n| pos.checked_add(n))
                .and_then(|end| head.get(pos..end))
            else {
                return Damaged("file name past its header");
            };
            let name = String::from_utf8_lossy(raw_name).into_owned();
            let encrypted = rar5_extra_has(head, head_end, extra_size, 1);
            opened.encrypted |= encrypted;
            let is_dir = file_flags & 0x0001 != 0;
            let split = flags & 0x0018 != 0;
            let method = (compression >> 7) & 7;
            if !is_dir {
                let stored = (method == 0 && !split && file_flags & 0x0008 == 0)
                    .then(|| data.get(head_end..next))
                    .flatten()
                    .filter(|d| d.len() as u64 == unpacked);
                let size = if file_flags & 0x0008 != 0 {
                    0
                } else {
                    unpacked
                };
                // Bits 10-14 of the compression information: a 128 KiB << n
                // dictionary (n above 15 only from RAR 7, which libarchive lacks).
                let dictionary = if method == 0 {
                    0
                } else {
                    (128u64 * 1024)
                        .checked_shl(((compression >> 10) & 0x1F) as u32)
                        .unwrap_or(u64::MAX)
                };
                let file = FileHeader {
                    name,
                    size,
                    encrypted,
                    stored,
                    dictionary,
                };
                if !on_file(budget, file, opened) {
                    return End;
                }
            }
        }
        _ => {}
    }
    Next(next)
}

/// True when the extra area at the end of a RAR 5 header holds a record of
/// `wanted` type.
fn rar5_extra_has(head: &[u8], head_end: usize, extra_size: u64, wanted: u64) -> bool {
    let Some(mut pos) = usize::try_from(extra_size)
        .ok()
        .and_then(|s| head_end.checked_sub(s))
    else {
        return false;
    };
    let mut records = 0;
    while pos < head_end && records < 64 {
        records += 1;
        let Some(size) = vint(head, &mut pos) else {
            return false;
        };
        let record_start = pos;
        let Some(kind) = vint(head, &mut pos) else {
            return false;
        };
        if kind == wanted {
            return true;
        }
        match usize::try_from(size)
            .ok()
            .and_then(|s| record_start.checked_add(s))
        {
            Some(n) if n > record_start => pos = n,
            _ => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vints() {
        let mut p = 0;
        assert_eq!(vint(&[0x05], &mut p), Some(5));
        let mut p = 0;
        assert_eq!(vint(&[0x80 | 0x01, 0x02], &mut p), Some(1 | (2 << 7)));
        let mut p = 0;
        assert_eq!(vint(&[0xFF; 12], &mut p), None);
    }

    use crate::inspect::budget::Budget;
    use crate::inspect::file::inspect_file;
    use crate::inspect::{ExecKind, FileFacts, FileKind};
    use crate::policy::LimitsSection;

    fn pe() -> Vec<u8> {
        let mut d = vec![0u8; 256];
        d[..2].copy_from_slice(b"MZ");
        d[0x3C] = 0x80;
        d[0x80..0x84].copy_from_slice(b"PE\0\0");
        d
    }

    fn run(data: &[u8]) -> Vec<FileFacts> {
        let mut b = Budget::new(&LimitsSection::default());
        let mut out = Vec::new();
        inspect_file(vec!["x.rar".into()], None, data, 0, &mut b, &mut out);
        out
    }

    fn v(mut n: u64) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let b = (n & 0x7F) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                return out;
            }
            out.push(b | 0x80);
        }
    }

    fn rar5_block(body: &[u8], data: &[u8]) -> Vec<u8> {
        let mut header = v(body.len() as u64);
        header.extend(body);
        let mut b = crc32fast::hash(&header).to_le_bytes().to_vec();
        b.extend(header);
        b.extend(data);
        b
    }

    /// A RAR 4 block with its header CRC (the low half of the CRC32 of the
    /// header after the CRC field).
    fn rar4_block(mut header: Vec<u8>) -> Vec<u8> {
        let crc = crc32fast::hash(&header[2..]) as u16;
        header[..2].copy_from_slice(&crc.to_le_bytes());
        header
    }

    /// A RAR 5 archive with one file; `method` 0 is stored.
    fn rar5(name: &str, data: &[u8], method: u64, encrypted: bool) -> Vec<u8> {
        let mut out = RAR5_MARKER.to_vec();
        out.extend(rar5_block(&[1, 0, 0], &[])); // main header
        let mut extra = Vec::new();
        if encrypted {
            let record = [1u8, 0, 0]; // type 1 (encryption), version 0, flags 0
            extra.extend(v(record.len() as u64));
            extra.extend(record);
        }
        let mut body = v(2); // file header
        body.extend(v(0x0002 | if encrypted { 0x0001 } else { 0 }));
        if encrypted {
            body.extend(v(extra.len() as u64));
        }
        body.extend(v(data.len() as u64));
        body.extend(v(0)); // file flags
        body.extend(v(data.len() as u64));
        body.extend(v(0x20)); // attributes
        body.extend(v(method << 7));
        body.extend(v(0)); // host OS
        body.extend(v(name.len() as u64));
        body.extend(name.as_bytes());
        body.extend(&extra);
        out.extend(rar5_block(&body, data));
        out.extend(rar5_block(&[5, 0, 0], &[])); // end of archive
        out
    }

    /// A RAR 4 archive with one file; method 0x30 is stored.
    fn rar4(name: &str, data: &[u8], method: u8, flags: u16) -> Vec<u8> {
        let mut out = RAR4_MARKER.to_vec();
        out.extend(rar4_block(vec![0, 0, 0x73, 0, 0, 13, 0, 0, 0, 0, 0, 0, 0]));
        let head_size = 32 + name.len() as u16;
        let mut head = vec![0, 0, 0x74];
        head.extend((flags | 0x8000).to_le_bytes());
        head.extend(head_size.to_le_bytes());
        head.extend((data.len() as u32).to_le_bytes());
        head.extend((data.len() as u32).to_le_bytes());
        head.push(2); // host OS
        head.extend(crc32fast::hash(data).to_le_bytes());
        head.extend([0u8; 4]); // time
        head.push(29);
        head.push(method);
        head.extend((name.len() as u16).to_le_bytes());
        head.extend([0x20, 0, 0, 0]);
        head.extend(name.as_bytes());
        out.extend(rar4_block(head));
        out.extend(data);
        out.extend(rar4_block(vec![0, 0, 0x7B, 0, 0x40, 7, 0]));
        out
    }

    #[test]
    fn stored_rar_entries_are_inspected_by_content() {
        for archive in [
            rar5("invoice.pdf", &pe(), 0, false),
            rar4("invoice.pdf", &pe(), 0x30, 0),
        ] {
            let facts = run(&archive);
            assert_eq!(facts.len(), 2, "{facts:#?}");
            assert_eq!(facts[1].name.as_deref(), Some("invoice.pdf"));
            assert_eq!(facts[1].kind, FileKind::Executable(ExecKind::Pe));
            assert!(!facts[0].encrypted);
        }
    }

    #[test]
    fn compressed_rar_entries_that_do_not_decode_are_uninspectable() {
        for archive in [
            rar5("a.txt", &pe(), 3, false),
            rar4("a.txt", &pe(), 0x33, 0),
        ] {
            let facts = run(&archive);
            let reason = facts[0].uninspectable.as_deref().unwrap_or_default();
            assert!(reason.starts_with("damaged rar archive"), "{facts:#?}");
        }
    }

    #[test]
    fn dictionary_over_the_limit_is_refused_from_the_header() {
        // RAR 5 compression information: method 3, dictionary 128 KiB << 11 = 256 MiB.
        let archive = rar5("a.txt", &pe(), 3 | (11 << 3), false);
        let mut b = Budget::new(&LimitsSection::default());
        let survey = survey(ArchiveKind::Rar5, &archive, &mut b);
        assert_eq!(survey.dictionary, 256 * 1024 * 1024);
        let facts = run(&archive);
        let reason = facts[0].uninspectable.as_deref().unwrap_or_default();
        assert!(reason.contains("decoder memory"), "{facts:#?}");
        assert_eq!(facts[1].name.as_deref(), Some("a.txt"));
    }

    #[test]
    fn encrypted_stored_rar_entries_are_not_read() {
        for archive in [
            rar5("a.txt", &pe(), 0, true),
            rar4("a.txt", &pe(), 0x30, 0x0004),
        ] {
            let facts = run(&archive);
            assert!(facts[0].encrypted, "{facts:#?}");
            assert!(facts[1].encrypted);
            assert!(!matches!(facts[1].kind, FileKind::Executable(_)));
        }
    }

    #[test]
    fn rar4_directories_use_slashes() {
        let facts = run(&rar4("dir\\sub\\x.txt", b"hi", 0x30, 0));
        assert_eq!(facts[1].name.as_deref(), Some("dir/sub/x.txt"));
    }

    #[test]
    fn rar4_unicode_name_falls_back_to_oem() {
        assert_eq!(decode_rar4_unicode(b"abc"), "abc");
        assert_eq!(decode_rar4_unicode(b"abc\0"), "abc");
    }
}
