#!/usr/bin/env python3
"""Every fixture through `frugal logits` / `frugal classify` against its golden file.

Usage: check.py FRUGAL_BINARY FIXTURES_DIR DEVICE

f32: the logits within 1e-4 of the reference (HF transformers for RecurrentGemma and BitNet, the
official YOCO and Fastformer code) and the same greedy tokens. bf16 (Griffin and BitNet only):
within 10% of the largest logit, the bound the CPU tests hold bf16 to (bf16 keeps 8 significant
bits; over the fixtures' deliberately sharp layers the logits move 4-6% of the largest), and not
equal to the f32 logits (bf16 really ran). Prints one line per check; exits with the number of
failures.
"""
import json
import os
import subprocess
import sys
import time

# (fixture directory, --arch, new tokens the golden file holds, dtypes)
DECODERS = [
    ("griffin", None, 16, ["f32", "bf16"]),
    ("bitnet_packed", None, 16, ["f32", "bf16"]),
    ("bitnet_master", None, 16, ["f32"]),
    ("yoco_gate_retention", "yoco", 10, ["f32"]),
    ("yoco_sliding_window", "yoco", 10, ["f32"]),
]
ENCODERS = [("fastformer", "fastformer")]


def run(frugal, args):
    start = time.time()
    p = subprocess.run([frugal] + args, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise RuntimeError(p.stderr.strip()[-2000:])
    return json.loads(p.stdout), time.time() - start


def max_diff(a, b):
    if len(a) != len(b):
        raise RuntimeError(f"{len(a)} logits, the reference has {len(b)}")
    return max(abs(x - y) for x, y in zip(a, b))


def main():
    frugal, fixtures, device = sys.argv[1], sys.argv[2], sys.argv[3]
    failures = 0

    def report(ok, line):
        nonlocal failures
        failures += 0 if ok else 1
        print(("ok   " if ok else "FAIL ") + line, flush=True)

    for name, arch, new_tokens, dtypes in DECODERS:
        d = os.path.join(fixtures, name)
        golden = json.load(open(os.path.join(d, "golden.json")))
        ids = ",".join(str(i) for i in golden["input_ids"][0])
        for dtype in dtypes:
            args = ["logits", "--model", d, "--input-ids", ids, "--device", device,
                    "--dtype", dtype]
            if arch:
                args += ["--arch", arch]
            if dtype == "f32":
                args += ["--max-new-tokens", str(new_tokens)]
            try:
                got, secs = run(frugal, args)
            except Exception as e:  # one line per failure, then the next check
                report(False, f"{name} {dtype} on {device}: {e}")
                continue
            diff = max_diff(got["logits"], golden["logits"])
            scale = max(abs(v) for v in golden["logits"])
            if dtype == "f32":
                same = got["new_tokens"] == golden["generate"]["new_tokens"]
                report(diff < 1e-4 and same,
                       f"{name} f32 on {device}: max |logits - reference| {diff:.2e} (< 1e-4), "
                       f"{new_tokens} greedy tokens {'equal' if same else 'DIFFER'} ({secs:.2f} s)")
            else:
                report(1e-3 < diff <= 0.1 * scale,
                       f"{name} bf16 on {device}: max |logits - reference| {diff:.3f} "
                       f"(<= 10% of max |logit| {scale:.2f}) ({secs:.2f} s)")

    for name, arch in ENCODERS:
        d = os.path.join(fixtures, name)
        golden = json.load(open(os.path.join(d, "golden.json")))
        rows = ";".join(",".join(str(i) for i in r) for r in golden["input_ids"])
        try:
            got, secs = run(frugal, ["classify", "--model", d, "--arch", arch,
                                     "--input-ids", rows, "--device", device])
        except Exception as e:
            report(False, f"{name} on {device}: {e}")
            continue
        diff = max_diff(got["logits"], golden["logits"])
        report(diff < 1e-4,
               f"{name} f32 on {device}: max |logits - reference| {diff:.2e} (< 1e-4) ({secs:.2f} s)")
    return failures


if __name__ == "__main__":
    sys.exit(main())
