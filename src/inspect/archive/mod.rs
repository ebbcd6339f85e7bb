//! Opening archives: one module per format lists the entries (names, sizes,
//! encryption) and unpacks their bytes within the [`Budget`], handing each entry
//! to a sink (which classifies it and recurses).
//!
//! Every opener is bounded: entries are taken from the budget one by one, bytes
//! are read in chunks through [`read_entry`] with a hard cap (the bytes left in the
//! message's budget and the entry's compression-ratio cap) and the deadline checked
//! between chunks; nothing that input controls is indexed or multiplied unchecked.
//!
//! An entry is held whole only when it must be opened (an archive inside the
//! archive, an OLE2 container), and then its memory is held from the budget
//! first. Every other entry is read as a stream and keeps only its first
//! [`PREFIX_LEN`] and last [`TAIL_LEN`] bytes, which is all its type needs
//! (src/inspect/filetype.rs): a 400 MiB text file in a 7.8 MB zip costs about
//! 400 KiB, not 400 MiB. The virus scanner is sent the attachments themselves,
//! never entries (clamd unpacks archives on its own, except RAR: Debian's clamd
//! lacks the non-free unrar library).

pub mod after_prefix;
pub mod compress;
pub mod libarchive;
pub mod ole;
pub mod rar;
pub mod sevenz;
pub mod tar;
pub mod zip;

use std::io::Read;

use sha2::{Digest, Sha256};

use super::budget::Budget;
use super::filetype;
pub use super::filetype::{PREFIX_LEN, TAIL_LEN};
use super::{ArchiveKind, SignatureFormat};

/// Memory a decoder may take for its dictionary (7z, xz): more is refused and the
/// archive reported, rather than allocated on a stranger's say-so.
pub const DECODER_MEMORY_LIMIT: usize = 128 * 1024 * 1024;

/// The dictionary size an LZMA2 property byte gives (xz block headers, 7z
/// coders), or `None` for a byte no encoder writes.
pub fn lzma2_dictionary(bits: u8) -> Option<u32> {
    let bits = u32::from(bits);
    match bits {
        0..40 => Some((2 | (bits & 1)) << (bits / 2 + 11)),
        40 => Some(u32::MAX),
        _ => None,
    }
}

/// One entry of an archive, as handed to the sink.
#[derive(Debug)]
pub struct Entry<'a> {
    /// Its name inside the archive (decoded; may be empty).
    pub name: String,
    /// Bytes unpacked, or (when not unpacked) the size the archive states.
    pub size: u64,
    /// The entry itself is encrypted (its bytes are not available).
    pub encrypted: bool,
    /// The unpacked bytes: all of them; with `tail` set, the first
    /// [`PREFIX_LEN`] of them (the entry was read as a stream, not held); with
    /// `note` set, a prefix (a limit was hit) or nothing (an encrypted entry, a
    /// damaged one); or nothing at all for a rar entry that is only listed.
    pub data: Option<&'a [u8]>,
    /// For an entry read as a stream: its last bytes (at most [`TAIL_LEN`]).
    pub tail: Option<&'a [u8]>,
    /// Why the bytes are missing or incomplete.
    pub note: Option<String>,
    /// For an entry read as a stream to its end: the SHA-256 of all its bytes,
    /// taken as they passed (an entry held whole is hashed where it is inspected).
    pub sha256: Option<[u8; 32]>,
}

/// What opening an archive found out about the archive as a whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Opened {
    /// Any entry, or the headers, encrypted.
    pub encrypted: bool,
    /// Why the archive could not be fully inspected (first reason found).
    pub uninspectable: Option<String>,
    /// The file is a signed document (a PDF's signature dictionary).
    pub signature: Option<SignatureFormat>,
    /// The file is a document with macros (an OLE2 file's VBA project).
    pub macros: bool,
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
        ArchiveKind::Unsupported(what) => Opened {
            uninspectable: Some(format!("{what} archives cannot be opened here")),
            ..Opened::default()
        },
        // RAR, cab, ISO 9660, LHA, cpio, ar.
        _ => libarchive::open(kind, data, budget, sink),
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
        ArchiveKind::Cab => "cab",
        ArchiveKind::Iso => "iso",
        ArchiveKind::Lha => "lzh",
        ArchiveKind::Cpio => "cpio",
        ArchiveKind::Ar => "ar",
        ArchiveKind::Unsupported(what) => what,
    }
}

/// The outcome of unpacking one entry.
#[derive(Debug, Default)]
pub struct Unpacked {
    /// All of it; or (with `tail` set, or with `limit` or `error`) its first
    /// [`PREFIX_LEN`] bytes.
    pub data: Vec<u8>,
    /// Set when the entry was read as a stream rather than held: its last bytes.
    pub tail: Option<Vec<u8>>,
    /// The limit that stopped it.
    pub limit: Option<String>,
    /// The decoder's error (damaged data).
    pub error: Option<String>,
    /// Bytes unpacked before it stopped (more than `data` holds when stopped).
    pub total: u64,
    /// The stream's end holds a zip behind other data: the entry must be read
    /// again, whole ([`Keep::Whole`]), to be opened.
    pub wants_whole: bool,
    /// Set when the entry was read as a stream to its end: the SHA-256 of all
    /// its bytes.
    pub sha256: Option<[u8; 32]>,
    /// Memory held from the budget for `data` and `tail`.
    held: u64,
}

