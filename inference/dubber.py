"""Dub a template video with new speech: the streaming pipeline (docs/original.md, 'Bugs fixed: inference').

decode (thread) -> aligned crop + mask -> batched generator (``infer_fn``) -> paste-back -> H.264/AAC encode
(thread). Memory is bounded whatever the video length: frames flow through bounded queues, only per-frame
landmarks/matrices of the template are kept, and backward (ping-pong) runs are read in bounded chunks.

``Dubber`` loads the model and the audio front-end once; ``prepare_template`` detects (or reads from the
cache) the template's landmarks and picks the reference frames (one set per shot and person); ``dub`` renders
one audio, keeping its channels in the output track (the model's features use a mono downmix). Crops, the
source mask, the 16 kHz resampling and the GPU precision follow the checkpoint's preprocessing profile
(config/profile.py: ``official`` for the released weights, ``lawdnet`` for ours) unless ``profile`` is given.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Union

import numpy as np
import torch
from tqdm import tqdm

from config.config import InferenceConfig
from config.profile import resolve_profile
from inference.frames import chunk_frames, iter_schedule
from inference.harmonize import defringe, harmonize, sharpen
from inference.overlap import Background, Consumer, StageTimer
from inference.reference_cache import ReferenceFeatureCache
from inference.references import reference_sets
from inference.runner import ModelRunner
from inference.template import Template, prepare_template
from models import load_lawdnet, use_compiled_warp
from utils.audio.features import get_frontend
from utils.device import torch_device
from utils.errors import UserError
from utils.face.align import FaceAligner, apply_transform, paste_back, paste_back_torch, paste_mask
from utils.face.blend import speech_mask
from utils.face.geometry import check_mouth_region_size
from utils.media.audio_io import decode_audio, finish_mono, resample, within_full_scale
from utils.media.formats import OUTPUT_VIDEO_EXTS
from utils.media.timebase import FPS, SAMPLE_RATE, num_video_frames
from utils.media.video_io import VideoWriter, iter_frames
from utils.threads import ThreadTuner, apply_plan, plan_threads

log = logging.getLogger("lawdnet.inference")

NUM_REFERENCES = 5
# Sample rates AAC encodes; others are resampled to 48 kHz for the output track.
_AAC_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)

InferFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class PreparedTemplate:
    """A template plus what this Dubber's crop size needs: matrices frame -> crop and the reference crops.

    References come per shot and person: ``reference_sets`` lists tuples of template frame indices (the key of a
    reference set), ``set_of_frame[i]`` says which set template frame i is generated from, and
    ``reference_crops[key]`` holds that set's (15, Hc, Wc) uint8 crops. ``references`` / ``reference_indices``
    are the first set (the only one for a template without cuts)."""

    template: Template
    matrices: np.ndarray          # (N, 3, 3) float64
    references: torch.Tensor      # (1, 15, Hc, Wc) float32 in [0, 1], CPU: the first set
    reference_indices: list
    reference_sets: list = None
    set_of_frame: np.ndarray = None
    reference_crops: dict = None
    # the generator's features of each reference set, computed once (inference/reference_cache.py)
    reference_features: ReferenceFeatureCache = field(default_factory=ReferenceFeatureCache, repr=False)

    def reference_key(self, index: int) -> tuple:
        """The reference set (tuple of template frame indices) for template frame ``index``."""
        return self.reference_sets[int(self.set_of_frame[index])]


@dataclass
class DubAudio:
    """Decoded speech: 16 kHz mono samples for the features (made with ``resampler``), the native channels for
    the output track."""

    path: str
    samples_16k: np.ndarray
    samples: np.ndarray          # (channels, n) float32 at sample_rate
    sample_rate: int
    num_frames: int
    layout: str = "mono"
    warnings: list = None
    resampler: str = "polyphase"
    native_rate: int = 0           # the file's own rate (0: unknown)

    @property
    def seconds(self) -> float:
        return len(self.samples_16k) / SAMPLE_RATE

    def with_resampler(self, resampler: str) -> "DubAudio":
        """This audio with 16 kHz samples made by ``resampler`` (decoded again only when that changes them)."""
        if resampler == self.resampler or self.native_rate == SAMPLE_RATE:
            return self
        return load_dub_audio(self.path, max_seconds=self.seconds + 1.0, resampler=resampler)


def resolve_device(device: Optional[str]) -> torch.device:
    if not device:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch_device(str(device))


def check_output_path(output_path) -> str:
    path = os.fspath(output_path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in OUTPUT_VIDEO_EXTS:
        raise UserError(f"{path}: unsupported output format {ext or '(no extension)'!r}; use one of "
                        f"{', '.join(OUTPUT_VIDEO_EXTS)}")
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UserError(f"{path}: the output folder is not a folder")
    return path


# Channel layouts AAC in mp4 stores as a standard channel configuration (side surrounds go where the back ones are,
# as AAC's 5.1 has it; an unnamed layout gets the usual one for its channel count); others are downmixed to mono.
_AAC_LAYOUTS = ("mono", "stereo", "2.1", "3.0", "quad", "4.0", "5.0", "5.1")
_AAC_RENAME = {"5.1(side)": "5.1", "5.0(side)": "5.0"}
_LAYOUT_OF_COUNT = {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "5.1"}


def load_dub_audio(path, max_seconds: Optional[float] = None, resampler: str = "polyphase") -> DubAudio:
    """Decode any audio (or the audio track of a video) for dubbing, once: a 16 kHz mono downmix for the
    features and the native channels for the output track. UserError for missing/corrupt/empty files,
    ``MediaTooLong`` (decoding stopped) past ``max_seconds``. ``resampler``: how the 16 kHz feature input is made
    (``Dubber.dub`` redoes it for its profile)."""
    path = os.fspath(path)
    notes: list = []
    d = decode_audio(path, max_seconds=max_seconds, notes=notes)
    samples_16k = finish_mono(d.mono(), d.rate, SAMPLE_RATE, path, notes, resampler)
    n = num_video_frames(len(samples_16k), SAMPLE_RATE, FPS)
    if n == 0:
        raise UserError(f"{path}: the audio is empty")
    x, layout = d.samples, _AAC_RENAME.get(d.layout, d.layout)
    if layout not in _AAC_LAYOUTS and all(n == "NONE" or n.startswith("USR") for n in d.channel_names):
        layout = _LAYOUT_OF_COUNT.get(len(x), layout)        # channels without names ("2 channels")
    if layout not in _AAC_LAYOUTS:
        x, layout = d.mono()[None].astype(np.float32), "mono"
    sr = d.rate if d.rate in _AAC_RATES else 48000
    if sr != d.rate:
        x = resample(x.T, d.rate, sr).T.astype(np.float32)   # each channel
    x, _ = within_full_scale(x)    # the features' rule (finish_mono warned already)
    return DubAudio(path, samples_16k, np.ascontiguousarray(x, np.float32), sr, n, layout, notes, resampler,
                    d.rate)


class Dubber:
    """Load a LawDNet checkpoint once and dub any number of (template, audio) pairs with it.

    ``cfg`` (config.config.InferenceConfig) holds every setting; its ``mouth_region_size`` / ``audio_feature``
    are needed only for official checkpoints (they store neither; defaults 288 / deepspeech2); for our
    checkpoints they must match what the checkpoint says, if given. ``infer_fn(source, refs, audio) -> crops``
    replaces the model call (the server's batcher; see inference.runner); ``progress``: tqdm bars.
    """

    def __init__(self, checkpoint, cfg: Optional[InferenceConfig] = None, *, infer_fn: Optional[InferFn] = None,
                 progress: bool = True):
        cfg = dataclasses.replace(cfg or InferenceConfig()).validate()   # a copy: the caller's object stays as it is
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.thread_plan = plan_threads(cfg.threads, self.device.type)   # decode / model / encode share cores
        apply_plan(self.thread_plan)
        self.model, info = load_lawdnet(os.fspath(checkpoint), device=self.device, return_info=True)
        self.info = info
        model_cfg = info["model_config"]
        m, feat = info["mouth_region_size"], info["audio_feature"]
        if info["official"]:
            m, feat = int(cfg.mouth_region_size or m or 288), str(cfg.audio_feature or feat or "deepspeech2")
        else:
            if cfg.mouth_region_size and int(cfg.mouth_region_size) != m:
                raise UserError(f"{checkpoint}: trained with mouth_region_size {m}, not {cfg.mouth_region_size}")
            if cfg.audio_feature and cfg.audio_feature != feat:
                raise UserError(f"{checkpoint}: trained with {feat!r} audio features, not {cfg.audio_feature!r}")
        check_mouth_region_size(int(m), flag=f"{checkpoint}: mouth_region_size")
        self.mouth_region_size, self.audio_feature = int(m), feat
        self.profile = resolve_profile(cfg.profile, info["profile"])
        self.amp_dtype = cfg.amp_dtype or self.profile.gpu_precision
        self.frontend = get_frontend(feat, cfg.audio_model_path or "", str(self.device),
                                     self.profile.audio_precision if cfg.amp else "fp32")
        if self.frontend.dim != model_cfg.audio_channel:
            raise UserError(f"{checkpoint}: the generator takes {model_cfg.audio_channel}-dim audio features but "
                            f"{feat!r} gives {self.frontend.dim} (pass the right --audio_feature)")
        self.window = model_cfg.audio_window
        self.aligner = FaceAligner.for_mouth_size(self.mouth_region_size, profile=self.profile)
        self.crop_hw = self.aligner.crop_hw
        self.mask = self.aligner.source_mask()                      # (1,1,Hc,Wc) CPU
        self.batch_size = int(cfg.batch_size)
        self.progress = progress
        self.cuda = self.device.type == "cuda"
        if cfg.compile:
            use_compiled_warp(True)
        self.runner = ModelRunner(self.model, self.device, amp=cfg.amp, channels_last=cfg.channels_last,
                                  cuda_graphs=cfg.cuda_graphs, amp_dtype=self.amp_dtype,
                                  tuner=ThreadTuner(self.thread_plan.torch) if self.thread_plan.tune else None)
        self.infer_fn: InferFn = infer_fn or self.runner
        self.pad_batches = cfg.cuda_graphs and self.cuda and infer_fn is None   # one graph for every batch

    # ---------------------------------------------------------------- template
    def prepare_template(self, video_path, use_cache: Optional[bool] = None, detector=None, face=None,
                         **limits) -> PreparedTemplate:
        """``use_cache``: read / write the landmark cache (default: the config's). ``face``: the person to dub
        (``"x,y"`` or an index left to right; None = the largest face). ``limits``: ``max_seconds``,
        ``face_search_seconds``, ``cancel`` of ``inference.template``."""
        use_cache = self.cfg.use_cache if use_cache is None else use_cache
        t = prepare_template(video_path, cache_dir=self.cfg.cache_dir, use_cache=use_cache, detector=detector,
                             progress=self.progress, face=face, **limits)
        matrices = self.aligner.estimate(t.landmarks, (t.height, t.width))
        sets, set_of_frame = reference_sets(t.valid, t.tracks, NUM_REFERENCES, self.cfg.reference_seed)
        crop_of = {}
        for i in sorted({i for key in sets for i in key}):
            frame = next(iter(iter_frames(t.path, fps=FPS, start_frame=i, max_frames=1, notes=[])), None)
            if frame is None:
                raise UserError(f"{t.path}: cannot read reference frame {i} (file changed?)")
            crop_of[i] = self.aligner.crop(frame, matrices[i])
        crops = {key: torch.from_numpy(np.concatenate([crop_of[i] for i in key], axis=2)).permute(2, 0, 1)
                 .contiguous() for key in sets}                                     # (15, Hc, Wc) uint8
        refs = crops[sets[0]][None].float().div_(255)
        prepared = PreparedTemplate(t, matrices, refs.contiguous(), list(sets[0]), sets, set_of_frame, crops)
        for key in sets[:prepared.reference_features.max_entries]:
            self.reference_features(prepared, key)   # now, not in a dub's (or a live session's) first batch
        return prepared

    def reference_features(self, template: PreparedTemplate, key: Optional[tuple] = None) -> torch.Tensor:
        """What the generator gets as ``refs`` for reference set ``key`` (default: the first): its features on
        the device, (1, C', Hc/4, Wc/4), computed on first use and kept with the template; the raw crops
        (1, 15, Hc, Wc) when ``cache_references`` is off."""
        key = template.reference_sets[0] if key is None else key

        def crops():
            return template.reference_crops[key][None].float().div_(255)

        if not self.cfg.cache_references:
            return crops().to(self.device)
        return template.reference_features.get(self.runner, key, crops)

    # ---------------------------------------------------------------- dubbing
    def dub(self, template: PreparedTemplate, audio: Union[str, DubAudio], output_path,
            progress_callback: Optional[Callable[[int, int], None]] = None,
            frame_callback: Optional[Callable] = None) -> dict:
        """Render ``audio`` on ``template`` into ``output_path`` (H.264 + AAC, 25 fps, the audio's length).

        ``progress_callback(done, total)`` is called after each written frame; ``frame_callback(k, index,
        input_frame, output_frame, has_face)`` sees every frame before encoding (tests, previews).
        Returns statistics (frame counts, face-less frames, timings per stage, frames/s).
        """
        output_path = check_output_path(output_path)
        t_start = time.perf_counter()
        timer = StageTimer()
        if not isinstance(audio, DubAudio):
            audio = timer.timed("audio", load_dub_audio, audio, resampler=self.profile.resampler)
        audio = timer.timed("audio", audio.with_resampler, self.profile.resampler)
        tpl = template.template
        T, N = audio.num_frames, tpl.num_frames
        feats_windows = timer.timed("audio", self.frontend.windows, audio.samples_16k, T, self.window)
        windows = torch.from_numpy(feats_windows)                               # (T, D, W)
        mask_dev = self.mask.to(self.device)
        chunk = chunk_frames(tpl.height, tpl.width)
        B = self.batch_size
        counts = {"faceless": 0, "written": 0}
        cuda = self.cuda

        def batches():
            """(ks, idx, frames, crops or None) per batch, produced in a background thread."""
            it = iter_schedule(tpl.path, T, N, chunk)
            k = 0
            while k < T:
                t0 = time.perf_counter()
                items = []
                for _ in range(min(B, T - k)):
                    items.append(next(it))
                timer.add("decode", time.perf_counter() - t0)
                ks = list(range(k, k + len(items)))
                k += len(items)
                idx = [i for i, _ in items]
                frames = [f for _, f in items]
                crops = None
                if not cuda:
                    t0 = time.perf_counter()
                    crops = [self.aligner.crop(f, template.matrices[i]) if tpl.valid[i] else None
                             for i, f in zip(idx, frames)]
                    timer.add("crop", time.perf_counter() - t0)
                yield ks, idx, frames, crops

        bar = tqdm(total=T, desc="dubbing", unit="frame", disable=not self.progress, smoothing=0.1)

        writer = VideoWriter(output_path, fps=FPS, audio=audio.samples, sample_rate=audio.sample_rate,
                              crf=self.cfg.crf, preset=self.cfg.preset, match_audio=True, layout=audio.layout,
                              threads=self.thread_plan.encoder)

        def write(item):
            ks, idx, frames, gen = item
            for j, (k, i, frame) in enumerate(zip(ks, idx, frames)):
                out = frame
                if gen is not None and gen[j] is not None:
                    if self.cuda:
                        out = gen[j]                                              # pasted on the GPU
                    else:                                                         # CPU: paste here
                        t0 = time.perf_counter()
                        out = self._paste(template, frame, gen[j], i)
                        timer.add("paste", time.perf_counter() - t0)
                if frame_callback is not None:
                    frame_callback(k, i, frame, out, bool(tpl.valid[i]))
                t0 = time.perf_counter()
                writer.write(out)
                timer.add("encode", time.perf_counter() - t0)
                counts["written"] += 1
                bar.update(1)
                if progress_callback is not None:
                    progress_callback(counts["written"], T)

        source = Background(batches(), maxsize=self.cfg.queue_batches, name="lawdnet-decode")
        sink = Consumer(write, maxsize=self.cfg.queue_batches, name="lawdnet-encode")
        ok = False
        try:
            for ks, idx, frames, crops in source:
                sel = [j for j, i in enumerate(idx) if tpl.valid[i]]
                counts["faceless"] += len(idx) - len(sel)
                gen = None
                if sel:
                    gen = self._generate(ks, idx, frames, crops, sel, template, windows, mask_dev,
                                         timer, paste_back_torch)
                sink.put((ks, idx, frames, gen))
            sink.finish()
            timer.timed("encode", writer.close)
            ok = True
        finally:
            bar.close()
            source.close()
            if not ok:
                sink.abort()
                writer.abort()
        wall = time.perf_counter() - t_start
        if counts["faceless"]:
            log.warning("%s: %d of %d output frames show no face and were passed through unchanged",
                        tpl.path, counts["faceless"], T)
        warnings = list(tpl.warnings) + [w for w in (audio.warnings or []) if w not in tpl.warnings]
        return {
            "output": output_path, "frames": T, "fps": T / wall if wall > 0 else 0.0, "seconds": wall,
            "audio_seconds": audio.seconds, "video_seconds": T / FPS, "template_frames": N,
            "template_faceless_frames": tpl.num_faceless, "faceless_frames": counts["faceless"],
            "pingpong": T > N, "reference_indices": list(template.reference_indices),
            "template_cached": tpl.from_cache, "template_seconds": tpl.seconds, "cache_file": tpl.cache_file,
            "stage_seconds": dict(timer.seconds), "device": str(self.device),
            "mouth_region_size": self.mouth_region_size, "audio_feature": self.audio_feature,
            "profile": self.profile.name, "batch_size": B, "threads": self.thread_plan.describe(),
            "reference_sets": [list(k) for k in template.reference_sets],
            "template_tracks": tpl.num_tracks, "audio_channels": int(audio.samples.shape[0]),
            "audio_layout": audio.layout, "warnings": warnings,
        }

    def render_frames(self, template: PreparedTemplate, indices, frames, windows: torch.Tensor) -> list:
        """Dubbed RGB uint8 frames for template frames ``indices`` (already decoded: ``frames``) driven by the
        audio feature windows ``windows`` (n, C, W): one batch of ``dub``, for callers that bring their own
        audio timeline (live sessions, server/live.py). Face-less frames come back unchanged."""
        tpl = template.template
        indices = list(indices)
        sel = [j for j, i in enumerate(indices) if tpl.valid[i]]
        if not sel:
            return list(frames)
        crops = None if self.cuda else [self.aligner.crop(f, template.matrices[i]) if tpl.valid[i] else None
                                        for i, f in zip(indices, frames)]
        gen = self._generate(list(range(len(indices))), indices, frames, crops, sel, template, windows,
                             self.mask.to(self.device), StageTimer(), paste_back_torch)
        if self.cuda:
            return [f if g is None else g for f, g in zip(frames, gen)]
        return [f if g is None else self._paste(template, f, g, i) for f, g, i in zip(frames, gen, indices)]

    # ---------------------------------------------------------------- what dub and render_frames share
    def blend_mask(self, template: PreparedTemplate, index: int) -> Optional[np.ndarray]:
        """Paste-back weight (Hc, Wc) for template frame ``index``: with ``blend_mask`` "landmarks", the lips and
        the jaw of that frame (utils/face/blend.py) inside the crop's feathered box, so everything speech does
        not move stays the template's pixel for pixel; None (the box, ``paste_mask``) with "box"."""
        if self.cfg.blend_mask == "box":
            return None
        M = template.matrices[index]
        lm = apply_transform(template.template.landmarks[index], M)
        return speech_mask(lm, self.crop_hw) * paste_mask(*self.crop_hw)

    def _paste(self, template: PreparedTemplate, frame: np.ndarray, crop: np.ndarray, index: int) -> np.ndarray:
        """CPU paste-back of a generated crop (float 0-255) into template frame ``index``."""
        return paste_back(frame, crop, template.matrices[index], self.blend_mask(template, index))

    def _generate(self, ks, idx, frames, crops, sel, template, windows, mask_dev, timer, paste_torch):
        """Model outputs for the face frames of a batch: a list (None for face-less frames) of crops (CPU, float
        0-255, pasted later in the encode thread) or of finished frames (GPU: pasted on the device)."""
        dev = self.device
        n = len(sel)
        t0 = time.perf_counter()
        mats = template.matrices[[idx[j] for j in sel]]
        if self.cuda:
            fr = torch.from_numpy(np.stack([frames[j] for j in sel])).pin_memory().to(dev, non_blocking=True)
            fr = fr.permute(0, 3, 1, 2)                                       # (n,3,H,W) uint8
            src = self.aligner.crop_torch(fr, mats).div_(255)
        else:
            src = torch.from_numpy(np.stack([crops[j] for j in sel])).permute(0, 3, 1, 2).float().div_(255)
        template_crops = src if self.cfg.color_match or self.cfg.defringe else None
        src = src * (1 - mask_dev)
        aud = windows[[ks[j] for j in sel]].to(dev)
        pad = self.batch_size - n if self.pad_batches else 0
        if pad:
            src = torch.cat([src, src[-1:].expand(pad, -1, -1, -1)])
            aud = torch.cat([aud, aud[-1:].expand(pad, -1, -1)])
        keys = [template.reference_key(idx[j]) for j in sel]
        keys += keys[-1:] * pad
        feats = {key: self.reference_features(template, key) for key in dict.fromkeys(keys)}
        if len(feats) == 1:           # one shot: every frame shares the (1, ...) features without a copy
            refs = next(iter(feats.values())).expand(len(keys), -1, -1, -1)
        else:
            refs = torch.cat([feats[key] for key in keys])
        timer.add("crop", time.perf_counter() - t0)
        t0 = time.perf_counter()
        out = self.infer_fn(src, refs, aud)
        if self.cuda:
            torch.cuda.synchronize(dev)
        timer.add("model", time.perf_counter() - t0)
        out = out[:n]
        if template_crops is not None or self.cfg.sharpen:   # colours of the template, then detail, before paste-back
            t0 = time.perf_counter()
            if self.cfg.color_match:
                out = harmonize(out.float(), template_crops, mask_dev)
            out = sharpen(out, float(self.cfg.sharpen))
            if self.cfg.defringe:        # last: no colour the template lacks nearby, from the model or the sharpening
                out = defringe(out, template_crops)
            timer.add("colour", time.perf_counter() - t0)
        result = [None] * len(idx)
        if self.cuda:
            t0 = time.perf_counter()
            masks = [self.blend_mask(template, idx[j]) for j in sel]
            masks = None if masks[0] is None else torch.from_numpy(np.stack(masks))[:, None]
            pasted = paste_torch(fr, out.float() * 255, mats, masks)        # (n,3,H,W) uint8, on the device
            pasted = pasted.permute(0, 2, 3, 1).contiguous().cpu().numpy()
            timer.add("paste", time.perf_counter() - t0)
            for j, p in zip(sel, pasted):
                result[j] = p
        else:
            crops_out = out.detach().float().mul(255).permute(0, 2, 3, 1).cpu().numpy()
            for j, c in zip(sel, crops_out):
                result[j] = c
        return result
