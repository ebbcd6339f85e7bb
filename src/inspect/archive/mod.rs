//! Opening archives: one module per format lists the entries (names, sizes,
//! encryption) and unpacks their bytes within the [`Budget`], handing each entry
//! to a sink (which classifies it and recurses).
//!
//! Every opener is bounded: entries are taken from the budget one by one, bytes
//! are read in chunks through [`read_capped`] with a hard cap (the bytes left in the
//! message's budget and the entry's compression-ratio cap) and the deadline checked
//! between chunks; nothing that input controls is indexed or multiplied unchecked.

pub mod compress;
pub mod rar;
pub mod sevenz;
pub mod tar;
pub mod zip;

use std::io::Read;

use super::ArchiveKind;
use super::budget::Budget;

/// How much of an entry is unpacked to tell its type when the whole entry is over
/// a limit: enough for every magic and header we check.
pub const PREFIX_LEN: usize = 64 * 1024;

/// Memory a decoder may take for its dictionary (7z, xz): more is refused and the
/// archive reported, rather than allocated on a stranger's say-so.
pub const DECODER_MEMORY_LIMIT: usize = 128 * 1024 * 1024;

/// One entry of an archive, as handed to the sink.
#[derive(Debug)]
pub struct Entry<'a> {
    /// Its name inside the archive (decoded; may be empty).
    pub name: String,
    /// Bytes unpacked, or (when not unpacked) the size the archive states.
    pub size: u64,
    /// The entry itself is encrypted (its bytes are not available).
    pub encrypted: bool,
    /// The unpacked bytes; with `note` set, only a prefix (a limit was hit) or
    /// nothing (an encrypted entry, a rar entry left to ClamAV, a damaged one).
    pub data: Option<&'a [u8]>,
    /// Why the bytes are missing or incomplete.
    pub note: Option<String>,
}

/// What opening an archive found out about the archive as a whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Opened {
    /// Any entry, or the headers, encrypted.
    pub encrypted: bool,
    /// Why the archive could not be fully inspected (first reason found).
    pub uninspectable: Option<String>,
}

impl Opened {
    /// Keeps the first reason.
    pub fn problem(&mut self, reason: impl Into<String>) {
        if self.uninspectable.is_none() {
            self.uninspectable = Some(reason.into());
        }
    }
}

/// Receives each entry; gets the budget back to spend on recursion.
pub type Sink<'s> = dyn FnMut(&mut Budget, Entry<'_>) + 's;

/// Opens `data` as an archive of `kind`. `name` is the archive's own name (for
/// single-stream compressors, whose one entry is named after it).
pub fn open(
    kind: ArchiveKind,
    name: Option<&str>,
    data: &[u8],
    budget: &mut Budget,
    sink: &mut Sink<'_>,
) -> Opened {
    match kind {
        ArchiveKind::Zip => zip::open(data, budget, sink),
        ArchiveKind::SevenZip => sevenz::open(data, budget, sink),
        ArchiveKind::Tar => tar::open(data, budget, sink),
        ArchiveKind::Gzip | ArchiveKind::Bzip2 | ArchiveKind::Xz => {
            compress::open(kind, name, data, budget, sink)
        }
        ArchiveKind::Rar4 => rar::open_rar4(data, budget, sink),
        ArchiveKind::Rar5 => rar::open_rar5(data, budget, sink),
        ArchiveKind::Unsupported(what) => Opened {
            encrypted: false,
            uninspectable: Some(format!("{what} archives cannot be opened here")),
        },
    }
}

/// Short name of a format, for reasons.
pub fn format_name(kind: ArchiveKind) -> &'static str {
    match kind {
        ArchiveKind::Zip => "zip",
        ArchiveKind::SevenZip => "7z",
        ArchiveKind::Tar => "tar",
        ArchiveKind::Gzip => "gzip",
        ArchiveKind::Bzip2 => "bzip2",
        ArchiveKind::Xz => "xz",
        ArchiveKind::Rar4 => "rar4",
        ArchiveKind::Rar5 => "rar5",
        ArchiveKind::Unsupported(what) => what,
    }
}

/// The outcome of unpacking one entry.
#[derive(Debug, Default)]
pub struct Unpacked {
    /// All of it, or (with `limit` or `error`) a prefix of at most [`PREFIX_LEN`].
    pub data: Vec<u8>,
    /// The limit that stopped it.
    pub limit: Option<String>,
    /// The decoder's error (damaged data).
    pub error: Option<String>,
    /// Bytes unpacked before it stopped (more than `data` holds when stopped).
    pub total: u64,
}

