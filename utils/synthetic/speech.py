"""Synthetic speech: espeak-ng samples with per-phoneme timings, and the mouth tracks (visemes) they imply."""
from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings
from typing import Sequence

import numpy as np

from utils.errors import UserError

# Lazy import below: scipy.ndimage (about 0.7 s of start-up) loads only to smooth mouth tracks.

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


def text_and_voice(text: str, voice: str) -> tuple[str, str, str]:
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
    _, spoken, espeak_voice = text_and_voice(text, voice)
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

