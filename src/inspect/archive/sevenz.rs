//! 7z via `sevenz-rust2`, opened with an empty password so that encryption shows:
//! - encrypted headers (`-mhe=on`): the header is an EncodedHeader whose coder is
//!   AES-256 (06F10701); reading it without a password fails with
//!   `PasswordRequired` — the archive is encrypted, its names are unknown;
//! - encrypted content: a folder (block) whose coders include AES; its files are
//!   listed (the names are visible) and marked encrypted, their data is not read.
//!
//! A header that is only compressed (LZMA, the 7-Zip default) decodes without a
//! password and is not encrypted. Decoders are held to [`DECODER_MEMORY_LIMIT`].

use std::io::Cursor;

use sevenz_rust2::{Archive, BlockDecoder, EncoderMethod, Error, Password};

use super::{
    DECODER_MEMORY_LIMIT, Entry, Opened, Sink, deliver, listed_after_bomb, precheck, read_capped,
};
use crate::inspect::budget::Budget;

fn is_password_error(e: &Error) -> bool {
    match e {
        Error::PasswordRequired | Error::MaybeBadPassword(_) => true,
        Error::UnsupportedCompressionMethod(m) => m.to_ascii_uppercase().contains("AES"),
        _ => false,
    }
}

fn problem_of(e: &Error) -> String {
    match e {
        Error::MaxMemLimited { .. } => format!(
            "7z archive needs more decoder memory than allowed ({} MiB)",
            DECODER_MEMORY_LIMIT / (1024 * 1024)
        ),
        Error::UnsupportedCompressionMethod(m) => {
            format!("7z archive uses a compression method that cannot be unpacked here: {m}")
        }
        other => format!("damaged 7z archive: {other}"),
    }
}

pub fn open(data: &[u8], budget: &mut Budget, sink: &mut Sink<'_>) -> Opened {
    let mut opened = Opened::default();
    let password = Password::empty();
    let mem_kb = DECODER_MEMORY_LIMIT / 1024;
    let mut source = Cursor::new(data);
    let archive = match Archive::read_with_memory_limit(&mut source, &password, mem_kb) {
        Ok(a) => a,
        Err(e) if is_password_error(&e) => {
            opened.encrypted = true;
            return opened;
        }
        Err(e) => {
            opened.problem(problem_of(&e));
            return opened;
        }
    };

    let encrypted_block: Vec<bool> = archive
        .blocks
        .iter()
        .map(|b| {
            b.coders
                .iter()
                .any(|c| c.encoder_method_id() == EncoderMethod::ID_AES256_SHA256)
        })
        .collect();
    opened.encrypted = encrypted_block.iter().any(|e| *e);

    // The declared total against the whole archive: a bomb shows before decoding.
    let packed_total = data.len() as u64;

    // Files without data (empty files) and files of encrypted blocks: listed only.
    for (index, file) in archive.files.iter().enumerate() {
        if file.is_directory() || file.is_anti_item() {
            continue;
        }
        let block = archive
            .stream_map
            .file_block_index
            .get(index)
            .copied()
            .flatten();
        let encrypted = block.is_some_and(|b| encrypted_block.get(b).copied().unwrap_or(false));
        if block.is_some() && !encrypted {
            continue;
        }
        if let Err(reason) = budget.take_entry() {
            opened.problem(reason);
            return opened;
        }
        sink(
            budget,
            Entry {
                name: file.name().to_string(),
                size: file.size(),
                encrypted,
                data: if encrypted { None } else { Some(&[]) },
                note: None,
            },
        );
    }

    let mut stop = false;
    for (block_index, encrypted) in encrypted_block.iter().enumerate() {
        if *encrypted {
            continue;
        }
        if stop {
            break;
        }
        let decoder = BlockDecoder::new_with_memory_limit(
            1,
            mem_kb,
            block_index,
            &archive,
            &password,
            &mut source,
        );
        // Entries with data of this block seen so far, to list the rest by name
        // when the block is abandoned (a limit hit inside a solid block).
        let mut seen = 0usize;
        let mut abandoned = false;
        let result = decoder.for_each_entries(&mut |entry, reader| {
            seen += 1;
            if entry.is_directory() || entry.is_anti_item() {
                return Ok(true);
            }
            if let Err(reason) = budget.take_entry() {
                opened.problem(reason);
                stop = true;
                return Ok(false);
            }
            let name = entry.name().to_string();
            let declared = entry.size();
            if listed_after_bomb(&name, declared, &mut opened, budget, sink) {
                // Later entries of a solid block would need this one decoded.
                abandoned = true;
                return Ok(false);
            }
            if let Some(reason) = precheck(declared, packed_total, &name, budget) {
                opened.problem(reason.clone());
                let prefix = super::read_prefix(reader, budget);
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
                // The rest of a solid block would have to be decoded through this
                // entry: skip it (the archive is already reported).
                abandoned = true;
                return Ok(false);
            }
            let unpacked = read_capped(reader, packed_total, &name, budget);
            let limited = unpacked.limit.is_some() || unpacked.error.is_some();
            deliver(
                name,
                declared,
                unpacked,
                "7z archive",
                &mut opened,
                budget,
                sink,
            );
            if budget.timed_out() {
                stop = true;
            }
            abandoned |= limited;
            Ok(!limited && !stop)
        });
        if abandoned && !stop {
            let first = archive
                .stream_map
                .block_first_file_index
                .get(block_index)
                .copied()
                .unwrap_or(usize::MAX);
            // The closure saw the first `seen` files with data from `first` on.
            let rest = archive
                .files
                .iter()
                .enumerate()
                .skip(first)
                .filter(|(_, f)| f.has_stream)
                .nth(seen.saturating_sub(1))
                .map_or(usize::MAX, |(i, _)| i.saturating_add(1));
            for (index, file) in archive.files.iter().enumerate().skip(rest) {
                let in_block = archive
                    .stream_map
                    .file_block_index
                    .get(index)
                    .copied()
                    .flatten()
                    == Some(block_index);
                if !in_block || file.is_directory() || file.is_anti_item() {
                    continue;
                }
                if let Err(reason) = budget.take_entry() {
                    opened.problem(reason);
                    break;
                }
                let note = opened
                    .uninspectable
                    .clone()
                    .unwrap_or_else(|| "not unpacked".to_string());
                sink(
                    budget,
                    Entry {
                        name: file.name().to_string(),
                        size: file.size(),
                        encrypted: false,
                        data: None,
                        note: Some(note),
                    },
                );
            }
        }
        if let Err(e) = result {
            if is_password_error(&e) {
                opened.encrypted = true;
            } else {
                opened.problem(problem_of(&e));
            }
        }
    }
    opened
}
