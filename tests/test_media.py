"""The one reader/loader (utils/media) on a media corpus generated here with the ffmpeg CLI: packed B-frame AVIs,
damaged AC-3, truncated mp4s, rotation, odd sizes, 10 bit, cover pictures, several audio streams, common audio
codecs/rates/layouts, stills, hostile lists/names and clear errors. ffmpeg's own decode is the reference."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from utils.errors import UserError
from utils.media.audio_io import decode_audio, load_audio
from utils.media.container import MediaTooLong
from utils.media.video_io import convert_to_fps, count_frames, iter_frames, probe

FF = shutil.which("ffmpeg")
pytestmark = pytest.mark.skipif(FF is None, reason="needs the ffmpeg command line tool")
H, W, BITS = 96, 160, 9          # index-pattern frames: 9 bits as black/white blocks along the top


def ff(*args, stdin=None):
    subprocess.run([FF, "-hide_banner", "-loglevel", "error", "-y", *map(str, args)], input=stdin, check=True)


def ff_raw(path, *vf, h=None, w=None):
    """ffmpeg's own decode of ``path`` as RGB frames (its default: autorotate, timestamps as libavcodec says)."""
    out = subprocess.run([FF, "-hide_banner", "-loglevel", "error", "-i", str(path), *vf, "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], check=True, capture_output=True).stdout
    return np.frombuffer(out, np.uint8).reshape(-1, h or H, w or W, 3)


def pattern(i):
    f = np.full((H, W, 3), 100, np.uint8)
    for b in range(BITS):
        f[:32, b * 16 + 4:b * 16 + 14] = 255 if (i >> b) & 1 else 0
    f[40:, (i * 3) % (W - 20):(i * 3) % (W - 20) + 20] = (200, 60, 60)   # motion, so B-frames are used
    return f


def index_of(f):
    return sum(int(f[4:28, b * 16 + 6:b * 16 + 12].mean() > 128) << b for b in range(BITS))


def tone_hz(x, sr):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * sr / len(x))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    raw = np.stack([pattern(i) for i in range(270)]).tobytes()      # 270 frames at 23.976 fps = 11.26 s
    src = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{W}x{H}", "-r", "24000/1001", "-i", "-"]
    # MPEG-4 Part 2 in AVI with B-frames: Xvid's packed bitstream, and ffmpeg's encoder with an xvid tag
    variants = {"mpeg4_xvidtag": ["-c:v", "mpeg4", "-bf", "2", "-vtag", "xvid", "-q:v", "3"]}
    if b"libxvid" in subprocess.run([FF, "-hide_banner", "-encoders"], capture_output=True).stdout:
        variants["xvid_packed"] = ["-c:v", "libxvid", "-bf", "2", "-q:v", "3"]
    for name, codec in variants.items():
        ff(*src, *codec, d / f"{name}.avi", stdin=raw)
    # a 6 s clip with sound, index at the front (faststart), then cut in half
    ff("-f", "lavfi", "-i", f"testsrc=size={W}x{H}:rate=25:duration=6", "-f", "lavfi", "-i",
       "sine=f=440:sample_rate=16000:duration=6", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
       "-c:a", "aac", "-movflags", "+faststart", d / "full.mp4")
    data = (d / "full.mp4").read_bytes()
    (d / "half.mp4").write_bytes(data[:len(data) // 2])
    return {"dir": d, "variants": sorted(variants)}


# ------------------------------------------------------------------------------------------ 1. frame order

@pytest.mark.parametrize("variant", ["mpeg4_xvidtag", "xvid_packed"])
def test_bframe_avi_every_frame_once_in_order(corpus, variant, tmp_path):
    if variant not in corpus["variants"]:
        pytest.skip("this ffmpeg has no libxvid encoder")
    path = corpus["dir"] / f"{variant}.avi"
    # every decoded frame once, in the decoder's (presentation) order: exactly ffmpeg's decoder output
    native = [index_of(f) for f in iter_frames(path, fps=None)]
    assert native == [index_of(f) for f in ff_raw(path, "-vsync", "passthrough")] and len(native) >= 265
    assert count_frames(path, None) == len(native)
    if variant == "mpeg4_xvidtag":   # (Xvid's own encoder shows some source frames twice: compare with ffmpeg)
        assert native == list(range(270))
    at25 = [index_of(f) for f in iter_frames(path, fps=25)]
    assert count_frames(path, 25) == len(at25)
    ref25 = [index_of(f) for f in ff_raw(path, "-vf", "fps=25")]          # ffmpeg's fps filter
    assert at25 == ref25           # the same frames: the nearest one to each output time (tests/test_frame_rule.py)
    pos = {v: i for i, v in enumerate(native)} if len(set(native)) == len(native) else None
    if pos:                                                               # 23.976 -> 25: repeats only, no drops
        assert set(at25) == set(native) and max(np.diff([pos[a] for a in at25])) == 1
    # data preparation's converter uses the same reader
    out = tmp_path / "c.mp4"
    info = convert_to_fps(path, out, preset="ultrafast")
    assert [index_of(f) for f in iter_frames(out, fps=None)] == at25 and info.num_frames == len(at25)
    # a keyframe seek far into the file lands on the same frames as a full read
    assert [index_of(f) for f in iter_frames(path, 25, start_frame=200, max_frames=20)] == at25[200:220]


# ------------------------------------------------------------------------------------------ 2. damaged audio

def test_ac3_with_damaged_last_frame_decodes_the_rest(tmp_path):
    ff("-f", "lavfi", "-i", "sine=f=440:sample_rate=48000:duration=3", "-c:a", "ac3", tmp_path / "a.ac3")
    ac3 = bytearray((tmp_path / "a.ac3").read_bytes())
    ac3[len(ac3) - 1536 + 5:] = np.random.default_rng(0).integers(0, 256, 1536 - 5, dtype=np.uint8).tobytes()
    (tmp_path / "bad.ac3").write_bytes(bytes(ac3))
    ff("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=3", "-i", tmp_path / "bad.ac3", "-c:v", "mpeg4",
       "-c:a", "copy", tmp_path / "film.avi")
    notes = []
    x = load_audio(tmp_path / "film.avi", 16000, notes=notes)
    ref = subprocess.run([FF, "-v", "quiet", "-i", tmp_path / "film.avi", "-f", "f32le", "-ac", "1", "-ar", "16000",
                          "-"], capture_output=True).stdout                  # ffmpeg decodes it with a warning
    assert abs(len(x) - len(ref) // 4) / 16000 < 0.1 and len(x) / 16000 > 2.7 and abs(tone_hz(x, 16000) - 440) < 5
    assert len(notes) == 1 and "could not be decoded" in notes[0] and "Errno" not in notes[0]
    from inference.dubber import load_dub_audio

    d = load_dub_audio(tmp_path / "film.avi")                      # accepted as --audio, with the warning
    assert d.num_frames == round(len(x) / 640) and d.warnings == notes


def test_truncated_avi_with_ac3_keeps_every_packet_ffmpeg_decodes(tmp_path):
    """An AVI cut off before its index: the header's audio length is a guess below what the complete packets
    hold; every packet ffmpeg decodes is kept (was: trimmed to the header's 3.776 s, 2 frames short)."""
    from utils.media.timebase import num_video_frames

    ff("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=5", "-f", "lavfi", "-i",
       "sine=f=440:sample_rate=48000:duration=5", "-c:v", "mpeg4", "-q:v", "3", "-c:a", "ac3", "-b:a", "192k",
       tmp_path / "full.avi")
    data = (tmp_path / "full.avi").read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[:int(len(data) * 0.75)])
    ref = subprocess.run([FF, "-v", "quiet", "-i", cut, "-vn", "-f", "f32le", "-ac", "1", "-"],
                         capture_output=True).stdout
    notes = []
    d = decode_audio(cut, notes=notes)
    assert d.rate == 48000 and d.samples.shape[1] == len(ref) // 4 and d.seconds > 3.8      # ffmpeg: 3.84 s
    assert len(notes) == 1 and "breaks off" in notes[0]
    x = load_audio(cut, 16000, notes=[])
    assert num_video_frames(len(x)) == num_video_frames(len(ref) // 4, 48000) == 96
    # and the picture: the frames (and their number) ffmpeg's fps filter gives
    ours = np.stack(list(iter_frames(cut, 25, notes=[])))
    theirs = ff_raw(cut, "-vf", "fps=25", h=48, w=64)
    assert len(ours) == len(theirs) == count_frames(cut, 25)
    assert np.abs(ours.astype(np.int16) - theirs).mean() < 2


# ------------------------------------------------------------------------------------------ 3. truncated files

def test_truncated_mp4_warns_for_video_and_audio(corpus, tmp_path):
    half = corpus["dir"] / "half.mp4"
    notes = []
    frames = list(iter_frames(half, 25, notes=notes))
    assert 25 < len(frames) < 120 and count_frames(half, 25) == len(frames)
    assert any("says it lasts 6.0 s" in n and "truncated" in n for n in notes)
    anotes = []
    x = load_audio(half, 16000, notes=anotes)
    assert 0.5 < len(x) / 16000 < 4.5 and any("truncated" in n for n in anotes)
    # the full file: no warnings
    clean = []
    assert len(list(iter_frames(corpus["dir"] / "full.mp4", 25, notes=clean))) == 150
    load_audio(corpus["dir"] / "full.mp4", 16000, notes=clean)
    assert clean == []
    # the data report carries them (video and audio), and a later run still reports them
    from config.config import DataConfig
    from dataset.prepare.pipeline import process_video

    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(half, src / "half.mp4")
    cfg = DataConfig(source_video_dir=str(src), data_root=str(tmp_path / "data"))
    rec = process_video("half", str(src / "half.mp4"), cfg, ["convert_fps", "extract_audio"], progress=False)
    assert rec["status"] == "processed", rec
    assert any("video stops" in w for w in rec["warnings"]) and any("audio" in w for w in rec["warnings"]), rec


# ------------------------------------------------------------------------------------------ 4. rotation

@pytest.mark.parametrize("angle", [90, 180, 270])
def test_rotation_metadata_frames_as_a_player_shows_them(corpus, angle, tmp_path):
    plain = tmp_path / "plain.mp4"
    ff("-f", "lavfi", "-i", f"testsrc=size={W}x{H}:rate=25:duration=0.4", "-c:v", "libx264", "-preset",
       "ultrafast", "-pix_fmt", "yuv444p", plain)
    rot = tmp_path / "rot.mp4"
    ff("-i", plain, "-c", "copy", "-metadata:s:v:0", f"rotate={angle}", rot)
    info = probe(rot)
    h, w = (W, H) if angle % 180 else (H, W)
    assert (info.height, info.width) == (h, w)
    ours = np.stack(list(iter_frames(rot, 25)))
    ref = ff_raw(rot, h=h, w=w)
    assert ours.shape == ref.shape and np.abs(ours.astype(int) - ref).mean() < 1.0


# ------------------------------------------------------------------------------------------ 5. odd files

def test_odd_size_ten_bit_and_cover_picture(tmp_path):
    odd = tmp_path / "odd.mp4"
    ff("-f", "lavfi", "-i", "testsrc=size=161x121:rate=25:duration=0.4", "-c:v", "libx264", "-preset", "ultrafast",
       "-pix_fmt", "yuv444p", odd)
    f = next(iter_frames(odd))
    assert f.shape == (121, 161, 3) and probe(odd).width == 161
    ten = tmp_path / "ten.mp4"
    ff("-f", "lavfi", "-i", f"testsrc=size={W}x{H}:rate=25:duration=0.4", "-c:v", "libx264", "-preset",
       "ultrafast", "-pix_fmt", "yuv420p10le", ten)
    ours = np.stack(list(iter_frames(ten)))
    assert ours.dtype == np.uint8 and np.abs(ours.astype(int) - ff_raw(ten)).mean() < 6.0   # (swscale versions)
    # a stream whose resolution changes (two MPEG-TS clips joined): one frame size throughout, with a warning
    for name, size, offset in (("a.ts", "160x120", 0), ("b.ts", "96x64", 1)):
        ff("-f", "lavfi", "-i", f"testsrc=size={size}:rate=25:duration=1", "-c:v", "mpeg4", "-output_ts_offset",
           offset, "-f", "mpegts", tmp_path / name)
    (tmp_path / "ab.ts").write_bytes((tmp_path / "a.ts").read_bytes() + (tmp_path / "b.ts").read_bytes())
    notes = []
    joined = list(iter_frames(tmp_path / "ab.ts", notes=notes))
    assert len(joined) == 50 and {f.shape for f in joined} == {(120, 160, 3)}
    assert any("frame size changes mid-stream" in n for n in notes)
    # a cover picture stored as a one-frame stream BEFORE the real video (mkv), and as an attached picture (mp4)
    ff("-f", "lavfi", "-i", "color=c=red:size=64x48", "-frames:v", "1", tmp_path / "cover.png")
    for ext in ("mkv", "mp4"):
        out = tmp_path / f"cover.{ext}"
        ff("-i", tmp_path / "cover.png", "-i", ten, "-map", "0", "-map", "1:v", "-c", "copy", "-disposition:v:0",
           "attached_pic", out)
        info = probe(out)
        assert (info.width, info.height, count_frames(out)) == (W, H, 10)
        assert np.abs(np.stack(list(iter_frames(out))).astype(int) - ours).mean() < 1.0


def test_audio_codecs_rates_layouts_and_stream_choice(tmp_path):
    sine = ["-f", "lavfi", "-i", "sine=f=440:sample_rate={sr}:duration=1.5"]

    def make(name, sr, *codec):
        ff(*[a.format(sr=sr) for a in sine], *codec, tmp_path / name)
        return tmp_path / name

    files = {
        "mulaw8k.wav": make("mulaw8k.wav", 8000, "-c:a", "pcm_mulaw"),
        "float.wav": make("float.wav", 44100, "-c:a", "pcm_f32le"),
        "speech.opus": make("speech.opus", 48000, "-c:a", "libopus", "-b:a", "48k"),
        "speech.mp3": make("speech.mp3", 24000, "-c:a", "libmp3lame"),
    }
    for name, path in files.items():
        x = load_audio(path, 16000)
        assert abs(len(x) / 16000 - 1.5) < 0.08, name
        assert abs(tone_hz(x, 16000) - 440) < 5 and 0.05 < np.abs(x).max() <= 1.0, name
    # 48 kHz 5.1 with the tone in the centre channel only: kept as 6 channels, downmixed with the centre at full
    # weight (front 1/sqrt2, surround 1/2, LFE 0, normalised)
    c51 = make("c51.ac3", 48000, "-filter_complex", "pan=5.1|FC=c0", "-c:a", "ac3", "-b:a", "384k")
    d = decode_audio(c51)
    assert d.samples.shape[0] == 6 and d.rate == 48000 and "FC" in d.channel_names
    fc = d.samples[d.channel_names.index("FC")]
    weight = 1.0 / (1 + 2 * 0.5 ** 0.5 + 2 * 0.5)
    assert np.abs(d.mono()).max() == pytest.approx(weight * np.abs(fc).max(), rel=0.02)
    # several audio streams: the one marked default is used (here the second, 880 Hz)
    multi = tmp_path / "multi.mkv"
    ff("-f", "lavfi", "-i", "sine=f=440:sample_rate=16000:duration=1", "-f", "lavfi", "-i",
       "sine=f=880:sample_rate=16000:duration=1", "-map", "0", "-map", "1", "-c:a", "flac",
       "-disposition:a:0", "0", "-disposition:a:1", "default", multi)
    assert abs(tone_hz(load_audio(multi, 16000), 16000) - 880) < 5


def test_audio_limit_stops_decoding(tmp_path):
    """A FLAC written to a pipe has no length in its header: the limit still stops decoding early."""
    flac = tmp_path / "long.flac"
    with open(flac, "wb") as fh:
        subprocess.run([FF, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                        "anoisesrc=r=8000:a=0.1:d=120", "-c:a", "flac", "-f", "flac", "pipe:1"], stdout=fh,
                       check=True)
    with pytest.raises(MediaTooLong) as e:
        decode_audio(flac, max_seconds=3.0)
    assert 3.0 < e.value.seconds < 3.6
    assert abs(len(load_audio(flac, 8000)) / 8000 - 120) < 0.1


# ------------------------------------------------------------------------------------------ 6. stills

def test_still_images_read_as_one_frame_videos(tmp_path):
    from PIL import Image

    img = np.zeros((60, 80, 3), np.uint8)
    img[:, :40] = (250, 0, 0)                                   # left half red
    Image.fromarray(img).save(tmp_path / "a.png")
    for name, orientation in (("a.jpg", 1), ("rot.jpg", 6)):    # 6: the camera was turned; a viewer rotates 90 cw
        exif = Image.Exif()
        exif[0x0112] = orientation
        Image.fromarray(img).save(tmp_path / name, quality=95, exif=exif)
    info = probe(tmp_path / "a.png")
    assert info.still and (info.width, info.height, info.num_frames) == (80, 60, 1)
    assert count_frames(tmp_path / "a.png", 25) == 1
    assert np.array_equal(np.stack(list(iter_frames(tmp_path / "a.png")))[0], img)
    assert np.abs(next(iter_frames(tmp_path / "a.jpg")).astype(int) - img).mean() < 3
    rot = next(iter_frames(tmp_path / "rot.jpg"))
    assert rot.shape == (80, 60, 3) and rot[:40, :, 0].mean() > 200 and rot[40:, :, 0].mean() < 50
    assert probe(tmp_path / "rot.jpg").height == 80


# ------------------------------------------------------------------------------------------ 9/10. hostile input, errors

def test_lists_playlists_and_protocol_names_are_refused_or_literal(corpus, tmp_path, monkeypatch):
    lst = tmp_path / "loop.mp4"                                  # a self-referencing concat list named .mp4
    lst.write_text(f"ffconcat version 1.0\nfile '{lst}'\nfile '{lst}'\n")
    for reader in (probe, count_frames, lambda p: list(iter_frames(p)), load_audio):
        with pytest.raises(UserError, match="concat list"):
            reader(lst)
    (tmp_path / "list.m3u8").write_text("#EXTM3U\n#EXTINF:1,\nhttp://127.0.0.1:9/x.ts\n")
    with pytest.raises(UserError, match="playlist"):
        load_audio(tmp_path / "list.m3u8")
    # an ffconcat list without its header line is still a concat-demuxer input: refused by the demuxer allow-list
    (tmp_path / "plain.txt").write_text(f"file '{corpus['dir'] / 'full.mp4'}'\n")
    with pytest.raises(UserError):
        probe(tmp_path / "plain.txt")
    # the CLI and data preparation say the same in one line
    wav = tmp_path / "a.wav"
    ff("-f", "lavfi", "-i", "sine=duration=0.5", wav)
    (tmp_path / "w.pth").write_bytes(b"x")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "inference_function.py", "--video", str(lst), "--audio", str(wav),
                        "--checkpoint", str(tmp_path / "w.pth"), "--output", str(tmp_path / "o.mp4")], cwd=repo,
                       capture_output=True, text=True)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:") and "concat list" in lines[0]
    from config.config import DataConfig
    from dataset.prepare.pipeline import process_video

    rec = process_video("loop", str(lst), DataConfig(data_root=str(tmp_path / "data")), ["convert_fps"],
                        progress=False)
    assert rec["status"] == "failed" and "concat list" in rec["reason"]
    # a file whose NAME looks like a protocol is read as that file, not as concat:/http:
    monkeypatch.chdir(tmp_path)
    shutil.copy(corpus["dir"] / "full.mp4", "concat:full.mp4|x.mp4")
    assert count_frames("concat:full.mp4|x.mp4") == 150


def test_error_lines_are_plain(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    for reader in (probe, load_audio):
        with pytest.raises(UserError, match=r"empty \(0 bytes\)"):
            reader(tmp_path / "empty.mp4")
    (tmp_path / "junk.wav").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes())
    for reader in (probe, load_audio):
        with pytest.raises(UserError) as e:
            reader(tmp_path / "junk.wav")
        assert "Errno" not in str(e.value) and "\n" not in str(e.value)


def test_full_scale_speech_through_aac_reads_back_quietly_louder_float_data_is_scaled(tmp_path):
    """A full-scale signal written as AAC decodes with peaks a little above 1 (codec overshoot): clipped without a
    warning. A float WAV at 1.5 x full scale is scaled to peak 1 with one warning."""
    from utils.media.audio_io import save_wav

    t = np.arange(32000) / 16000
    x = (0.999 * np.sin(2 * np.pi * 300 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)   # tone bursts
    save_wav(str(tmp_path / "full.wav"), x, 16000)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(tmp_path / "full.wav"), "-c:a", "aac", "-b:a", "96k",
                    str(tmp_path / "full.m4a")], check=True)
    from utils.media.audio_io import decode_audio

    assert np.abs(decode_audio(str(tmp_path / "full.m4a")).mono()).max() > 1.0       # the codec overshoots
    notes = []
    y = load_audio(tmp_path / "full.m4a", 16000, notes=notes)
    assert notes == [] and np.abs(y).max() <= 1.0
    loud = tmp_path / "loud.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "f32le", "-ar", "16000", "-ac", "1", "-i", "-",
                    "-c:a", "pcm_f32le", str(loud)], input=(1.5 * np.sin(2 * np.pi * 220 * t)).astype("<f4").tobytes(),
                   check=True)
    notes = []
    y = load_audio(loud, 16000, notes=notes)
    assert len(notes) == 1 and "exceed full scale (peak 1.5" in notes[0] and abs(np.abs(y).max() - 1.0) < 1e-3
