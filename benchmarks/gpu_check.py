"""The GPU check's measurements (run by benchmarks/gpu_check.sh after its set-up and the CUDA tests).

    python benchmarks/gpu_check.py [--out DIR] [--deadline_s 330] [--inputs DIR] [--no_compile]
    python benchmarks/gpu_check.py --cpu_dry_run        # every code path below on CPU with tiny sizes
    python benchmarks/gpu_check.py --prepare_inputs DIR # render the synthetic base clip (needs espeak-ng + dlib)

Prints ONE markdown table (and writes DIR/gpu_check.json):
* generator at m = 288 for batch 1 / 8 / 32 in fp32 / bf16 / fp16 (autocast; the warp field stays fp32):
  the literal reference (tests/lawdnet_reference.py), ours eager (channels_last), ours with the template's
  reference features cached, and that plus a CUDA graph and the compiled warp field; ms/frame, frames/s,
  speed-up over the reference, max |difference| to ours in fp32 at the same batch, peak GPU memory;
* end-to-end dub of a 60 s template at m = 288 (Dubber: decode -> landmarks from the template cache ->
  generator -> GPU crop and paste-back -> x264 encode), batch 32, bf16, CUDA graphs, compiled warp: frames/s and
  the time of every stage (stages overlap in threads, so they do not add up to the wall time); landmark
  analysis is measured on the base clip (dlib runs on the CPU), the 60 s template is its ping-pong, so its
  landmarks are the base clip's replayed;
* one training stage step each of frame_256 and clip_288 through the trainer's DDP branch on a one-rank NCCL
  process group (gloo on CPU), synthetic data, random VGG19 / SyncNet stand-ins: s/step, samples/s, peak memory.
Every part is time-boxed by --deadline_s: what does not fit is listed as skipped, an error becomes its row.

On a machine without espeak-ng / dlib's predictor (a lent GPU box), render the base clip elsewhere with
--prepare_inputs DIR and pass --inputs DIR (gpu_check.sh uses .gpu_inputs/ when it exists).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests"), os.path.join(ROOT, "benchmarks")]

from utils.media.timebase import FPS, SAMPLE_RATE  # noqa: E402

DRY_WIDTHS = dict(encoder_channels=(8, 16, 32), align_channels=16, attn_dim=32, decoder_channels=16)
TEXT = "Peter bought a big map before the trip to Madrid, and we watched the moon rise."


class Deadline:
    def __init__(self, seconds):
        self.end = time.perf_counter() + float(seconds)

    def left(self):
        return self.end - time.perf_counter()


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device):
    import torch

    return torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.type == "cuda" else None


def _time(fn, device, warmup, repeat):
    for _ in range(warmup):
        fn()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(repeat):
        out = fn()
    _sync(device)
    return (time.perf_counter() - t0) / repeat, out


def _graphed(fn, device):
    """``fn`` (no arguments, static inputs) captured as a CUDA graph after a warm-up on a side stream."""
    import torch

    s = torch.cuda.Stream(device)
    s.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(s):
        for _ in range(3):
            fn()
    torch.cuda.current_stream(device).wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        out = fn()

    def replay():
        g.replay()
        return out
    return replay


# ------------------------------------------------------------------------------------------------ generator

def generator_rows(device, dry, compile_warp, deadline, log):
    import torch

    from config.config import ModelConfig
    from lawdnet_reference import ref_lawdnet
    from models import LawDNet, use_compiled_warp
    from utils.face.geometry import crop_size

    # most telling rows first, so a tight time box drops the least interesting ones
    m, batches = (32, (2, 1)) if dry else (288, (32, 8, 1))
    cuda = device.type == "cuda"
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    torch.manual_seed(0)
    model = LawDNet(ModelConfig(warp_mode="official", **(DRY_WIDTHS if dry else {}))).eval().to(device)
    model.inference_micro_batch = 0          # the whole batch at once (what ModelRunner does when it fits)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    sd = {k: v.float() for k, v in model.state_dict().items()}
    H, W = crop_size(m)
    warm, rep = (0, 1) if dry else (3, 10)
    rows = []
    for B in batches:
        g = torch.Generator(device="cpu").manual_seed(B)
        src = torch.rand(B, 3, H, W, generator=g).to(device)
        refs1 = torch.rand(1, 15, H, W, generator=g).to(device)
        aud = (torch.randn(B, 29, 5, generator=g) * 3).to(device)
        if cuda:
            src = src.contiguous(memory_format=torch.channels_last)
            refs1 = refs1.contiguous(memory_format=torch.channels_last)
        refs = refs1.expand(B, -1, -1, -1)
        tf32 = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = False           # the yardstick is strict fp32 (rows run torch's
        with torch.inference_mode():                       # default, TF32 convolutions on recent GPUs)
            base = model(src, refs, aud).float()
        torch.backends.cudnn.allow_tf32 = tf32
        for pname, dt in dtypes.items():
            amp = pname != "fp32"

            def ctx(cache=True):
                return torch.autocast(device.type, dtype=dt, enabled=amp, cache_enabled=cache)

            with torch.inference_mode():
                with ctx():
                    feats = model.encode_references(refs1).expand(B, -1, -1, -1)
            variants = [
                ("reference", lambda: ref_lawdnet(sd, src, refs, aud), False, False),
                ("eager", lambda: model(src, refs, aud), False, False),
                ("cached refs", lambda: model(src, feats, aud), False, False),
                ("cached refs + " + ("CUDA graph + " if cuda else "") + "compiled warp",
                 lambda: model(src, feats, aud), True, cuda),
            ]
            for name, fn, compiled, graph in variants:
                if compiled and not compile_warp:
                    continue
                row = {"part": "generator", "m": m, "batch": B, "precision": pname, "variant": name}
                if deadline.left() < (5 if dry else 20):
                    row["skipped"] = "time budget"
                    rows.append(row)
                    continue
                try:
                    use_compiled_warp(compiled)
                    _reset_peak(device)
                    with torch.inference_mode():
                        call = (lambda f=fn: _run_ctx(f, ctx, cache=not graph))
                        if graph:
                            call = _graphed(call, device)
                        r = 1 if name == "reference" else rep
                        w = 1 if (name == "reference" and not dry) or compiled else warm  # compiles
                        sec, out = _time(call, device, max(w, warm), r)
                        out = out.float()
                    row.update(ms_per_frame=1000 * sec / B, fps=B / sec, peak_mib=_peak_mib(device),
                               max_diff_vs_fp32=(out - base).abs().max().item())
                except Exception as e:       # one failing row must not stop the check
                    row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:150] if str(e) else ''}"
                    log(traceback.format_exc())
                finally:
                    use_compiled_warp(False)
                    if cuda:
                        torch.cuda.empty_cache()
                rows.append(row)
                log(_fmt_row(row))
    ref = {(r["batch"], r["precision"]): r.get("ms_per_frame") for r in rows if r["variant"] == "reference"}
    for r in rows:
        rr = ref.get((r["batch"], r["precision"]))
        if rr and r.get("ms_per_frame"):
            r["vs_reference"] = rr / r["ms_per_frame"]
    return rows


def _run_ctx(fn, ctx, cache):
    with ctx(cache):
        return fn()


# ------------------------------------------------------------------------------------------------ end to end

class ReplayDetector:
    """Stands in for the landmark detector on a template that is a ping-pong of a clip with known landmarks:
    returns those landmarks frame after frame (the template's landmark cost is measured on the clip itself)."""

    upsample, max_side, min_face, predictor_path = 0, 640, 160, "replayed-landmarks"

    def __init__(self, landmarks, valid, order):
        self.landmarks, self.valid, self.order = landmarks, valid, order
        self._k, self._frame = -1, None

    def detect(self, frame, near=None):
        import numpy as np

        if frame is not self._frame:     # track_landmarks may ask twice per frame
            self._frame, self._k = frame, self._k + 1
        i = self.order[min(self._k, len(self.order) - 1)]
        if not self.valid[i]:
            return []
        lm = np.asarray(self.landmarks[i], np.float32)
        return [(np.concatenate([lm.min(0), lm.max(0)]), lm)]


def prepare_inputs(folder, dry):
    """The base clip bench_infer.make_inputs ping-pongs into a template (needs espeak-ng and dlib)."""
    from bench_infer import make_inputs

    os.makedirs(folder, exist_ok=True)
    size = 128 if dry else 720
    make_inputs(folder, 1.0, size)        # writes base_<size>.mp4 (+ ground truth) and a 1 s template
    return os.path.join(folder, f"base_{size}.mp4")


def e2e(device, dry, compile_warp, inputs, work, deadline, log):
    import numpy as np

    from bench_infer import make_checkpoint, make_inputs
    from config.config import InferenceConfig
    from inference import Dubber
    from inference.schedule import pingpong_index
    from inference.template import prepare_template
    from utils.errors import UserError
    from utils.face.landmarks import find_predictor

    m, seconds, size, batch = (64, 1.0, 128, 4) if dry else (288, 60.0, 720, 32)
    folder = inputs or work
    base = os.path.join(folder, f"base_{size}.mp4")
    if not os.path.exists(base):
        log(f"rendering the synthetic base clip {base}")
        prepare_inputs(folder, dry)
    video, speech = make_inputs(folder, seconds, size)     # ping-pong template + speech of the same length
    ckpt = make_checkpoint(work, m, "tiny" if dry else "official")
    res = {"m": m, "template_seconds": seconds, "frame_size": size, "batch": batch}
    # landmarks: dlib on the base clip when its predictor is here, else the clip's ground truth
    try:
        find_predictor()
        t0 = time.perf_counter()
        bt = prepare_template(base, cache_dir=os.path.join(work, "cache"), use_cache=False, progress=False)
        res["landmarks_fps"] = bt.num_frames / (time.perf_counter() - t0)
        res["landmarks"] = f"dlib on the {bt.num_frames}-frame base clip"
        lm, valid = bt.landmarks, bt.valid
    except UserError as e:
        gt = np.load(os.path.splitext(base)[0] + ".gt.npz")
        lm, valid = gt["landmarks"], gt["has_face"].astype(bool)
        res["landmarks"] = f"ground truth replayed ({str(e)[:60]})"
    n_template = int(round(seconds * FPS))
    order = [pingpong_index(k, len(lm)) for k in range(n_template)]
    if deadline.left() < (10 if dry else 60):
        res["skipped"] = "time budget"
        return res
    dub = Dubber(ckpt, InferenceConfig(device=str(device), batch_size=batch, cuda_graphs=device.type == "cuda",
                                       compile=compile_warp and not dry, cache_dir=os.path.join(work, "cache")),
                 progress=False)
    tpl = dub.prepare_template(video, use_cache=False, detector=ReplayDetector(lm, valid, order))
    _reset_peak(device)
    out = os.path.join(work, "dubbed.mp4")
    if not dry:   # a first short dub compiles the warp and captures the CUDA graph; the timed one is warm
        from utils.media.audio_io import load_audio, save_wav

        short = os.path.join(work, "warmup.wav")
        save_wav(short, load_audio(speech, SAMPLE_RATE)[: SAMPLE_RATE * 3], SAMPLE_RATE)
    if not dry:
        dub.dub(tpl, short, out)
    stats = dub.dub(tpl, speech, out)
    res.update(frames=stats["frames"], fps=stats["fps"], seconds=stats["seconds"],
               stage_seconds=stats["stage_seconds"], peak_mib=_peak_mib(device), threads=stats["threads"],
               preset=dub.cfg.preset)
    log(f"e2e: {stats['frames']} frames in {stats['seconds']:.1f} s = {stats['fps']:.1f} frames/s; "
        + ", ".join(f"{k} {v:.1f}s" for k, v in sorted(stats["stage_seconds"].items())))
    return res


# ------------------------------------------------------------------------------------------------ training

def training_rows(device, dry, work, deadline, log, stages=None, steps=None):
    import torch
    import torch.distributed as dist

    from bench_train import CPU_BATCH, GPU_BATCH, make_weights
    from training.distributed import DistInfo
    from training.options import resolve
    from training.toy_data import make_toy_data
    from training.trainer import StageRun

    class OneRankDDP(DistInfo):
        """The trainer's multi-process branch (DDP wrappers, collectives) on a process group of one rank:
        NCCL refuses two ranks on one GPU, and this is the code every rank runs."""

        @property
        def distributed(self):
            return True

    stages = stages or (("tiny", "tiny_clip") if dry else ("frame_256", "clip_288"))
    steps = steps or (2 if dry else 3)
    data = make_toy_data(os.path.join(work, "toy"), num_videos=2, num_frames=30, crop_width=360)
    vgg, sync = make_weights(work, 16)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    rows = []
    try:
        for stage in stages:
            batch = (CPU_BATCH if device.type == "cpu" else GPU_BATCH)[stage]
            row = {"part": "training step", "stage": stage, "batch": batch, "backend": backend}
            if deadline.left() < (10 if dry else 45):
                row["skipped"] = "time budget"
                rows.append(row)
                continue
            try:
                cfg, model, opts, disc = resolve(
                    stage, train_data=data, result_root=os.path.join(work, "train"), name="gpu_check",
                    batch_size=batch, max_steps=steps, augment_num=400, logger="none", num_workers=0,
                    log_every=1, image_every=0, syncnet_path=sync, keep_last=1,
                    **(dict(no_perception=True) if dry else dict(vgg_path=vgg)),
                    device=str(device), progress=False)
                _reset_peak(device)
                info = OneRankDDP(0, 1, 0, device, False)
                summary = StageRun(cfg, model, opts, disc, info).run()
                sps = summary["samples_per_s"]
                loss = summary["history"][-1]["loss/g"]
                row.update(samples_per_s=sps, seconds_per_step=batch / sps if sps else None, loss_g=loss,
                           peak_mib=_peak_mib(device), amp=cfg.amp if device.type == "cuda" else "none",
                           finite=bool(torch.isfinite(torch.tensor(loss))))
            except Exception as e:
                row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:150] if str(e) else ''}"
                log(traceback.format_exc())
            rows.append(row)
            log(_fmt_row(row))
    finally:
        dist.destroy_process_group()
    return rows