impl Unpacked {
    /// Gives the memory of these bytes back to the budget.
    pub fn discard(self, budget: &mut Budget) {
        budget.release(self.held);
    }

    /// Holds from the budget what `data` and `tail` take now, after they changed.
    fn settle(&mut self, budget: &mut Budget) {
        let now = (self.data.capacity() + self.tail.as_ref().map_or(0, Vec::capacity)) as u64;
        if now < self.held {
            budget.release(self.held - now);
        } else if now > self.held {
            // Only a buffer grown by the reader itself gets here; what it took is
            // counted even when the budget is short (the shortfall is recorded).
            let _ = budget.hold(now - self.held);
        }
        self.held = now;
    }
}

/// How an entry's bytes are kept while it is unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Whole if its first bytes say it must be opened
    /// ([`filetype::must_hold_whole`]), else only its first and last bytes.
    AsNeeded,
    /// Whole: the second reading of an entry whose end showed a zip.
    Whole,
}

/// Bytes unpacked between two looks at the clock while an entry is held.
const READ_CHUNK: u64 = 64 * 1024;

/// Bytes unpacked between two looks at the clock while an entry is streamed: a
/// larger step, so that keeping the last [`TAIL_LEN`] bytes moves little memory.
const STREAM_CHUNK: u64 = 64 * 1024;

/// Unpacks an entry from `reader`: never more than the bytes left in the budget,
/// nor more than the ratio cap for `packed` compressed bytes, and not past the
/// deadline. The entry is held whole only as `keep` says, within the memory
/// budget; otherwise its first and last bytes are kept. A stopped entry keeps a
/// prefix, so that its type is still known (an executable padded with a gigabyte
/// of zeros is still an executable).
pub fn read_entry(
    reader: &mut dyn Read,
    packed: u64,
    name: &str,
    keep: Keep,
    budget: &mut Budget,
) -> Unpacked {
    let byte_cap = budget.bytes_left();
    let ratio_cap = budget.ratio_cap(packed);
    let cap = byte_cap.min(ratio_cap);
    let mut out = Unpacked::default();
    // The first bytes (the whole entry when it is small) say how to go on.
    if fill(&mut out, reader, PREFIX_LEN as u64, cap, budget) {
        if keep == Keep::Whole || filetype::must_hold_whole(&out.data) {
            fill(&mut out, reader, u64::MAX, cap, budget);
        } else {
            stream_rest(&mut out, reader, cap, budget);
        }
    }
    if out.total > cap && out.limit.is_none() {
        out.limit = Some(if ratio_cap < byte_cap {
            let reason = budget.ratio_reason(name);
            budget.set_bomb(&reason);
            reason
        } else {
            budget.unpacked_reason()
        });
    }
    if out.limit.is_some() || out.error.is_some() {
        out.tail = None;
        out.sha256 = None;
        out.data.truncate(PREFIX_LEN);
        out.data.shrink_to_fit();
    } else if let Some(tail) = &mut out.tail {
        // The last bytes of the entry: when fewer than TAIL_LEN came after the
        // first bytes, the rest is the end of those (no new buffer: the tail has
        // room for TAIL_LEN + STREAM_CHUNK).
        let missing = TAIL_LEN.saturating_sub(tail.len());
        let from = out.data.len().saturating_sub(missing);
        tail.splice(0..0, out.data[from..].iter().copied());
        out.wants_whole = keep == Keep::AsNeeded && filetype::zip_behind(tail);
    }
    out.settle(budget);
    out
}

/// Reads into `out.data` until it holds `up_to` bytes (true: more may follow) or
/// the entry ends, errs or passes `cap` (false). Memory is held from the budget
/// before the buffer grows.
fn fill(
    out: &mut Unpacked,
    reader: &mut dyn Read,
    up_to: u64,
    cap: u64,
    budget: &mut Budget,
) -> bool {
    loop {
        if let Err(reason) = budget.check_limits() {
            out.limit = Some(reason);
            return false;
        }
        let room = cap.saturating_add(1).saturating_sub(out.total);
        let space = up_to.saturating_sub(out.data.len() as u64);
        let want = room.min(space).min(READ_CHUNK);
        if want == 0 {
            return room > 0;
        }
        let want = match make_room(out, want as usize, budget) {
            Ok(room) => room as u64,
            Err(reason) => {
                out.limit = Some(reason);
                return false;
            }
        };
        // Straight into `out.data`, whose room was made above (no zeroed scratch
        // buffer per entry: most entries are small); `read_to_end` keeps what it
        // read before an error.
        let before = out.data.len();
        let read = (&mut *reader).take(want).read_to_end(&mut out.data);
        let n = (out.data.len() - before) as u64;
        out.total = out.total.saturating_add(n);
        budget.spend_bytes(n);
        if let Err(e) = read {
            out.error = Some(e.to_string());
            return false;
        }
        if out.total > cap || n < want {
            return false;
        }
    }
}

