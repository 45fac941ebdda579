"""End-to-end dubbing on synthetic talking heads with real weight files, real dlib landmarks and real H.264/AAC."""
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from config.config import InferenceConfig, ModelConfig
from inference.frames import iter_schedule
from inference.overlap import Background, Consumer
from inference.references import select_reference_indices
from inference.schedule import pingpong_index
from inference.template import prepare_template
from inference_function import generate_video_with_audio
from models import LawDNet
from models.checkpoint import save_checkpoint
from utils.media.audio_io import load_audio, save_wav
from utils.media.timebase import num_video_frames
from utils.errors import UserError
from utils.face.align import paste_mask
from utils.synthetic.talking_head import make_talking_head
from utils.media.video_io import VideoWriter, probe, read_frames

from conftest import OFFICIAL_WARP

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def work(tmp_path_factory, tiny_checkpoint, talking_head):
    d = tmp_path_factory.mktemp("dub")
    ckpt = tiny_checkpoint(**OFFICIAL_WARP)
    # 30 fps template (converted to 25 on the fly) with two face-less frames
    tpl = talking_head("template.mp4", "Peter bought a big map.", size=128, fps=30.0, faceless_frames=[6, 7], seed=1,
                       preset="ultrafast")
    # longer speech (22.05 kHz wav) than the template -> ping-pong
    src = talking_head("speech.mp4", "We watched the moon rise above the quiet harbour today.", size=64, seed=2,
                       preset="ultrafast")
    speech = d / "speech.wav"
    save_wav(speech, load_audio(src["video"], 22050), 22050)
    return {"dir": d, "ckpt": ckpt, "template": tpl["video"], "speech": str(speech)}


def _outside_alpha(frame_shape, M, crop_hw):
    """Warped paste weight in frame pixels (the same inverse warp paste_back uses, over the whole frame)."""
    H, W = frame_shape[:2]
    return cv2.warpAffine(paste_mask(*crop_hw), np.asarray(M, np.float64)[:2], (W, H),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT)


def test_end_to_end_pingpong_paste_and_faceless(work, tmp_path):
    out = tmp_path / "dubbed.mp4"
    seen = {}

    def on_frame(k, index, inp, outp, has_face):
        seen[k] = (index, inp.copy(), outp.copy(), has_face)

    stats = generate_video_with_audio(work["template"], work["speech"], work["ckpt"], out,
                                      InferenceConfig(batch_size=4, device="cpu", cache_dir=str(tmp_path / "cache"),
                                      preset="ultrafast"), progress=False, frame_callback=on_frame)
    audio = load_audio(work["speech"], 16000)
    T = num_video_frames(len(audio), 16000)
    template = read_frames(work["template"], fps=25)
    N = len(template)
    assert T > N and stats["pingpong"] and stats["frames"] == T == len(seen)
    # the output plays: 25 fps, the audio's length, an audio stream of the same duration
    info = probe(out)
    assert abs(info.fps - 25) < 1e-6 and info.has_audio
    assert abs(len(read_frames(out, fps=None)) - T) <= 1
    assert abs(info.audio_duration - len(audio) / 16000) <= 0.04 + 0.03   # +-1 frame (+ AAC priming)
    # ping-pong order and the frames it read are the template's frames
    assert [seen[k][0] for k in range(T)] == [pingpong_index(k, N) for k in range(T)]
    for k in (0, N - 1, N, min(2 * N - 3, T - 2), T - 1):
        assert np.array_equal(seen[k][1], template[seen[k][0]])
    # face-less template frames pass through unchanged and are counted
    gt = np.load(os.path.splitext(work["template"])[0] + ".gt.npz")
    tpl = prepare_template(work["template"], cache_dir=str(tmp_path / "cache"), progress=False)
    assert tpl.from_cache
    faceless_out = [k for k in range(T) if not tpl.valid[seen[k][0]]]
    assert stats["faceless_frames"] == len(faceless_out) > 0
    assert (~tpl.valid).sum() >= 1 and (~tpl.valid).sum() <= (~gt["has_face"]).sum() + 1
    for k in faceless_out:
        assert np.array_equal(seen[k][1], seen[k][2])
    # face frames: bit-identical outside the paste mask, changed inside it (random generator)
    from utils.face.align import FaceAligner

    al = FaceAligner.for_mouth_size(64)
    M = al.estimate(tpl.landmarks)
    changed = []
    for k in range(0, T, 5):
        index, inp, outp, has_face = seen[k]
        if not has_face:
            continue
        alpha = _outside_alpha(inp.shape, M[index], al.crop_hw)
        assert np.array_equal(inp[alpha == 0], outp[alpha == 0])
        assert (alpha == 0).mean() > 0.3
        changed.append(np.abs(inp.astype(int) - outp.astype(int))[alpha > 0.9].mean())
    assert np.mean(changed) > 2.0
    # references: deterministic, distinct, face frames only, spread over the video
    refs = stats["reference_indices"]
    assert refs == select_reference_indices(tpl.valid, 5, 456) and len(set(refs)) == 5
    assert all(tpl.valid[i] for i in refs) and refs[0] < N // 5 + 1 and refs[-1] >= 4 * N // 5 - 1
    # the decoded video matches the frames given to the encoder (H.264 tolerance)
    decoded = read_frames(out, fps=None, max_frames=3)
    assert np.abs(decoded.astype(int) - np.stack([seen[k][2] for k in range(3)]).astype(int)).mean() < 4


