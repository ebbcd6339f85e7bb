//! What inspecting one message may still spend: archive entries, unpacked
//! bytes, nesting depth, compression ratio, time, and memory. One [`Budget`] is
//! shared by every file of a message; the file inspection (src/inspect/file.rs)
//! and every archive reader (src/inspect/archive/) take from it, and neither
//! needs the other to do so.
//!
//! Memory is the one resource shared with other messages: a [`MemoryAccount`]
//! charges what the inspection holds (decoded parts beyond the body's own copy,
//! archive entries held whole, decoder dictionaries, names and paths) to a
//! [`MemoryPool`], in the daemon the `[limits] max_buffered_bytes` budget. Before
//! this account, one 7.8 MB message holding a 400 MiB deflated entry made `scan`
//! peak at 964 MB, and six of them took the daemon to 3.1 GB under a 512 MiB
//! budget: unpacked bytes were held whole and charged to nothing.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::policy::{ByteSize, LimitsSection};

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
    /// Where held memory is charged; `None` charges nothing (the offline `scan`,
    /// tests): memory is then bounded by the other limits alone.
    memory: Option<Arc<MemoryAccount>>,
    /// Document text (markup, PDF content streams) still to be read for
    /// classification stamps in this message (src/inspect/text/).
    pub(crate) text_left: u64,
    /// Whether documents and body text are read for classification stamps at
    /// all: only a message with a recipient outside the state network needs it
    /// (src/rules/classified.rs).
    pub(crate) reads_text: bool,
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
            memory: None,
            text_left: crate::inspect::text::MAX_MESSAGE_TEXT,
            reads_text: true,
        }
    }

    /// The same budget, charging what the inspection holds to `memory`.
    pub fn with_memory(mut self, memory: Option<Arc<MemoryAccount>>) -> Budget {
        self.memory = memory;
        self
    }

    /// Entries still allowed.
    pub fn entries_left(&self) -> u64 {
        self.entries_left
    }

    /// Unpacked bytes still allowed.
    pub fn bytes_left(&self) -> u64 {
        self.bytes_left
    }

    /// True once the inspection must stop: the time limit has passed, or memory
    /// ran short (nothing more can be held, so nothing more is read).
    pub fn exhausted(&self) -> bool {
        self.check_limits().is_err()
    }

    /// Err(reason) once the time limit has passed or memory ran short.
    pub fn check_limits(&self) -> Result<(), String> {
        if Instant::now() >= self.deadline {
            return Err(format!(
                "inspection time limit reached (max_inspect_time = {} s)",
                self.max_time.as_secs()
            ));
        }
        match self.memory.as_ref().and_then(|m| m.shortfall()) {
            Some(short) => Err(short.to_string()),
            None => Ok(()),
        }
    }

    /// Holds `bytes` of memory for this message, or says why it cannot.
    pub fn hold(&mut self, bytes: u64) -> Result<(), String> {
        match &self.memory {
            Some(m) if !m.hold(bytes) => {
                Err(m.shortfall().map(|s| s.to_string()).unwrap_or_default())
            }
            _ => Ok(()),
        }
    }

    /// Gives back `bytes` held with [`Budget::hold`].
    pub fn release(&mut self, bytes: u64) {
        if let Some(m) = &self.memory {
            m.release(bytes);
        }
    }

    /// Takes one entry from the budget, or says which limit stops it.
    pub fn take_entry(&mut self) -> Result<(), String> {
        self.check_limits()?;
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

    /// Gives back `n` unpacked bytes that are about to be unpacked again (an
    /// entry read a second time, whole).
    pub(crate) fn refund_bytes(&mut self, n: u64) {
        self.bytes_left = self.bytes_left.saturating_add(n).min(self.max_unpacked);
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

/// Memory shared with other messages: the daemon's `[limits] max_buffered_bytes`
/// (src/milter/budget.rs).
pub trait MemoryPool: Send + Sync {
    /// Takes `bytes` if the pool has them; false leaves the pool unchanged.
    fn try_take(&self, bytes: u64) -> bool;
    fn give_back(&self, bytes: u64);
    /// Bytes held by all messages now.
    fn used(&self) -> u64;
    /// The pool's size.
    fn limit(&self) -> u64;
}

/// Why an inspection could not hold the memory it needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemoryShortfall {
    /// Other messages hold the memory now; the same message can be inspected
    /// later (the sender is told to retry).
    Busy { needed: u64, used: u64, limit: u64 },
    /// The message needs more than the whole budget even with nothing else in
    /// memory: retrying would never help.
    TooLarge { needed: u64, limit: u64 },
}

impl fmt::Display for MemoryShortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemoryShortfall::Busy {
                needed,
                used,
                limit,
            } => write!(
                f,
                "inspection needs {} more memory; messages in progress hold {} of the {} budget ([limits] max_buffered_bytes)",
                ByteSize(*needed),
                ByteSize(*used),
                ByteSize(*limit)
            ),
            MemoryShortfall::TooLarge { needed, limit } => write!(
                f,
                "inspection needs {} of memory, more than the whole budget allows a message of this size ([limits] max_buffered_bytes = {})",
                ByteSize(*needed),
                ByteSize(*limit)
            ),
        }
    }
}

/// The memory one message's inspection holds, charged to a [`MemoryPool`].
///
/// The first `allowance` bytes held are not charged: the caller already charged
/// them (the session counts a decoded copy of every body byte). `ceiling` is the
/// most this message may charge even alone in the pool (the pool's size less
/// what the message's body already holds); past it the shortfall is
/// [`MemoryShortfall::TooLarge`], below it [`MemoryShortfall::Busy`]. After the
/// first shortfall nothing more is held, and the inspection stops. What is
/// charged is given back when the account is dropped.
pub struct MemoryAccount {
    pool: Arc<dyn MemoryPool>,
    allowance: u64,
    ceiling: u64,
    state: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    /// Bytes held now, the allowance included.
    held: u64,
    /// Bytes taken from the pool now.
    charged: u64,
    /// The most held at once.
    peak: u64,
    shortfall: Option<MemoryShortfall>,
}

