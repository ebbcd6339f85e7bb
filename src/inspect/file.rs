//! Everything about one file's bytes: its real type, and for an archive (or a
//! zip-based document, or an OLE2 document or message) every entry inside,
//! recursively, within the [`Budget`] (src/inspect/budget.rs).
//!
//! Entries arrive whole only when they must be opened; the others arrive as their
//! first and last bytes (src/inspect/archive/mod.rs) and are typed from those.
//! The facts themselves (paths and names, which a sender chooses) are memory the
//! message holds: [`record`] charges them to the budget.

use std::panic::{AssertUnwindSafe, catch_unwind};

use sha2::{Digest, Sha256};

use super::archive::{self, Entry, Opened};
use super::budget::Budget;
use super::carrier::{self, Carrier};
use super::document::Marks;
use super::filetype::{self, OFFICE_ENCRYPTED};
use super::{ArchiveKind, FileFacts, FileKind};

/// Pushes the facts of this file onto `out` and, when it is an archive, a
/// zip-based document or an OLE2 file, the facts of every entry inside
/// (embedded files and objects, attachments of a .msg), recursively. `path` is
/// where the file sits (attachment name, then entry names, this file's last);
/// `depth` is 0 for an attachment and one more per archive level.
///
/// Never panics on any input, and stops within the budget: what it could not
/// inspect is in `uninspectable`, naming the limit or the damage.
pub fn inspect_file(
    path: Vec<String>,
    name: Option<&str>,
    data: &[u8],
    depth: u32,
    budget: &mut Budget,
    out: &mut Vec<FileFacts>,
) {
    if depth == 0 {
        // A new attachment: a bomb found in the previous one does not stop it.
        budget.bomb = None;
    }
    let mut kind = filetype::classify(data);
    let index = out.len();
    // Once per file: the audit record's hash, and the loop check's below.
    let digest: [u8; 32] = Sha256::digest(data).into();
    let encrypted_doc = kind == FileKind::Document(OFFICE_ENCRYPTED);
    let mut unsupported = None;
    let container = match &kind {
        FileKind::Archive(ArchiveKind::Unsupported(what)) => {
            unsupported = Some(format!("{what} archives cannot be opened here"));
            None
        }
        FileKind::Archive(k) => Some(Container::Archive(*k)),
        // Zip-based documents: their entries are inspected too.
        FileKind::Document(_) if filetype::archive_kind(data) == Some(ArchiveKind::Zip) => {
            Some(Container::Archive(ArchiveKind::Zip))
        }
        // OLE2 documents and messages: embedded objects and attachments.
        FileKind::Document(_) if !encrypted_doc && filetype::is_ole2(data) => Some(Container::Ole2),
        // Files that carry files (PDF, RTF, HTML, BinHex): what they carry too.
        FileKind::Other(_) => carrier::carrier_kind(name, data).map(Container::Carrier),
        _ => None,
    };
    // Not an archive at its start: one behind other data, as 7-Zip finds it
    // (src/inspect/archive/after_prefix.rs), is opened where it lies.
    let mut archive_bytes = data;
    let mut kind_without_archive = None;
    let container = match (container, &kind) {
        (None, FileKind::Other(_)) => archive::after_prefix::find(data).map(|(found, range)| {
            kind_without_archive = Some(std::mem::replace(&mut kind, FileKind::Archive(found)));
            archive_bytes = &data[range];
            Container::Archive(found)
        }),
        (container, _) => container,
    };
    record(
        out,
        FileFacts {
            path,
            name: name.map(str::to_string),
            size: data.len() as u64,
            kind,
            encrypted: encrypted_doc,
            uninspectable: unsupported,
            signature: None,
            macros: false,
            sha256: Some(digest),
            text: None,
        },
        budget,
    );
    if budget.reads_text {
        let text = super::text::read_document(name, &out[index].kind, data, budget);
        out[index].text = text;
    }
    let Some(format) = container else {
        return;
    };
    if depth >= budget.max_depth {
        out[index].uninspectable = Some(budget.depth_reason());
        return;
    }
    if let Err(reason) = budget.check_limits() {
        out[index].uninspectable = Some(reason);
        return;
    }
    if budget.ancestors.contains(&digest) {
        out[index].uninspectable =
            Some("archive contains itself (a loop, like a zip quine)".to_string());
        return;
    }
    budget.ancestors.push(digest);
    let is_zip_document = matches!(
        (&out[index].kind, format),
        (FileKind::Document(_), Container::Archive(ArchiveKind::Zip))
    );

    // Only an archive needs its path again, for its entries.
    let path = out[index].path.clone();
    let mut sink = |budget: &mut Budget, entry: Entry<'_>| {
        let mut entry_path = path.clone();
        let entry_name = if entry.name.is_empty() {
            "(unnamed)".to_string()
        } else {
            entry.name.clone()
        };
        entry_path.push(entry_name.clone());
        let readable = !entry.encrypted && entry.note.is_none();
        let (kind, uninspectable, sha256) = match (entry.data, entry.tail) {
            (Some(bytes), None) if readable => {
                return inspect_file(
                    entry_path,
                    Some(&entry_name),
                    bytes,
                    depth.saturating_add(1),
                    budget,
                    out,
                );
            }
            // Read as a stream: typed by its first and last bytes.
            (Some(prefix), Some(tail)) if readable => {
                let (kind, note) = streamed_kind(prefix, tail, entry.size);
                (kind, note, entry.sha256)
            }
            // Not unpacked, or only a prefix: its type from what there is.
            (prefix, _) => (
                prefix
                    .filter(|p| !p.is_empty())
                    .map(filetype::classify)
                    .unwrap_or_else(|| FileKind::Other("application/octet-stream".into())),
                entry.note.clone(),
                None,
            ),
        };
        let text = match entry.data {
            Some(prefix) if !entry.encrypted => {
                super::text::partial_document(Some(&entry_name), &kind, prefix, budget)
            }
            _ => None,
        };
        record(
            out,
            FileFacts {
                path: entry_path,
                name: Some(entry_name),
                size: entry.size,
                kind,
                encrypted: entry.encrypted,
                uninspectable,
                signature: None,
                macros: false,
                sha256,
                text,
            },
            budget,
        );
    };

    let opened = catch_unwind(AssertUnwindSafe(|| match format {
        Container::Archive(k) => archive::open(k, name, archive_bytes, budget, &mut sink),
        Container::Ole2 => archive::ole::open(data, budget, &mut sink),
        Container::Carrier(c) => carrier::open(c, data, budget, &mut sink),
    }))
    .unwrap_or_else(|_| Opened {
        uninspectable: Some(match format {
            Container::Archive(k) => format!(
                "damaged {} archive: the decoder failed",
                archive::format_name(k)
            ),
            Container::Ole2 => "damaged OLE2 file: the decoder failed".to_string(),
            Container::Carrier(c) => format!("damaged {}: the decoder failed", c.name()),
        }),
        ..Opened::default()
    });
    budget.ancestors.pop();

    // An archive found behind other data that opens to nothing but damage was a
    // chance match after all: the file is what it was without it.
    if let Some(kind) = kind_without_archive
        && opened.uninspectable.is_some()
        && !opened.encrypted
        && out.len() == index + 1
    {
        out[index].kind = kind;
        return;
    }

    // What could not be inspected inside makes the archive itself not fully
    // inspected: the first reason found below is carried up, naming the limit.
    let inner = out
        .get(index + 1..)
        .and_then(|below| below.iter().find_map(|f| f.uninspectable.clone()));
    // A zip-based document's signature and macros are parts of the package:
    // its entries one level down.
    let mut marks = Marks {
        signature: opened.signature,
        macros: opened.macros,
    };
    if is_zip_document {
        let level = path.len() + 1;
        for entry in out.get(index + 1..).unwrap_or_default() {
            if entry.path.len() == level {
                marks.note_part(&entry.path[level - 1]);
            }
        }
    }
    if let Some(facts) = out.get_mut(index) {
        facts.signature = marks.signature;
        facts.macros = marks.macros;
        facts.encrypted |= opened.encrypted;
        if facts.uninspectable.is_none() {
            facts.uninspectable = opened.uninspectable.or(inner);
        }
    }
}

