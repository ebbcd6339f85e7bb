//! Single-stream compressors: gzip (flate2), bzip2 (bzip2, pure-Rust backend), xz
//! (lzma-rust2). The decompressed stream is the one entry, named by the name a
//! gzip header stores (FNAME: `gzip` stores it unless told `-n`; 7-Zip and
//! WinRAR extract under it, so `invoice.pdf.gz` may well unpack as
//! `update.bat`), else after the file (`a.tar.gz` → `a.tar`, `b.tgz` →
//! `b.tar`) or `(unnamed)`. A stored name differing from the file's leaves
//! `gunzip`'s name unchecked; what the stream holds is typed by content either
//! way. Concatenated
//! streams (members) are read whole, and bytes after the last member that do not
//! start another one (tape padding, zeros) are ignored — as gunzip, bunzip2 and
//! unxz do, so a padded .tar.gz is not "damaged".

use std::io::{self, Cursor, Read};

use super::{
    DECODER_MEMORY_LIMIT, Keep, Opened, Sink, deliver, format_name, listed_after_bomb,
    lzma2_dictionary, read_entry,
};
use crate::inspect::ArchiveKind;
use crate::inspect::budget::Budget;

/// The entry's name: the archive's name without its compression suffix.
pub fn entry_name(kind: ArchiveKind, name: Option<&str>) -> String {
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        return "(unnamed)".to_string();
    };
    let lower = name.to_ascii_lowercase();
    let (strip, tar): (&[&str], &[&str]) = match kind {
        ArchiveKind::Gzip => (&[".gz", ".gzip", ".z"], &[".tgz", ".taz"]),
        ArchiveKind::Bzip2 => (&[".bz2", ".bz", ".bzip2"], &[".tbz2", ".tbz", ".tb2"]),
        ArchiveKind::Xz => (&[".xz"], &[".txz"]),
        _ => (&[], &[]),
    };
    for s in tar {
        if lower.ends_with(s) && name.is_char_boundary(name.len() - s.len()) {
            return format!("{}.tar", &name[..name.len() - s.len()]);
        }
    }
    for s in strip {
        if lower.ends_with(s) && name.len() > s.len() && name.is_char_boundary(name.len() - s.len())
        {
            return name[..name.len() - s.len()].to_string();
        }
    }
    "(unnamed)".to_string()
}

pub fn open(
    kind: ArchiveKind,
    name: Option<&str>,
    data: &[u8],
    budget: &mut Budget,
    sink: &mut Sink<'_>,
) -> Opened {
    let mut opened = Opened::default();
    let stored = (kind == ArchiveKind::Gzip)
        .then(|| gzip_stored_name(data))
        .flatten();
    let entry = stored.unwrap_or_else(|| entry_name(kind, name));
    if let Err(reason) = budget.take_entry() {
        opened.problem(reason);
        return opened;
    }
    if listed_after_bomb(&entry, 0, &mut opened, budget, sink) {
        return opened;
    }
    let decoder_memory = match kind {
        ArchiveKind::Gzip => GZIP_DECODER_MEMORY,
        ArchiveKind::Bzip2 => BZIP2_DECODER_MEMORY,
        ArchiveKind::Xz => xz_decoder_memory(data),
        _ => return opened,
    };
    if let Err(reason) = budget.hold(decoder_memory) {
        opened.problem(reason);
        return opened;
    }
    let mut keep = Keep::AsNeeded;
    let unpacked = loop {
        let mut reader = decoder(kind, data, decoder_memory);
        let unpacked = read_entry(&mut reader, data.len() as u64, &entry, keep, budget);
        if !unpacked.wants_whole {
            break unpacked;
        }
        // Its end showed a zip behind other data: unpacked again, whole.
        budget.refund_bytes(unpacked.total);
        unpacked.discard(budget);
        keep = Keep::Whole;
    };
    budget.release(decoder_memory);
    let what = format!("{} stream", format_name(kind));
    deliver(
        entry,
        unpacked.total,
        unpacked,
        &what,
        &mut opened,
        budget,
        sink,
    );
    opened
}

/// Longest stored name read from a gzip header (Linux's `PATH_MAX`); a longer
/// one is ignored.
const MAX_STORED_NAME: usize = 4096;

