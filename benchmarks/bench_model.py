"""Generator speed and memory: ours vs the literal reference of the official math, in the same run.

    python benchmarks/bench_model.py                       # all sizes, batch 1 and 8
    python benchmarks/bench_model.py --sizes 64 --batches 1 8 --variants eager compiled

Each measurement runs in a fresh subprocess so that its peak RSS (CPU) or peak CUDA memory is its own.
"reference" is tests/lawdnet_reference.py: the official computation done literally (full per-keypoint fields,
3-D trilinear sampling, both warp branches), i.e. the cost profile of the released code. Variants of ours:
eager (default), compiled (torch.compile'd warp field), channels_last; on CUDA also bf16 autocast and CUDA graphs.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]


def _measure(kind, variant, m, batch, repeat, device, warmup):
    import torch

    from config.config import ModelConfig
    from models import LawDNet, use_compiled_warp
    from utils.face.geometry import crop_size

    torch.manual_seed(0)
    model = LawDNet(ModelConfig(warp_mode="official")).eval().to(device)
    H, W = crop_size(m)
    src = torch.rand(batch, 3, H, W, device=device)
    ref = torch.rand(batch, 15, H, W, device=device)
    aud = torch.randn(batch, 29, 5, device=device)
    if kind == "warp":
        C, h, w = 256, (H + 3) // 4, (W + 3) // 4
        feat = torch.randn(batch, C, h, w, device=device)
        code = torch.rand(batch, 256, device=device)
    if variant == "compiled":
        use_compiled_warp(True)
    if variant in ("channels_last", "bf16_cl", "cuda_graph"):
        model = model.to(memory_format=torch.channels_last)
        src, ref = src.contiguous(memory_format=torch.channels_last), ref.contiguous(memory_format=torch.channels_last)

    if variant == "reference":
        from lawdnet_reference import ref_lawdnet, ref_warp
        sd = model.state_dict()
        fn = (lambda: ref_warp(sd, "lawLayer_list.1", feat, code, 5)) if kind == "warp" else \
            (lambda: ref_lawdnet(sd, src, ref, aud))
    else:
        layer = model.lawLayer_list[1]
        fn = (lambda: layer(feat, code)) if kind == "warp" else (lambda: model(src, ref, aud))
    autocast = variant in ("bf16", "bf16_cl", "cuda_graph") and device.startswith("cuda")
    cuda = device.startswith("cuda")

    def run():
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            return fn()

    if variant == "cuda_graph":
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                run()
        torch.cuda.current_stream().wait_stream(s)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            run()
        call = graph.replay
    else:
        call = run
    for _ in range(warmup):
        call()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        call()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"ms_per_frame": 1000 * min(times) / batch, "peak_mb": peak}


def measure(kind, variant, m, batch, repeat, device, warmup):
    """Run one measurement in a subprocess (clean peak memory); returns the dict or an error string."""
    cmd = [sys.executable, os.path.abspath(__file__), "--_worker", kind, variant, str(m), str(batch),
           "--repeat", str(repeat), "--device", device, "--warmup", str(warmup)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
    if out.returncode or not lines:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1][:80]}
    return json.loads(lines[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 288])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--variants", nargs="+", default=None,
                    help="ours: eager compiled channels_last (+ bf16 bf16_cl cuda_graph on CUDA)")
    ap.add_argument("--device", default="")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--no_reference", action="store_true", help="skip the (slow) reference runs")
    ap.add_argument("--kinds", nargs="+", default=["warp", "generator"], choices=["warp", "generator"])
    ap.add_argument("--_worker", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._worker:
        kind, variant, m, batch, device = args._worker[0], args._worker[1], int(args._worker[2]), \
            int(args._worker[3]), args.device or "cpu"
        print(json.dumps(_measure(kind, variant, m, batch, args.repeat, device, args.warmup)))
        return

    import torch
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    variants = args.variants or (["eager", "bf16", "bf16_cl", "cuda_graph"] if device.startswith("cuda")
                                 else ["eager", "compiled", "channels_last"])
    print(f"device={device} torch={torch.__version__} threads={torch.get_num_threads()}")
    print(f"{'what':<10}{'m':>5}{'batch':>6}{'variant':>15}{'ms/frame':>11}{'vs ref':>8}{'peak MB':>9}")
    for kind in args.kinds:
        for m in args.sizes:
            for b in args.batches:
                ref = None if args.no_reference else measure(kind, "reference", m, b, 1 if kind == "generator"
                                                             else args.repeat, device, 0 if kind == "generator" else 1)
                rows = ([("reference", ref)] if ref else []) + \
                    [(v, measure(kind, v, m, b, args.repeat, device, args.warmup)) for v in variants]
                for v, r in rows:
                    if "error" in r:
                        print(f"{kind:<10}{m:>5}{b:>6}{v:>15}  error: {r['error']}")
                        continue
                    ratio = (f"{ref['ms_per_frame'] / r['ms_per_frame']:.1f}x"
                             if ref and "error" not in ref else "-")
                    print(f"{kind:<10}{m:>5}{b:>6}{v:>15}{r['ms_per_frame']:>11.1f}{ratio:>8}{r['peak_mb']:>9.0f}",
                          flush=True)


if __name__ == "__main__":
    main()
