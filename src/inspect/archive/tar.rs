//! Tar (ustar, pax, GNU, v7) via the `tar` crate; entries are stored, so the
//! ratio is 1 and only the byte budget and entry count bound the work. A stored
//! entry's bytes are a slice of the archive, handed on as they are (nothing is
//! copied); only GNU sparse files are unpacked.

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
        if !matches!(
            kind,
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse
        ) {
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
        let slice = match (kind, start) {
            (EntryType::Regular | EntryType::Continuous, Some(start)) => usize::try_from(declared)
                .ok()
                .and_then(|len| data.get(start..start.checked_add(len)?)),
            _ => None,
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
