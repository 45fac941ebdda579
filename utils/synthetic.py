"""Synthetic talking-head videos with ground truth, for tests, demos and benchmarks (no real data is downloadable).

Pipeline of ``make_talking_head``:

1. Speech: libespeak-ng through ctypes in synchronous mode with phoneme events, which gives the 22.05 kHz samples
   AND the start time (ms) of every phoneme (run in a fresh worker process per synthesis: the library keeps state
   between calls, which would break determinism). Mandarin uses espeak-ng's pinyin voice (``cmn-latn-pinyin``): the
   Debian 1.51 ``cmn`` voice reads Hanzi as pinyin whose tone digits it speaks as English numbers, so the built-in
   Mandarin sentences carry their pinyin and ``voice="cmn..."`` speaks that (or any pinyin text you pass).
2. Visemes: each phoneme maps to a mouth (openness, width) target (open vowels ~0.9, bilabials p/b/m 0, f/v
   almost closed, rounded vowels narrow, pauses closed); the target signal is Gaussian-smoothed (coarticulation)
   and averaged over each video frame's display interval -> per-frame ground-truth openness in [0, 1].
3. Face: ``skimage.data.astronaut()`` and its dlib 68 landmarks. Per frame the lower lip / jaw / chin points move
   down by openness and the mouth corners in/out by width; a dense backward displacement field is fitted to the
   moved points (Gaussian RBF on a coarse grid, upsampled) and applied with ``cv2.remap`` to a region around
   the mouth only. The inner-lip polygon is then painted as a dark mouth cavity with a band of upper teeth, so an
   open mouth is clearly visible. Mild head motion (translation, rotation, scale: smooth sums of sinusoids drawn
   from ``seed``) goes into the one affine warp that also crops and resizes the face to ``size``.
4. Output: H.264 + AAC mp4 (utils.video_io.VideoWriter) and, next to it, ``<stem>.mouth.npy`` (openness per
   frame), ``<stem>.gt.npz`` (openness, width, phoneme, 68 landmarks in output pixels, face flag, affine per
   frame) and ``<stem>.json`` (text, voice, phoneme timings, sizes).

Everything is deterministic for a given call (espeak is deterministic, the motion comes from ``seed``).
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import os
import warnings
from typing import Iterable, Optional, Sequence

import numpy as np

from utils.atomic import atomic_write
from utils.errors import UserError, cli_main

# ---------------------------------------------------------------------------------------------- sentences

# (language, text). Mandarin texts are Hanzi; their pinyin (what espeak-ng actually speaks) is in _PINYIN.
SENTENCES: list[tuple[str, str]] = [
    ("en", "The quick brown fox jumps over the lazy dog."),
    ("en", "Peter bought a big map before the trip to Madrid."),
    ("en", "Please open the window, the room is very warm today."),
    ("en", "We watched the moon rise above the quiet harbour."),
    ("en", "My father always buys fresh bread from the market."),
    ("en", "Lip reading is hard when the speaker covers her mouth."),
    ("en", "A big wave of happy voices filled the old museum."),
    ("en", "Five bright balloons floated away over the park."),
    ("cmn", "今天天气很好，我们去公园散步吧。"),
    ("cmn", "你好，我是一个会说话的机器人。"),
    ("cmn", "学习新的语言需要耐心和时间。"),
    ("cmn", "妈妈买了很多苹果和香蕉。"),
]
_PINYIN = {
    "今天天气很好，我们去公园散步吧。": "jin1 tian1 tian1 qi4 hen3 hao3, wo3 men5 qu4 gong1 yuan2 san4 bu4 ba5.",
    "你好，我是一个会说话的机器人。": "ni3 hao3, wo3 shi4 yi2 ge4 hui4 shuo1 hua4 de5 ji1 qi4 ren2.",
    "学习新的语言需要耐心和时间。": "xue2 xi2 xin1 de5 yu3 yan2 xu1 yao4 nai4 xin1 he2 shi2 jian1.",
    "妈妈买了很多苹果和香蕉。": "ma1 ma5 mai3 le5 hen3 duo1 ping2 guo3 he2 xiang1 jiao1.",
}
LANGUAGES = ("en", "cmn")
DEFAULT_VOICES = {"en": ("en", "en+m3", "en+f2", "en-us", "en+f4"), "cmn": ("cmn", "cmn+f2", "cmn+m3")}
DEFAULT_SPEEDS = (140, 175, 210)  # espeak-ng words per minute (175 is its default)

# ---------------------------------------------------------------------------------------------- espeak-ng

# libespeak-ng keeps state between syntheses (echo buffer, pitch/phase), so the same text spoken twice in one
# process comes out slightly different. Every synthesis therefore runs in a fresh, stdlib-only Python process
# (~0.1 s): the result depends only on (text, voice, speed). The worker prints one JSON line (sample rate,
# phoneme events in ms) followed by the raw little-endian int16 samples.
_WORKER = r"""
import ctypes, ctypes.util, json, sys
voice, speed = sys.argv[1], int(sys.argv[2])
text = sys.stdin.buffer.read()
try:
    lib = ctypes.CDLL(ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1")
except OSError:
    sys.stderr.write("libespeak-ng not found: install the Debian package espeak-ng (setup.sh does)"); sys.exit(3)
class EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]
class Event(ctypes.Structure):  # espeak_EVENT from speak_lib.h
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", EventId)]
CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(Event))
pcm, events, end = bytearray(), [], [0]
def on_synth(wav, n, evs):
    if n > 0 and wav:
        pcm.extend(ctypes.string_at(wav, 2 * n))
    i = 0
    while evs[i].type != 0:  # espeakEVENT_LIST_TERMINATED
        e = evs[i]
        if e.type == 7:  # espeakEVENT_PHONEME
            events.append((e.audio_position, e.id.string.decode("ascii", "replace")))
        elif e.type in (5, 6):  # END, MSG_TERMINATED
            end[0] = max(end[0], e.audio_position)
        i += 1
    return 0
