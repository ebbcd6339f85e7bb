//! Archives opened through libarchive (Debian's libarchive13, BSD licence): RAR
//! 4 and RAR 5 content, Microsoft cab, ISO 9660 images, LHA/LZH, cpio and ar.
//! Entries go to the same sink as a zip's, read through [`read_entry`] within the
//! message's budget, deadline and limits.
//!
//! libarchive is C and reads hostile input, so it is held close:
//! - each reader enables exactly one format and no filter, so a file sent as an
//!   ISO image is never read as an mtree description (which names files on this
//!   machine) nor piped through an external decompressor (lrzip, grzip);
//! - the archive is read from memory, so libarchive never touches a file;
//! - sizes it reports are only compared with limits, never used to allocate;
//!   bytes come through `archive_read_data` into buffers held from the budget;
//! - after an entry stops early (a limit, damage) the archive is not read on,
//!   because skipping the rest of a compressed entry means decoding it;
//! - what the decoders allocate themselves is held from the budget as an
//!   estimate ([`decoder_memory`]); a RAR 5 dictionary above
//!   [`DECODER_MEMORY_LIMIT`] is refused from its header before anything is
//!   decoded. (RAR 4 dictionaries are at most 4 MiB; its PPMd model may ask for up
//!   to 256 MiB, which the allocator only commits as the model fills.)
//!
//! RAR archives go through rar.rs's own header walk first: encrypted ones are
//! listed and reported as before (libarchive cannot decrypt), and the walk gives
//! the largest dictionary.

use std::ffi::{CStr, c_char, c_int, c_uint};
use std::io::{self, Read};
use std::ptr::NonNull;

use super::{
    DECODER_MEMORY_LIMIT, Entry, Keep, Opened, Sink, deliver, deliver_prefix, listed_after_bomb,
    precheck, rar, read_entry, read_prefix,
};
use crate::inspect::ArchiveKind;
use crate::inspect::budget::Budget;

/// The C API used here (archive.h, archive_entry.h of libarchive 3.6).
mod ffi {
    use std::ffi::{c_char, c_int, c_uint, c_void};

    #[repr(C)]
    pub struct Archive {
        _opaque: [u8; 0],
    }

    #[repr(C)]
    pub struct ArchiveEntry {
        _opaque: [u8; 0],
    }

    pub const ARCHIVE_EOF: c_int = 1;
    pub const ARCHIVE_OK: c_int = 0;
    pub const ARCHIVE_WARN: c_int = -20;
    pub const ARCHIVE_FATAL: c_int = -30;

    pub const AE_IFMT: c_uint = 0o170000;
    pub const AE_IFREG: c_uint = 0o100000;

    #[link(name = "archive")]
    unsafe extern "C" {
        pub fn archive_read_new() -> *mut Archive;
        pub fn archive_read_free(a: *mut Archive) -> c_int;
        pub fn archive_read_support_format_rar(a: *mut Archive) -> c_int;
        pub fn archive_read_support_format_rar5(a: *mut Archive) -> c_int;
        pub fn archive_read_support_format_cab(a: *mut Archive) -> c_int;
        pub fn archive_read_support_format_iso9660(a: *mut Archive) -> c_int;
        pub fn archive_read_support_format_lha(a: *mut Archive) -> c_int;
        pub fn archive_read_support_format_cpio(a: *mut Archive) -> c_int;
        pub fn archive_read_support_format_ar(a: *mut Archive) -> c_int;
        pub fn archive_read_open_memory(a: *mut Archive, buf: *const c_void, size: usize) -> c_int;
        pub fn archive_read_next_header(a: *mut Archive, entry: *mut *mut ArchiveEntry) -> c_int;
        pub fn archive_read_data(a: *mut Archive, buf: *mut c_void, size: usize) -> isize;
        pub fn archive_error_string(a: *mut Archive) -> *const c_char;
        pub fn archive_entry_pathname(e: *mut ArchiveEntry) -> *const c_char;
        pub fn archive_entry_pathname_utf8(e: *mut ArchiveEntry) -> *const c_char;
        pub fn archive_entry_pathname_w(e: *mut ArchiveEntry) -> *const nix::libc::wchar_t;
        pub fn archive_entry_filetype(e: *mut ArchiveEntry) -> c_uint;
        pub fn archive_entry_size(e: *mut ArchiveEntry) -> i64;
        pub fn archive_entry_size_is_set(e: *mut ArchiveEntry) -> c_int;
        pub fn archive_entry_is_encrypted(e: *mut ArchiveEntry) -> c_int;
    }
}

