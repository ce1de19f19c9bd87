//! Compiles every kernel in `kernels/cuda/*.cu` (through `src/entries.cpp`) and the emulator's own
//! self-test kernels for the host, against `include/cuda_emu.h`.
use std::path::Path;

fn main() {
    let cuda = Path::new("../cuda");
    println!("cargo:rerun-if-changed=include/cuda_emu.h");
    println!("cargo:rerun-if-changed=src/entries.cpp");
    println!("cargo:rerun-if-changed=selftest.cu");
    println!("cargo:rerun-if-changed=../cuda");
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++17")
        .file("src/entries.cpp")
        .include("include")
        .include(cuda.join("include"))
        .include(cuda)
        // Kernels run millions of fiber steps in tests: optimise whatever the profile.
        .opt_level(2)
        .warnings(true)
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-Wno-unknown-pragmas");
    build.compile("frugal_cuda_emu");
}
