//! What the CPU offers the fast paths, detected at run time.

/// SIMD features the fast CPU paths can use on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuFeatures {
    pub avx2: bool,
    pub fma: bool,
    pub f16c: bool,
    pub avx512f: bool,
    pub neon: bool,
}

impl CpuFeatures {
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            CpuFeatures {
                avx2: std::arch::is_x86_feature_detected!("avx2"),
                fma: std::arch::is_x86_feature_detected!("fma"),
                f16c: std::arch::is_x86_feature_detected!("f16c"),
                avx512f: std::arch::is_x86_feature_detected!("avx512f"),
                neon: false,
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            CpuFeatures {
                avx2: false,
                fma: false,
                f16c: false,
                avx512f: false,
                neon: std::arch::is_aarch64_feature_detected!("neon"),
            }
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            CpuFeatures {
                avx2: false,
                fma: false,
                f16c: false,
                avx512f: false,
                neon: false,
            }
        }
    }

    /// Feature names present, e.g. `["avx2", "fma"]`.
    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.avx2, "avx2"),
            (self.fma, "fma"),
            (self.f16c, "f16c"),
            (self.avx512f, "avx512f"),
            (self.neon, "neon"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }
}

/// A raw pointer that worker threads may share, each writing a disjoint part of the buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SharedMut<T>(pub(crate) *mut T);
impl<T> SharedMut<T> {
    /// The pointer (a method, so closures capture the whole `Sync` wrapper, not its field).
    pub(crate) fn ptr(&self) -> *mut T {
        self.0
    }
}

// SAFETY: users guarantee that threads write disjoint elements and that the buffer outlives them.
unsafe impl<T: Send> Send for SharedMut<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for SharedMut<T> {}

/// The elements a contiguous candle layout covers in its storage; an error naming the kernel and
/// argument otherwise.
pub(crate) fn contiguous<'a, T>(
    data: &'a [T],
    layout: &candle_core::Layout,
    kernel: &str,
    arg: &str,
) -> candle_core::Result<&'a [T]> {
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{kernel}: `{arg}` is not contiguous")))?;
    Ok(&data[start..end])
}
