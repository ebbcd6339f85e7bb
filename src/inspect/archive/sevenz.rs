//! 7z via `sevenz-rust2`, opened with an empty password so that encryption shows:
//! - encrypted headers (`-mhe=on`): the header is an EncodedHeader whose coder is
//!   AES-256 (06F10701); reading it without a password fails with
//!   `PasswordRequired` — the archive is encrypted, its names are unknown;
//! - encrypted content: a folder (block) whose coders include AES; its files are
//!   listed (the names are visible) and marked encrypted, their data is not read.
//!
//! A header that is only compressed (LZMA, the 7-Zip default) decodes without a
//! password and is not encrypted. Decoders are held to [`DECODER_MEMORY_LIMIT`],
//! and what a block's decoders take ([`block_memory`]) is held from the
//! message's memory budget while the block is decoded, as is the archive's list
//! of entries.

use std::io::Cursor;

use sevenz_rust2::{Archive, Block, BlockDecoder, EncoderMethod, Error, Password};

use super::{
    DECODER_MEMORY_LIMIT, Entry, Keep, Opened, Sink, deliver, deliver_prefix, listed_after_bomb,
    lzma2_dictionary, precheck, read_entry,
};
use crate::inspect::budget::Budget;

fn is_password_error(e: &Error) -> bool {
    match e {
        Error::PasswordRequired | Error::MaybeBadPassword(_) => true,
        Error::UnsupportedCompressionMethod(m) => m.to_ascii_uppercase().contains("AES"),
        _ => false,
    }
}

/// Memory the archive's header may take while it is read (its decoded bytes,
/// and the dictionary of the coder that packed them), held from the budget
/// meanwhile. 7-Zip packs headers with a 1 MiB dictionary, and a header holds a
/// few dozen bytes per entry.
const HEADER_MEMORY_LIMIT: usize = 16 * 1024 * 1024;

fn problem_of(e: &Error) -> String {
    match e {
        Error::MaxMemLimited { max_kb, .. } => format!(
            "7z archive needs more decoder memory than allowed ({} MiB)",
            max_kb / 1024
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
    let mut source = Cursor::new(data);
    if let Err(reason) = budget.hold(HEADER_MEMORY_LIMIT as u64) {
        opened.problem(reason);
        return opened;
    }
    let read = Archive::read_with_memory_limit(&mut source, &password, HEADER_MEMORY_LIMIT / 1024);
    budget.release(HEADER_MEMORY_LIMIT as u64);
    let archive = match read {
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

    let listing = listing_memory(&archive);
    if let Err(reason) = budget.hold(listing) {
        opened.problem(reason);
        return opened;
    }
    let opened = entries(&archive, data, &mut source, budget, sink, opened);
    budget.release(listing);
    opened
}

/// Memory the archive's list of entries takes.
fn listing_memory(archive: &Archive) -> u64 {
    let names: usize = archive.files.iter().map(|f| f.name.capacity()).sum();
    let entries = archive.files.len() * std::mem::size_of::<sevenz_rust2::ArchiveEntry>();
    (names + entries + archive.blocks.len() * std::mem::size_of::<Block>()) as u64
}

/// Memory the decoders of a block take, as sevenz-rust2 and lzma-rust2 allocate
/// it: LZMA and LZMA2 their dictionary, PPMd its model, bzip2 and deflate their
/// fixed state; filters and copying next to nothing.
pub fn block_memory(block: &Block) -> u64 {
    const SMALL: u64 = 64 * 1024;
    let dictionary = |kib: Option<u32>| kib.map_or(SMALL, |k| u64::from(k) * 1024);
    block
        .coders
        .iter()
        .map(|coder| {
            let props = coder.properties();
            let le32 = |at: usize| {
                props
                    .get(at..at + 4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            };
            match coder.encoder_method_id() {
                EncoderMethod::ID_LZMA => dictionary(le32(1).and_then(|dict| {
                    lzma_rust2::lzma_get_memory_usage_by_props(dict, *props.first()?).ok()
                })),
                EncoderMethod::ID_LZMA2 => dictionary(
                    props
                        .first()
                        .and_then(|b| lzma2_dictionary(*b))
                        .map(lzma_rust2::lzma2_get_memory_usage),
                ),
                EncoderMethod::ID_PPMD => le32(1).map_or(SMALL, u64::from),
                EncoderMethod::ID_BZIP2 => 4 * 1024 * 1024,
                _ => SMALL,
            }
            .min(DECODER_MEMORY_LIMIT as u64)
        })
        .sum()
}

/// Hands every entry of a listed archive to the sink.
fn entries(
    archive: &Archive,
    data: &[u8],
    source: &mut Cursor<&[u8]>,
    budget: &mut Budget,
    sink: &mut Sink<'_>,
    mut opened: Opened,
) -> Opened {
    let password = Password::empty();
    let mem_kb = DECODER_MEMORY_LIMIT / 1024;
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
                tail: None,
                sha256: None,
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
        let memory = archive.blocks.get(block_index).map_or(0, block_memory);
        if let Err(reason) = budget.hold(memory) {
            opened.problem(reason);
            break;
        }
        let decoder = BlockDecoder::new_with_memory_limit(
            1,
            mem_kb,
            block_index,
            archive,
            &password,
            &mut *source,
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
                let prefix = super::read_prefix(reader, budget);
                deliver_prefix(name, declared, reason, prefix, &mut opened, budget, sink);
                // The rest of a solid block would have to be decoded through this
                // entry: skip it (the archive is already reported).
                abandoned = true;
                return Ok(false);
            }
            let mut unpacked = read_entry(reader, packed_total, &name, Keep::AsNeeded, budget);
            if unpacked.wants_whole {
                // A zip behind other data: an entry of a block cannot be read
                // twice, so the sink is told it was streamed (and reports it).
                unpacked.wants_whole = false;
            }
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
            if budget.exhausted() {
                stop = true;
            }
            abandoned |= limited;
            Ok(!limited && !stop)
        });
        budget.release(memory);
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
                        tail: None,
                        sha256: None,
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
