"""What computing the reference features once per template saves: generator time with the reference images
(ref_in_conv + appearance branch every frame) vs with ``encode_references`` cached, and a whole dub with the
Dubber's cache on and off; all in one run, measurements interleaved.

    python benchmarks/bench_cache.py [--sizes 64 128 256 288] [--batches 1 4] [--threads 1] [--no_dub]

Generator rows: official widths, random weights; ms/frame is the minimum over --repeat interleaved calls;
"conv GFLOP/frame" counts the convolutions' multiply-adds x 2 (hooks on every Conv1d/Conv2d), so the share
of the work the cache removes is exact. Dub rows: the tiny model (m = 64) on a synthetic talking head, the
template's landmarks cached; frames/s of the whole pipeline with ``cache_references`` True vs False.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "benchmarks")]


def conv_gflop(model, *args):
    import torch

    total = [0]

    def hook(mod, inp, out):
        k = mod.weight[0].numel()                     # in_channels/groups x kernel elements
        total[0] += 2 * out.numel() * k

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d))]
    with torch.no_grad():
        model(*args)
    for h in hs:
        h.remove()
    return total[0] / 1e9 / args[0].shape[0]


def generator_rows(sizes, batches, repeat):
    import torch

    from config.config import ModelConfig
    from models import LawDNet
    from utils.face.geometry import crop_size

    torch.manual_seed(0)
    model = LawDNet(ModelConfig(warp_mode="official")).eval()
    rows = []
    for m in sizes:
        H, W = crop_size(m)
        for B in batches:
            g = torch.Generator().manual_seed(m + B)
            src, refs1 = torch.rand(B, 3, H, W, generator=g), torch.rand(1, 15, H, W, generator=g)
            aud = torch.randn(B, 29, 5, generator=g)
            refs = refs1.expand(B, -1, -1, -1)
            with torch.no_grad():
                feats = model.encode_references(refs1).expand(B, -1, -1, -1)
                a, b = model(src, refs, aud), model(src, feats, aud)      # warm-up, and the equivalence
                ta, tb = [], []
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    model(src, refs, aud)
                    ta.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    model(src, feats, aud)
                    tb.append(time.perf_counter() - t0)
            flop_a, flop_b = conv_gflop(model, src, refs, aud), conv_gflop(model, src, feats, aud)
            rows.append(dict(m=m, batch=B, images_ms=1000 * min(ta) / B, cached_ms=1000 * min(tb) / B,
                             gflop_images=flop_a, gflop_cached=flop_b, diff=(a - b).abs().max().item()))
            r = rows[-1]
            print(f"m={m} B={B}: {r['images_ms']:.0f} -> {r['cached_ms']:.0f} ms/frame "
                  f"({r['images_ms'] / r['cached_ms']:.2f}x), conv GFLOP {flop_a:.1f} -> {flop_b:.1f}, "
                  f"max diff {r['diff']:.1e}", file=sys.stderr, flush=True)
    return rows


def dub_rows(repeat, threads):
    import numpy as np
    import torch

    from config.config import ModelConfig
    import dataclasses

    from config.config import InferenceConfig
    from inference import Dubber
    from models import LawDNet
    from models.checkpoint import save_lawdnet
    from utils.synthetic.talking_head import make_talking_head

    work = tempfile.mkdtemp(prefix="bench_cache_")
    torch.manual_seed(0)
    ckpt = os.path.join(work, "tiny.pth")
    tiny = dict(audio_channel=80, encoder_channels=(16, 32, 64), align_channels=32, attn_dim=64, decoder_channels=32)
    save_lawdnet(ckpt, LawDNet(ModelConfig(**tiny)).eval(), audio_feature="mel", mouth_region_size=64)
    video = make_talking_head(os.path.join(work, "t.mp4"), "Peter bought a big map before the trip to Madrid.",
                              size=160, seed=1, preset="ultrafast")["video"]
    cfg = InferenceConfig(device="cpu", cache_dir=os.path.join(work, "c"), preset="veryfast", threads=threads)
    dubbers = {on: Dubber(ckpt, dataclasses.replace(cfg, cache_references=on), progress=False) for on in (True, False)}
    tpls = {on: d.prepare_template(video) for on, d in dubbers.items()}
    fps = {True: [], False: []}
    outs = {}
    for _ in range(repeat):
        for on, d in dubbers.items():
            frames = []
            st = d.dub(tpls[on], video, os.path.join(work, f"o{on}.mp4"),
                       frame_callback=lambda k, i, a, b, f: frames.append(b))
            fps[on].append(st["fps"])
            outs[on] = np.stack(frames).astype(int)
            n = st["frames"]
    diff = int(np.abs(outs[True] - outs[False]).max())
    return dict(frames=n, fps_cached=max(fps[True]), fps_images=max(fps[False]), max_level_diff=diff)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 288])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (fixed, for stable ratios)")
    ap.add_argument("--no_dub", action="store_true")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    rows = generator_rows(a.sizes, a.batches, a.repeat)
    print(f"\nGenerator with the reference images vs with cached reference features (CPU, {a.threads} torch "
          f"thread(s), official widths, min of {a.repeat} interleaved calls)\n")
    print("| m | batch | conv GFLOP/frame images -> cached | ms/frame images | ms/frame cached | speed-up | "
          "max abs diff |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['m']} | {r['batch']} | {r['gflop_images']:.1f} -> {r['gflop_cached']:.1f} "
              f"(-{100 * (1 - r['gflop_cached'] / r['gflop_images']):.0f} %) | {r['images_ms']:.0f} | "
              f"{r['cached_ms']:.0f} | {r['images_ms'] / r['cached_ms']:.2f}x | {r['diff']:.1e} |")
    if not a.no_dub:
        d = dub_rows(a.repeat, a.threads)
        print(f"\nWhole dub, tiny model m=64, {d['frames']} frames, best of {a.repeat}: "
              f"cache on {d['fps_cached']:.1f} frames/s, off {d['fps_images']:.1f} frames/s "
              f"({d['fps_cached'] / d['fps_images']:.2f}x); output frames differ by at most "
              f"{d['max_level_diff']} grey level(s)")


if __name__ == "__main__":
    main()
