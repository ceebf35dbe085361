#!/usr/bin/env python3
"""Reads Prometheus/OpenMetrics text on stdin and prints quantiles of one
histogram (linear interpolation inside buckets, as histogram_quantile does)."""
import sys

name, qs = sys.argv[1], [float(q) for q in sys.argv[2:]]
buckets = {}
for line in sys.stdin:
    if line.startswith(name + "_bucket"):
        le = line.split('le="')[1].split('"')[0]
        buckets[float("inf") if le == "+Inf" else float(le)] = buckets.get(le, 0) + float(line.split()[-1])
if not buckets:
    print(f"{name}: no samples")
    sys.exit(0)
bounds = sorted(buckets)
total = buckets[bounds[-1]]
out = []
for q in qs:
    rank, prev_b, prev_c = q * total, 0.0, 0.0
    for b in bounds:
        c = buckets[b]
        if c >= rank:
            v = prev_b if b == float("inf") or c == prev_c else prev_b + (b - prev_b) * (rank - prev_c) / (c - prev_c)
            out.append(f"p{q * 100:g} <= {v:.2f}")
            break
        prev_b, prev_c = b, c
print(f"{name} ({int(total)} samples): " + ", ".join(out))
