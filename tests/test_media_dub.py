"""Dubbing the inputs users bring (tiny real checkpoint, real dlib landmarks, real H.264/AAC): a still photo, a phone
video (rotation) that is also truncated, a template with a scene cut and another person, and stereo / 5.1 speech
whose channels the output keeps."""
import shutil
import subprocess

import numpy as np
import pytest
import torch

from conftest import make_dubber
from utils.face.landmarks import LandmarkDetector, track_landmarks
from utils.media.audio_io import decode_audio, save_wav
from utils.media.video_io import VideoWriter, iter_frames, probe, read_frames
from utils.synthetic.speech import synthesize_speech
from utils.synthetic.talking_head import make_talking_head

FF = shutil.which("ffmpeg")
pytestmark = pytest.mark.skipif(FF is None, reason="needs the ffmpeg command line tool")


def ff(*args):
    subprocess.run([FF, "-hide_banner", "-loglevel", "error", "-y", *map(str, args)], check=True)


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_checkpoint):
    d = tmp_path_factory.mktemp("mediadub")
    ckpt = tiny_checkpoint()
    speech, sr, _ = synthesize_speech("Open the door.")
    mono = d / "speech.wav"
    save_wav(mono, speech, sr)
    # stereo speech: the right channel is the left one at half level, delayed by 5 ms
    delay = int(0.005 * sr)
    stereo = d / "stereo.wav"
    right = 0.5 * np.concatenate([np.zeros(delay), speech[:-delay]])
    pcm = np.round(np.stack([speech, right], 1) * 32767).astype("<i2")
    subprocess.run([FF, "-hide_banner", "-loglevel", "error", "-y", "-f", "s16le", "-ar", str(sr), "-ac", "2",
                    "-i", "pipe:0", str(stereo)], input=pcm.tobytes(), check=True)
    # 48 kHz 5.1 AC-3 with the speech in the centre channel
    surround = d / "speech51.ac3"
    ff("-i", mono, "-filter_complex", "aresample=48000,pan=5.1|FC=c0", "-c:a", "ac3", "-b:a", "384k", surround)
    dubber = make_dubber(ckpt, device="cpu", cache_dir=str(d / "cache"), preset="ultrafast", batch_size=8)
    return {"dir": d, "dubber": dubber, "mono": str(mono), "stereo": str(stereo), "surround": str(surround)}


