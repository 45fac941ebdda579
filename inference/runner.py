"""The default model call ``infer_fn(source, refs, audio) -> crops`` and its GPU options.

A caller (the HTTP server) may replace it with any callable of the same signature, e.g. one that gathers frames
of several jobs into one batch. Shapes: source (B,3,Hc,Wc) masked face in [0,1], refs (B,15,Hc,Wc),
audio (B,C,W) feature windows, all float32 on the model's device; returns (B,3,Hc,Wc) float32 in [0,1].

``refs`` may be the reference images or, what the Dubber passes, their ``encode_references`` features, computed
once per template by ``encode_references`` here (inference/reference_cache.py).

GPU options: autocast (``amp``) in ``amp_dtype`` (bf16 for our models; fp16, as the original ran, for the official
profile: the preprocessing profile picks it, config/profile.py; bf16 falls back to fp32 on GPUs without bf16),
channels_last memory format, and CUDA graphs (``cuda_graphs``: one graph
per batch size, captured after a warm-up on a side stream, inputs copied into static buffers, outputs cloned
out of the graph's static buffer before the next replay). On a GPU the whole batch runs at once when it fits
in half the free memory (the model's CPU default slices batches into 2-frame pieces). On CPU the model runs in
float32, eager, with torch's thread count chosen by ``tuner`` (utils.threads.ThreadTuner) when one is given.
"""
from __future__ import annotations

import threading

import torch


AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class ModelRunner:
    def __init__(self, model: torch.nn.Module, device, amp: bool = True, channels_last: bool = True,
                 cuda_graphs: bool = False, amp_dtype: str = "bf16", tuner=None):
        if amp_dtype not in AMP_DTYPES:
            raise ValueError(f"amp_dtype must be one of {', '.join(AMP_DTYPES)}, got {amp_dtype!r}")
        self.model = model
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.amp = bool(amp) and self.cuda and (amp_dtype != "bf16" or torch.cuda.is_bf16_supported())
        self.amp_dtype = AMP_DTYPES[amp_dtype] if self.amp else None     # None: float32
        self.channels_last = bool(channels_last) and self.cuda
        self.cuda_graphs = bool(cuda_graphs) and self.cuda
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self._graphs: dict = {}
        self._lock = threading.Lock()   # one model call at a time (server threads share a runner)
        self.tuner = tuner if not self.cuda else None
        self._micro: dict = {}

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True).float()
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _forward(self, source, refs, audio):
        # no autocast weight-cast cache under CUDA graphs: its tensors would outlive the capture
        with torch.autocast(device_type=self.device.type, dtype=self.amp_dtype or torch.bfloat16, enabled=self.amp,
                            cache_enabled=not self.cuda_graphs):
            return self.model(source, refs, audio).float().clamp_(0, 1)

    def _micro_batch(self, source) -> None:
        """GPU: run the whole batch in one piece when ~6 full-resolution decoder maps per frame fit in half the
        free memory (slicing a batch into 2-frame pieces, the CPU default, starves a GPU)."""
        key = tuple(source.shape)
        if key not in self._micro:
            free, _ = torch.cuda.mem_get_info(self.device)
            per_frame = 6 * self.model.config.decoder_channels * source.shape[-2] * source.shape[-1] * 4
            self._micro[key] = int(max(1, min(source.shape[0], free // 2 // per_frame)))
        self.model.inference_micro_batch = self._micro[key]

    @torch.inference_mode()
    def __call__(self, source: torch.Tensor, refs: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        with self._lock:
            source, refs, audio = self._prep(source), self._prep(refs), audio.to(self.device).float()
            if self.cuda:
                self._micro_batch(source)
            if self.tuner is not None:
                return self.tuner.run(lambda: self._forward(source, refs, audio), source.shape[0])
            if not self.cuda_graphs:
                return self._forward(source, refs, audio)
            return self._graph_call(source, refs, audio)

    @torch.inference_mode()
    def encode_references(self, refs: torch.Tensor) -> torch.Tensor:
        """The model's ``encode_references`` of (B, 15, Hc, Wc) reference images, on this runner's device and
        precision: pass the result as ``refs`` to every call that uses these references."""
        with self._lock:
            with torch.autocast(device_type=self.device.type, dtype=self.amp_dtype or torch.bfloat16, enabled=self.amp):
                return self.model.encode_references(self._prep(refs)).float()

    def _graph_call(self, source, refs, audio):
        key = (tuple(source.shape), tuple(refs.shape), tuple(audio.shape))
        entry = self._graphs.get(key)
        if entry is None:
            static = [source.clone(), refs.clone(), audio.clone()]
            stream = torch.cuda.Stream(device=self.device)
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream):
                for _ in range(2):  # warm-up outside the graph (allocator, autotuning)
                    self._forward(*static)
            torch.cuda.current_stream(self.device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out = self._forward(*static)
            entry = self._graphs[key] = (graph, static, out)
        graph, static, out = entry
        for dst, src in zip(static, (source, refs, audio)):
            dst.copy_(src)
        graph.replay()
        return out.clone()
