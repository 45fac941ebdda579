"""Speed features that must not change results: per-template reference features, the eager warp field's fast
path, the CPU thread budget; and benchmarks/gpu_check.sh without a GPU (its CUDA parts are in test_gpu.py)."""
import dataclasses
import os
import subprocess

import numpy as np
import pytest
import torch

from config.config import InferenceConfig, ModelConfig
from models import LawDNet
from models.local_affine_warp import (displacement_chunked, planes_eager, planes_from_displacement,
                                      standard_grid)
from utils.face.geometry import crop_size
from utils.threads import ThreadTuner, plan_threads

from conftest import OFFICIAL_WARP, make_dubber
from lawdnet_reference import ref_lawdnet

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _inputs(m, batch, seed=0, audio_channel=29):
    g = torch.Generator().manual_seed(seed)
    H, W = crop_size(m)
    return (torch.rand(batch, 3, H, W, generator=g), torch.rand(1, 15, H, W, generator=g),
            torch.randn(batch, audio_channel, 5, generator=g) * 3)


@pytest.mark.slow
def test_cached_reference_features_match_the_literal_reference():
    torch.manual_seed(0)
    model = LawDNet(ModelConfig(warp_mode="official")).eval()
    with torch.no_grad():   # large deformations, as in test_lawdnet: a wrong feature slice would show
        for layer in model.lawLayer_list:
            layer.similarity_params_layer[0].weight.mul_(8)
            layer.kpoints_normalized_layer[0].weight.mul_(8)
    source, refs, audio = _inputs(128, batch=3, seed=7)
    with torch.no_grad():
        feats = model.encode_references(refs)                          # once, for one reference set
        cached = model(source, feats.expand(3, -1, -1, -1), audio)
        direct = model(source, refs.expand(3, -1, -1, -1), audio)
        ref = ref_lawdnet(model.state_dict(), source, refs.expand(3, -1, -1, -1), audio)
        model.compute_all_branches = True                              # both branches: 3 C feature channels
        feats_all = model.encode_references(refs)
        cached_all = model(source, feats_all.expand(3, -1, -1, -1), audio)
        with pytest.raises(ValueError, match="encode_references"):
            model(source, feats.expand(3, -1, -1, -1), audio)          # features of the other layout
        model.compute_all_branches = False
    C = model.config.feature_channels
    assert feats.shape[:2] == (1, 2 * C)
    assert feats_all.shape[1] == 3 * C
    assert (cached - ref).abs().max().item() <= 1e-5
    assert (cached - direct).abs().max().item() <= 1e-5
    assert (cached_all - ref).abs().max().item() <= 1e-5
    assert ref.std().item() > 1e-3


@pytest.mark.parametrize("mode", ["official", "corrected"])
def test_eager_warp_planes_match_the_differentiable_field(mode):
    """The inference path (separable distances, layout written in place) = the training path + layout."""
    g = torch.Generator().manual_seed(3)
    B, N, C, n = 2, 3, 5, 12
    grid = standard_grid(n, n)
    kp = torch.rand(B, N, C, 2, generator=g) * 2 - 1
    rho = torch.rand(B, N, C, generator=g) * 0.9 + 0.05
    sim = torch.rand(B, N, C, 4, generator=g) * 2 - 1
    with torch.no_grad():
        fast = planes_eager(grid, kp, rho, sim, mode)
        slow = planes_from_displacement(displacement_chunked(grid, kp, rho, sim, chunk=2), grid, mode)
    assert fast.shape == slow.shape == (B, 2 * C, n, n)
    assert (fast - slow).abs().max().item() <= 1e-6


def test_thread_plan_budgets():
    cpu = plan_threads(4, "cpu")
    assert (cpu.total, cpu.torch, cpu.decoder, cpu.encoder, cpu.opencv, cpu.tune) == (4, 4, 4, 4, 4, False)
    auto = plan_threads(0, "cpu")
    assert auto.torch == auto.total >= 1 and auto.tune == (auto.total > 1)
    gpu = plan_threads(16, "cuda:0")
    assert gpu.torch == 2 and gpu.decoder == 2 and gpu.encoder == 13 and not gpu.tune
    from utils.errors import UserError

    with pytest.raises(UserError, match="threads"):
        plan_threads(-1)
    from inference_function import generate_video_with_audio

    with pytest.raises(UserError, match="--threads must be >= 0"):   # before any file is opened
        generate_video_with_audio("missing.mp4", "missing.wav", "missing.pth", "out.mp4", InferenceConfig(threads=-1))


class VirtualClock:
    """utils.threads' ``time`` in the tuner tests: a call lasts what the workload says it does, not what the
    machine's load makes of a sleep that short (the tuner would then compare scheduler noise)."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    import utils.threads

    c = VirtualClock()
    monkeypatch.setattr(utils.threads, "time", c)
    return c


@pytest.mark.parametrize("fewer_is_faster", [True, False])
def test_thread_tuner_moves_to_the_faster_count(fewer_is_faster, clock):
    """A workload whose time depends on torch's thread count (as a model's does under load / when idle)."""
    def work():
        n = torch.get_num_threads()
        clock.sleep(0.004 * n * n if fewer_is_faster else 0.03 / (n * n))

    before = torch.get_num_threads()
    try:
        tuner = ThreadTuner(4, probe_every=2)
        for _ in range(30):
            tuner.run(work, frames=1)
    finally:
        torch.set_num_threads(before)
    assert tuner.current == (1 if fewer_is_faster else 4)
    assert {n for n, _ in tuner.history} >= {2, tuner.current}


def _thread_dependent(phase, clock):
    """Seconds of a call at torch's current thread count: 'idle' gets faster with more threads, 'loaded' slower."""
    n = torch.get_num_threads()
    clock.sleep(0.004 * n * n if phase[0] == "loaded" else 0.008 / (n * n))


