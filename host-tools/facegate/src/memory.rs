//! Keeping freed memory in the process.
//!
//! Training and evaluation allocate and free tensors of up to a hundred
//! megabytes many times a second. glibc serves each from a fresh `mmap` and
//! unmaps it on free, so every step faults its pages back in and interrupts
//! the other cores to flush their TLBs: about 15 % of an `mfn` training step
//! on 2 cores (`perf`; `facegate bench train` 28.4 → 32.8 images/s with
//! these settings). Served from the heap and never trimmed, the pages stay
//! mapped and are reused; the cost is that the process keeps its peak size.

/// The same policy for a glibc child process (`facegate bench train` runs its
/// PyTorch peer under it, so both frameworks allocate alike).
pub const GLIBC_TUNABLES: &str = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647";

/// Serves large allocations from the heap and never returns freed heap to
/// the system. Call once at start-up, before other threads exist.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn keep_freed_memory() {
    // SAFETY: mallopt only changes glibc malloc's tuning parameters; it is
    // called before any other thread allocates.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
    }
}

/// Other C libraries keep their defaults.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn keep_freed_memory() {}