def _outside_mouth(a, b):
    """Mean absolute difference in the upper half of the frame (never pasted: the mouth is below)."""
    h = a.shape[0]
    return float(np.abs(a[: h // 3].astype(int) - b[: h // 3].astype(int)).mean())


def test_still_photo_template_speaks_and_stereo_is_kept(env, tmp_path):
    from PIL import Image

    head = make_talking_head(tmp_path / "h.mp4", "Hi.", size=128, seed=4, head_motion=0.0, preset="ultrafast")
    photo = next(iter_frames(head["video"]))
    Image.fromarray(photo).save(tmp_path / "face.png")
    d = env["dubber"]
    tpl = d.prepare_template(tmp_path / "face.png")
    assert tpl.template.num_frames == 1 and tpl.template.valid.all() and tpl.reference_sets == [(0,) * 5]
    seen = []
    stats = d.dub(tpl, env["stereo"], tmp_path / "out.mp4",
                  frame_callback=lambda k, i, inp, out, face: seen.append((i, face, out.copy())))
    assert stats["frames"] == len(seen) > 10 and all(i == 0 and face for i, face, _ in seen)
    out = read_frames(tmp_path / "out.mp4", fps=None)
    assert out.shape[1:3] == photo.shape[:2] and len(out) == stats["frames"]
    assert max(_outside_mouth(f, photo) for f in out) < 4                   # a static head...
    mouths = np.stack([o[70:110, 40:90] for _, _, o in seen]).astype(np.float32)
    assert np.abs(mouths - photo[70:110, 40:90]).mean() > 2.0               # ...whose mouth is generated
    # the output keeps both channels of the speech, not a mono downmix
    a = decode_audio(tmp_path / "out.mp4")
    assert stats["audio_channels"] == 2 and a.samples.shape[0] == 2
    left, right = a.samples
    assert np.abs(right).max() == pytest.approx(0.5 * np.abs(left).max(), rel=0.1)
    assert stats["warnings"] == []


def test_rotated_truncated_phone_video_with_surround_speech(env, tmp_path):
    src = make_talking_head(tmp_path / "up.mp4", "Peter bought a big map for the long trip.", size=128, seed=1,
                            preset="ultrafast")
    # a phone stores the picture sideways (here 96x128) plus a display matrix that turns it upright (128x96)
    ff("-i", src["video"], "-vf", "crop=128:96:0:16,transpose=1", "-c:v", "libx264", "-preset", "ultrafast",
       "-c:a", "copy", tmp_path / "side.mp4")
    ff("-i", tmp_path / "side.mp4", "-c", "copy", "-metadata:s:v:0", "rotate=90", "-movflags", "+faststart",
       tmp_path / "phone.mp4")
    data = (tmp_path / "phone.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: int(len(data) * 0.6)])        # a download that broke off
    info = probe(tmp_path / "cut.mp4")
    assert (info.width, info.height, info.rotation) == (128, 96, 90)
    upright = read_frames(src["video"])[:, 16:112]
    ours = read_frames(tmp_path / "cut.mp4")
    assert np.abs(ours.astype(int) - upright[: len(ours)].astype(int)).mean() < 6
    d = env["dubber"]
    tpl = d.prepare_template(tmp_path / "cut.mp4")
    assert tpl.template.valid.mean() > 0.9 and tpl.template.num_frames < 0.75 * src["num_frames"]
    d.infer_fn = lambda src, refs, aud: src          # the model is not what this test is about
    try:
        stats = d.dub(tpl, env["surround"], tmp_path / "dub.mp4")
    finally:
        d.infer_fn = d.runner
    assert any("truncated" in w and "says it lasts" in w for w in stats["warnings"])
    out = probe(tmp_path / "dub.mp4")
    assert (out.width, out.height, out.rotation) == (128, 96, 0)            # output size = display size
    a = decode_audio(tmp_path / "dub.mp4")
    assert a.samples.shape[0] == 6 and stats["audio_layout"] == a.layout == "5.1"
    fc = a.samples[a.channel_names.index("FC")]
    assert np.abs(fc).max() > 0.1 and np.abs(a.samples[a.channel_names.index("FL")]).max() < 0.02


def test_scene_cut_and_second_person(env, tmp_path):
    kw = dict(size=128, preset="ultrafast", lead_s=0.1, tail_s=0.1)
    a = make_talking_head(tmp_path / "a.mp4", "Hi.", seed=1, **kw)
    b = make_talking_head(tmp_path / "b.mp4", "Yes.", seed=2, **kw)
    shot_a = read_frames(a["video"])
    shot_b = read_frames(b["video"])[:, :, ::-1, ::-1].copy()          # another "person": mirrored, other colours
    cut = len(shot_a)
    with VideoWriter(tmp_path / "film.mp4", 25, crf=12, preset="ultrafast") as w:
        for f in list(shot_a) + list(shot_b):
            w.write(f)
    d = env["dubber"]
    tpl = d.prepare_template(tmp_path / "film.mp4")
    t = tpl.template
    assert t.num_tracks == 2 and (np.diff(t.tracks) != 0).sum() == 1 and t.tracks[cut] != t.tracks[cut - 1]
    # references per shot: every frame's 5 references come from its own shot
    assert len(tpl.reference_sets) == 2
    for i in range(t.num_frames):
        assert all((r < cut) == (i < cut) for r in tpl.reference_key(i))
    # landmarks are never smoothed across the cut: they equal each shot tracked on its own
    det = LandmarkDetector()
    film = read_frames(tmp_path / "film.mp4")
    for lo, hi in ((0, cut), (cut, len(film))):
        alone, valid = track_landmarks(film[lo:hi], det, progress=False)
        assert valid.all() and np.abs(alone - t.landmarks[lo:hi]).max() < 1e-3
    # the model gets, for every frame, the references of that frame's shot
    crops = {k: v.float().div(255) for k, v in tpl.reference_crops.items()}
    got = []

    def infer(src, refs, aud):
        for r in refs:
            got.append(next(k for k, c in crops.items() if torch.equal(r, c)))
        return src

    shown = []
    d.infer_fn = infer
    d.cfg.cache_references = False           # refs as the reference crops, not the generator's features of them
    try:
        d.dub(tpl, env["mono"], tmp_path / "dub.mp4", frame_callback=lambda k, i, *_: shown.append(i))
    finally:
        d.infer_fn, d.cfg.cache_references = d.runner, True
    assert max(shown) >= cut                                            # the dub plays both shots
    assert got == [tpl.reference_key(i) for i in shown if t.valid[i]]