/// The name of a format in reasons ("rar" for both RAR versions).
fn format_name(kind: ArchiveKind) -> &'static str {
    match kind {
        ArchiveKind::Rar4 | ArchiveKind::Rar5 => "rar",
        other => super::format_name(other),
    }
}

/// Memory libarchive takes besides decoder windows: its read-ahead buffers and
/// the state of one entry.
const BASE_MEMORY: u64 = 1024 * 1024;

/// Memory libarchive's decoders and directory reading may take for an archive
/// of `len` bytes whose RAR dictionary is `dictionary` (0 for other formats):
/// cab's LZX window is at most 2 MiB and LHA's 64 KiB; an ISO image's whole
/// directory tree is read into memory before its first entry, and is counted as
/// large as the image itself.
fn decoder_memory(kind: ArchiveKind, len: usize, dictionary: u64) -> u64 {
    BASE_MEMORY
        + match kind {
            ArchiveKind::Rar4 | ArchiveKind::Rar5 => dictionary,
            ArchiveKind::Cab => 2 * 1024 * 1024,
            ArchiveKind::Iso => len as u64,
            _ => 0,
        }
}

/// Opens an archive of `kind`, one that libarchive reads (see [`is_opened_here`]).
pub fn open(kind: ArchiveKind, data: &[u8], budget: &mut Budget, sink: &mut Sink<'_>) -> Opened {
    let is_rar = matches!(kind, ArchiveKind::Rar4 | ArchiveKind::Rar5);
    let mut dictionary = 0;
    let mut survey_problem = None;
    if is_rar {
        let survey = rar::survey(kind, data, budget);
        if survey.encrypted || survey.dictionary > DECODER_MEMORY_LIMIT as u64 {
            // Listed by rar.rs as before: names, encryption, stored entries.
            let mut opened = rar::open(kind, data, budget, sink);
            if !opened.encrypted {
                opened.problem(format!(
                    "rar archive needs more decoder memory than allowed ({} MiB dictionary, limit {} MiB)",
                    survey.dictionary / (1024 * 1024),
                    DECODER_MEMORY_LIMIT / (1024 * 1024)
                ));
            }
            return opened;
        }
        dictionary = survey.dictionary;
        survey_problem = survey.damaged;
    }
    let memory = decoder_memory(kind, data.len(), dictionary);
    if let Err(reason) = budget.hold(memory) {
        let mut opened = Opened::default();
        opened.problem(reason);
        return opened;
    }
    let mut delivered = 0;
    let mut opened = match Reader::new(kind, data) {
        Ok(mut reader) => entries(
            &mut reader,
            kind,
            data.len() as u64,
            budget,
            sink,
            &mut delivered,
        ),
        Err(reason) => {
            let mut opened = Opened::default();
            opened.problem(reason);
            opened
        }
    };
    budget.release(memory);
    if let Some(reason) = survey_problem {
        opened.problem(reason);
    }
    if opened.uninspectable.is_some() && !budget.exhausted() && is_rar {
        // libarchive stopped early (a solid RAR 4 archive, damage): the names of
        // the entries it did not reach still count, so they are listed.
        let mut listed = 0;
        let mut rest = |budget: &mut Budget, entry: Entry<'_>| {
            listed += 1;
            if listed > delivered {
                sink(budget, entry);
            }
        };
        rar::open(kind, data, budget, &mut rest);
    }
    opened
}

/// True for the kinds [`open`] reads.
pub fn is_opened_here(kind: ArchiveKind) -> bool {
    matches!(
        kind,
        ArchiveKind::Rar4
            | ArchiveKind::Rar5
            | ArchiveKind::Cab
            | ArchiveKind::Iso
            | ArchiveKind::Lha
            | ArchiveKind::Cpio
            | ArchiveKind::Ar
    )
}

/// The UTF-8 character set for this thread while libarchive reads: it converts
/// Unicode names (RAR's) to the current locale's, and in the "C" locale that
/// process has, any name outside ASCII would be lost. `uselocale` changes the
/// calling thread only.
struct Utf8Locale {
    utf8: nix::libc::locale_t,
    previous: nix::libc::locale_t,
}

impl Utf8Locale {
    fn enter() -> Option<Utf8Locale> {
        use nix::libc;
        // SAFETY: newlocale with a valid NUL-terminated name and no base; a null
        // result (no such locale) is handled.
        let utf8 = unsafe {
            libc::newlocale(
                libc::LC_CTYPE_MASK,
                c"C.UTF-8".as_ptr(),
                std::ptr::null_mut(),
            )
        };
        if utf8.is_null() {
            return None;
        }
        // SAFETY: `utf8` is a valid locale object.
        let previous = unsafe { libc::uselocale(utf8) };
        Some(Utf8Locale { utf8, previous })
    }
}

