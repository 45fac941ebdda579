"""utils.media.video_io on real encodes: PyAV/libx264/AAC writes, decodes by timestamp, atomic writes, bad files."""
from fractions import Fraction

import numpy as np
import pytest

from utils.errors import UserError
from utils.media.video_io import (VideoInfo, VideoWriter, convert_to_fps, count_frames, iter_frames, probe,
                            read_audio_track, read_frames, write_video)

av = pytest.importorskip("av")

SR = 16000


def moving_frames(n, h=96, w=128):
    """A bright square moving right over a gradient: content differs frame to frame."""
    base = np.tile(np.linspace(20, 120, w, dtype=np.uint8)[None, :, None], (h, 1, 3))
    out = []
    for i in range(n):
        f = base.copy()
        x = (i * 3) % (w - 24)
        f[30:60, x:x + 24] = (250, 40, 40)
        out.append(f)
    return out


def index_pattern(i, h=48, w=64):
    """Frame whose top strip spells ``i`` in 6 black/white blocks (robust to H.264 loss)."""
    f = np.full((h, w, 3), 90, np.uint8)
    for b in range(6):
        f[:16, b * 10:(b + 1) * 10] = 255 if (i >> b) & 1 else 0
    return f


def read_index(f):
    return sum(int(f[:16, b * 10:(b + 1) * 10].mean() > 128) << b for b in range(6))


def sine(seconds, hz=440.0):
    return (0.5 * np.sin(2 * np.pi * hz * np.arange(int(round(seconds * SR))) / SR)).astype(np.float32)


