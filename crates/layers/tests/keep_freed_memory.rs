//! `alloc::keep_freed_memory` (a test binary of its own: the allocator's parameters and counters
//! are the whole process's).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn freed_buffers_stay_with_the_process() {
    // SAFETY: mallinfo2 only reads the allocator's counters.
    let info = || unsafe { libc::mallinfo2() };
    layers::alloc::keep_freed_memory();
    let before = info();
    let size = 8 << 20;
    let buffer = std::hint::black_box(vec![1u8; size]);
    let during = info();
    // Glibc's default would map an 8 MiB block apart (`hblkhd`) and unmap it when freed.
    assert_eq!(
        during.hblkhd, before.hblkhd,
        "an 8 MiB block was mapped apart"
    );
    drop(buffer);
    let after = info();
    // Freed, it stays in the heap (`fordblks`: free bytes held), not trimmed back to the kernel.
    assert!(
        after.fordblks >= size,
        "free bytes held: {} before, {} after freeing {size}",
        before.fordblks,
        after.fordblks
    );
}