# ------------------------------------------------------------------------------------------------ table

def _f(v, fmt="{:.1f}"):
    return "-" if v is None else fmt.format(v)


def _fmt_row(r):
    return json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()})


def table(res):
    head = ("| part | configuration | ms per frame (step) | frames/s (samples/s) | vs reference | "
            "max abs diff vs fp32 | peak GPU MiB |")
    lines = [head, "|---|---|---|---|---|---|---|"]

    def add(part, conf, r, ms=None, fps=None, vs=None, diff=None, peak=None):
        if "error" in r or "skipped" in r:
            lines.append(f"| {part} | {conf} | {'error: ' + r['error'] if 'error' in r else 'skipped: ' + r['skipped']}"
                         " | | | | |")
            return
        lines.append(f"| {part} | {conf} | {_f(ms)} | {_f(fps)} | {_f(vs, '{:.1f}x')} | {_f(diff, '{:.1e}')} | "
                     f"{_f(peak, '{:.0f}')} |")

    for r in res["generator"]:
        add("generator", f"m={r['m']} B={r['batch']} {r['precision']} {r['variant']}", r, r.get("ms_per_frame"),
            r.get("fps"), r.get("vs_reference"), r.get("max_diff_vs_fp32"), r.get("peak_mib"))
    e = res.get("e2e") or {}
    if e:
        conf = f"m={e.get('m')} {e.get('template_seconds', 0):g} s template, B={e.get('batch')}"
        add("end-to-end dub", conf, e, 1000 / e["fps"] if e.get("fps") else None, e.get("fps"),
            peak=e.get("peak_mib"))
        n = e.get("frames") or 0
        for k, v in sorted((e.get("stage_seconds") or {}).items()):
            add("end-to-end dub", f"stage {k} (overlapping)", {}, 1000 * v / n if n else None)
        if e.get("landmarks_fps"):
            add("end-to-end dub", f"template landmarks ({e['landmarks']})", {}, 1000 / e["landmarks_fps"],
                e["landmarks_fps"])
    for r in res["training"]:
        ms = 1000 * r["seconds_per_step"] if r.get("seconds_per_step") else None
        add("training step", f"{r['stage']} B={r['batch']} {r['backend']} DDP (1 rank), amp {r.get('amp', '-')}",
            r, ms, r.get("samples_per_s"), peak=r.get("peak_mib"))
    for name, err in res["errors"]:
        lines.append(f"| {name} | error: {err} | | | | | |")
    return "\n".join(lines)