/// Bytes unpacked between two looks at the clock.
const READ_CHUNK: u64 = 64 * 1024;

/// Unpacks an entry from `reader`: never more than the bytes left in the budget,
/// nor more than the ratio cap for `packed` compressed bytes, and not past the
/// deadline. A stopped entry keeps a prefix, so that its type is still known (an
/// executable padded with a gigabyte of zeros is still an executable).
pub fn read_capped(
    reader: &mut dyn Read,
    packed: u64,
    name: &str,
    budget: &mut Budget,
) -> Unpacked {
    let byte_cap = budget.bytes_left();
    let ratio_cap = budget.ratio_cap(packed);
    let cap = byte_cap.min(ratio_cap);
    let mut out = Unpacked::default();
    loop {
        if let Err(reason) = budget.check_time() {
            out.limit = Some(reason);
            break;
        }
        let room = cap.saturating_add(1).saturating_sub(out.data.len() as u64);
        let want = room.min(READ_CHUNK);
        if want == 0 {
            break;
        }
        // Straight into `out.data` (no zeroed scratch buffer per entry: most
        // entries are small); `read_to_end` keeps what it read before an error.
        let before = out.data.len();
        let read = (&mut *reader).take(want).read_to_end(&mut out.data);
        let n = out.data.len() - before;
        out.total = out.total.saturating_add(n as u64);
        budget.spend_bytes(n as u64);
        if let Err(e) = read {
            out.error = Some(e.to_string());
            break;
        }
        if out.data.len() as u64 > cap {
            out.limit = Some(if ratio_cap < byte_cap {
                let reason = budget.ratio_reason(name);
                budget.set_bomb(&reason);
                reason
            } else {
                budget.unpacked_reason()
            });
            break;
        }
        if (n as u64) < want {
            break; // the end of the entry
        }
    }
    if out.limit.is_some() || out.error.is_some() {
        out.data.truncate(PREFIX_LEN);
        out.data.shrink_to_fit();
    }
    out
}

/// The limit an entry's stated size already breaks, before anything is unpacked.
pub fn precheck(declared: u64, packed: u64, name: &str, budget: &mut Budget) -> Option<String> {
    if declared > budget.ratio_cap(packed) {
        let reason = budget.ratio_reason(name);
        budget.set_bomb(&reason);
        Some(reason)
    } else if declared > budget.bytes_left() {
        Some(budget.unpacked_reason())
    } else {
        None
    }
}

/// Unpacks at most [`PREFIX_LEN`] bytes, and no more than the budget has left, to
/// tell the type of an entry that is over a limit.
pub fn read_prefix(reader: &mut dyn Read, budget: &mut Budget) -> Vec<u8> {
    let mut data = Vec::new();
    let want = budget.bytes_left().min(PREFIX_LEN as u64);
    let _ = reader.take(want).read_to_end(&mut data);
    budget.spend_bytes(data.len() as u64);
    data
}

/// After a compression bomb in this attachment, an entry is listed without
/// being unpacked; true when it was (the caller goes on to the next entry).
pub fn listed_after_bomb(
    name: &str,
    declared: u64,
    opened: &mut Opened,
    budget: &mut Budget,
    sink: &mut Sink<'_>,
) -> bool {
    let Some(bomb) = budget.bomb().map(str::to_string) else {
        return false;
    };
    let note = format!("not unpacked after a compression bomb: {bomb}");
    opened.problem(note.clone());
    sink(
        budget,
        Entry {
            name: name.to_string(),
            size: declared,
            encrypted: false,
            data: None,
            note: Some(note),
        },
    );
    true
}

/// Hands an unpacked entry to the sink: complete, limited (prefix plus reason,
/// which also marks the archive), or damaged.
pub fn deliver(
    name: String,
    declared: u64,
    unpacked: Unpacked,
    damaged_what: &str,
    opened: &mut Opened,
    budget: &mut Budget,
    sink: &mut Sink<'_>,
) {
    let note = match (&unpacked.limit, &unpacked.error) {
        (Some(limit), _) => Some(limit.clone()),
        (None, Some(err)) => Some(format!("damaged {damaged_what}: entry '{name}': {err}")),
        (None, None) => None,
    };
    if let Some(n) = &note {
        opened.problem(n.clone());
    }
    let size = if note.is_some() {
        declared.max(unpacked.total)
    } else {
        unpacked.data.len() as u64
    };
    sink(
        budget,
        Entry {
            name,
            size,
            encrypted: false,
            data: Some(&unpacked.data),
            note,
        },
    );
}