impl Drop for Utf8Locale {
    fn drop(&mut self) {
        // SAFETY: restores the thread's locale, then frees the one made in
        // `enter`, no longer in use.
        unsafe {
            nix::libc::uselocale(self.previous);
            nix::libc::freelocale(self.utf8);
        }
    }
}

/// One libarchive reader over an archive in memory, with one format enabled.
/// Fields drop in order: the reader is freed before the locale is restored.
struct Reader<'a> {
    archive: NonNull<ffi::Archive>,
    _data: &'a [u8],
    _locale: Option<Utf8Locale>,
}

impl<'a> Reader<'a> {
    fn new(kind: ArchiveKind, data: &'a [u8]) -> Result<Reader<'a>, String> {
        let locale = Utf8Locale::enter();
        // SAFETY: archive_read_new has no preconditions; a null result is handled.
        let archive = NonNull::new(unsafe { ffi::archive_read_new() })
            .ok_or_else(|| "libarchive could not start a reader".to_string())?;
        let reader = Reader {
            archive,
            _data: data,
            _locale: locale,
        };
        let a = reader.archive.as_ptr();
        // SAFETY: `a` is a fresh reader, not yet opened; `data` outlives the
        // reader (the borrow in `_data`), which libarchive only reads.
        let status = unsafe {
            match kind {
                ArchiveKind::Rar4 => ffi::archive_read_support_format_rar(a),
                ArchiveKind::Rar5 => ffi::archive_read_support_format_rar5(a),
                ArchiveKind::Cab => ffi::archive_read_support_format_cab(a),
                ArchiveKind::Iso => ffi::archive_read_support_format_iso9660(a),
                ArchiveKind::Lha => ffi::archive_read_support_format_lha(a),
                ArchiveKind::Cpio => ffi::archive_read_support_format_cpio(a),
                ArchiveKind::Ar => ffi::archive_read_support_format_ar(a),
                _ => ffi::ARCHIVE_FATAL,
            }
        };
        if status != ffi::ARCHIVE_OK {
            return Err(format!(
                "{} archives cannot be opened through libarchive",
                format_name(kind),
            ));
        }
        // SAFETY: as above.
        let status = unsafe { ffi::archive_read_open_memory(a, data.as_ptr().cast(), data.len()) };
        if status != ffi::ARCHIVE_OK {
            return Err(format!(
                "damaged {} archive: {}",
                format_name(kind),
                reader.error()
            ));
        }
        Ok(reader)
    }

    /// libarchive's message for the last error.
    fn error(&self) -> String {
        // SAFETY: the reader is live; the string (if any) is valid until the next
        // call on it, and is copied at once.
        let message = unsafe { ffi::archive_error_string(self.archive.as_ptr()) };
        if message.is_null() {
            "unknown error".to_string()
        } else {
            // SAFETY: non-null and NUL-terminated, per libarchive.
            unsafe { CStr::from_ptr(message) }
                .to_string_lossy()
                .into_owned()
        }
    }

    /// The next entry's header, `None` at the end, or libarchive's error.
    fn next_header(&mut self) -> Result<Option<Header>, String> {
        let mut entry: *mut ffi::ArchiveEntry = std::ptr::null_mut();
        // SAFETY: the reader is open; `entry` receives a pointer owned by the
        // reader, used below before any other call on the reader.
        let status = unsafe { ffi::archive_read_next_header(self.archive.as_ptr(), &mut entry) };
        match status {
            ffi::ARCHIVE_EOF => Ok(None),
            ffi::ARCHIVE_OK | ffi::ARCHIVE_WARN if !entry.is_null() => {
                // SAFETY: `entry` was just filled in by libarchive.
                Ok(Some(unsafe { Header::read(entry) }))
            }
            _ => Err(self.error()),
        }
    }
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        // SAFETY: the reader was made by archive_read_new and is freed once.
        unsafe { ffi::archive_read_free(self.archive.as_ptr()) };
    }
}

/// The bytes of the current entry, as libarchive decodes them.
impl Read for Reader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is writable for its length; libarchive writes at most that.
        let n = unsafe {
            ffi::archive_read_data(self.archive.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
        };
        usize::try_from(n)
            .ok()
            .filter(|n| *n <= buf.len())
            .ok_or_else(|| io::Error::other(self.error()))
    }
}

/// What an entry's header says.
struct Header {
    name: String,
    regular_file: bool,
    declared: Option<u64>,
    encrypted: bool,
}