/// The first buffer of an entry: most entries are small.
const FIRST_ROOM: usize = 8 * 1024;

/// Makes room in `out.data` for up to `want` more bytes and says how much there
/// is (at least one byte). A full buffer doubles, from [`FIRST_ROOM`], with the
/// memory held first (the old buffer's too, while both exist).
fn make_room(out: &mut Unpacked, want: usize, budget: &mut Budget) -> Result<usize, String> {
    let data = &mut out.data;
    let spare = data.capacity() - data.len();
    if spare > 0 {
        return Ok(spare.min(want));
    }
    let old = data.capacity();
    let new = old
        .saturating_mul(2)
        .max(FIRST_ROOM)
        .min(data.len().saturating_add(want));
    budget.hold(new as u64)?;
    data.reserve_exact(new - data.len());
    let (got, len) = (data.capacity(), data.len());
    budget.release(old as u64);
    out.held = out
        .held
        .saturating_sub(old as u64)
        .saturating_add(new as u64);
    if got != new {
        out.settle(budget);
    }
    Ok((got - len).min(want))
}

/// Reads the rest of a streamed entry, keeping its last [`TAIL_LEN`] bytes.
fn stream_rest(out: &mut Unpacked, reader: &mut dyn Read, cap: u64, budget: &mut Budget) {
    let room_needed = TAIL_LEN + STREAM_CHUNK as usize;
    if let Err(reason) = budget.hold(room_needed as u64) {
        out.limit = Some(reason);
        return;
    }
    let mut tail = Vec::with_capacity(room_needed);
    out.held += room_needed as u64;
    let mut hasher = Sha256::new();
    hasher.update(&out.data);
    loop {
        if let Err(reason) = budget.check_limits() {
            out.limit = Some(reason);
            break;
        }
        let room = cap.saturating_add(1).saturating_sub(out.total);
        let want = room.min(STREAM_CHUNK);
        if want == 0 {
            break;
        }
        let before = tail.len();
        let read = (&mut *reader).take(want).read_to_end(&mut tail);
        let n = (tail.len() - before) as u64;
        out.total = out.total.saturating_add(n);
        budget.spend_bytes(n);
        if let Err(e) = read {
            out.error = Some(e.to_string());
            break;
        }
        hasher.update(&tail[before..]);
        if tail.len() > TAIL_LEN {
            tail.drain(..tail.len() - TAIL_LEN);
        }
        if out.total > cap || n < want {
            break;
        }
    }
    out.tail = Some(tail);
    // Past the cap the entry was not read to its end: read_entry clears it.
    out.sha256 = Some(hasher.finalize().into());
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
pub fn read_prefix(reader: &mut dyn Read, budget: &mut Budget) -> Unpacked {
    let mut out = Unpacked::default();
    let want = budget.bytes_left().min(PREFIX_LEN as u64);
    fill(&mut out, reader, want, u64::MAX - 1, budget);
    out.error = None;
    out
}

/// Hands an entry over a limit (`reason`) to the sink with the first bytes
/// that tell its type.
#[allow(clippy::too_many_arguments)]
pub fn deliver_prefix(
    name: String,
    declared: u64,
    reason: String,
    prefix: Unpacked,
    opened: &mut Opened,
    budget: &mut Budget,
    sink: &mut Sink<'_>,
) {
    opened.problem(reason.clone());
    sink(
        budget,
        Entry {
            name,
            size: declared,
            encrypted: false,
            data: Some(&prefix.data),
            tail: None,
            sha256: None,
            note: Some(reason),
        },
    );
    prefix.discard(budget);
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
            tail: None,
            sha256: None,
            note: Some(note),
        },
    );
    true
}

/// Hands an unpacked entry to the sink: complete (held, or its first and last
/// bytes), limited (prefix plus reason, which also marks the archive), or
/// damaged; then gives its memory back.
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
        unpacked.total
    };
    sink(
        budget,
        Entry {
            name,
            size,
            encrypted: false,
            data: Some(&unpacked.data),
            tail: unpacked.tail.as_deref(),
            sha256: if note.is_none() {
                unpacked.sha256
            } else {
                None
            },
            note,
        },
    );
    unpacked.discard(budget);
}

/// Hands an entry whose bytes are a slice of the archive itself (tar, stored rar
/// entries) to the sink: nothing is unpacked or held, the bytes are counted as
/// unpacked.
pub fn deliver_slice(name: String, bytes: &[u8], budget: &mut Budget, sink: &mut Sink<'_>) {
    budget.spend_bytes(bytes.len() as u64);
    sink(
        budget,
        Entry {
            name,
            size: bytes.len() as u64,
            encrypted: false,
            data: Some(bytes),
            tail: None,
            sha256: None,
            note: None,
        },
    );
}
