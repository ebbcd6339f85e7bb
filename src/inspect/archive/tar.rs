//! Tar (ustar, pax, GNU, v7) via the `tar` crate; entries are stored, so the
//! ratio is 1 and only the byte budget and entry count bound the work. A stored
//! entry's bytes are a slice of the archive, handed on as they are (nothing is
//! copied); only GNU sparse files are unpacked.
//!
//! Which entries are files is GNU tar's answer ([`extracted_as_file`]): a type
//! flag it does not know is extracted as a regular file ("Unknown file type 'Q',
//! extracted as normal file"), so such an entry is inspected like one.

use std::io::Cursor;

use tar::EntryType;

use super::{
    Keep, Opened, Sink, deliver, deliver_prefix, deliver_slice, listed_after_bomb, precheck,
    read_entry, read_prefix,
};
use crate::inspect::budget::Budget;

pub fn open(data: &[u8], budget: &mut Budget, sink: &mut Sink<'_>) -> Opened {
    let mut opened = Opened::default();
    let mut archive = tar::Archive::new(Cursor::new(data));
    let entries = match archive.entries() {
        Ok(e) => e,
        Err(e) => {
            opened.problem(format!("damaged tar archive: {e}"));
            return opened;
        }
    };
    for entry in entries {
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) => {
                opened.problem(format!("damaged tar archive: {e}"));
                break;
            }
        };
        let kind = entry.header().entry_type();
        if !extracted_as_file(kind) {
            continue;
        }
        if let Err(reason) = budget.take_entry() {
            opened.problem(reason);
            break;
        }
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let declared = entry.size();
        if listed_after_bomb(&name, declared, &mut opened, budget, sink) {
            continue;
        }
        let start = usize::try_from(entry.raw_file_position()).ok();
        // Every file but a sparse one is stored as it is.
        let slice = match (kind, start) {
            (EntryType::GNUSparse, _) | (_, None) => None,
            (_, Some(start)) => usize::try_from(declared)
                .ok()
                .and_then(|len| data.get(start..start.checked_add(len)?)),
        };
        if let Some(reason) = precheck(declared, declared, &name, budget) {
            let prefix = match slice {
                Some(mut bytes) => read_prefix(&mut bytes, budget),
                None => read_prefix(&mut entry, budget),
            };
            deliver_prefix(name, declared, reason, prefix, &mut opened, budget, sink);
            continue;
        }
        match slice {
            Some(bytes) => deliver_slice(name, bytes, budget, sink),
            None => {
                let unpacked = read_entry(&mut entry, declared, &name, Keep::AsNeeded, budget);
                deliver(
                    name,
                    declared,
                    unpacked,
                    "tar archive",
                    &mut opened,
                    budget,
                    sink,
                );
            }
        }
        if budget.exhausted() {
            break;
        }
    }
    opened
}

/// True for the entries GNU tar 1.34 extracts as a file's bytes: regular,
/// contiguous and sparse files, and every type flag it does not know. The types
/// it knows otherwise are links, devices, directories and fifos (`1`-`6`), GNU
/// dump directories (`D`), volume labels (`V`), continuations from another
/// volume (`M`, which it refuses), old GNU name lists (`N`), and the headers that
/// only describe the next entry (`L`, `K`, `x`, `g`, Solaris `X`).
fn extracted_as_file(kind: EntryType) -> bool {
    !matches!(
        kind.as_byte(),
        b'1'..=b'6' | b'D' | b'V' | b'M' | b'N' | b'L' | b'K' | b'x' | b'g' | b'X'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_flags_gnu_tar_extracts_as_files() {
        for flag in [b'0', b'\0', b'7', b'S', b'Q', b'8', b'A', b'z', 0xFF] {
            assert!(extracted_as_file(EntryType::new(flag)), "{flag:#04x}");
        }
        for flag in *b"123456DVMNLKxgX" {
            assert!(!extracted_as_file(EntryType::new(flag)), "{}", flag as char);
        }
    }
}