/// What a file that holds files is opened as.
#[derive(Clone, Copy)]
enum Container {
    Archive(ArchiveKind),
    /// An OLE2 document or Outlook message: its embedded objects and attachments.
    Ole2,
    Carrier(Carrier),
}

/// The type of an entry read as a stream, and why it is not fully inspected
/// when it is an archive after all (only a zip behind other data gets here, from
/// an archive that cannot give an entry twice: a 7z block).
fn streamed_kind(prefix: &[u8], tail: &[u8], size: u64) -> (FileKind, Option<String>) {
    let kind = filetype::classify_streamed(prefix, tail, size);
    let note = match &kind {
        FileKind::Archive(ArchiveKind::Unsupported(what)) => {
            Some(format!("{what} archives cannot be opened here"))
        }
        FileKind::Archive(k) => Some(format!(
            "{} archive behind other data in an entry too large to hold; not opened",
            archive::format_name(*k)
        )),
        _ => None,
    };
    (kind, note)
}

/// Pushes the facts of one file, holding their memory (the path and names a
/// sender chose, and the fact's own place in `out`) from the budget. When the
/// budget is short the fact is kept all the same: the shortfall is recorded and
/// stops the inspection.
pub(crate) fn record(out: &mut Vec<FileFacts>, facts: FileFacts, budget: &mut Budget) {
    let strings: usize = facts.path.iter().map(String::capacity).sum::<usize>()
        + facts.path.capacity() * std::mem::size_of::<String>()
        + facts.name.as_ref().map_or(0, String::capacity)
        + facts.uninspectable.as_ref().map_or(0, String::capacity);
    // Twice the fact's size: `out` grows by doubling.
    let bytes = strings + 2 * std::mem::size_of::<FileFacts>();
    let _ = budget.hold(bytes as u64);
    out.push(facts);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::LimitsSection;

    #[test]
    fn an_archive_that_contains_itself_is_a_loop() {
        // What a zip quine does at every level: an entry with the very bytes of an
        // archive being opened. No tool makes one; the check is fed directly.
        let zip = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/archives/plain.zip"
        ))
        .unwrap();
        let mut b = Budget::new(&LimitsSection::default());
        b.ancestors.push(Sha256::digest(&zip).into());
        let mut out = Vec::new();
        inspect_file(vec!["a.zip".into()], None, &zip, 1, &mut b, &mut out);
        assert_eq!(out.len(), 1);
        assert!(out[0].uninspectable.as_deref().unwrap().contains("loop"));
    }

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        use std::io::Write;
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in entries {
            w.start_file(*name, options).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    fn inspect_zip(zip: &[u8], limits: &LimitsSection) -> Vec<FileFacts> {
        let mut b = Budget::new(limits);
        let mut out = Vec::new();
        inspect_file(
            vec!["a.zip".into()],
            Some("a.zip"),
            zip,
            0,
            &mut b,
            &mut out,
        );
        out
    }

    #[test]
    fn every_file_has_the_sha256_of_all_its_bytes_held_or_streamed() {
        // 300 KiB of text is read as a stream (prefix and tail kept); the inner
        // zip is held whole to be opened; the small file is held whole.
        let big: Vec<u8> = (0..300 * 1024u32)
            .map(|i| b"abcdefghijklmnopqrstuvwxyz\n"[(i % 27) as usize] ^ (i / 4096) as u8 & 1)
            .collect();
        assert!(big.len() > archive::PREFIX_LEN + archive::TAIL_LEN);
        let inner = zip_of(&[("inner.txt", b"inner")]);
        let outer = zip_of(&[
            ("big.txt", &big),
            ("inner.zip", &inner),
            ("small.txt", b"hi"),
        ]);
        let out = inspect_zip(&outer, &LimitsSection::default());
        let sha = |data: &[u8]| -> Option<[u8; 32]> { Some(Sha256::digest(data).into()) };
        let got: Vec<(String, Option<[u8; 32]>)> =
            out.iter().map(|f| (f.path.join("/"), f.sha256)).collect();
        assert_eq!(
            got,
            vec![
                ("a.zip".to_string(), sha(&outer)),
                ("a.zip/big.txt".to_string(), sha(&big)),
                ("a.zip/inner.zip".to_string(), sha(&inner)),
                ("a.zip/inner.zip/inner.txt".to_string(), sha(b"inner")),
                ("a.zip/small.txt".to_string(), sha(b"hi")),
            ]
        );
    }

    #[test]
    fn an_entry_cut_by_a_limit_has_no_sha256() {
        let big = vec![b'a'; 2 << 20];
        let outer = zip_of(&[("big.txt", &big)]);
        let limits = LimitsSection {
            max_unpacked_size: crate::policy::ByteSize::mib(1),
            ..LimitsSection::default()
        };
        let out = inspect_zip(&outer, &limits);
        assert_eq!(out.len(), 2);
        assert!(out[1].uninspectable.is_some(), "{:?}", out[1]);
        assert_eq!(out[1].sha256, None);
    }

    #[test]
    fn plain_file_gives_one_fact() {
        let mut b = Budget::new(&LimitsSection::default());
        let mut out = Vec::new();
        inspect_file(
            vec!["a.txt".into()],
            Some("a.txt"),
            b"hello",
            0,
            &mut b,
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].size, 5);
        assert_eq!(out[0].uninspectable, None);
    }
}
