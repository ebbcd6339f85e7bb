//! Archives behind other data, found as 7-Zip finds them: by their signatures
//! anywhere in a file that is not an archive at its start (a picture or a PDF
//! with a 7z appended opens in 7-Zip, which looks past the start when the file
//! is not an archive there).
//!
//! A candidate counts only when its header checks out: a 7z start header's
//! CRC and the next header inside the file, a RAR main header's CRC, a zip's
//! end record that the `zip` crate reads (a zip with other data after it, past
//! where the end record is looked for at the end of the file). A candidate that
//! does not is ignored, never reported: signatures turn up by chance in
//! compressed data. The search is one pass over the file and looks at a
//! bounded number of candidates of each signature ([`find`]).
//!
//! Not done: a zip without its central directory, which 7-Zip can still list
//! from its local headers.

use std::io::Cursor;
use std::ops::Range;
use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, MatchKind};

use crate::inspect::ArchiveKind;

/// Candidates of each signature checked, at most.
const MAX_CANDIDATES: usize = 32;
/// Zip end records tried with the `zip` crate (each reads a central directory):
/// the last ones in the file.
const MAX_ZIP_TRIES: usize = 4;

const SEVEN_ZIP: &[u8] = &[b'7', b'z', 0xBC, 0xAF, 0x27, 0x1C];
const RAR: &[u8] = b"Rar!\x1a\x07";
const ZIP_END: &[u8] = b"PK\x05\x06";
/// Shorter than any archive with an entry in it, behind one byte of other data.
const MIN_LEN: usize = 21;

/// The three signatures, searched for together with aho-corasick's SIMD
/// (Teddy) search, which it uses for leftmost matching (built once).
static SIGNATURES: LazyLock<AhoCorasick> = LazyLock::new(|| {
    AhoCorasick::builder()
        .match_kind(MatchKind::LeftmostFirst)
        .build([SEVEN_ZIP, RAR, ZIP_END])
        .expect("three short literal patterns")
});

/// The first archive behind other data in `data` (which is not an archive at
/// its start): its format and where it lies. A 7z or RAR found in the file
/// comes first; else a zip, by the last end records in the file.
///
/// One pass over the file for the three signatures at once. The search is
/// what this costs: `scan` of a message with a 10 MB attachment of
/// random-looking bytes (what compressed data looks like) takes 1.6 % more CPU
/// with aho-corasick's SIMD search; a substring search per signature took 14 %,
/// a search for their first bytes 10 %.
pub fn find(data: &[u8]) -> Option<(ArchiveKind, Range<usize>)> {
    if data.len() < MIN_LEN {
        return None;
    }
    let (mut seven_zips, mut rars, mut zips) = (0, 0, 0);
    // The last zip end records seen, in a ring.
    let mut zip_ends = [None; MAX_ZIP_TRIES];
    for found in SIGNATURES.find_iter(data) {
        let at = found.start();
        if at == 0 {
            continue;
        }
        let rest = &data[at..];
        if rest.starts_with(SEVEN_ZIP) && seven_zips < MAX_CANDIDATES {
            seven_zips += 1;
            if is_seven_zip(rest) {
                return Some((ArchiveKind::SevenZip, at..data.len()));
            }
        } else if rest.starts_with(RAR) && rars < MAX_CANDIDATES {
            rars += 1;
            if let Some(kind) = rar_kind(rest) {
                return Some((kind, at..data.len()));
            }
        } else if rest.starts_with(ZIP_END) {
            zip_ends[zips % MAX_ZIP_TRIES] = Some(at);
            zips += 1;
        }
    }
    let mut zip_ends: Vec<usize> = zip_ends.into_iter().flatten().collect();
    zip_ends.sort_unstable_by(|a, b| b.cmp(a));
    zip_ends
        .into_iter()
        .find_map(|at| zip_ending_at(data, at).map(|end| (ArchiveKind::Zip, 0..end)))
}

