"""Where the eager warp field's time goes: ns per element of each kind of op it runs, on one block of rows as
models/local_affine_warp.py evaluates it, and the floor those costs put under one frame's field.

    python benchmarks/bench_warp_ops.py [--threads 1] [--repeat 200]

Per keypoint and point the field needs five transcendental evaluations (sqrt, exp, cos, sin, exp) and ~16
cheap passes (add / mul / addcmul); one frame is 5 keypoints x 256 channels x 60 x 60 points. The table prints
each op's cost, the floor "transcendentals only" and "all passes" for one frame, and the field itself.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=200)
    a = ap.parse_args(argv)
    import torch

    from models.local_affine_warp import planes_eager, standard_grid

    torch.set_num_threads(a.threads)
    R, H0, W0 = 32, 60, 60                      # the block planes_eager works on
    g = torch.Generator().manual_seed(0)
    x = torch.rand(R, H0, W0, generator=g) * 0.9 + 0.05
    y = torch.rand(R, H0, W0, generator=g)
    col, row, per_row = torch.rand(R, 1, W0), torch.rand(R, H0, 1), torch.rand(R, 1, 1)
    out = torch.empty_like(x)
    cplx = torch.empty(R, H0, W0, dtype=torch.complex64)

    def ns(fn, reps):
        for _ in range(3):
            fn()
        best = float("inf")
        for _ in range(5):                      # best of 5 batches of reps: the box is shared
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            best = min(best, (time.perf_counter() - t0) / reps)
        return best

    ops = {
        "sqrt": lambda: torch.sqrt(x, out=out), "exp": lambda: torch.exp(x, out=out),
        "cos": lambda: torch.cos(x, out=out), "sin": lambda: torch.sin(x, out=out),
        "add (column + row broadcast)": lambda: torch.add(col, row, out=out),
        "mul (per-row constant)": lambda: torch.mul(x, per_row, out=out),
        "addcmul (full fields)": lambda: torch.addcmul(y, x, y, out=out),
        # alternatives that looked like fewer passes: cos and sin in one op, distance in one op
        "polar (cos and sin at once)": lambda: torch.polar(x, y, out=cplx),
        "hypot (column, row broadcast)": lambda: torch.hypot(col, row, out=out),
    }
    cost = {k: ns(f, a.repeat) / x.numel() * 1e9 for k, f in ops.items()}
    points = 5 * 256 * H0 * W0
    trans = cost["sqrt"] + 2 * cost["exp"] + cost["cos"] + cost["sin"]
    cheap = 16 * (cost["mul (per-row constant)"] + cost["addcmul (full fields)"]) / 2
    B, N, C = 1, 5, 256
    kp = torch.rand(B, N, C, 2, generator=g) * 2 - 1
    rho = torch.rand(B, N, C, generator=g) * 0.9 + 0.05
    sim = torch.rand(B, N, C, 4, generator=g) * 2 - 1
    grid = standard_grid(H0, W0)
    with torch.no_grad():
        field = ns(lambda: planes_eager(grid, kp, rho, sim, "official"), max(3, a.repeat // 40))
    print(f"\nEager warp-field ops, {a.threads} torch thread(s), blocks of {R} x {H0} x {W0}\n")
    print("| op | ns per element |")
    print("|---|---|")
    for k, v in cost.items():
        print(f"| {k} | {v:.2f} |")
    print(f"\n| one frame ({points / 1e6:.1f} M keypoint-points) | ms |")
    print("|---|---|")
    print(f"| 5 transcendentals per point only | {trans * points / 1e6:.1f} |")
    print(f"| + 16 cheap passes per point | {(trans + cheap) * points / 1e6:.1f} |")
    print(f"| the eager field (models/local_affine_warp.py) | {field * 1e3:.1f} |")


if __name__ == "__main__":
    main()