impl Header {
    /// # Safety
    /// `entry` is the live entry libarchive just returned.
    unsafe fn read(entry: *mut ffi::ArchiveEntry) -> Header {
        // SAFETY (whole block): the caller's contract; returned strings are
        // copied before libarchive is called again.
        unsafe {
            // Names the format decoded from Unicode (RAR) come as wide
            // characters; others as bytes, which this process's "C" locale
            // cannot convert.
            let name = wide_text(ffi::archive_entry_pathname_w(entry))
                .or_else(|| text(ffi::archive_entry_pathname_utf8(entry)))
                .or_else(|| text(ffi::archive_entry_pathname(entry)))
                .unwrap_or_default();
            let filetype: c_uint = ffi::archive_entry_filetype(entry);
            let declared = (ffi::archive_entry_size_is_set(entry) != 0)
                .then(|| u64::try_from(ffi::archive_entry_size(entry)).ok())
                .flatten();
            let encrypted: c_int = ffi::archive_entry_is_encrypted(entry);
            // No type at all is a file too: `ar D` writes modes without one.
            let filetype = filetype & ffi::AE_IFMT;
            Header {
                name,
                regular_file: filetype == ffi::AE_IFREG || filetype == 0,
                declared,
                encrypted: encrypted != 0,
            }
        }
    }
}

/// Longest name read from a wide string, in characters (PATH_MAX is 4096).
const NAME_LIMIT: usize = 64 * 1024;

/// A wide (UTF-32) C string as text, or `None` for a null pointer.
///
/// # Safety
/// `s` is null or a NUL-terminated wide string valid for this call.
unsafe fn wide_text(s: *const nix::libc::wchar_t) -> Option<String> {
    if s.is_null() {
        return None;
    }
    let mut name = String::new();
    for i in 0..NAME_LIMIT {
        // SAFETY: the string is NUL-terminated and `i` does not pass the NUL.
        let unit = unsafe { *s.add(i) };
        if unit == 0 {
            break;
        }
        name.push(
            u32::try_from(unit)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{FFFD}'),
        );
    }
    Some(name)
}

/// A C string as text (invalid UTF-8 replaced), or `None` for a null pointer.
///
/// # Safety
/// `s` is null or a NUL-terminated string valid for this call.
unsafe fn text(s: *const c_char) -> Option<String> {
    (!s.is_null()).then(|| {
        // SAFETY: the caller's contract.
        unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned()
    })
}

/// Hands the archive's entries to the sink, one by one, counting them in
/// `delivered`. `packed` is the archive's size: libarchive does not say how many
/// compressed bytes one entry takes, so every entry's ratio cap is counted
/// against the whole archive.
fn entries(
    reader: &mut Reader<'_>,
    kind: ArchiveKind,
    packed: u64,
    budget: &mut Budget,
    sink: &mut Sink<'_>,
    delivered: &mut usize,
) -> Opened {
    let mut opened = Opened::default();
    let what = format!("{} archive", format_name(kind));
    loop {
        if let Err(reason) = budget.check_limits() {
            opened.problem(reason);
            break;
        }
        let header = match reader.next_header() {
            Ok(Some(header)) => header,
            Ok(None) => break,
            Err(e) => {
                opened.problem(format!("damaged {what}: {e}"));
                break;
            }
        };
        if !header.regular_file {
            continue;
        }
        if let Err(reason) = budget.take_entry() {
            opened.problem(reason);
            break;
        }
        *delivered += 1;
        let declared = header.declared.unwrap_or(0);
        if header.encrypted {
            opened.encrypted = true;
            sink(
                budget,
                Entry {
                    name: header.name,
                    size: declared,
                    encrypted: true,
                    data: None,
                    tail: None,
                    sha256: None,
                    note: None,
                },
            );
            continue;
        }
        // After a bomb the archive is not read on: skipping entries would mean
        // decoding them.
        if listed_after_bomb(&header.name, declared, &mut opened, budget, sink) {
            break;
        }
        if let Some(reason) = precheck(declared, packed, &header.name, budget) {
            let prefix = read_prefix(reader, budget);
            deliver_prefix(
                header.name,
                declared,
                reason,
                prefix,
                &mut opened,
                budget,
                sink,
            );
            break;
        }
        // An entry cannot be read twice here: its whole bytes are kept when its
        // first bytes show an archive, and a zip found only at its end is
        // reported by the sink as not opened.
        let unpacked = read_entry(reader, packed, &header.name, Keep::AsNeeded, budget);
        let stopped = unpacked.limit.is_some() || unpacked.error.is_some();
        deliver(
            header.name,
            declared,
            unpacked,
            &what,
            &mut opened,
            budget,
            sink,
        );
        if stopped || budget.exhausted() {
            break;
        }
    }
    opened
}
