//! Tar (ustar, pax, GNU, v7) via the `tar` crate; entries are stored, so the
//! ratio is 1 and only the byte budget and entry count bound the work.

use std::io::Cursor;

use tar::EntryType;

use super::{Entry, Opened, Sink, deliver, listed_after_bomb, precheck, read_capped};
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
        if let Some(reason) = precheck(declared, declared, &name, budget) {
            opened.problem(reason.clone());
            let prefix = super::read_prefix(&mut entry, budget);
            sink(
                budget,
                Entry {
                    name,
                    size: declared,
                    encrypted: false,
                    data: Some(&prefix),
                    note: Some(reason),
                },
            );
            continue;
        }
        let unpacked = read_capped(&mut entry, declared, &name, budget);
        deliver(
            name,
            declared,
            unpacked,
            "tar archive",
            &mut opened,
            budget,
            sink,
        );
        if budget.timed_out() {
            break;
        }
    }
    opened
}
