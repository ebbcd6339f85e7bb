//! Everything about one file's bytes: its real type, and for an archive (or a
//! zip-based document) every entry inside, recursively, within the [`Budget`].

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::archive::{self, Entry, Opened};
use super::filetype::{self, OFFICE_ENCRYPTED};
use super::{ArchiveKind, FileFacts, FileKind};
use crate::policy::LimitsSection;

/// Below this many unpacked bytes an entry never counts as a bomb, whatever its
/// ratio: a 100 KB blank image compresses 1000:1 and is harmless.
pub const RATIO_FLOOR: u64 = 1024 * 1024;

/// What inspecting one message may still spend. Shared by every file of the
/// message (entries and unpacked bytes are per message, as the policy says).
#[derive(Debug, Clone)]
pub struct Budget {
    entries_left: u64,
    bytes_left: u64,
    max_entries: u64,
    max_unpacked: u64,
    max_depth: u32,
    max_ratio: u64,
    max_time: Duration,
    deadline: Instant,
    /// Digests of the archives being opened (outermost first), to stop loops.
    ancestors: Vec<[u8; 32]>,
    /// Set when a compression bomb was found in the current attachment: nothing
    /// more of it is unpacked (the names are still listed).
    bomb: Option<String>,
}

impl Budget {
    /// A fresh budget for one message; the clock starts now.
    pub fn new(limits: &LimitsSection) -> Budget {
        let max_time = limits.max_inspect_time.get();
        let deadline = Instant::now()
            .checked_add(max_time)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
        Budget::with_deadline(limits, deadline)
    }

    /// A fresh budget whose time runs out at `deadline` (when the caller started
    /// the clock for the message earlier).
    pub fn with_deadline(limits: &LimitsSection, deadline: Instant) -> Budget {
        Budget {
            entries_left: limits.max_archive_entries,
            bytes_left: limits.max_unpacked_size.0,
            max_entries: limits.max_archive_entries,
            max_unpacked: limits.max_unpacked_size.0,
            max_depth: limits.max_archive_depth,
            max_ratio: limits.max_compression_ratio.max(1),
            max_time: limits.max_inspect_time.get(),
            deadline,
            ancestors: Vec::new(),
            bomb: None,
        }
    }

    /// Entries still allowed.
    pub fn entries_left(&self) -> u64 {
        self.entries_left
    }

    /// Unpacked bytes still allowed.
    pub fn bytes_left(&self) -> u64 {
        self.bytes_left
    }

    /// True once the time limit has passed.
    pub fn timed_out(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// Err(reason) once the time limit has passed.
    pub fn check_time(&self) -> Result<(), String> {
        if self.timed_out() {
            Err(format!(
                "inspection time limit reached (max_inspect_time = {} s)",
                self.max_time.as_secs()
            ))
        } else {
            Ok(())
        }
    }

    /// Takes one entry from the budget, or says which limit stops it.
    pub fn take_entry(&mut self) -> Result<(), String> {
        self.check_time()?;
        if self.entries_left == 0 {
            return Err(format!(
                "too many archive entries (max_archive_entries = {})",
                self.max_entries
            ));
        }
        self.entries_left -= 1;
        Ok(())
    }

    /// The compression bomb found in the current attachment, if any.
    pub fn bomb(&self) -> Option<&str> {
        self.bomb.as_deref()
    }

    pub(crate) fn set_bomb(&mut self, reason: &str) {
        if self.bomb.is_none() {
            self.bomb = Some(reason.to_string());
        }
    }

    /// Records `n` unpacked bytes.
    pub(crate) fn spend_bytes(&mut self, n: u64) {
        self.bytes_left = self.bytes_left.saturating_sub(n);
    }

    pub(crate) fn unpacked_reason(&self) -> String {
        format!(
            "unpacked size limit reached (max_unpacked_size = {} bytes)",
            self.max_unpacked
        )
    }

    pub(crate) fn ratio_reason(&self, name: &str) -> String {
        format!(
            "entry '{name}' expands past the compression ratio limit (max_compression_ratio = {}), a compression bomb",
            self.max_ratio
        )
    }

    /// Largest number of bytes an entry packed into `packed` bytes may unpack to
    /// before it counts as a bomb.
    pub(crate) fn ratio_cap(&self, packed: u64) -> u64 {
        packed.saturating_mul(self.max_ratio).max(RATIO_FLOOR)
    }

    fn depth_reason(&self) -> String {
        format!(
            "archive nested too deep (max_archive_depth = {})",
            self.max_depth
        )
    }
}

/// Pushes the facts of this file onto `out` and, when it is an archive or a
/// zip-based document, the facts of every entry inside, recursively. `path` is
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
    let kind = filetype::classify(data);
    let index = out.len();
    let encrypted_doc = kind == FileKind::Document(OFFICE_ENCRYPTED);
    out.push(FileFacts {
        path: path.clone(),
        name: name.map(str::to_string),
        size: data.len() as u64,
        kind: kind.clone(),
        encrypted: encrypted_doc,
        uninspectable: None,
    });
    let format = match &kind {
        FileKind::Archive(ArchiveKind::Unsupported(what)) => {
            out[index].uninspectable = Some(format!("{what} archives cannot be opened here"));
            return;
        }
        FileKind::Archive(k) => *k,
        // Zip-based documents: their entries are inspected too.
        FileKind::Document(_) if filetype::archive_kind(data) == Some(ArchiveKind::Zip) => {
            ArchiveKind::Zip
        }
        _ => return,
    };
    if depth >= budget.max_depth {
        out[index].uninspectable = Some(budget.depth_reason());
        return;
    }
    if let Err(reason) = budget.check_time() {
        out[index].uninspectable = Some(reason);
        return;
    }
    let digest: [u8; 32] = Sha256::digest(data).into();
    if budget.ancestors.contains(&digest) {
        out[index].uninspectable =
            Some("archive contains itself (a loop, like a zip quine)".to_string());
        return;
    }
    budget.ancestors.push(digest);