impl fmt::Debug for MemoryAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryAccount")
            .field("allowance", &self.allowance)
            .field("ceiling", &self.ceiling)
            .field("state", &*self.lock())
            .finish()
    }
}

impl MemoryAccount {
    pub fn new(pool: Arc<dyn MemoryPool>, allowance: u64, ceiling: u64) -> Arc<MemoryAccount> {
        Arc::new(MemoryAccount {
            pool,
            allowance,
            ceiling,
            state: Mutex::new(Held::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Holds `bytes` more; false, with the shortfall recorded, when the pool
    /// cannot give them (or a shortfall was recorded before).
    pub fn hold(&self, bytes: u64) -> bool {
        let mut s = self.lock();
        if s.shortfall.is_some() {
            return false;
        }
        let held = s.held.saturating_add(bytes);
        let to_charge = held.saturating_sub(self.allowance);
        let more = to_charge.saturating_sub(s.charged);
        if more > 0 {
            if to_charge > self.ceiling {
                s.shortfall = Some(MemoryShortfall::TooLarge {
                    needed: to_charge,
                    limit: self.pool.limit(),
                });
                return false;
            }
            if !self.pool.try_take(more) {
                s.shortfall = Some(MemoryShortfall::Busy {
                    needed: more,
                    used: self.pool.used(),
                    limit: self.pool.limit(),
                });
                return false;
            }
            s.charged = to_charge;
        }
        s.held = held;
        s.peak = s.peak.max(held);
        true
    }

    /// Gives back `bytes` held before.
    pub fn release(&self, bytes: u64) {
        let mut s = self.lock();
        s.held = s.held.saturating_sub(bytes);
        let to_charge = s.held.saturating_sub(self.allowance);
        if s.charged > to_charge {
            self.pool.give_back(s.charged - to_charge);
            s.charged = to_charge;
        }
    }

    /// Why memory ran short, if it did.
    pub fn shortfall(&self) -> Option<MemoryShortfall> {
        self.lock().shortfall.clone()
    }

    /// Bytes held now.
    pub fn held(&self) -> u64 {
        self.lock().held
    }

    /// The most held at once.
    pub fn peak(&self) -> u64 {
        self.lock().peak
    }
}

impl Drop for MemoryAccount {
    fn drop(&mut self) {
        let s = self.lock();
        if s.charged > 0 {
            self.pool.give_back(s.charged);
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
        assert!(b.check_limits().unwrap_err().contains("max_inspect_time"));
        assert_eq!(b.ratio_cap(1), RATIO_FLOOR);
        assert_eq!(b.ratio_cap(1 << 20), 10 << 20);
        assert!(b.unpacked_reason().contains("max_unpacked_size = 10"));
    }

    /// A pool of `limit` bytes for the tests.
    struct Pool {
        limit: u64,
        used: std::sync::atomic::AtomicU64,
    }

    impl MemoryPool for Pool {
        fn try_take(&self, bytes: u64) -> bool {
            use std::sync::atomic::Ordering::SeqCst;
            self.used
                .fetch_update(SeqCst, SeqCst, |u| {
                    u.checked_add(bytes).filter(|&n| n <= self.limit)
                })
                .is_ok()
        }
        fn give_back(&self, bytes: u64) {
            self.used
                .fetch_sub(bytes, std::sync::atomic::Ordering::SeqCst);
        }
        fn used(&self) -> u64 {
            self.used.load(std::sync::atomic::Ordering::SeqCst)
        }
        fn limit(&self) -> u64 {
            self.limit
        }
    }

    fn pool(limit: u64, used: u64) -> Arc<Pool> {
        Arc::new(Pool {
            limit,
            used: used.into(),
        })
    }

    #[test]
    fn memory_beyond_the_allowance_is_charged_and_given_back() {
        let p = pool(1000, 0);
        let account = MemoryAccount::new(p.clone(), 100, 500);
        assert!(account.hold(80));
        assert_eq!(p.used(), 0, "within the allowance");
        assert!(account.hold(70));
        assert_eq!(p.used(), 50);
        account.release(100);
        assert_eq!((account.held(), p.used()), (50, 0));
        assert!(account.hold(300));
        assert_eq!((account.peak(), p.used()), (350, 250));
        drop(account);
        assert_eq!(p.used(), 0);
    }

    #[test]
    fn a_full_pool_is_busy_and_a_need_past_the_ceiling_never_fits() {
        let p = pool(1000, 900);
        let account = MemoryAccount::new(p.clone(), 0, 500);
        assert!(!account.hold(200));
        let busy = account.shortfall().unwrap();
        assert!(
            matches!(busy, MemoryShortfall::Busy { needed: 200, .. }),
            "{busy:?}"
        );
        assert!(!account.hold(1), "nothing more after a shortfall");
        assert_eq!(p.used(), 900);

        let p = pool(1000, 0);
        let account = MemoryAccount::new(p.clone(), 0, 500);
        assert!(account.hold(400));
        assert!(!account.hold(101));
        let too_large = account.shortfall().unwrap();
        assert!(matches!(
            too_large,
            MemoryShortfall::TooLarge { needed: 501, .. }
        ));
        assert!(too_large.to_string().contains("more than the whole budget"));
        let mut budget = Budget::new(&LimitsSection::default()).with_memory(Some(account));
        assert!(budget.exhausted(), "the inspection stops");
        assert!(budget.hold(1).is_err());
    }
}