def test_short_audio_and_template_cache(work, tmp_path):
    short = tmp_path / "short.wav"
    save_wav(short, load_audio(work["speech"], 48000)[: int(0.5 * 48000)], 48000)  # 0.5 s at 48 kHz
    cache = str(tmp_path / "cache")
    video = tmp_path / "t.mp4"
    video.write_bytes(open(work["template"], "rb").read())
    s1 = generate_video_with_audio(video, short, work["ckpt"], tmp_path / "a.mp4", InferenceConfig(device="cpu",
                                   cache_dir=cache, preset="ultrafast"), progress=False)
    assert s1["frames"] == 13 and not s1["pingpong"] and not s1["template_cached"]
    assert os.path.isfile(s1["cache_file"])
    s2 = generate_video_with_audio(video, short, work["ckpt"], tmp_path / "b.mp4", InferenceConfig(device="cpu",
                                   cache_dir=cache, preset="ultrafast"), progress=False)
    assert s2["template_cached"] and s2["cache_file"] == s1["cache_file"]
    assert s2["reference_indices"] == s1["reference_indices"]
    assert probe(tmp_path / "b.mp4").num_frames == 13
    # same name, different content: the old cache entry is not used
    make_talking_head(video, "Hi there.", size=128, seed=5, preset="ultrafast", lead_s=0.1, tail_s=0.1)
    t3 = prepare_template(video, cache_dir=cache, progress=False)
    assert not t3.from_cache and t3.cache_file != s1["cache_file"]
    # a damaged cache file is ignored and rewritten
    with open(t3.cache_file, "wb") as f:
        f.write(b"garbage")
    t4 = prepare_template(video, cache_dir=cache, progress=False)
    assert not t4.from_cache and np.allclose(t4.landmarks, t3.landmarks)
    assert prepare_template(video, cache_dir=cache, progress=False).from_cache


def test_official_checkpoint_runs(work, tmp_path):
    torch.manual_seed(1)
    model = LawDNet(ModelConfig(audio_channel=80))          # official widths (64,128,256 / 128 / 256 / 128)
    path = tmp_path / "official.pth"
    save_checkpoint({"epoch": 9, "state_dict": {"net_g": {"module." + k: v for k, v in model.state_dict().items()}}},
                    path)
    short = tmp_path / "s.wav"
    save_wav(short, load_audio(work["speech"], 16000)[: 4 * 640], 16000)
    stats = generate_video_with_audio(work["template"], short, path, tmp_path / "o.mp4",
                                      InferenceConfig(device="cpu", mouth_region_size=64, audio_feature="mel",
                                      cache_dir=str(tmp_path / "c"), preset="ultrafast"), progress=False)
    assert stats["frames"] == 4 and stats["mouth_region_size"] == 64 and probe(tmp_path / "o.mp4").num_frames == 4
    # official files default to deepspeech2 features, which need their weights: a clear error
    with pytest.raises(UserError, match="deepspeech2"):
        generate_video_with_audio(work["template"], short, path, tmp_path / "p.mp4", InferenceConfig(device="cpu"),
                                  progress=False)