/// A 7z signature header: its CRC over the 20 bytes after it, and the next
/// header (offset and size from the end of the 32-byte start header) inside
/// the data.
fn is_seven_zip(data: &[u8]) -> bool {
    let Some(start) = data.get(..32) else {
        return false;
    };
    let stated = u32::from_le_bytes([start[8], start[9], start[10], start[11]]);
    if crc32(&start[12..32]) != stated {
        return false;
    }
    let offset = u64::from_le_bytes(start[12..20].try_into().unwrap_or_default());
    let size = u64::from_le_bytes(start[20..28].try_into().unwrap_or_default());
    size > 0
        && offset
            .checked_add(size)
            .and_then(|n| n.checked_add(32))
            .is_some_and(|end| end <= data.len() as u64)
}

/// RAR 4 (a main header of type 0x73 whose CRC16 checks) or RAR 5 (a main
/// header, type 1, whose CRC32 checks) at the start of `data`.
fn rar_kind(data: &[u8]) -> Option<ArchiveKind> {
    if let Some(rest) = data.strip_prefix(b"Rar!\x1a\x07\x00") {
        let header = rest.get(..7)?;
        let size = usize::from(u16::from_le_bytes([header[5], header[6]]));
        let stated = u16::from_le_bytes([header[0], header[1]]);
        let checked = rest.get(2..size.max(7))?;
        return (header[2] == 0x73 && crc32(checked) as u16 == stated).then_some(ArchiveKind::Rar4);
    }
    let rest = data.strip_prefix(b"Rar!\x1a\x07\x01\x00")?;
    let stated = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?);
    // Header size: a variable-length integer of at most 3 bytes here (a main
    // header is a few dozen bytes).
    let mut size = 0usize;
    let mut at = 4;
    loop {
        let byte = *rest.get(at)?;
        size |= usize::from(byte & 0x7F) << (7 * (at - 4));
        at += 1;
        if byte & 0x80 == 0 {
            break;
        }
        if at - 4 == 3 {
            return None;
        }
    }
    let header = rest.get(4..at.checked_add(size)?)?;
    let kind = *rest.get(at)?;
    (kind == 1 && crc32(header) == stated).then_some(ArchiveKind::Rar5)
}

/// The end of a zip whose end record is at `at` (after its comment), when the
/// `zip` crate reads the archive that ends there and it lists an entry.
fn zip_ending_at(data: &[u8], at: usize) -> Option<usize> {
    let comment = usize::from(u16::from_le_bytes([
        *data.get(at + 20)?,
        *data.get(at + 21)?,
    ]));
    let end = at.checked_add(22)?.checked_add(comment)?;
    let whole = data.get(..end)?;
    // An empty zip (an end record and nothing else) is too easily made by chance.
    zip::ZipArchive::new(Cursor::new(whole))
        .ok()
        .filter(|zip| !zip.is_empty())
        .map(|_| end)
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(bytes);
    crc.sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/fixtures/archives/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn archives_behind_junk_are_found_where_they_start() {
        let junk = b"\x89PNG\r\n\x1a\n not an archive ".repeat(40);
        for (name, kind) in [
            ("plain.7z", ArchiveKind::SevenZip),
            ("rar3-plain.rar", ArchiveKind::Rar4),
            ("rar5-plain.rar", ArchiveKind::Rar5),
        ] {
            let data = [junk.as_slice(), &fixture(name)].concat();
            assert_eq!(find(&data), Some((kind, junk.len()..data.len())), "{name}");
        }
        // A zip with junk after it, past where its end record is looked for.
        let zip = fixture("exe-in.zip");
        let data = [junk.as_slice(), &zip, &vec![b'x'; 70_000]].concat();
        assert_eq!(
            find(&data),
            Some((ArchiveKind::Zip, 0..junk.len() + zip.len()))
        );
    }

    #[test]
    fn signatures_whose_headers_do_not_check_out_are_ignored() {
        let mut data = b"junk".to_vec();
        data.extend(SEVEN_ZIP);
        data.extend([0u8; 40]);
        data.extend(b"Rar!\x1a\x07\x00");
        data.extend([0x73u8; 20]);
        data.extend(b"Rar!\x1a\x07\x01\x00\xff\xff\xff\xff\x05\x01\x00\x00\x00\x00");
        data.extend(ZIP_END);
        data.extend([0u8; 18]);
        assert_eq!(find(&data), None);
        // A 7z whose next header lies past the end: cut short.
        let seven = fixture("plain.7z");
        let cut = [b"junk".as_slice(), &seven[..seven.len() - 10]].concat();
        assert_eq!(find(&cut), None);
        assert_eq!(find(b""), None);
    }
}
