"""Frame choice at 25 fps (or any fps) compared with the ffmpeg command line's own ``fps`` filter, frame by frame.

The original LawDNet converts every video with ``ffmpeg -r 25`` first, so the frames the released weights were
trained on are the ones ffmpeg's rate conversion picks (the source frame NEAREST to each output time, the
filter's rounding and start rule). Every clip here is made by the ffmpeg CLI from frames that carry their own
source index as black/white blocks; ffmpeg's ``-vf fps=25`` output and ``utils.media.video_io.iter_frames`` are
both decoded and their indices compared: same number of frames, >= 99 % the same source frame."""
import shutil
import subprocess
from fractions import Fraction

import numpy as np
import pytest

from utils.media.timebase import FPS
from utils.media.video_io import count_frames, iter_frames

FF = shutil.which("ffmpeg")
pytestmark = pytest.mark.skipif(FF is None, reason="needs the ffmpeg command line tool")
H, W, BITS = 48, 64, 9


def pattern(i):
    """Source frame ``i``: its index in 9 blocks along the top, a moving bar below (so encoders use B-frames)."""
    f = np.full((H, W, 3), 100, np.uint8)
    for b in range(BITS):
        f[:16, b * 7:b * 7 + 6] = 255 if (i >> b) & 1 else 0
    x = (i * 3) % (W - 10)
    f[24:, x:x + 10] = (200, 60, 60)
    return f


def index_of(f):
    return sum(int(f[2:14, b * 7 + 1:b * 7 + 5].mean() > 128) << b for b in range(BITS))


def ff(*args, stdin=None):
    subprocess.run([FF, "-hide_banner", "-loglevel", "error", "-y", *map(str, args)], input=stdin, check=True)


def ffmpeg_fps(path, fps=FPS):
    """Indices of the frames ``ffmpeg -i path -vf fps=25 -f rawvideo`` outputs (the command line's defaults: a
    file with audio whose video starts late begins with repeats of the first frame, as ``-r 25`` does)."""
    out = subprocess.run([FF, "-hide_banner", "-loglevel", "error", "-i", str(path), "-vf", f"fps={fps:g}",
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         check=True, capture_output=True).stdout
    return [index_of(f) for f in np.frombuffer(out, np.uint8).reshape(-1, H, W, 3)]


def raw_input(n, rate):
    return (np.stack([pattern(i) for i in range(n)]).tobytes(),
            ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{W}x{H}", "-r", rate, "-i", "-"])


X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-pix_fmt", "yuv420p"]
X264_B = ["-c:v", "libx264", "-preset", "veryfast", "-bf", "3", "-crf", "18", "-pix_fmt", "yuv420p"]
XVID_AVI = ["-c:v", "mpeg4", "-bf", "2", "-vtag", "xvid", "-q:v", "2"]

# name -> (source rate, seconds, ffmpeg args before the output, output extension)
CLIPS = {
    "23.976_bframes_mp4": ("24000/1001", 3.1, X264_B, "mp4"),
    "23.976_packed_bframes_avi": ("24000/1001", 3.1, XVID_AVI, "avi"),
    # with AC-3 sound: the decoder's B-frame delay puts the first frame one tick late in a file with audio
    "23.976_packed_bframes_avi_ac3": ("24000/1001", 3.1, ["-f", "lavfi", "-i", "sine=sample_rate=48000:duration=3.1",
                                                          *XVID_AVI, "-c:a", "ac3"], "avi"),
    "24_no_bframes_mp4": ("24", 3.0, X264, "mp4"),
    "24_bframes_mkv": ("24", 3.0, X264_B, "mkv"),
    "29.97_bframes_mp4": ("30000/1001", 2.7, X264_B, "mp4"),
    "29.97_packed_bframes_avi": ("30000/1001", 2.7, XVID_AVI, "avi"),
    "30_no_bframes_mp4": ("30", 2.5, X264, "mp4"),
    "50_bframes_mkv": ("50", 2.0, X264_B, "mkv"),
    "60_no_bframes_mp4": ("60", 2.0, X264, "mp4"),
    "60_bframes_mp4": ("60", 2.0, X264_B, "mp4"),
    # variable frame rate: irregular steps of 19..61 ms (timestamps kept as they are)
    "vfr_mkv": ("30", 3.0, ["-vf", r"setpts=(N*40+mod(N*37\,23)-11*eq(mod(N\,3)\,1))/1000/TB", "-fps_mode", "vfr",
                            *X264_B], "mkv"),
    # the video starts 0.13 s after the audio (first video timestamp not 0), and an MPEG-TS (starts at 1.4 s)
    "late_start_mp4": ("24000/1001", 3.1, ["-f", "lavfi", "-i", "sine=sample_rate=16000:duration=3.5",
                                           "-itsoffset", "0.13", "-i", "{video}", "-map", "1:v", "-map", "0:a",
                                           *X264_B, "-c:a", "aac"], "mp4"),
    "mpegts_29.97": ("30000/1001", 2.7, X264_B, "ts"),
}


def make_clip(d, name):
    rate, seconds, args, ext = CLIPS[name]
    n = int(round(seconds * Fraction(rate)))
    raw, src = raw_input(n, rate)
    out = d / f"{name}.{ext}"
    if args[:2] == ["-f", "lavfi"] and "{video}" not in args:   # a sound source first, then the frames from stdin
        args, src = args[4:], args[:4] + src
    if "{video}" in args:   # two steps: the video alone, then muxed with a head start for the audio
        tmp = d / f"{name}.src.mkv"
        ff(*src, *X264_B, tmp, stdin=raw)
        ff(*[str(tmp) if a == "{video}" else a for a in args if a not in X264_B], "-c:v", "copy", "-c:a", "aac",
           out)
    else:
        ff(*src, *args, out, stdin=raw)
    return out


@pytest.mark.parametrize("name", sorted(CLIPS))
def test_frame_choice_matches_ffmpeg_fps_filter(name, tmp_path):
    path = make_clip(tmp_path, name)
    ref = ffmpeg_fps(path)
    ours = [index_of(f) for f in iter_frames(path, fps=FPS)]
    same = sum(a == b for a, b in zip(ours, ref))
    print(f"{name}: ffmpeg {len(ref)} frames, ours {len(ours)}, same choice {same}/{len(ref)}")
    assert len(ours) == len(ref) == count_frames(path, FPS)
    assert same >= 0.99 * len(ref)
    # a part read from the middle (a keyframe seek past 2 s) shows the same frames as the full read
    assert [index_of(f) for f in iter_frames(path, FPS, start_frame=55, max_frames=12)] == ours[55:67]