cb = CALLBACK(on_synth)
# AUDIO_OUTPUT_SYNCHRONOUS = 2, espeakINITIALIZE_PHONEME_EVENTS = 1
rate = lib.espeak_Initialize(2, 0, None, 1)
if rate <= 0:
    sys.stderr.write("espeak-ng failed to initialise (is espeak-ng-data installed?)"); sys.exit(3)
lib.espeak_SetSynthCallback(cb)
if lib.espeak_SetVoiceByName(ctypes.c_char_p(voice.encode())) != 0:
    sys.stderr.write("espeak-ng has no voice %r (see `espeak-ng --voices`)" % voice); sys.exit(3)
lib.espeak_SetParameter(1, speed, 0)  # espeakRATE, words per minute, absolute
data = text + b"\0"
lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                             ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
rc = lib.espeak_Synth(data, len(data), 0, 0, 0, 1, None, None)  # POS_CHARACTER, espeakCHARS_UTF8
lib.espeak_Synchronize()
if rc != 0:
    sys.stderr.write("espeak-ng synthesis failed (code %d)" % rc); sys.exit(3)
sys.stdout.buffer.write(json.dumps({"rate": rate, "events": events, "end_ms": end[0]}).encode() + b"\n")
sys.stdout.buffer.write(bytes(pcm))
"""


def _espeak(text: str, voice: str, speed: int) -> tuple[np.ndarray, int, list[tuple[float, float, str]]]:
    """Run one synthesis in a fresh worker: (float32 audio, sample rate, [(start_s, end_s, phoneme), ...])."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-I", "-c", _WORKER, voice, str(int(speed))], input=text.encode("utf-8"),
                       capture_output=True, timeout=300)
    if r.returncode != 0:
        msg = r.stderr.decode("utf-8", "replace").strip().splitlines()
        raise UserError(msg[-1] if msg else f"espeak-ng worker failed (exit {r.returncode})")
    head, _, raw = r.stdout.partition(b"\n")
    info = json.loads(head)
    sr = int(info["rate"])
    audio = np.frombuffer(raw[: len(raw) // 2 * 2], "<i2").astype(np.float32) / 32768.0
    end_s = max(len(audio) / sr, info["end_ms"] / 1000.0)
    # "(en)"-style events mark language switches, not sounds
    events = [(ms / 1000.0, ph) for ms, ph in info["events"] if ph and not ph.startswith("(")]
    phonemes = []
    for i, (t, ph) in enumerate(events):
        t_next = events[i + 1][0] if i + 1 < len(events) else end_s
        if t_next > t:
            phonemes.append((t, t_next, ph))
    return audio, sr, phonemes


def _espeak_text_and_voice(text: str, voice: str) -> tuple[str, str, str]:
    """(language, text espeak speaks, espeak voice name) for a user-facing ``voice`` like "en+m3" or "cmn+f2"."""
    base, _, variant = voice.partition("+")
    lang = base.split("-")[0].lower()
    if lang in ("cmn", "zh"):
        spoken = _PINYIN.get(text.strip(), text)
        if all(ord(c) < 128 for c in spoken):  # pinyin: the voice that reads it with Mandarin phonemes
            base = "cmn-latn-pinyin"
        else:
            warnings.warn("espeak-ng's cmn voice reads unknown Hanzi poorly; pass pinyin with tone digits instead")
        return "cmn", spoken, base + ("+" + variant if variant else "")
    return lang, text, voice


def synthesize_speech(text: str, voice: str = "en", speed: int = 175):
    """Speak ``text`` with espeak-ng: (float32 mono audio, sample_rate, [(start_s, end_s, phoneme), ...])."""
    if not text or not text.strip():
        raise UserError("synthetic speech needs a non-empty text")
    _, spoken, espeak_voice = _espeak_text_and_voice(text, voice)
    audio, sr, phonemes = _espeak(spoken, espeak_voice, speed)
    if len(audio) == 0 or not phonemes:
        raise UserError(f"espeak-ng produced no speech for {text!r} (voice {voice!r})")
    return audio, sr, phonemes


# ---------------------------------------------------------------------------------------------- visemes

_VOWEL_START = set("aAV@3&eEiIyYoO0QuU")
_VISEME_BY_NAME = {"tS": (0.25, 0.3), "dZ": (0.25, 0.3), "tS;": (0.25, 0.3), "tS;h": (0.25, 0.3), "w": (0.12, 0.15),
                   "j": (0.2, 0.7), "ts": (0.22, 0.6), "tsh": (0.22, 0.6)}
_VISEME_BY_FIRST = {  # (openness, width); width 0.5 = neutral, 1 = spread, 0 = rounded
    "a": (0.9, 0.6), "A": (0.9, 0.6), "V": (0.7, 0.5), "@": (0.45, 0.5), "3": (0.45, 0.5), "&": (0.75, 0.6),
    "e": (0.6, 0.75), "E": (0.65, 0.7), "i": (0.3, 0.85), "I": (0.32, 0.8), "y": (0.3, 0.2), "Y": (0.3, 0.2),
    "o": (0.6, 0.25), "O": (0.65, 0.3), "0": (0.65, 0.3), "Q": (0.65, 0.3), "u": (0.3, 0.12), "U": (0.35, 0.15),
    "p": (0.0, 0.45), "b": (0.0, 0.45), "m": (0.0, 0.45), "f": (0.08, 0.55), "v": (0.08, 0.55),
    "T": (0.2, 0.55), "D": (0.2, 0.55), "S": (0.25, 0.3), "Z": (0.25, 0.3), "w": (0.12, 0.15), "W": (0.12, 0.15),
    "_": (0.0, 0.5),
}
_CONSONANT_DEFAULT = (0.22, 0.55)


def is_vowel(phoneme: str) -> bool:
    """True for espeak-ng vowel mnemonics (English and pinyin voices)."""
    return bool(phoneme) and phoneme[0] in _VOWEL_START


def viseme(phoneme: str) -> tuple[float, float]:
    """Mouth (openness, width) target of one espeak-ng phoneme mnemonic; pauses and "" are closed."""
    if not phoneme or phoneme[0] == "_":
        return 0.0, 0.5
    if phoneme in _VISEME_BY_NAME:
        return _VISEME_BY_NAME[phoneme]
    return _VISEME_BY_FIRST.get(phoneme[0], _CONSONANT_DEFAULT)


def mouth_tracks(phonemes: Sequence[tuple[float, float, str]], num_frames: int, fps: float,
                 smooth_s: float = 0.025):
    """Per-frame (openness, width, phoneme label) from timed phonemes; silence is a closed, neutral mouth.

    A 1 ms target signal is smoothed by a Gaussian of ``smooth_s`` (coarticulation) and averaged over each
    frame's display interval [k/fps, (k+1)/fps); the label is the phoneme at the frame centre ("" for silence).
    """
    step = 0.001
    total = num_frames / fps
    n = int(math.ceil(total / step)) + 1
    target = np.zeros((n, 2), np.float64)
    target[:, 1] = 0.5
    for t0, t1, ph in phonemes:
        i0, i1 = int(round(t0 / step)), int(round(t1 / step))
        target[max(0, i0):max(0, min(n, i1))] = viseme(ph)
    from scipy.ndimage import gaussian_filter1d

    sm = gaussian_filter1d(target, smooth_s / step, axis=0, mode="nearest")
    csum = np.concatenate([np.zeros((1, 2)), np.cumsum(sm, axis=0)])
    edges = np.clip(np.round(np.arange(num_frames + 1) / fps / step).astype(int), 0, n)
    counts = np.maximum(edges[1:] - edges[:-1], 1)[:, None]
    per_frame = (csum[edges[1:]] - csum[edges[:-1]]) / counts
    openness = np.clip(per_frame[:, 0], 0.0, 1.0).astype(np.float32)
    width = np.clip(per_frame[:, 1], 0.0, 1.0).astype(np.float32)
    labels = []
    for k in range(num_frames):
        tc = (k + 0.5) / fps
        lab = ""
        for t0, t1, ph in phonemes:
            if t0 <= tc < t1:
                lab = "" if ph.startswith("_") else ph
                break
        labels.append(lab)
    return openness, width, labels


# ---------------------------------------------------------------------------------------------- face warp

_JAW_DROP = {4: 0.15, 5: 0.4, 6: 0.7, 7: 0.9, 8: 1.0, 9: 0.9, 10: 0.7, 11: 0.4, 12: 0.15}
_ANCHORS = list(range(0, 4)) + list(range(13, 17)) + list(range(17, 48))  # points that never move


@functools.lru_cache(maxsize=1)
def astronaut_face() -> tuple[np.ndarray, np.ndarray]:
    """``skimage.data.astronaut()`` (RGB uint8) and its 68 dlib landmarks, computed once per process."""
    import skimage.data

    from utils.landmarks import LandmarkDetector

    img = np.ascontiguousarray(skimage.data.astronaut()[:, :, :3])
    faces = LandmarkDetector().detect(img)
    if not faces:
        raise RuntimeError("no face found on skimage.data.astronaut(); check the dlib installation")
    lm = np.asarray(faces[0][1], np.float64)
    img.setflags(write=False)
    lm.setflags(write=False)
    return img, lm


class _MouthWarper:
    """Moves the mouth of one still face by (openness, width) with a smooth local displacement field."""

    def __init__(self, img: np.ndarray, lm: np.ndarray, grid_step: int = 4):
        self.img, self.lm = img, lm
        self.right = (lm[45] - lm[36]) / np.linalg.norm(lm[45] - lm[36])
        self.down = np.array([-self.right[1], self.right[0]])
        if np.dot(self.down, lm[8] - lm[27]) < 0:
            self.down = -self.down
        self.mw = float(np.linalg.norm(lm[54] - lm[48]))
        self.sigma = 0.2 * self.mw
        # the region the field can touch: jaw + lips, plus the largest drop and 3 sigma of fall-off
        pts = lm[list(range(2, 15)) + list(range(48, 68))]
        lo = pts.min(0) - 3 * self.sigma
        hi = pts.max(0) + 3 * self.sigma + np.abs(self.down) * 0.6 * self.mw
        h, w = img.shape[:2]
        self.x0, self.y0 = int(max(0, math.floor(lo[0]))), int(max(0, math.floor(lo[1])))
        self.x1, self.y1 = int(min(w, math.ceil(hi[0]))), int(min(h, math.ceil(hi[1])))
        gx = np.arange(self.x0, self.x1 + grid_step, grid_step, dtype=np.float64)
        gy = np.arange(self.y0, self.y1 + grid_step, grid_step, dtype=np.float64)
        self.grid = np.stack(np.meshgrid(gx, gy), -1)  # (gh, gw, 2) coarse grid in image pixels
        xs, ys = np.meshgrid(np.arange(self.x0, self.x1, dtype=np.float32), np.arange(self.y0, self.y1, dtype=np.float32))
        self.px, self.py = xs, ys
        # coarse grid point j sits at x0 + j * grid_step: ROI pixel positions in grid-index units
        self.gx = (xs - self.x0) / np.float32(grid_step)
        self.gy = (ys - self.y0) / np.float32(grid_step)
        # taper to exactly zero at the region border so the pasted patch is seamless
        wy = np.sin(np.linspace(0, np.pi, self.y1 - self.y0)) ** 0.5
        wx = np.sin(np.linspace(0, np.pi, self.x1 - self.x0)) ** 0.5
        self.taper = (wy[:, None] * wx[None, :]).astype(np.float32)
        self.ctrl = _ANCHORS + list(_JAW_DROP) + list(range(48, 68))

    def _weights(self, q: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Normalised Gaussian weights of controls ``c`` at query points ``q``; the +eps lets the sum fall to 0."""
        g = np.exp(-((q[:, None] - c[None]) ** 2).sum(-1) / (2 * self.sigma ** 2))
        return g / (g.sum(1, keepdims=True) + 0.05)

    def displacements(self, openness: float, width: float) -> np.ndarray:
        """(68, 2) forward displacement of every landmark in image pixels."""
        o, mw = float(openness), self.mw
        d = np.zeros((68, 2))
        for i, wgt in _JAW_DROP.items():
            d[i] = self.down * o * 0.33 * mw * wgt
        for i in range(55, 60):  # lower outer lip
            d[i] = self.down * o * 0.45 * mw
        for i in range(65, 68):  # lower inner lip
            d[i] = self.down * o * 0.5 * mw
        for i in range(49, 54):  # upper outer lip lifts a little
            d[i] = -self.down * o * 0.03 * mw
        for i in range(61, 64):
            d[i] = -self.down * o * 0.05 * mw
        for i in (48, 54, 60, 64):  # corners follow the jaw part way
            d[i] = self.down * o * 0.2 * mw
        # width: corners (and the lip points next to them) move out (spread) or in (rounded)
        spread = (float(width) - 0.5) * 0.3 * mw
        for i, f in ((48, -1.0), (60, -1.0), (49, -0.5), (59, -0.5), (54, 1.0), (64, 1.0), (53, 0.5), (55, 0.5)):
            d[i] += self.right * spread * f
        return d

    def warp(self, openness: float, width: float) -> tuple[np.ndarray, np.ndarray]:
        """(warped full image uint8, moved landmarks (68, 2))."""
        import cv2

        d = self.displacements(openness, width)
        moved = self.lm + d
        out = np.array(self.img)  # writable copy
        if openness <= 1e-4 and abs(width - 0.5) < 1e-4:
            return out, moved
        # backward field: at each moved point, sample from where it came from (-d). A normalised Gaussian
        # (Shepard) interpolant never overshoots and fades to zero away from the controls; a few residual
        # passes bring it within ~1 px of the exact displacements at the control points.
        c = moved[self.ctrl]
        v = -d[self.ctrl]
        vv = v.copy()
        g_cc = self._weights(c, c)
        for _ in range(3):
            vv = vv + (v - g_cc @ vv)
        field = (self._weights(self.grid.reshape(-1, 2), c) @ vv).reshape(self.grid.shape).astype(np.float32)
        dense = cv2.remap(field, self.gx, self.gy, cv2.INTER_LINEAR)  # coarse grid -> every ROI pixel
        fx = dense[..., 0] * self.taper
        fy = dense[..., 1] * self.taper
        patch = cv2.remap(self.img, self.px + fx, self.py + fy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
        patch = self._paint_mouth(patch, moved, openness)
        out[self.y0:self.y1, self.x0:self.x1] = patch
        return out, moved

    def _paint_mouth(self, patch: np.ndarray, moved: np.ndarray, openness: float) -> np.ndarray:
        """Dark cavity inside the moved inner lips, with the photo's own (unmoved) upper teeth on top of it."""
        import cv2

        if openness < 0.02:
            return patch
        off = np.array([self.x0, self.y0])
        inner = [60, 61, 62, 63, 64, 65, 66, 67]
        mask = self._poly_mask(moved[inner] - off, patch.shape[:2])
        # teeth: what the rest-pose lip gap shows, kept in place (they belong to the skull, not the jaw)
        teeth = self._poly_mask(self.lm[inner] - off, patch.shape[:2]) * mask
        a = mask * min(1.0, openness * 4.0)
        # the cavity is darker towards its middle: depth cue that also scales with the opening
        depth = cv2.GaussianBlur(mask, (0, 0), max(1.0, 0.06 * self.mw))
        cavity = np.array([62, 22, 26], np.float32)[None, None] * (1.0 - 0.6 * depth[..., None])
        original = self.img[self.y0:self.y1, self.x0:self.x1].astype(np.float32)
        p = patch.astype(np.float32)
        p = p * (1 - a[..., None]) + cavity * (a - teeth * a)[..., None] + original * (teeth * a)[..., None]
        return np.clip(p + 0.5, 0, 255).astype(np.uint8)

    @staticmethod
    def _poly_mask(poly: np.ndarray, shape) -> np.ndarray:
        """Anti-aliased, slightly feathered float mask of a polygon (sub-pixel vertices)."""
        import cv2

        m = np.zeros(shape, np.uint8)
        cv2.fillPoly(m, [np.round(poly * 4).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=2)
        return cv2.GaussianBlur(m, (0, 0), 0.7).astype(np.float32) / 255.0


def _motion(num_frames: int, fps: float, seed: int, amount: float) -> np.ndarray:
    """(T, 4) smooth head motion: tx, ty (fraction of the crop), rotation (degrees), log-scale."""
    rng = np.random.default_rng([int(seed), 7919])
    t = np.arange(num_frames) / fps
    amp = np.array([0.025, 0.02, 3.0, 0.03]) * float(amount)
    out = np.zeros((num_frames, 4))
    for j in range(4):
        freqs = rng.uniform(0.15, 0.7, 3)
        phases = rng.uniform(0, 2 * np.pi, 3)
        weights = rng.uniform(0.5, 1.0, 3)
        s = sum(wg * np.sin(2 * np.pi * f * t + p) for f, p, wg in zip(freqs, phases, weights)) / weights.sum()
        out[:, j] = amp[j] * s
    return out


_ZOOM = 2.2  # output crop side = this many face widths (jaw to jaw)


def _crop_affine(lm: np.ndarray, size: int, motion: np.ndarray, zoom: float = _ZOOM) -> np.ndarray:
    """2x3 affine: source image -> output square of ``size`` centred on the face, with head motion applied."""
    center = lm.mean(0)
    face_w = float(np.linalg.norm(lm[16] - lm[0]))
    scale = size / (zoom * face_w) * math.exp(motion[3])
    a = math.radians(motion[2])
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) * scale
    shift = np.array([size / 2 + motion[0] * size, size / 2 + motion[1] * size]) - rot @ center
    return np.hstack([rot, shift[:, None]])


# ---------------------------------------------------------------------------------------------- videos

def make_talking_head(out_path, text: str, voice: str = "en", seed: int = 0, size: int = 256, fps: float = 25.0,
                      extra_audio_s: float = 0.0, faceless_frames: Iterable[int] = (), head_motion: float = 1.0,
                      speed: int = 175, lead_s: float = 0.3, tail_s: float = 0.3, crf: int = 18,
                      preset: str = "medium") -> dict:
    """Write a synthetic talking-head mp4 (H.264 + AAC) plus its ground truth; return paths and metadata.

    The video lasts ``lead_s`` of silence + the speech + ``tail_s`` of silence (rounded up to whole frames); the
    audio track has the same length plus ``extra_audio_s`` seconds of silence. Frames listed in
    ``faceless_frames`` show a heavily blurred image with no detectable face (``has_face`` False in the ground
    truth). ``head_motion`` scales the head movement (0 = still head). Returned keys: video, mouth, gt, meta
    (paths), num_frames, fps, size, sample_rate, video_seconds, audio_seconds, text, voice, language, speed,
    seed, head_motion, lead_s, tail_s.
    """
    import cv2

    from utils.video_io import VideoWriter

    if size < 32:
        raise UserError(f"size must be at least 32 pixels, got {size}")
    if not fps or fps <= 0:
        raise UserError(f"fps must be positive, got {fps}")
    if extra_audio_s < 0 or lead_s < 0 or tail_s < 0:
        raise UserError("extra_audio_s, lead_s and tail_s must be >= 0")
    out_path = os.fspath(out_path)
    stem = os.path.splitext(out_path)[0]
    language, _, _ = _espeak_text_and_voice(text, voice)

    speech, sr, phonemes = synthesize_speech(text, voice, speed)
    lead = int(round(lead_s * sr))
    phonemes = [(t0 + lead / sr, t1 + lead / sr, ph) for t0, t1, ph in phonemes]
    spoken_len = lead + len(speech) + int(round(tail_s * sr))
    num_frames = int(math.ceil(spoken_len / sr * fps - 1e-9))
    video_len = int(round(num_frames / fps * sr))
    audio = np.zeros(video_len + int(round(extra_audio_s * sr)), np.float32)
    audio[lead:lead + len(speech)] = speech

    openness, width, labels = mouth_tracks(phonemes, num_frames, fps)
    faceless = np.zeros(num_frames, bool)
    for i in faceless_frames:
        if not 0 <= int(i) < num_frames:
            raise UserError(f"faceless frame {i} is outside the video (0..{num_frames - 1})")
        faceless[int(i)] = True

    img, lm = astronaut_face()
    shrink = size / (_ZOOM * float(np.linalg.norm(lm[16] - lm[0])))
    if shrink < 1.0:  # small outputs: area-downscale the photo once so the per-frame affine does not alias
        img = cv2.resize(img, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
        lm = (lm + 0.5) * shrink - 0.5
    warper = _MouthWarper(img, lm)
    motion = _motion(num_frames, fps, seed, head_motion)
    landmarks = np.zeros((num_frames, 68, 2), np.float32)
    affines = np.zeros((num_frames, 2, 3), np.float32)
    try:
        from tqdm import tqdm
    except ImportError:  # progress bars are optional
        def tqdm(x, **_):
            return x
    with VideoWriter(out_path, fps=fps, audio=audio, sample_rate=sr, crf=crf, preset=preset) as writer:
        for k in tqdm(range(num_frames), desc=os.path.basename(out_path), unit="frame", leave=False, disable=None):
            face, moved = warper.warp(float(openness[k]), float(width[k]))
            m = _crop_affine(lm, size, motion[k])
            frame = cv2.warpAffine(face, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
            if faceless[k]:
                frame = cv2.GaussianBlur(frame, (0, 0), size / 12.0)
            affines[k] = m
            landmarks[k] = moved @ m[:, :2].T + m[:, 2]
            writer.write(frame)

    mouth_path, gt_path, meta_path = stem + ".mouth.npy", stem + ".gt.npz", stem + ".json"
    np.save(mouth_path, openness)
    np.savez_compressed(gt_path, openness=openness, width=width, phoneme=np.array(labels, dtype="U8"),
                        landmarks=landmarks, has_face=~faceless, affine=affines)
    meta = {
        "video": out_path, "mouth": mouth_path, "gt": gt_path, "meta": meta_path,
        "num_frames": int(num_frames), "fps": float(fps), "size": int(size), "sample_rate": int(sr),
        "video_seconds": num_frames / fps, "audio_seconds": len(audio) / sr,
        "text": text, "voice": voice, "language": language, "speed": int(speed), "seed": int(seed),
        "head_motion": float(head_motion), "lead_s": float(lead_s), "tail_s": float(tail_s), "faceless_frames": [int(i) for i in np.flatnonzero(faceless)],
        "phonemes": [[round(t0, 4), round(t1, 4), ph] for t0, t1, ph in phonemes],
    }
    with atomic_write(meta_path, "w", encoding="utf-8") as f:
        json.dump(meta, f, ensure_ascii=False, indent=1)
    return meta


def _voices_for(language: str, voices) -> tuple[str, ...]:
    if voices is None:
        return DEFAULT_VOICES[language]
    if isinstance(voices, dict):
        chosen = tuple(voices.get(language, ()))
    else:
        chosen = tuple(v for v in voices if _espeak_text_and_voice("x", v)[0] == language)
    if not chosen:
        raise UserError(f"no voice given for language {language!r} (voices: {list(voices)})")
    return chosen


def make_dataset(out_dir, num_videos: int, seed: int = 0, languages: Sequence[str] = ("en",), voices=None,
                 speeds: Sequence[int] = DEFAULT_SPEEDS, **kw) -> list[dict]:
    """``num_videos`` deterministic talking heads in ``out_dir`` cycling over ``languages``.

    Each video gets a sentence of its language (a seed-shuffled cycle, so neighbours differ), a voice (from
    ``voices``: a dict language -> voices, or a flat list like ["en+m3", "cmn+f2"]; default DEFAULT_VOICES) and a
    speed; ``**kw`` goes to make_talking_head. Files are ``<language>_<index>.mp4``.
    """
    if num_videos < 1:
        raise UserError(f"num_videos must be >= 1, got {num_videos}")
    languages = tuple(languages)
    for lang in languages:
        if lang not in LANGUAGES:
            raise UserError(f"unknown language {lang!r} (choose from {list(LANGUAGES)})")
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng([int(seed), 104729])
    orders = {lang: rng.permutation([i for i, (l, _) in enumerate(SENTENCES) if l == lang]) for lang in languages}
    try:
        from tqdm import tqdm
    except ImportError:
        def tqdm(x, **_):
            return x
    out = []
    for i in tqdm(range(num_videos), desc="synthetic videos", unit="video", disable=None):
        lang = languages[i % len(languages)]
        order = orders[lang]
        text = SENTENCES[order[(i // len(languages)) % len(order)]][1]
        vrng = np.random.default_rng([int(seed), i])
        vs = _voices_for(lang, voices)
        voice = vs[int(vrng.integers(len(vs)))]
        speed = int(speeds[int(vrng.integers(len(speeds)))])
        path = os.path.join(out_dir, f"{lang}_{i:04d}.mp4")
        out.append(make_talking_head(path, text, voice=voice, seed=int(seed) * 100003 + i, speed=speed, **kw))
    return out


def main(argv: Optional[list[str]] = None) -> list[dict]:
    p = argparse.ArgumentParser(description="Generate synthetic talking-head videos (espeak-ng speech, warped "
                                            "astronaut face) with per-frame mouth ground truth.")
    p.add_argument("--out_dir", required=True, help="folder for <lang>_<i>.mp4 and their ground-truth files")
    p.add_argument("--num_videos", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--languages", nargs="+", default=["en"], choices=list(LANGUAGES))
    p.add_argument("--size", type=int, default=256, help="output frame side in pixels")
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--head_motion", type=float, default=1.0, help="head movement scale (0 = still)")
    p.add_argument("--extra_audio_s", type=float, default=0.0, help="make the audio this much longer than the video")
    a = p.parse_args(argv)
    res = make_dataset(a.out_dir, a.num_videos, seed=a.seed, languages=a.languages, size=a.size, fps=a.fps,
                       head_motion=a.head_motion, extra_audio_s=a.extra_audio_s)
    for r in res:
        print(f"{r['video']}  {r['num_frames']} frames  {r['voice']}  {r['text']}")
    return res


if __name__ == "__main__":
    cli_main(main)
