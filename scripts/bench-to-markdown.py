#!/usr/bin/env python3
"""Turns the weight-only GEMM benchmarks' JSON (Google Benchmark) into the tables of docs/benchmarks.md.

Usage: scripts/bench-to-markdown.py bench_weight_only.json [bench_weight_only_tc.json ...]
Each row is one (M, N, K); each column one kernel: µs and the ratio cuBLAS bf16 time / ours (> 1 is faster).
"""
import json
import re
import sys
from collections import defaultdict

for path in sys.argv[1:]:
    with open(path) as file:
        data = json.load(file)
    rows = defaultdict(dict)  # (M, N, K) -> kernel -> benchmark
    for bench in data["benchmarks"]:
        match = re.match(r"([^/]+)/M(\d+)/N(\d+)/K(\d+)/", bench["name"])
        if not match or bench.get("error_occurred"):
            continue
        kernel, m, n, k = match.group(1), *map(int, match.group(2, 3, 4))
        rows[(m, n, k)][kernel] = bench
    kernels = sorted({kernel for row in rows.values() for kernel in row if kernel != "cublas_bf16"})
    print(f"\n`{path.split('/')[-1]}` ({data['context'].get('date', '')})\n")
    print("| M | N | K | cuBLAS bf16 µs | " + " | ".join(f"{kernel} µs (TB/s, ×cuBLAS)" for kernel in kernels) + " |")
    print("|---" * (4 + len(kernels)) + "|")
    for (m, n, k), row in sorted(rows.items()):
        base = row.get("cublas_bf16")
        cells = [str(m), str(n), str(k), f"{base['us']:.1f}" if base else "–"]
        for kernel in kernels:
            bench = row.get(kernel)
            if bench is None:
                cells.append("–")
                continue
            ratio = f", {base['us'] / bench['us']:.2f}x" if base else ""
            cells.append(f"{bench['us']:.1f} ({bench.get('TBps', 0):.2f}{ratio})")
        print("| " + " | ".join(cells) + " |")
