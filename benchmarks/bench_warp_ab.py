"""One warp layer: this checkout's models/local_affine_warp.py against the one of a git revision, interleaved in
one process (so machine load hits both alike), plus their largest output difference.

    python benchmarks/bench_warp_ab.py --rev 08d9642 [--sizes 64 128 256 288] [--batches 1 8] [--threads 1]

ms/frame is the minimum over --repeat alternating calls of the eager layer (no torch.compile), official mode.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def load_revision(rev):
    src = subprocess.run(["git", "show", f"{rev}:models/local_affine_warp.py"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    path = os.path.join(tempfile.mkdtemp(prefix="warp_ab_"), "local_affine_warp_old.py")
    with open(path, "w") as f:
        f.write(src)
    spec = importlib.util.spec_from_file_location("local_affine_warp_old", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rev", required=True, help="git revision to compare against")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 288])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args(argv)
    import torch

    from models.local_affine_warp import LocalAffineWarp
    from utils.face.geometry import crop_size

    torch.set_num_threads(a.threads)
    old = load_revision(a.rev)
    print(f"| m | batch | {a.rev} ms/frame | this checkout ms/frame | speed-up | max abs diff |")
    print("|---|---|---|---|---|---|")
    for m in a.sizes:
        H, W = crop_size(m)
        h, w = (H + 3) // 4, (W + 3) // 4
        for B in a.batches:
            torch.manual_seed(m + B)
            new_layer = LocalAffineWarp(mode="official").eval()
            old_layer = old.LocalAffineWarp(mode="official").eval()
            old_layer.load_state_dict(new_layer.state_dict())
            feat, code = torch.randn(B, 256, h, w), torch.rand(B, 256) * 2
            tn, to = [], []
            with torch.no_grad():
                diff = (new_layer(feat, code) - old_layer(feat, code)).abs().max().item()
                for _ in range(a.repeat):
                    t0 = time.perf_counter()
                    old_layer(feat, code)
                    to.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    new_layer(feat, code)
                    tn.append(time.perf_counter() - t0)
            print(f"| {m} | {B} | {1000 * min(to) / B:.0f} | {1000 * min(tn) / B:.0f} | {min(to) / min(tn):.2f}x | "
                  f"{diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()