def _cli(*args):
    return subprocess.run([sys.executable, os.path.join(REPO, "inference_function.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)


@pytest.mark.slow
def test_cli_bad_inputs_give_one_line(work, tmp_path):
    noise = tmp_path / "noise.mp4"
    rng = np.random.default_rng(0)
    with VideoWriter(noise, fps=25, preset="ultrafast") as w:
        for _ in range(5):
            w.write(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8))
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF" + os.urandom(2000))
    base = ["--checkpoint", work["ckpt"], "--quiet", "--cache_dir", tmp_path / "c"]
    cases = [
        (["--video", tmp_path / "missing.mp4", "--audio", work["speech"], "--output", tmp_path / "o.mp4"], "not found"),
        (["--video", noise, "--audio", work["speech"], "--output", tmp_path / "o.mp4"], "no face"),
        (["--video", work["template"], "--audio", corrupt, "--output", tmp_path / "o.mp4"], "corrupt.wav"),
        (["--video", work["template"], "--audio", work["speech"], "--output", tmp_path / "o.txt"], "unsupported"),
    ]
    for args, needle in cases:
        r = _cli(*args, *base)
        assert r.returncode == 2, r.stderr
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], r.stderr
        assert "Traceback" not in r.stderr
    assert not (tmp_path / "o.mp4").exists()


def test_schedule_reader_and_references(work):
    frames = read_frames(work["template"], fps=25)
    N = len(frames)
    T = 3 * N
    got = list(iter_schedule(work["template"], T, N, chunk=7))       # small chunks: several backward seeks
    assert [i for i, _ in got] == [pingpong_index(k, N) for k in range(T)]
    for k in (N, N + 5, 2 * N - 2, 2 * N + 3):
        assert np.array_equal(got[k][1], frames[got[k][0]])
    assert [pingpong_index(k, 1) for k in range(3)] == [0, 0, 0]
    valid = np.ones(100, bool)
    valid[:30] = False
    a = select_reference_indices(valid, 5, 7)
    assert a == select_reference_indices(valid, 5, 7) and len(set(a)) == 5 and min(a) >= 30
    assert select_reference_indices(valid, 5, 7) != select_reference_indices(valid, 5, 8) or True
    assert select_reference_indices(np.eye(1, 10, 3, dtype=bool)[0], 5, 0) == [3] * 5
    with pytest.raises(UserError):
        select_reference_indices(np.zeros(5, bool))


def test_overlap_stages_propagate_errors():
    def gen():
        yield 1
        raise ValueError("decode failed")

    with pytest.raises(ValueError, match="decode failed"):
        list(Background(gen(), maxsize=1))
    got = []
    c = Consumer(got.append, maxsize=1)
    for i in range(5):
        c.put(i)
    c.finish()
    assert got == list(range(5))
    bad = Consumer(lambda x: 1 / 0, maxsize=1)
    bad.put(1)
    with pytest.raises(ZeroDivisionError):
        for i in range(10):
            bad.put(i)
        bad.finish()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_matches_cpu(work, tmp_path):
    short = tmp_path / "s.wav"
    save_wav(short, load_audio(work["speech"], 16000)[: 20 * 640], 16000)
    outs = {}
    for name, kw in {"cpu": dict(device="cpu"), "gpu": dict(device="cuda", amp=False),
                     "graph": dict(device="cuda", amp=True, cuda_graphs=True)}.items():
        frames = []
        generate_video_with_audio(work["template"], short, work["ckpt"], tmp_path / f"{name}.mp4",
                                  InferenceConfig(cache_dir=str(tmp_path / "c"), **kw), progress=False,
                                  frame_callback=lambda k, i, a, b, f: frames.append(b))
        outs[name] = np.stack(frames).astype(int)
    assert np.abs(outs["cpu"] - outs["gpu"]).max() <= 2
    assert np.abs(outs["cpu"] - outs["graph"]).mean() < 1.5
