// TEMPORARY stub, replaced by the archives branch.
//
// Only the signatures the MIME walk calls are here, with just enough behaviour to
// compile and test the walk: `classify` knows `MZ` (PE) and `PK` (zip); archives
// are not opened, so no entries are reported. The integrator deletes this file
// when the archives branch (file.rs, filetype.rs, archive/) is merged.

use super::{ArchiveKind, ExecKind, FileFacts, FileKind};
use crate::policy::LimitsSection;

/// TEMPORARY stub: the per-message inspection budget.
#[derive(Debug, Clone)]
pub struct Budget {
    _entries_left: u64,
}

impl Budget {
    pub fn new(limits: &LimitsSection) -> Self {
        Budget {
            _entries_left: limits.max_archive_entries,
        }
    }
}

/// TEMPORARY stub: the real type of a file by its first bytes.
pub fn classify(data: &[u8]) -> FileKind {
    if data.starts_with(b"MZ") {
        FileKind::Executable(ExecKind::Pe)
    } else if data.starts_with(b"PK\x03\x04") || data.starts_with(b"PK\x05\x06") {
        FileKind::Archive(ArchiveKind::Zip)
    } else {
        FileKind::Other("application/octet-stream".to_owned())
    }
}

/// TEMPORARY stub: pushes the facts of this one file (no archive entries).
pub fn inspect_file(
    path: Vec<String>,
    name: Option<&str>,
    data: &[u8],
    _depth: u32,
    _budget: &mut Budget,
    out: &mut Vec<FileFacts>,
) {
    out.push(FileFacts {
        path,
        name: name.map(str::to_owned),
        size: data.len() as u64,
        kind: classify(data),
        encrypted: false,
        uninspectable: None,
    });
}
