//! Weight bytes on transparent huge pages: the packed matrices a decode step streams from memory
//! every token (ternary layers, the compact and 4-bit heads).
//!
//! Why: a GEMV that reads hundreds of MB per token is bound by how many cache lines each core
//! keeps in flight, and with 4 KiB pages it stalls at every page: a TLB miss and a page walk per
//! 64 lines, and the hardware prefetcher stops at each page boundary. On the README's Xeon VM
//! (2 vCPUs) a plain threaded read of 512 MiB ran at 24–26 GB/s on 4 KiB pages and 29–36 GB/s on
//! 2 MiB ones, and a C copy of the 12-bit head's loop over 492 MB at 19.4 → 25.7 GB/s.
//!
//! How: on Linux the bytes get a mapping of their own (`mmap`), its start placed on a 2 MiB
//! boundary, and `madvise(MADV_HUGEPAGE)` over every whole 2 MiB of it before anything is
//! written, so the first writes fault in huge pages (the kernel's THP `madvise` mode, the common
//! default, honours it). A tail shorter than 2 MiB stays on ordinary pages: no memory is spent
//! beyond the bytes asked for. Small buffers, other systems, or a refused mapping: a plain `Vec`.
//! Either way the contents and every use are the same; only the speed differs.
use std::ops::{Deref, DerefMut};

/// A huge page's size on x86-64 and aarch64 Linux (with 4 KiB base pages).
pub const HUGE_PAGE: usize = 2 << 20;

/// A fixed-length byte buffer, backed by huge pages where the system gives them (module docs).
pub struct HugeBytes {
    memory: Memory,
}

enum Memory {
    Vec(Vec<u8>),
    /// `len` bytes at `start`, inside an owned anonymous mapping of `len + HUGE_PAGE` bytes at
    /// `base`.
    #[cfg(target_os = "linux")]
    Mapped {
        base: *mut libc::c_void,
        start: *mut u8,
        len: usize,
    },
}

// SAFETY: `HugeBytes` owns its memory exclusively, as a `Vec<u8>` does (the raw pointers of
// `Memory::Mapped` are never shared or aliased outside `&self`/`&mut self` borrows), so moving it
// to another thread or sharing `&HugeBytes` between threads is as sound as for `Vec<u8>`.
unsafe impl Send for HugeBytes {}
// SAFETY: as above; `&HugeBytes` only gives out `&[u8]`.
unsafe impl Sync for HugeBytes {}

impl HugeBytes {
    /// `len` bytes, each `fill`.
    pub fn filled(len: usize, fill: u8) -> Self {
        let mut out = Self::zeroed(len);
        if fill != 0 {
            out.fill(fill);
        }
        out
    }

    /// `len` zero bytes (fresh pages: nothing is touched until written).
    pub fn zeroed(len: usize) -> Self {
        #[cfg(target_os = "linux")]
        if len >= HUGE_PAGE {
            if let Some(mapped) = Self::mapped(len) {
                return mapped;
            }
        }
        HugeBytes {
            memory: Memory::Vec(vec![0; len]),
        }
    }

    /// A copy of `bytes`.
    pub fn copy_of(bytes: &[u8]) -> Self {
        let mut out = Self::zeroed(bytes.len());
        out.copy_from_slice(bytes);
        out
    }

    /// Whether the bytes lie on a mapping with huge pages asked for (else a plain `Vec`).
    pub fn is_mapped(&self) -> bool {
        !matches!(self.memory, Memory::Vec(_))
    }

    #[cfg(target_os = "linux")]
    fn mapped(len: usize) -> Option<Self> {
        // Room to move the start up to the next 2 MiB boundary.
        let size = len.checked_add(HUGE_PAGE)?;
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing: no file,
        // no existing memory affected. The result is checked before use.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return None;
        }
        let offset = (base as usize).next_multiple_of(HUGE_PAGE) - base as usize;
        // SAFETY: `offset < HUGE_PAGE`, so `start..start + len` lies inside the `size` =
        // `len + HUGE_PAGE` bytes mapped at `base`.
        let start = unsafe { (base as *mut u8).add(offset) };
        // Nothing is written yet, so every whole 2 MiB of the bytes faults in as a huge page.
        advise_huge_pages(start as usize, len);
        Some(HugeBytes {
            memory: Memory::Mapped { base, start, len },
        })
    }
}

