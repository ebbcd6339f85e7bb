//! Heap bytes in use, counted at the global allocator: the daemon wraps its
//! allocator in [`CountingAllocator`] and exports the count as the
//! `congvu_milter_heap_bytes` metric. Next to the process RSS it tells a leak
//! (the count grows) from memory the allocator keeps for reuse (RSS grows, the
//! count does not).

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes handed out and not yet given back; stays 0 in a process whose global
/// allocator is not a [`CountingAllocator`].
static IN_USE: AtomicUsize = AtomicUsize::new(0);

/// A global allocator that counts the bytes it has handed out and not yet had
/// back; the work is done by `A`.
pub struct CountingAllocator<A>(pub A);

// SAFETY: every call is forwarded unchanged to the wrapped allocator; the
// counting touches only an atomic integer.
unsafe impl<A: GlobalAlloc> GlobalAlloc for CountingAllocator<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on as is.
        let p = unsafe { self.0.alloc(layout) };
        if !p.is_null() {
            IN_USE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { self.0.alloc_zeroed(layout) };
        if !p.is_null() {
            IN_USE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `alloc`.
        unsafe { self.0.dealloc(ptr, layout) };
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { self.0.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            let old_size = layout.size();
            if new_size >= old_size {
                IN_USE.fetch_add(new_size - old_size, Ordering::Relaxed);
            } else {
                IN_USE.fetch_sub(old_size - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

/// Heap bytes in use, when the process allocates through a
/// [`CountingAllocator`] (the daemon does; tests and tools may not).
pub fn bytes_in_use() -> Option<usize> {
    // A counting process always holds something (its runtime, the policy).
    Some(IN_USE.load(Ordering::Relaxed)).filter(|&n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;

    #[test]
    fn counts_what_is_handed_out_until_it_comes_back() {
        let a = CountingAllocator(System);
        let before = IN_USE.load(Ordering::Relaxed);
        let layout = Layout::from_size_align(1000, 8).unwrap();
        // SAFETY: a valid non-zero layout; the pointer is freed with the layout
        // it was reallocated to.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            assert_eq!(IN_USE.load(Ordering::Relaxed) - before, 1000);
            let q = a.realloc(p, layout, 5000);
            assert_eq!(IN_USE.load(Ordering::Relaxed) - before, 5000);
            assert_eq!(bytes_in_use(), Some(before + 5000));
            a.dealloc(q, Layout::from_size_align(5000, 8).unwrap());
        }
        assert_eq!(IN_USE.load(Ordering::Relaxed), before);
    }
}
