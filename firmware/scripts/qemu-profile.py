#!/usr/bin/env python3
"""Where the emulated Cortex-M7 spends its instructions.

Usage: firmware/scripts/qemu-profile.py FIRMWARE.elf [TOP]

Boots the ELF on QEMU mps2-an500 under `-icount shift=0` with QEMU's
translation-block trace (`-d in_asm,exec,nochain`), weighs every executed
block by its instruction count, and maps the busiest blocks to source lines
(with their inlining chain) through the ELF's debug info (`llvm-addr2line`).
Prints the share of instructions per engine kernel, then per source line.
The firmware runs at the speed of the trace (about a minute for the self-test).
"""
import collections
import json
import re
import subprocess
import sys

KERNELS = ("conv1x1", "depthwise_lanes", "dense", "conv2d_reference", "add", "embed")


def trace(elf):
    """Instructions executed per translation-block start address."""
    qemu = [
        "qemu-system-arm", "-machine", "mps2-an500", "-cpu", "cortex-m7",
        "-nographic", "-monitor", "none", "-serial", "null",
        "-semihosting-config", "enable=on,target=native", "-icount", "shift=0",
        "-d", "in_asm,exec,nochain", "-D", "/dev/stdout", "-kernel", elf,
    ]
    proc = subprocess.Popen(qemu, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    size, runs, block = {}, collections.Counter(), None
    exec_line = re.compile(rb"Trace \d+: \S+ \[[0-9a-f]+/([0-9a-f]+)/")
    for line in proc.stdout:
        if line.startswith(b"Trace "):
            m = exec_line.match(line)
            if m:
                runs[int(m.group(1), 16)] += 1
        elif line.startswith(b"IN:"):
            block = None
        elif line.startswith(b"0x") and b":" in line[:12]:
            addr = int(line.split(b":")[0], 16)
            if block is None:
                block = addr
                size[block] = 0
            size[block] += 1
    proc.wait()
    return {pc: n * size.get(pc, 1) for pc, n in runs.items()}


def main():
    elf = sys.argv[1]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 25
    weights = trace(elf)
    total = sum(weights.values())
    busiest = sorted(weights.items(), key=lambda kv: -kv[1])[:400]
    out = subprocess.run(
        ["llvm-addr2line", "-f", "-i", "-C", "--output-style=JSON", "-e", elf]
        + [f"0x{pc:x}" for pc, _ in busiest],
        capture_output=True, text=True, check=True,
    ).stdout
    by_kernel, by_line = collections.Counter(), collections.Counter()
    for (_, w), entry in zip(busiest, json.loads(out)):
        chain = [
            (f["FunctionName"].split("::")[-1].split("<")[0], f["Line"]) for f in entry["Symbol"]
        ]
        kernel = next((f for f, _ in chain if f in KERNELS), chain[-1][0])
        by_kernel[kernel] += w
        by_line[" <- ".join(f"{f}:{line}" for f, line in chain[:3])] += w
    print(f"{total} instructions in all (the whole self-test)")
    for name, w in by_kernel.most_common(10):
        print(f"{100 * w / total:5.1f}%  {name}")
    print()
    for name, w in by_line.most_common(top):
        print(f"{100 * w / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