def environment(device):
    import torch

    env = {"torch": torch.__version__, "cuda": torch.version.cuda, "cpu_cores": os.cpu_count(),
           "device": str(device)}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        env.update(gpu=p.name, gpu_mib=p.total_memory // 2 ** 20, cudnn=torch.backends.cudnn.version())
    return env


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpu_dry_run", action="store_true", help="run every part on CPU with tiny sizes")
    ap.add_argument("--out", default="", help="folder for gpu_check.json (default: the work folder)")
    ap.add_argument("--inputs", default="", help="folder with the base clip (from --prepare_inputs)")
    ap.add_argument("--prepare_inputs", default="", metavar="DIR", help="only render the base clip into DIR")
    ap.add_argument("--deadline_s", type=float, default=330.0, help="time for all measurements")
    ap.add_argument("--no_compile", action="store_true", help="leave out the compiled warp field")
    ap.add_argument("--parts", nargs="+", default=["generator", "e2e", "training"])
    ap.add_argument("--train_stages", nargs="+", default=None, help="training stages (default per mode)")
    ap.add_argument("--train_steps", type=int, default=0, help="steps per stage (default 3, dry run 2)")
    a = ap.parse_args(argv)
    if a.prepare_inputs:
        print(prepare_inputs(a.prepare_inputs, a.cpu_dry_run))
        return 0
    from utils.threads import prefer_passive_waiting

    prefer_passive_waiting()      # before torch is imported (utils/threads.py)
    import torch

    dry = a.cpu_dry_run
    if not dry and not torch.cuda.is_available():
        print("gpu_check: torch sees no CUDA device; nothing to check")
        return 0
    device = torch.device("cpu" if dry else f"cuda:{torch.cuda.current_device()}")   # an index: DDP wants one
    deadline = Deadline(a.deadline_s)
    work = tempfile.mkdtemp(prefix="gpu_check_")
    res = {"dry_run": dry, "environment": environment(device), "generator": [], "e2e": {}, "training": [],
           "errors": []}

    def log(msg):
        print(f"[gpu_check {a.deadline_s - deadline.left():.0f}s] {msg}", file=sys.stderr, flush=True)

    log(json.dumps(res["environment"]))
    parts = {"generator": lambda dl: generator_rows(device, dry, not a.no_compile, dl, log),
             "e2e": lambda dl: e2e(device, dry, not a.no_compile, a.inputs, work, dl, log),
             "training": lambda dl: training_rows(device, dry, work, dl, log, a.train_stages, a.train_steps)}
    # each part may use its share of the time plus whatever the parts before it left unused
    shares = {"generator": 0.45, "e2e": 0.35, "training": 0.2}
    total = sum(shares[n] for n in a.parts)
    t_start, cum = time.perf_counter(), 0.0
    for name in a.parts:
        cum += shares[name] / total
        part = Deadline(min(deadline.left(), t_start + cum * a.deadline_s - time.perf_counter()))
        try:
            res[name] = parts[name](part)
        except Exception as e:
            res["errors"].append((name, f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"))
            log(traceback.format_exc())
    res["errors"] += [(f"{r['part']} {r.get('variant', r.get('stage', ''))}", r["error"])
                      for r in res["generator"] + res["training"] if "error" in r]
    if res["e2e"].get("error"):
        res["errors"].append(("end-to-end dub", res["e2e"]["error"]))
    out = a.out or work
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "gpu_check.json"), "w") as f:
        json.dump(res, f, indent=1, default=str)
    env = res["environment"]
    print(f"\nGPU check on {env.get('gpu', 'CPU (dry run)')}, torch {env['torch']}, CUDA {env['cuda']}, "
          f"{env['cpu_cores']} CPU cores\n")
    print(table(res))
    return 1 if res["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
