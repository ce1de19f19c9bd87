#!/usr/bin/env bash
# frugal's GPU check, built by `cargo xtask gpu-bundle`: on a machine with an NVIDIA GPU, a driver
# for CUDA 13.0 or newer (580+) and the CUDA 13 libraries of PyPI's nvidia-* packages (cuBLAS,
# cuRAND, NVRTC, the runtime: what a CUDA 13 PyTorch installs). No Rust, no network. Runs in at
# most 8 minutes and writes everything it prints to run.log:
#   1. every kernel's GPU test against its CPU reference (bin/gpu-tests);
#   2. every fixture through `frugal logits|classify --device cuda` against its golden file, and
#      the same on the CPU of this machine (check.py);
#   3. `frugal compare --device cuda --size base`;
#   4. the kernel benchmark, each kernel beside the device's peak (bin/bench-gpu).
# Exit status: 0 when every step passed, 2 without a GPU, 3 without the CUDA 13 libraries, else
# the number of failed steps.
set -uo pipefail
cd "$(dirname "$0")"
exec > >(tee run.log) 2>&1
echo "frugal GPU check, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -srm)"

# The driver: libcuda.so.1 is what every binary here links against.
has_driver() {
    ldconfig -p 2>/dev/null | grep -q 'libcuda\.so\.1' && return 0
    local d
    for d in /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib /usr/local/nvidia/lib64 \
        /usr/local/nvidia/lib ${LD_LIBRARY_PATH:+${LD_LIBRARY_PATH//:/ }}; do
        [ -e "$d/libcuda.so.1" ] && return 0
    done
    return 1
}
if ! has_driver; then
    echo "no CUDA device: this machine has no NVIDIA driver (libcuda.so.1 not found); nothing to run"
    exit 2
fi

# The CUDA 13 libraries, from PyPI's nvidia-* packages in some Python's site-packages (or from
# FRUGAL_CUDA_LIBS).
want=(libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libnvrtc.so.13 libcudart.so.13)
candidates=()
[ -n "${FRUGAL_CUDA_LIBS:-}" ] && candidates+=("$FRUGAL_CUDA_LIBS")
for py in python3 python; do
    command -v "$py" >/dev/null || continue
    while IFS= read -r dir; do
        candidates+=("$dir/nvidia/cu13/lib")
    done < <("$py" -c 'import site, sys
print("\n".join(site.getsitepackages() + [site.getusersitepackages()] + sys.path))' 2>/dev/null)
done
libs=""
for dir in "${candidates[@]}"; do
    missing=0
    for lib in "${want[@]}"; do [ -e "$dir/$lib" ] || missing=1; done
    if [ "$missing" = 0 ]; then libs="$dir"; break; fi
done
if [ -z "$libs" ]; then
    echo "no CUDA 13 libraries: looked for ${want[*]} in:"
    printf '  %s\n' "${candidates[@]}"
    echo "install them with: pip install nvidia-cublas nvidia-curand nvidia-cuda-nvrtc nvidia-cuda-runtime (13.x),"
    echo "or set FRUGAL_CUDA_LIBS to the folder that holds them"
    exit 3
fi
echo "CUDA 13 libraries: $libs"
export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# The binaries travel xz-compressed (candle's PTX in each makes them large).
for packed in bin/*.xz; do
    exe=${packed%.xz}
    [ -x "$exe" ] && continue
    if command -v xz >/dev/null; then
        xz -dc "$packed" > "$exe"
    else
        python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$packed" "$exe"
    fi || { echo "unpacking $packed failed"; exit 2; }
    chmod +x "$exe"
done

info=$(./bin/frugal info) || { echo "frugal info failed"; exit 2; }
echo "$info"
if grep -q '^GPU: none' <<<"$info"; then
    echo "no CUDA device: the driver reports none"
    exit 2
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.memory --format=csv 2>/dev/null || true

failed=0
step() {
    local name=$1 limit=$2
    shift 2
    echo
    echo "==== $name (at most ${limit} s)"
    local start=$SECONDS
    timeout "$limit" "$@"
    local rc=$?
    echo "==== $name: exit $rc after $((SECONDS - start)) s"
    [ "$rc" = 0 ] || failed=$((failed + 1))
}

export FRUGAL_REQUIRE_GPU=1
step "kernel GPU tests against the CPU references" 150 ./bin/gpu-tests --test-threads=1 --nocapture
step "fixtures on the GPU against their golden files" 90 python3 check.py ./bin/frugal fixtures cuda
step "fixtures on the CPU (the same binary)" 60 python3 check.py ./bin/frugal fixtures cpu
step "frugal compare --device cuda --size base" 120 ./bin/frugal compare --device cuda --size base --plot compare.svg
step "kernel benchmark (fraction of peak, beside cuBLAS)" 90 env FRUGAL_BENCH_JSON=bench-gpu.json ./bin/bench-gpu
echo
echo "failed steps: $failed"
exit "$failed"
