//! frugal's CUDA kernel sources compiled for the host (test-only).
//!
//! `build.rs` compiles every `kernels/cuda/*.cu` against `include/cuda_emu.h`, which runs each
//! block's threads as cooperative fibers on the calling thread. Tests launch a kernel by name with
//! its parameter struct (the same struct, from `frugal_params.h`, that the GPU launch passes) over
//! host buffers, and compare the result with the CPU reference.
use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::fmt;

#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct Dim3 {
    x: c_uint,
    y: c_uint,
    z: c_uint,
}

extern "C" {
    fn frugal_emu_launch(
        name: *const c_char,
        grid: Dim3,
        block: Dim3,
        shared_bytes: c_uint,
        params: *const c_void,
    ) -> c_int;
    fn frugal_emu_last_error() -> *const c_char;
}

/// A launch the emulator refused or a kernel that failed (a barrier not every thread reaches, a
/// shuffle from a lane that returned, an invalid launch configuration, an unknown kernel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmuError(pub String);

impl fmt::Display for EmuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "emulated CUDA launch failed: {}", self.0)
    }
}

impl std::error::Error for EmuError {}

/// Runs `kernel` over `grid` x `block` threads with `shared_bytes` of dynamic shared memory.
///
/// # Safety
/// `params` must be the kernel's parameter struct (`#[repr(C)]`, as generated from
/// `frugal_params.h`), and every pointer in it must be valid, for the access the kernel makes, for
/// the whole call.
pub unsafe fn launch<P>(
    kernel: &str,
    grid: [u32; 3],
    block: [u32; 3],
    shared_bytes: u32,
    params: &P,
) -> Result<(), EmuError> {
    let name = CString::new(kernel).map_err(|_| EmuError(format!("bad kernel name {kernel:?}")))?;
    let dim = |d: [u32; 3]| Dim3 {
        x: d[0],
        y: d[1],
        z: d[2],
    };
    // SAFETY: the name is a valid C string; the caller vouches for `params`.
    let rc = unsafe {
        frugal_emu_launch(
            name.as_ptr(),
            dim(grid),
            dim(block),
            shared_bytes,
            params as *const P as *const c_void,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        // SAFETY: the emulator returns a NUL-terminated string owned by this thread, valid until
        // its next launch on this thread.
        let msg = unsafe { CStr::from_ptr(frugal_emu_last_error()) };
        Err(EmuError(msg.to_string_lossy().into_owned()))
    }
}
