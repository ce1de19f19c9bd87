//! Typed errors of every kernel and launcher.
use thiserror::Error;

/// What went wrong in a kernel call: always names the kernel and the argument.
#[derive(Debug, Error)]
pub enum KernelError {
    #[error("{kernel}: `{arg}` has {found} elements, expected {expected} (shape {shape})")]
    Length {
        kernel: &'static str,
        arg: &'static str,
        expected: usize,
        found: usize,
        shape: String,
    },
    #[error("{kernel}: `{arg}` has shape {found:?}, expected {expected}")]
    Shape {
        kernel: &'static str,
        arg: &'static str,
        expected: String,
        found: Vec<usize>,
    },
    #[error("{kernel}: `{arg}` has dtype {found}, expected {expected}")]
    Dtype {
        kernel: &'static str,
        arg: &'static str,
        expected: &'static str,
        found: String,
    },
    #[error("{kernel}: empty input ({what} is 0)")]
    Empty {
        kernel: &'static str,
        what: &'static str,
    },
    #[error("{kernel}: {what} = {value} is past the kernel's limit of {limit}")]
    TooLarge {
        kernel: &'static str,
        what: &'static str,
        value: usize,
        limit: usize,
    },
    #[error("{kernel}: `{arg}` is on {found}, expected {expected}")]
    Device {
        kernel: &'static str,
        arg: &'static str,
        expected: String,
        found: String,
    },
    #[error("{kernel}: `{arg}`: {message}")]
    Invalid {
        kernel: &'static str,
        arg: &'static str,
        message: String,
    },
    /// The element count of a shape does not fit in memory's address range.
    #[error("{kernel}: the element count of {dims} overflows (more than {limit})")]
    Overflow {
        kernel: &'static str,
        dims: String,
        limit: usize,
    },
    /// The kernel has no path for this device and dtype (a candle op's `*_fwd` it does not have).
    #[error("{kernel}: no path for {dtype} on {device}")]
    Unsupported {
        kernel: &'static str,
        device: String,
        dtype: String,
    },
    #[error("no CUDA device: {0}")]
    NoCuda(String),
    #[error("CUDA driver error in {context}: {message}")]
    Cuda { context: String, message: String },
}

pub type Result<T> = std::result::Result<T, KernelError>;

/// The product of the named dimensions, with checked arithmetic: at most `isize::MAX` (what a
/// buffer of bytes can hold), so that every product of a subset of them is safe to compute.
pub(crate) fn checked_elements(
    kernel: &'static str,
    dims: &[(&'static str, usize)],
) -> Result<usize> {
    let limit = isize::MAX as usize;
    dims.iter()
        .try_fold(1usize, |n, &(_, d)| n.checked_mul(d))
        .filter(|&n| n <= limit)
        .ok_or_else(|| KernelError::Overflow {
            kernel,
            dims: dims
                .iter()
                .map(|(what, v)| format!("{what} {v}"))
                .collect::<Vec<_>>()
                .join(" × "),
            limit,
        })
}

/// Each named dimension of a kernel's shape is at least 1 and fits the kernels' 32-bit indices,
/// and their product does not overflow (see [`checked_elements`]).
pub(crate) fn check_dims(kernel: &'static str, dims: &[(&'static str, usize)]) -> Result<()> {
    for &(what, value) in dims {
        if value == 0 {
            return Err(KernelError::Empty { kernel, what });
        }
        if value > i32::MAX as usize {
            return Err(KernelError::TooLarge {
                kernel,
                what,
                value,
                limit: i32::MAX as usize,
            });
        }
    }
    checked_elements(kernel, dims)?;
    Ok(())
}

/// A buffer of `found` elements where `shape` needs `expected`.
pub(crate) fn check_len(
    kernel: &'static str,
    arg: &'static str,
    found: usize,
    expected: usize,
    shape: &impl std::fmt::Display,
) -> Result<()> {
    if found == expected {
        return Ok(());
    }
    Err(KernelError::Length {
        kernel,
        arg,
        expected,
        found,
        shape: shape.to_string(),
    })
}