    let mut sink = |budget: &mut Budget, entry: Entry<'_>| {
        let mut entry_path = path.clone();
        let entry_name = if entry.name.is_empty() {
            "(unnamed)".to_string()
        } else {
            entry.name.clone()
        };
        entry_path.push(entry_name.clone());
        match entry.data {
            Some(bytes) if !entry.encrypted && entry.note.is_none() => inspect_file(
                entry_path,
                Some(&entry_name),
                bytes,
                depth.saturating_add(1),
                budget,
                out,
            ),
            // Not unpacked, or only a prefix: its type from what there is.
            prefix => out.push(FileFacts {
                path: entry_path,
                name: Some(entry_name),
                size: entry.size,
                kind: prefix
                    .filter(|p| !p.is_empty())
                    .map(filetype::classify)
                    .unwrap_or_else(|| FileKind::Other("application/octet-stream".into())),
                encrypted: entry.encrypted,
                uninspectable: entry.note.clone(),
            }),
        }
    };

    let opened = catch_unwind(AssertUnwindSafe(|| {
        archive::open(format, name, data, budget, &mut sink)
    }))
    .unwrap_or_else(|_| Opened {
        encrypted: false,
        uninspectable: Some(format!(
            "damaged {} archive: the decoder failed",
            archive::format_name(format)
        )),
    });
    budget.ancestors.pop();

    // What could not be inspected inside makes the archive itself not fully
    // inspected: the first reason found below is carried up, naming the limit.
    let inner = out
        .get(index + 1..)
        .and_then(|below| below.iter().find_map(|f| f.uninspectable.clone()));
    if let Some(facts) = out.get_mut(index) {
        facts.encrypted |= opened.encrypted;
        if facts.uninspectable.is_none() {
            facts.uninspectable = opened.uninspectable.or(inner);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{ByteSize, Seconds};

    #[test]
    fn budget_counts_entries_and_names_the_limit() {
        let limits = LimitsSection {
            max_archive_entries: 2,
            ..LimitsSection::default()
        };
        let mut b = Budget::new(&limits);
        assert!(b.take_entry().is_ok());
        assert!(b.take_entry().is_ok());
        let err = b.take_entry().unwrap_err();
        assert!(err.contains("max_archive_entries = 2"), "{err}");
    }

    #[test]
    fn budget_time_and_ratio() {
        let limits = LimitsSection {
            max_inspect_time: Seconds::secs(0),
            max_unpacked_size: ByteSize(10),
            max_compression_ratio: 10,
            ..LimitsSection::default()
        };
        let b = Budget::new(&limits);
        assert!(b.check_time().unwrap_err().contains("max_inspect_time"));
        assert_eq!(b.ratio_cap(1), RATIO_FLOOR);
        assert_eq!(b.ratio_cap(1 << 20), 10 << 20);
        assert!(b.unpacked_reason().contains("max_unpacked_size = 10"));
    }

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