/// The file name stored in a gzip header (FNAME, RFC 1952 section 2.3.1): a
/// zero-terminated name after the optional extra field. RFC 1952 says ISO
/// 8859-1; `gzip` writes the name's bytes as they are, so UTF-8 when it is.
fn gzip_stored_name(data: &[u8]) -> Option<String> {
    const FEXTRA: u8 = 0x04;
    const FNAME: u8 = 0x08;
    if !data.starts_with(&[0x1F, 0x8B, 0x08]) {
        return None;
    }
    let flags = *data.get(3)?;
    if flags & FNAME == 0 {
        return None;
    }
    let mut at = 10;
    if flags & FEXTRA != 0 {
        let extra = usize::from(u16::from_le_bytes([*data.get(10)?, *data.get(11)?]));
        at = 12 + extra;
    }
    let field = data.get(at..)?;
    let field = &field[..field.len().min(MAX_STORED_NAME + 1)];
    let raw = &field[..memchr::memchr(0, field)?];
    let name = match std::str::from_utf8(raw) {
        Ok(text) => text.to_owned(),
        Err(_) => raw.iter().map(|&b| char::from(b)).collect(),
    };
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// Memory of a gzip decoder: its state and 32 KiB window (miniz_oxide), rounded up.
const GZIP_DECODER_MEMORY: u64 = 64 * 1024;

/// Memory of a bzip2 decoder: block size 9 takes 900 k 32-bit words (bzip2's
/// manual: "3.7 MB" for the fast decoder), rounded up.
const BZIP2_DECODER_MEMORY: u64 = 4 * 1024 * 1024;

/// The decoder of a single-stream compressor over `data`; an xz decoder is held to
/// `memory` bytes of dictionary (a later block needing more is refused).
fn decoder<'a>(kind: ArchiveKind, data: &'a [u8], memory: u64) -> Box<dyn Read + 'a> {
    match kind {
        ArchiveKind::Xz => Box::new(lzma_rust2::XzReader::new_mem_limit(
            Cursor::new(data),
            true,
            u32::try_from(memory / 1024).unwrap_or(u32::MAX),
        )),
        _ => Box::new(Members {
            gzip: kind == ArchiveKind::Gzip,
            rest: data,
            current: None,
        }),
    }
}

/// Memory an xz stream's decoder takes, from the LZMA2 dictionary its first
/// block declares (what `xz` writes gives every block the same one), counted as
/// lzma-rust2 counts it; at most [`DECODER_MEMORY_LIMIT`]. A stream whose first
/// block cannot be read is given the smallest dictionary, and fails to decode.
fn xz_decoder_memory(data: &[u8]) -> u64 {
    const STREAM_HEADER: usize = 12;
    const LZMA2: u8 = 0x21;
    let dict = (|| {
        let header_size = (usize::from(*data.get(STREAM_HEADER)?) + 1) * 4;
        let header = data.get(STREAM_HEADER..STREAM_HEADER + header_size)?;
        let flags = *header.get(1)?;
        let filters = usize::from(flags & 0x03) + 1;
        let mut at = 2;
        // Compressed and uncompressed sizes, when present: variable-length integers.
        for present in [flags & 0x40 != 0, flags & 0x80 != 0] {
            if present {
                while *header.get(at)? & 0x80 != 0 {
                    at += 1;
                }
                at += 1;
            }
        }
        let mut dict = None;
        for _ in 0..filters {
            let id = *header.get(at)?;
            let props_len = usize::from(*header.get(at + 1)?);
            if id == LZMA2 && props_len == 1 {
                dict = Some(*header.get(at + 2)?);
            }
            at += 2 + props_len;
        }
        lzma2_dictionary(dict?)
    })()
    .unwrap_or(4096);
    let kib = u64::from(lzma_rust2::lzma2_get_memory_usage(dict));
    (kib * 1024).min(DECODER_MEMORY_LIMIT as u64)
}

/// gzip or bzip2 members one after the other, each decoded by a `bufread`
/// decoder that stops at its member's end and leaves the rest unread.
struct Members<'a> {
    gzip: bool,
    rest: &'a [u8],
    current: Option<Member<'a>>,
}

