//! Sizes that come from users or files (context lengths, window sizes, token counts) are
//! multiplied with checked arithmetic and held against this machine's memory before anything is
//! allocated, so that a huge request is an error naming it instead of an aborted process
//! ("memory allocation failed", "capacity overflow").
use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};

/// The product of `dims`, or an error naming `what` when it overflows `usize`.
pub fn elements(what: &str, dims: &[usize]) -> Result<usize> {
    dims.iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| Error::TooLarge {
            what: what.to_string(),
            requested: format!("{dims:?} elements"),
            limit: format!("{} elements", usize::MAX),
        })
}

/// Asks the C allocator (glibc) to keep memory the process frees rather than hand it back to the
/// kernel at once. A decode loop frees and allocates the same large buffers every token (the
/// logits alone are 0.5 MB at a 128256-token vocabulary); glibc's defaults give a freed block of
/// more than 128 KiB (mapped apart, or at the top of a heap) back to the kernel, so every token
/// pays page faults for fresh zeroed pages and, for pages both threads touched, TLB-shootdown
/// interrupts, which exit to the hypervisor on a virtual machine. Here blocks below 32 MiB come
/// from the heaps and a heap is trimmed only past 1 GiB free. On a 2-vCPU virtual machine, BitNet
/// at 2B4T's widths with 4 layers decoded at a median 44.8 against 41.6 tok/s without it (three
/// alternating runs each, the machine's own spread ±10%; README, "On an Intel Xeon"). The cost
/// is memory kept mapped up to the program's peak. Call it once, early, in a program that runs
/// models (the `frugal` binary does); a library does not set it for you. Elsewhere than glibc it
/// does nothing.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets the allocator's parameters, under its own lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 16 << 20);
    }
}

/// This machine's physical memory in bytes (`MemTotal` on Linux); `isize::MAX` where unknown.
pub fn memory_limit() -> usize {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
            kib.checked_mul(1024)
        })
        .unwrap_or(isize::MAX as usize)
}

/// `bytes` in human units, for messages.
pub fn human_bytes(bytes: u128) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Checks that `count` items of `item_bytes` each fit in this machine's memory; returns the
/// bytes. `what` names the buffer and the input it was sized from.
pub fn check_bytes(what: &str, count: usize, item_bytes: usize) -> Result<usize> {
    let limit = memory_limit();
    let requested = count as u128 * item_bytes as u128;
    if requested > limit as u128 {
        return Err(Error::TooLarge {
            what: what.to_string(),
            requested: human_bytes(requested),
            limit: format!("this machine's memory, {}", human_bytes(limit as u128)),
        });
    }
    Ok(requested as usize)
}

/// A zero tensor of `dims`, after checking its size (see [`check_bytes`]).
pub fn zeros(what: &str, dims: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
    let n = elements(what, dims)?;
    check_bytes(what, n, dtype.size_in_bytes())?;
    Ok(Tensor::zeros(dims, dtype, device)?)
}

/// `vec![value; n]`, after checking its size (see [`check_bytes`]) and reserving fallibly.
pub fn filled_vec<T: Clone>(what: &str, n: usize, value: T) -> Result<Vec<T>> {
    let bytes = check_bytes(what, n, std::mem::size_of::<T>())?;
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| Error::TooLarge {
        what: what.to_string(),
        requested: human_bytes(bytes as u128),
        limit: "the memory this process could reserve".to_string(),
    })?;
    v.resize(n, value);
    Ok(v)
}

/// `a + b` for sizes from the user, or an error naming both.
pub fn add(what: &str, a: usize, b: usize) -> Result<usize> {
    a.checked_add(b).ok_or_else(|| Error::TooLarge {
        what: what.to_string(),
        requested: format!("{a} + {b}"),
        limit: format!("{}", usize::MAX),
    })
}
