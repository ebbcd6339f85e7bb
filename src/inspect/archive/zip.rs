//! Zip (and zip-based documents, jar): via the `zip` crate, which reads the
//! central directory (zip64 included) and follows data descriptors.
//!
//! Encryption: the general-purpose flag bit 0 (ZipCrypto, and set on AES entries
//! too), the AES extra field (0x9901), or compression method 99 — on any entry.
//! Overlapping entries (several central-directory entries sharing local data, the
//! trick of non-recursive zip bombs) are not unpacked: the archive is reported.
//!
//! The central directory the `zip` crate keeps, and our list of entries, are held
//! from the message's memory budget: about 180 bytes per entry plus its name
//! there (measured with a counting allocator), the name again here.

use std::io::Cursor;

use zip::result::ZipError;
use zip::{CompressionMethod, HasZipMetadata, ZipArchive};

use super::{
    Entry, Keep, Opened, Sink, deliver, deliver_prefix, listed_after_bomb, precheck, read_entry,
    read_prefix,
};
use crate::inspect::budget::Budget;

/// Memory one entry's metadata takes, the `zip` crate's and ours, besides its
/// name (counted twice).
const ENTRY_MEMORY: u64 = 256;

struct Meta {
    name: String,
    size: u64,
    compressed: u64,
    encrypted: bool,
    is_dir: bool,
}

fn damaged(e: &ZipError) -> String {
    format!("damaged zip archive: {e}")
}

pub fn open(data: &[u8], budget: &mut Budget, sink: &mut Sink<'_>) -> Opened {
    let mut listing = 0;
    let opened = entries(data, budget, sink, &mut listing);
    budget.release(listing);
    opened
}

/// Opens the archive and hands its entries to the sink; `listing` is the memory
/// of its metadata, held from the budget.
fn entries(data: &[u8], budget: &mut Budget, sink: &mut Sink<'_>, listing: &mut u64) -> Opened {
    let mut opened = Opened::default();
    let mut archive = match ZipArchive::new(Cursor::new(data)) {
        Ok(a) => a,
        Err(e) => {
            opened.problem(damaged(&e));
            return opened;
        }
    };

    // Every entry's metadata first: encryption on any entry marks the archive,
    // even past the entry limit.
    let mut metas = Vec::new();
    for i in 0..archive.len() {
        if let Err(reason) = budget.check_limits() {
            opened.problem(reason);
            return opened;
        }
        match archive.by_index_raw(i) {
            Ok(file) => {
                let meta = file.get_metadata();
                let encrypted = file.encrypted()
                    || meta.aes_settings().is_some()
                    || file.compression() == CompressionMethod::Aes;
                opened.encrypted |= encrypted;
                let name = file
                    .name()
                    .map(|n| n.into_owned())
                    .unwrap_or_else(|_| String::from_utf8_lossy(file.name_raw()).into_owned());
                let memory = ENTRY_MEMORY + 2 * name.len() as u64;
                if let Err(reason) = budget.hold(memory) {
                    opened.problem(reason);
                    return opened;
                }
                *listing += memory;
                metas.push(Meta {
                    name,
                    size: file.size(),
                    compressed: file.compressed_size(),
                    encrypted,
                    is_dir: file.is_dir(),
                });
            }
            Err(e) => {
                opened.problem(damaged(&e));
                break;
            }
        }
    }

    let overlap = match archive.has_overlapping_entries() {
        Ok(false) => None,
        Ok(true) => Some(
            "overlapping zip entries (entries share their data: a zip bomb); not unpacked"
                .to_string(),
        ),
        Err(e) => Some(damaged(&e)),
    };
    if let Some(reason) = &overlap {
        opened.problem(reason.clone());
        budget.set_bomb(reason);
    }

    for (index, meta) in metas.into_iter().enumerate() {
        if meta.is_dir {
            continue;
        }
        if let Err(reason) = budget.take_entry() {
            opened.problem(reason);
            break;
        }
        if overlap.is_none()
            && !meta.encrypted
            && listed_after_bomb(&meta.name, meta.size, &mut opened, budget, sink)
        {
            continue;
        }
        if meta.encrypted || overlap.is_some() {
            sink(
                budget,
                Entry {
                    name: meta.name,
                    size: meta.size,
                    encrypted: meta.encrypted,
                    data: None,
                    tail: None,
                    sha256: None,
                    note: if meta.encrypted {
                        None
                    } else {
                        overlap.clone()
                    },
                },
            );
            continue;
        }
        if let Some(reason) = precheck(meta.size, meta.compressed, &meta.name, budget) {
            let prefix = match archive.by_index(index) {
                Ok(mut file) => read_prefix(&mut file, budget),
                Err(_) => Default::default(),
            };
            deliver_prefix(
                meta.name,
                meta.size,
                reason,
                prefix,
                &mut opened,
                budget,
                sink,
            );
            continue;
        }
        let mut keep = Keep::AsNeeded;
        let unpacked = loop {
            let unpacked = match archive.by_index(index) {
                Ok(mut file) => read_entry(&mut file, meta.compressed, &meta.name, keep, budget),
                Err(e) => break Err(e),
            };
            if !unpacked.wants_whole {
                break Ok(unpacked);
            }
            // Its end showed a zip behind other data: read it again, whole.
            budget.refund_bytes(unpacked.total);
            unpacked.discard(budget);
            keep = Keep::Whole;
        };
        let unpacked = match unpacked {
            Ok(u) => u,
            Err(e) => {
                let reason = match e {
                    ZipError::UnsupportedArchive(what) => {
                        format!("zip entry '{}' cannot be unpacked: {what}", meta.name)
                    }
                    other => format!("damaged zip archive: entry '{}': {other}", meta.name),
                };
                opened.problem(reason.clone());
                sink(
                    budget,
                    Entry {
                        name: meta.name,
                        size: meta.size,
                        encrypted: false,
                        data: None,
                        tail: None,
                        sha256: None,
                        note: Some(reason),
                    },
                );
                continue;
            }
        };
        deliver(
            meta.name,
            meta.size,
            unpacked,
            "zip archive",
            &mut opened,
            budget,
            sink,
        );
        if budget.exhausted() {
            break;
        }
    }
    opened
}
