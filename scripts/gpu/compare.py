#!/usr/bin/env python3
"""Compares tensors of two safetensors files: `compare.py GOT REF TOL [KEY ...]`.

Prints the max absolute difference per key and exits 1 when one exceeds TOL."""
import sys

from safetensors.numpy import load_file

got, ref, tol = load_file(sys.argv[1]), load_file(sys.argv[2]), float(sys.argv[3])
keys = sys.argv[4:] or sorted(got)
bad = 0
for k in keys:
    d = float(abs(got[k].astype("float64") - ref[k].astype("float64")).max())
    ok = d <= tol
    bad += not ok
    print(f"  {k:14s} max|diff| {d:.3e} {'ok' if ok else 'FAIL'} (tol {tol:g})")
sys.exit(1 if bad else 0)
