//! What inspecting one message may still spend: archive entries, unpacked
//! bytes, nesting depth, compression ratio and time. One [`Budget`] is shared by
//! every file of a message; the file inspection (src/inspect/file.rs) and every
//! archive reader (src/inspect/archive/) take from it, and neither needs the other
//! to do so.

use std::time::{Duration, Instant};

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
    pub(super) max_depth: u32,
    max_ratio: u64,
    max_time: Duration,
    deadline: Instant,
    /// Digests of the archives being opened (outermost first), to stop loops.
    pub(super) ancestors: Vec<[u8; 32]>,
    /// Set when a compression bomb was found in the current attachment: nothing
    /// more of it is unpacked (the names are still listed).
    pub(super) bomb: Option<String>,
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

    pub(super) fn depth_reason(&self) -> String {
        format!(
            "archive nested too deep (max_archive_depth = {})",
            self.max_depth
        )
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
}
