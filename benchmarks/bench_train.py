"""Training throughput per stage, 1 vs 2 (or more) processes, measured in the same run.

    python benchmarks/bench_train.py                              # CPU: tiny stage, 1 and 2 processes
    python benchmarks/bench_train.py --stages frame_64 frame_128 frame_256 clip_288 --procs 1 2 4   # GPUs
    python benchmarks/bench_train.py --stages frame_64 --batch 4 --steps 10 --no_vgg

Each measurement is a real ``torchrun`` job of train_sequence_distributed.py on a synthetic prepared data root
(training.toy_data, 360-wide crops resized per stage like real data) with the stage's networks and losses:
random-weight VGG19 and SyncNet files written here stand in for the real ones (same cost). samples/s counts
dataset items (a clip = 5 frames) over all processes, after the first (warm-up) step. "ratio" is samples/s
over the 1-process run of the same stage and batch size in this run; ideal scaling is the process count.
On CPU every process gets OMP_NUM_THREADS = cores / processes, so the ratio shows what adding processes buys
on the same cores (expect ~1x); on GPUs each process has its own device.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# per-process batch that fits a 24 GB GPU with fp16/bf16 (the official values) and a small CPU batch
GPU_BATCH = {"frame_64": 16, "frame_128": 8, "frame_256": 4, "clip_288": 1, "tiny": 8, "tiny_clip": 2}
CPU_BATCH = {"frame_64": 2, "frame_128": 1, "frame_256": 1, "clip_288": 1, "tiny": 4, "tiny_clip": 1}


def make_weights(folder, feature_dim):
    from models.syncnet import SyncNet, save_syncnet
    from training.toy_data import write_random_vgg19

    vgg = write_random_vgg19(os.path.join(folder, "vgg19.pth"))
    sync = os.path.join(folder, "syncnet.pth")
    save_syncnet(SyncNet(15, feature_dim, 128, 256, 9), sync)
    return vgg, sync


def measure(stage, procs, batch, steps, data, out, vgg, sync, device, threads):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs),
           os.path.join(ROOT, "train_sequence_distributed.py"), "--stage", stage, "--name", f"p{procs}_b{batch}",
           "--train_data", data, "--result_root", out, "--batch_size", str(batch), "--max_steps", str(steps),
           "--augment_num", "400", "--logger", "none", "--num_workers", "2", "--log_every", "1000000",
           "--image_every", "0", "--syncnet_path", sync, "--keep_last", "1"]
    cmd += ["--vgg_path", vgg] if vgg else ["--no_perception"]
    if device:
        cmd += ["--device", device]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    m = re.search(r"speed: ([0-9.]+) samples/s", p.stderr)
    if p.returncode != 0 or not m:
        tail = (p.stderr.strip().splitlines() or ["?"])[-1]
        return None, tail[:120]
    return float(m.group(1)), ""


def main(argv=None):
    import torch

    from training.toy_data import make_toy_data

    gpu = torch.cuda.is_available()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stages", nargs="+", default=["frame_64", "frame_128", "frame_256", "clip_288"] if gpu
                    else ["tiny", "tiny_clip"])
    ap.add_argument("--procs", nargs="+", type=int,
                    default=sorted({1, min(2, torch.cuda.device_count())}) if gpu else [1, 2])
    ap.add_argument("--batch", type=int, default=0, help="per-process batch (default: per stage)")
    ap.add_argument("--steps", type=int, default=8 if gpu else 10)
    ap.add_argument("--no_vgg", action="store_true", help="benchmark without the perceptual loss")
    ap.add_argument("--device", default="", help="'cpu' to force CPU on a GPU machine")
    a = ap.parse_args(argv)
    on_gpu = gpu and a.device != "cpu"
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        data = make_toy_data(os.path.join(tmp, "data"), num_videos=4, num_frames=45, crop_width=360)
        vgg, sync = make_weights(tmp, 16)
        rows = []
        for stage in a.stages:
            batch = a.batch or (GPU_BATCH if on_gpu else CPU_BATCH).get(stage, 1)
            base = None
            for procs in a.procs:
                threads = max(1, cores // procs) if not on_gpu else max(1, cores // (2 * procs))
                sps, err = measure(stage, procs, batch, a.steps, data, os.path.join(tmp, "out", stage),
                                   None if a.no_vgg else vgg, sync, a.device, threads)
                if procs == a.procs[0]:
                    base = sps
                ratio = f"{sps / base:.2f}x" if sps and base else "-"
                rows.append((stage, procs, batch, f"{sps:.2f}" if sps else f"failed: {err}", ratio))
                print(f"{stage} procs={procs} batch={batch}: {rows[-1][3]} samples/s ({ratio})", file=sys.stderr)
    dev = torch.cuda.get_device_name(0) if on_gpu else f"CPU, {cores} cores"
    print(f"\nTraining throughput on {dev} ({a.steps} steps, perceptual loss {'off' if a.no_vgg else 'on'})\n")
    print("| stage | processes | batch / process | samples/s (all processes) | vs first |")
    print("|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(str(x) for x in r) + " |")


if __name__ == "__main__":
    main()