enum Member<'a> {
    Gz(Box<flate2::bufread::GzDecoder<&'a [u8]>>),
    Bz(Box<bzip2::bufread::BzDecoder<&'a [u8]>>),
}

impl<'a> Members<'a> {
    fn starts_member(&self) -> bool {
        if self.gzip {
            self.rest.starts_with(&[0x1F, 0x8B, 0x08])
        } else {
            self.rest.starts_with(b"BZh")
        }
    }
}

impl Read for Members<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.current.take() {
                Some(mut member) => {
                    let n = match &mut member {
                        Member::Gz(d) => d.read(buf)?,
                        Member::Bz(d) => d.read(buf)?,
                    };
                    if n > 0 || buf.is_empty() {
                        self.current = Some(member);
                        return Ok(n);
                    }
                    let before = self.rest.len();
                    self.rest = match member {
                        Member::Gz(d) => d.into_inner(),
                        Member::Bz(d) => d.into_inner(),
                    };
                    if self.rest.len() >= before {
                        return Ok(0);
                    }
                }
                None => {
                    if !self.starts_member() {
                        return Ok(0);
                    }
                    let rest = self.rest;
                    self.current = Some(if self.gzip {
                        Member::Gz(Box::new(flate2::bufread::GzDecoder::new(rest)))
                    } else {
                        Member::Bz(Box::new(bzip2::bufread::BzDecoder::new(rest)))
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unpack(gzip: bool, data: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        Members {
            gzip,
            rest: data,
            current: None,
        }
        .read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn members_concatenated_and_padding_ignored() {
        use std::io::Write;
        let mut gz = Vec::new();
        for part in [b"hello ".as_slice(), b"world"] {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(part).unwrap();
            gz.extend(e.finish().unwrap());
        }
        gz.extend([0u8; 512]);
        assert_eq!(unpack(true, &gz).unwrap(), b"hello world");
        let mut bz = Vec::new();
        for part in [b"xin ".as_slice(), b"chao"] {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
            e.write_all(part).unwrap();
            bz.extend(e.finish().unwrap());
        }
        bz.extend(b"trailing garbage");
        assert_eq!(unpack(false, &bz).unwrap(), b"xin chao");
        // A damaged member is an error, not silence.
        let mut bad = gz.clone();
        bad.truncate(20);
        assert!(unpack(true, &bad).is_err());
    }

    #[test]
    fn gzip_stored_names() {
        use std::io::Write;
        let gz = |name: Option<&[u8]>, extra: Option<&[u8]>| {
            let mut b = flate2::GzBuilder::new();
            if let Some(n) = name {
                b = b.filename(n);
            }
            if let Some(e) = extra {
                b = b.extra(e);
            }
            let mut e = b.write(Vec::new(), flate2::Compression::default());
            e.write_all(b"@echo off").unwrap();
            e.finish().unwrap()
        };
        assert_eq!(
            gzip_stored_name(&gz(Some(b"update.bat"), None)).as_deref(),
            Some("update.bat")
        );
        assert_eq!(
            gzip_stored_name(&gz(Some(b"setup.exe"), Some(b"XX\x02\x00ab"))).as_deref(),
            Some("setup.exe")
        );
        // Not UTF-8: read as ISO 8859-1.
        assert_eq!(
            gzip_stored_name(&gz(Some(b"t\xe0i.exe"), None)).as_deref(),
            Some("tài.exe")
        );
        assert_eq!(gzip_stored_name(&gz(None, None)), None);
        // Cut before its end, or without an end within the limit: no name.
        let cut = gz(Some(b"update.bat"), None);
        assert_eq!(gzip_stored_name(&cut[..15]), None);
        let long = vec![b'a'; MAX_STORED_NAME + 1];
        assert_eq!(gzip_stored_name(&gz(Some(&long), None)), None);
        assert_eq!(gzip_stored_name(b"\x1f\x8b\x08\x08"), None);
    }

    #[test]
    fn names() {
        assert_eq!(entry_name(ArchiveKind::Gzip, Some("a.tar.gz")), "a.tar");
        assert_eq!(entry_name(ArchiveKind::Gzip, Some("b.TGZ")), "b.tar");
        assert_eq!(
            entry_name(ArchiveKind::Bzip2, Some("clam.exe.bz2")),
            "clam.exe"
        );
        assert_eq!(entry_name(ArchiveKind::Xz, Some("x.txz")), "x.tar");
        assert_eq!(entry_name(ArchiveKind::Xz, Some("noext")), "(unnamed)");
        assert_eq!(entry_name(ArchiveKind::Gzip, None), "(unnamed)");
        assert_eq!(
            entry_name(ArchiveKind::Gzip, Some("tài liệu.gz")),
            "tài liệu"
        );
    }
}
