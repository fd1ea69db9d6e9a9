//! Giving memory back after a burst of password hashes.
//!
//! Each Argon2id hash allocates `password_hash_memory_kib` (19 MiB by default) at once. The
//! server's allocator, mimalloc, keeps freed segments for reuse and returns them to the system
//! lazily, on the freeing thread's later allocations; a blocking thread that hashed a password
//! may then idle for a long time, and the process would keep the peak of a burst for good.

/// Returns what this thread freed to the system now (`mi_collect(true)`). A no-op cost when
/// mimalloc is not the global allocator (its heap for this thread is then empty).
pub fn release_freed_memory() {
    // SAFETY: mi_collect only walks and trims this thread's own mimalloc heap; it takes no
    // pointers and is documented as callable at any time.
    unsafe { libmimalloc_sys::mi_collect(true) }
}
