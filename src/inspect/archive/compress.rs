//! Single-stream compressors: gzip (flate2), bzip2 (bzip2, pure-Rust backend), xz
//! (lzma-rust2). The decompressed stream is the one entry, named after the file
//! (`a.tar.gz` → `a.tar`, `b.tgz` → `b.tar`) or `(unnamed)`. Concatenated
//! streams are read whole, as gunzip/bunzip2/unxz do.

use std::io::{Cursor, Read};

use flate2::read::MultiGzDecoder;

use super::{
    DECODER_MEMORY_LIMIT, Opened, Sink, deliver, format_name, listed_after_bomb, read_capped,
};
use crate::inspect::ArchiveKind;
use crate::inspect::file::Budget;

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
    let entry = entry_name(kind, name);
    if let Err(reason) = budget.take_entry() {
        opened.problem(reason);
        return opened;
    }
    if listed_after_bomb(&entry, 0, &mut opened, budget, sink) {
        return opened;
    }
    let mut reader: Box<dyn Read + '_> = match kind {
        ArchiveKind::Gzip => Box::new(MultiGzDecoder::new(Cursor::new(data))),
        ArchiveKind::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(Cursor::new(data))),
        ArchiveKind::Xz => Box::new(lzma_rust2::XzReader::new_mem_limit(
            Cursor::new(data),
            true,
            u32::try_from(DECODER_MEMORY_LIMIT / 1024).unwrap_or(u32::MAX),
        )),
        _ => return opened,
    };
    let unpacked = read_capped(&mut reader, data.len() as u64, &entry, budget);
    drop(reader);
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

#[cfg(test)]
mod tests {
    use super::*;

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