/// Asks Linux for transparent huge pages over the whole 2 MiB pages inside `start..start + len`
/// (rounded inwards), which must lie in memory the caller owns: `MADV_HUGEPAGE` changes only how
/// the kernel backs those pages, never their contents. A hint: a kernel without THP refuses it
/// and the memory works the same. Nothing elsewhere.
pub(crate) fn advise_huge_pages(start: usize, len: usize) {
    #[cfg(target_os = "linux")]
    {
        let (first, last) = (
            start.next_multiple_of(HUGE_PAGE),
            (start + len) / HUGE_PAGE * HUGE_PAGE,
        );
        if last > first {
            // SAFETY: `first..last` lies inside the caller's memory (rounded inwards), and the
            // advice leaves its contents as they are.
            unsafe {
                libc::madvise(
                    first as *mut libc::c_void,
                    last - first,
                    libc::MADV_HUGEPAGE,
                );
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (start, len);
}

impl Drop for HugeBytes {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        if let Memory::Mapped { base, len, .. } = self.memory {
            // SAFETY: the `len + HUGE_PAGE` bytes at `base` are the mapping this value created
            // and owns; nothing borrows it once the value is dropped.
            unsafe {
                libc::munmap(base, len + HUGE_PAGE);
            }
        }
    }
}

impl Deref for HugeBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.memory {
            Memory::Vec(v) => v,
            // SAFETY: `start..start + len` is inside the owned mapping (`mapped`), initialised
            // (zero pages or written bytes), and borrowed no longer than `self`.
            #[cfg(target_os = "linux")]
            Memory::Mapped { start, len, .. } => unsafe {
                std::slice::from_raw_parts(*start, *len)
            },
        }
    }
}

impl DerefMut for HugeBytes {
    fn deref_mut(&mut self) -> &mut [u8] {
        match &mut self.memory {
            Memory::Vec(v) => v,
            // SAFETY: as in `deref`, and `&mut self` makes this the only borrow.
            #[cfg(target_os = "linux")]
            Memory::Mapped { start, len, .. } => unsafe {
                std::slice::from_raw_parts_mut(*start, *len)
            },
        }
    }
}

impl Clone for HugeBytes {
    fn clone(&self) -> Self {
        Self::copy_of(self)
    }
}

impl PartialEq for HugeBytes {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl std::fmt::Debug for HugeBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HugeBytes")
            .field("len", &self.len())
            .field("mapped", &self.is_mapped())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::{HugeBytes, HUGE_PAGE};

    /// Small and large buffers hold what is written, start zeroed or filled, clone and compare
    /// by contents; a large one on Linux is a mapping whose start is on a huge-page boundary.
    #[test]
    fn buffers_hold_their_bytes_and_large_ones_start_on_a_huge_page() {
        for len in [0, 1, 4095, HUGE_PAGE - 1, HUGE_PAGE, 3 * HUGE_PAGE + 12345] {
            let zero = HugeBytes::zeroed(len);
            assert_eq!(zero.len(), len);
            assert!(zero.iter().all(|&b| b == 0), "len {len}");
            let mut b = HugeBytes::filled(len, 0x55);
            assert!(b.iter().all(|&v| v == 0x55), "len {len}");
            for (i, v) in b.iter_mut().enumerate() {
                *v = (i * 31 % 251) as u8;
            }
            let c = b.clone();
            assert_eq!(c, b);
            assert!(c
                .iter()
                .enumerate()
                .all(|(i, &v)| v == (i * 31 % 251) as u8));
            if len > 0 {
                let mut d = c.clone();
                d[len - 1] ^= 1;
                assert!(d != c, "len {len}: a changed last byte compares unequal");
            }
            if cfg!(target_os = "linux") && len >= HUGE_PAGE {
                assert!(b.is_mapped(), "len {len}");
                assert_eq!(b.as_ptr() as usize % HUGE_PAGE, 0, "len {len}");
            } else {
                assert!(!b.is_mapped(), "len {len}");
            }
        }
    }

    /// On Linux with THP in `madvise` or `always` mode, a written 8 MiB buffer is backed by huge
    /// pages (`AnonHugePages` of its mapping in /proc/self/smaps); skipped, saying so, elsewhere.
    #[test]
    fn written_buffers_get_huge_pages_where_the_kernel_offers_them() {
        let mode = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .unwrap_or_default();
        if !(mode.contains("[madvise]") || mode.contains("[always]")) {
            eprintln!("SKIPPED: transparent huge pages are not offered here ({mode:?})");
            return;
        }
        let b = HugeBytes::filled(4 * HUGE_PAGE, 7);
        let at = b.as_ptr() as usize;
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
        let mut inside = false;
        let mut huge_kb = None;
        for line in smaps.lines() {
            let first = line.split_whitespace().next().unwrap_or("");
            if let Some((lo, hi)) = first.split_once('-') {
                if let (Ok(lo), Ok(hi)) =
                    (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
                {
                    inside = lo <= at && at < hi;
                    continue;
                }
            }
            if inside && line.starts_with("AnonHugePages:") {
                huge_kb = line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<usize>().ok());
            }
        }
        let huge_kb = huge_kb.unwrap_or(0);
        assert!(
            huge_kb >= 2048,
            "the buffer's mapping has {huge_kb} kB of huge pages (THP mode {mode:?})"
        );
    }
}