def test_write_probe_read_roundtrip(tmp_path):
    path = tmp_path / "clip.mp4"
    frames = moving_frames(50)
    n = write_video(path, frames, fps=25, audio=sine(2.0), sample_rate=SR)
    assert n == 50
    info = probe(path)
    assert isinstance(info, VideoInfo)
    assert (info.width, info.height, info.num_frames) == (128, 96, 50)
    assert info.fps == pytest.approx(25.0)
    assert info.duration == pytest.approx(2.0, abs=0.05)
    assert info.has_audio and info.audio_sample_rate == SR
    assert info.audio_duration == pytest.approx(2.0, abs=0.1)

    back = read_frames(path)
    assert back.shape == (50, 96, 128, 3) and back.dtype == np.uint8
    err = np.abs(back.astype(np.int16) - np.stack(frames).astype(np.int16))
    assert err.mean() < 3.0
    # the moving square is where it was written in every frame (not a repeated/shifted frame)
    for i in (0, 17, 49):
        x = (i * 3) % (128 - 24)
        assert back[i, 45, x + 12, 0] > 200 and back[i, 45, x + 12, 1] < 100
    assert count_frames(path) == 50 and count_frames(path, fps=None) == 50

    audio = read_audio_track(path, SR)
    assert abs(len(audio) / SR - 2.0) < 0.1
    # it is the sine we wrote: dominant frequency 440 Hz, amplitude ~0.5
    spec = np.abs(np.fft.rfft(audio[SR // 4: SR // 4 + SR]))
    assert abs(np.argmax(spec) - 440) <= 2
    assert 0.3 < np.abs(audio[SR // 4: -SR // 4]).max() < 0.7


def test_start_frame_and_max_frames_match_full_read(tmp_path):
    path = tmp_path / "long.mp4"
    # 4 s at 25 fps with short GOPs so that start_frame=75 (3 s) takes the keyframe-seek path
    write_video(path, [index_pattern(i % 64) for i in range(100)], fps=25, gop_size=10, preset="ultrafast")
    full = [read_index(f) for f in iter_frames(path)]
    assert full == [i % 64 for i in range(100)]
    part = [read_index(f) for f in iter_frames(path, start_frame=75, max_frames=10)]
    assert part == full[75:85]
    assert [read_index(f) for f in iter_frames(path, start_frame=95)] == full[95:]
    assert list(iter_frames(path, start_frame=100)) == []
    assert [read_index(f) for f in iter_frames(path, fps=None, start_frame=3, max_frames=2)] == [3, 4]


def test_30fps_input_read_at_25fps(tmp_path):
    path = tmp_path / "thirty.mp4"
    write_video(path, [index_pattern(i) for i in range(60)], fps=30, preset="ultrafast")
    assert probe(path).fps == pytest.approx(30.0)
    got = [read_index(f) for f in iter_frames(path, fps=25)]
    # output k shows the 30 fps frame NEAREST to k/25 s (ffmpeg's fps filter): round(k * 30 / 25)
    assert len(got) == 50 == count_frames(path, fps=25)
    assert got == [(12 * k + 5) // 10 for k in range(50)]
    assert len(list(iter_frames(path, fps=None))) == 60


@pytest.mark.parametrize("ext", ["mkv", "mp4"])
def test_variable_frame_rate_input_by_time(tmp_path, ext):
    times_ms = [0, 40, 50, 120, 300, 310, 320, 330, 500, 700]
    path = tmp_path / f"vfr.{ext}"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=30)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.codec_context.time_base = Fraction(1, 1000)
        for i, t in enumerate(times_ms):
            f = av.VideoFrame.from_ndarray(index_pattern(i), format="rgb24")
            f.pts, f.time_base = t, Fraction(1, 1000)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    got = [read_index(f) for f in iter_frames(path, fps=25)]
    assert len(got) == count_frames(path, fps=25)
    # ffmpeg's fps filter: frame i is due at output tick round(t_i / 40 ms) (halves up) and output k shows the
    # last frame due at or before k; frames due at the same tick as a later one are dropped. The output ends at
    # the last frame's end: 700 ms + 1/30 s = tick round(18.3) = 18, the tick the last frame is due at, so (as in
    # ffmpeg's own output of this file) it is never shown.
    due = [(t + 20) // 40 for t in times_ms]
    assert got == [max(i for i, d in enumerate(due) if d <= k) for k in range(18)]
    assert [read_index(f) for f in iter_frames(path, fps=None)] == list(range(10))


def odd_frames(n=6, h=193, w=257):
    """A 257x193 'template': gradients, a moving square, and a last row/column of their own colours."""
    out = []
    for i in range(n):
        f = np.zeros((h, w, 3), np.uint8)
        f[..., 0] = np.linspace(0, 255, w)[None]
        f[..., 1] = np.linspace(0, 255, h)[:, None]
        f[60:100, 20 + 9 * i:60 + 9 * i] = (250, 250, 250)
        f[-1] = (255, 255, 0)
        f[:, -1] = (0, 255, 255)
        out.append(f)
    return out


def test_odd_size_frames_keep_their_exact_size(tmp_path):
    frames = odd_frames()
    src = np.stack(frames).astype(int)
    path = tmp_path / "odd.mp4"
    write_video(path, frames, fps=25, preset="ultrafast")
    info = probe(path)
    assert (info.width, info.height) == (257, 193)
    with av.open(str(path)) as c:   # 4:4:4 H.264 (4:2:0 cannot store an odd size)
        assert c.streams.video[0].codec_context.pix_fmt == "yuv444p"
    back = read_frames(path)
    assert back.shape == (6, 193, 257, 3)
    assert np.abs(back.astype(int) - src).mean() < 2.5
    # the content is where it was written, up to the last row and column (no padding, no shift)
    assert np.abs(back[:, -1].astype(int) - src[:, -1]).mean() < 12 and back[:, -1, 128, 2].max() < 60
    assert np.abs(back[:, :, -1].astype(int) - src[:, :, -1]).mean() < 12 and back[:, 96, -1, 0].max() < 60
    assert back[3, 80, 20 + 27 + 20].min() > 220 and back[3, 80, 20 + 27 - 3].max() < 200
    # odd_size="pad": 4:2:0 one replicated row/column larger
    padded = tmp_path / "padded.mp4"
    write_video(padded, frames, fps=25, preset="ultrafast", odd_size="pad")
    assert (probe(padded).width, probe(padded).height) == (258, 194)
    pb = read_frames(padded)
    assert np.abs(pb[:, :193, :257].astype(int) - src).mean() < 8
    assert np.abs(pb[:, :, -1].astype(int) - pb[:, :, -2]).mean() < 12   # the replicated column
    with pytest.raises(ValueError, match="odd_size"):
        VideoWriter(tmp_path / "x.mp4", odd_size="crop")


def test_exception_inside_writer_leaves_no_file(tmp_path):
    path = tmp_path / "broken.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(path, fps=25, audio=sine(1.0), sample_rate=SR) as w:
            for f in moving_frames(10):
                w.write(f)
            raise RuntimeError("boom")
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []  # no temp file left behind either
    # an existing file is not touched by a failed rewrite
    write_video(path, moving_frames(5), fps=25)
    before = path.read_bytes()
    with pytest.raises(ValueError):
        with VideoWriter(path, fps=25) as w:
            w.write(moving_frames(1)[0])
            w.write(np.zeros((10, 10, 3), np.uint8))  # size change is refused
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["broken.mp4"]


def test_audio_kept_or_matched(tmp_path):
    frames = moving_frames(25)  # 1 s of video
    long_path, matched_path = tmp_path / "long.mp4", tmp_path / "matched.mp4"
    write_video(long_path, frames, fps=25, audio=sine(1.8), sample_rate=SR)
    write_video(matched_path, frames, fps=25, audio=sine(1.8), sample_rate=SR, match_audio=True)
    assert probe(long_path).audio_duration == pytest.approx(1.8, abs=0.1)
    assert probe(matched_path).audio_duration == pytest.approx(1.0, abs=0.1)
    short_path = tmp_path / "short.mp4"
    write_video(short_path, frames, fps=25, audio=sine(0.5), sample_rate=SR, match_audio=True)
    assert probe(short_path).audio_duration == pytest.approx(1.0, abs=0.1)  # zero-padded


def test_convert_to_fps_keeps_audio(tmp_path):
    src, dst = tmp_path / "src30.mp4", tmp_path / "dst25.mp4"
    write_video(src, [index_pattern(i) for i in range(45)], fps=30, audio=sine(1.5), sample_rate=SR,
                preset="ultrafast")
    info = convert_to_fps(src, dst, fps=25, preset="ultrafast")
    assert info.fps == pytest.approx(25.0) and info.num_frames == 38  # ceil(1.5 s * 25)
    assert info.has_audio and info.audio_duration == pytest.approx(1.5, abs=0.1)
    assert [read_index(f) for f in iter_frames(dst, fps=None)] == [(12 * k + 5) // 10 for k in range(38)]


def test_bad_files_raise_user_error(tmp_path):
    missing = tmp_path / "nope.mp4"
    with pytest.raises(UserError, match="nope.mp4"):
        probe(missing)
    with pytest.raises(UserError, match="nope.mp4"):
        list(iter_frames(missing))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video at all" * 100)
    for fn in (probe, count_frames, lambda p: list(iter_frames(p))):
        with pytest.raises(UserError, match="junk.mp4"):
            fn(junk)
    # a real mp4 cut in half (the index at the end is lost) is corrupt, not silently empty
    good = tmp_path / "good.mp4"
    write_video(good, moving_frames(20), fps=25)
    data = good.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[len(data) // 2:])
    with pytest.raises(UserError, match="cut.mp4"):
        probe(cut)
    wav_only = tmp_path / "sound.mp4"
    with av.open(str(wav_only), "w") as c:
        s = c.add_stream("aac", rate=SR)
        s.layout = "mono"
        fr = av.AudioFrame.from_ndarray(sine(0.5)[None], format="fltp", layout="mono")
        fr.sample_rate, fr.pts = SR, 0
        for p in list(s.encode(fr)) + list(s.encode(None)):
            c.mux(p)
    with pytest.raises(UserError, match="no video stream"):
        probe(wav_only)