def test_thread_tuner_probes_less_while_probes_lose_and_follows_a_load_change(clock):
    phase = ["idle"]
    before = torch.get_num_threads()
    try:
        tuner = ThreadTuner(4, probe_every=4, max_interval=32)
        for _ in range(150):                     # steady: all 4 threads stay best
            tuner.run(lambda: _thread_dependent(phase, clock))
        steady_probes = tuner.probes
        assert tuner.current == 4
        # a fixed interval of 4 would probe ~30 times; backing off to 32 leaves 4 + 8 + 16 + 32 + 32 + 32 + ...
        assert steady_probes <= 8, tuner.history
        phase[0] = "loaded"                      # another job takes the cores: fewer threads win
        for k in range(40):
            tuner.run(lambda: _thread_dependent(phase, clock))
            if tuner.current == 1:
                break
        assert tuner.current == 1, tuner.history[-20:]
        assert k < 20                            # found within a few calls, not after the backed-off interval
        phase[0] = "idle"                        # the job ends: climb back
        for k in range(60):
            tuner.run(lambda: _thread_dependent(phase, clock))
            if tuner.current == 4:
                break
        assert tuner.current == 4, tuner.history[-20:]
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def dub_work(tiny_checkpoint, talking_head):
    tpl = talking_head("template.mp4", "Peter bought a big map.", size=128, seed=1, preset="ultrafast")
    return {"ckpt": tiny_checkpoint(**OFFICIAL_WARP), "template": tpl["video"]}


@pytest.fixture
def restore_thread_pools():
    """A Dubber applies its thread plan process-wide; give the following tests their pools back."""
    import cv2

    saved = torch.get_num_threads(), cv2.getNumThreads()
    yield
    torch.set_num_threads(saved[0])
    cv2.setNumThreads(saved[1])


def test_dubber_computes_reference_features_once_per_reference_set(dub_work, tmp_path, restore_thread_pools):
    frames = {}

    def dub(dubber, template, name):
        got = []
        dubber.dub(template, dub_work["template"], tmp_path / f"{name}.mp4",
                   frame_callback=lambda k, i, a, b, f: got.append(b))
        frames[name] = np.stack(got).astype(int)

    # a fixed thread count (no tuning), so the outputs are reproducible to the bit
    kw = dict(device="cpu", cache_dir=str(tmp_path / "c"), batch_size=4, preset="ultrafast", threads=1)
    dubber = make_dubber(dub_work["ckpt"], **kw)
    tpl = dubber.prepare_template(dub_work["template"])
    key = tuple(tpl.reference_indices)
    dub(dubber, tpl, "first")
    assert tpl.reference_features.keys() == [key]
    first = dubber.reference_features(tpl)
    dub(dubber, tpl, "second")
    assert dubber.reference_features(tpl) is first                    # reused, not recomputed
    uncached = make_dubber(dub_work["ckpt"], cache_references=False, **kw)
    dub(uncached, uncached.prepare_template(dub_work["template"]), "uncached")
    assert np.array_equal(frames["first"], frames["second"])
    assert np.abs(frames["first"] - frames["uncached"]).max() <= 1      # float rounding at most
    assert (frames["first"] != frames["uncached"]).mean() < 1e-3
    # another reference set of the same template (e.g. another shot) is a second entry of its own
    other = tpl.references.flip(-1)
    feats = tpl.reference_features.get(dubber.runner, (1, 2, 3, 4, 5), lambda: other)
    assert len(tpl.reference_features) == 2 and not torch.equal(feats, first)
    # a template used with another Dubber (other weights) never gets this Dubber's features
    third = make_dubber(dub_work["ckpt"], **kw)
    assert third.reference_features(tpl) is not first and len(tpl.reference_features) == 1


def _gpu_check(*args, env=None):
    return subprocess.run(["bash", os.path.join(REPO, "benchmarks", "gpu_check.sh"), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})})


def test_gpu_check_without_a_gpu_says_so_in_one_line():
    r = _gpu_check(env={"NVIDIA_SMI": "/nonexistent/nvidia-smi"})
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
    assert len(lines) == 1 and "no NVIDIA GPU" in lines[0], lines


@pytest.mark.slow
def test_gpu_check_cpu_dry_run_runs_every_section(tmp_path):
    """The GPU check's code paths on CPU with tiny sizes: every section must produce its rows, none an error."""
    # --no_compile: torch.compile takes minutes on 2 CPU cores (the compiled rows run on the GPU machine)
    r = _gpu_check("--cpu-dry-run", "--no_compile", "--out", str(tmp_path),
                   env={"NVIDIA_SMI": "/nonexistent/nvidia-smi"})
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    import json

    res = json.loads((tmp_path / "gpu_check.json").read_text())
    assert res["dry_run"] and not res["errors"], res["errors"]
    gen = res["generator"]
    assert {(g["batch"], g["precision"]) for g in gen} >= {(1, "fp32"), (2, "bf16"), (2, "fp16")}
    assert {g["variant"] for g in gen} == {"reference", "eager", "cached refs"}
    assert all(g["ms_per_frame"] > 0 for g in gen)
    assert all(g["max_diff_vs_fp32"] <= 1e-5 for g in gen if g["precision"] == "fp32")
    e2e = res["e2e"]
    assert e2e["frames"] > 0 and e2e["fps"] > 0 and set(e2e["stage_seconds"]) >= {"decode", "model", "encode"}
    assert {t["stage"] for t in res["training"]} == {"tiny", "tiny_clip"}
    assert all(t["seconds_per_step"] > 0 for t in res["training"])
    assert "| generator" in out and "| end-to-end dub" in out and "| training step" in out
