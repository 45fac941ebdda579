"""The LawDNet generator (docs/original.md, 'Generator'), parameter names identical to the official state_dict.

Inputs follow the official convention: masked source face (B, 3, Hc, Wc), 5 reference faces stacked on
channels (B, 15, Hc, Wc), audio window (B, C_audio, T); RGB in [0, 1]. Output: the full face crop in (0, 1).

Differences from the released code that do not change its function: no hard-coded autocast (the caller picks
the precision), the coarse grid lives on the module's device, and only the last warp branch - the one whose
result the official forward keeps (docs/original.md) - is computed. Branch 0 stays in the state_dict so that official
checkpoints load, and it is computed only when ``compute_all_branches=True`` (for parity checks).

Per-template caching: ``ref_in_conv`` and the appearance branches see only the references, which a dub keeps
fixed for a whole template, so ``encode_references`` computes them once and ``forward`` accepts that result in
place of the reference images (told apart by spatial size: images have the source's, features a quarter).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from config.config import ModelConfig
from models.blocks import (DownBlock1d, DownBlock2d, ResBlock1d, ResBlock2d, SameBlock1d, SameBlock2d,
                           UpBlock2d)
from models.cross_attention import CrossAttention
from models.local_affine_warp import LocalAffineWarp


def _audio_out_len(window):
    """Length after the audio encoder's two stride-2 convs (k3, pad 1)."""
    for _ in range(2):
        window = (window - 1) // 2 + 1
    return window


class LawDNet(nn.Module):
    def __init__(self, config: ModelConfig = None, **overrides):
        super().__init__()
        cfg = ModelConfig(**{**(config.to_dict() if config else {}), **overrides})
        self.config = cfg
        e0, e1, C = cfg.encoder_channels
        A, D, Dec = cfg.align_channels, cfg.attn_dim, cfg.decoder_channels
        self.source_in_conv = nn.Sequential(
            SameBlock2d(cfg.source_channel, e0, 7, 3), DownBlock2d(e0, e1, 3, 1), DownBlock2d(e1, C, 3, 1))
        self.ref_in_conv = nn.Sequential(
            SameBlock2d(cfg.ref_channel, e0, 7, 3), DownBlock2d(e0, e1, 3, 1), DownBlock2d(e1, C, 3, 1))
        self.trans_conv = nn.Sequential(
            SameBlock2d(2 * C, A, 3, 1),
            SameBlock2d(A, A, 11, 5), SameBlock2d(A, A, 11, 5), DownBlock2d(A, A, 3, 1),
            SameBlock2d(A, A, 7, 3), SameBlock2d(A, A, 7, 3), DownBlock2d(A, A, 3, 1),
            SameBlock2d(A, A, 3, 1), DownBlock2d(A, A, 3, 1),
            SameBlock2d(A, A, 3, 1), DownBlock2d(A, A, 3, 1))
        self.audio_encoder = nn.Sequential(
            SameBlock1d(cfg.audio_channel, A, 5, 2), ResBlock1d(A, A, 3, 1), DownBlock1d(A, A, 3, 1),
            ResBlock1d(A, A, 3, 1), DownBlock1d(A, A, 3, 1), SameBlock1d(A, A, 3, 1))
        self.appearance_conv_list = nn.ModuleList(
            nn.Sequential(ResBlock2d(C, C, 3, 1), ResBlock2d(C, C, 3, 1)) for _ in range(cfg.warp_layer_num))
        self.lawLayer_list = nn.ModuleList(
            LocalAffineWarp(C, D, cfg.num_kpoints, cfg.coarse_grid_size, cfg.warp_mode)
            for _ in range(cfg.warp_layer_num))
        self.out_conv = nn.Sequential(
            SameBlock2d(2 * C, Dec, 3, 1), UpBlock2d(Dec, Dec, 3, 1), ResBlock2d(Dec, Dec, 3, 1),
            UpBlock2d(Dec, Dec, 3, 1), nn.Conv2d(Dec, 3, 7, padding=3), nn.Sigmoid())
        self.cross_attention = CrossAttention(A, cfg.attn_grid, _audio_out_len(cfg.audio_window), D)
        self.compute_all_branches = False
        # Without autograd, large batches run in slices of this many frames: full-resolution decoder
        # activations (128 x Hc x Wc floats per frame) dominate memory, and convs gain nothing past a few frames.
        self.inference_micro_batch = 2

    @property
    def warp_mode(self):
        return self.config.warp_mode

    def set_warp_mode(self, mode):
        self.config.warp_mode = mode
        for layer in self.lawLayer_list:
            layer.mode = mode

    def warp_code(self, source_feature, ref_feature, audio):
        img_para = self.trans_conv(torch.cat([source_feature, ref_feature], 1))
        if tuple(img_para.shape[-2:]) != self.config.attn_grid:
            # Lower stages share the attention's fixed grid through this resize (as the original).
            img_para = F.interpolate(img_para, size=self.config.attn_grid, mode="bilinear", align_corners=True)
        return self.cross_attention(img_para, self.audio_encoder(audio))

    def _branches(self):
        last = len(self.lawLayer_list) - 1
        return range(last + 1) if self.compute_all_branches else (last,)

    def _reference_parts(self, reference):
        ref_feature = self.ref_in_conv(reference)
        return [ref_feature] + [self.appearance_conv_list[i](ref_feature) for i in self._branches()]

    def encode_references(self, reference):
        """What the generator computes from the references alone: ``ref_in_conv``'s features followed, on the
        channel axis, by the appearance branch output of each computed warp layer: (B, 15, Hc, Wc) images ->
        (B, (1 + k) C, Hc/4, Wc/4), k = 1 (2 with ``compute_all_branches``). Pass it to ``forward`` as
        ``reference`` to skip that work for every frame that shares the references."""
        return torch.cat(self._reference_parts(reference), 1)

    def forward(self, source, reference, audio):
        """``reference``: the (B, 15, Hc, Wc) reference images or ``encode_references`` of them."""
        n = self.inference_micro_batch
        if n and source.shape[0] > n and not torch.is_grad_enabled():
            return torch.cat([self._forward(source[i:i + n], reference[i:i + n], audio[i:i + n])
                              for i in range(0, source.shape[0], n)])
        return self._forward(source, reference, audio)

    def _forward(self, source, reference, audio):
        source_feature = self.source_in_conv(source)
        branches = self._branches()
        if reference.shape[-2:] == source.shape[-2:]:
            parts = self._reference_parts(reference)
        else:  # cached encode_references output
            C = source_feature.shape[1]
            if tuple(reference.shape[1:]) != (C * (1 + len(branches)), *source_feature.shape[-2:]):
                raise ValueError(f"reference features of shape {tuple(reference.shape)} do not fit this model "
                                 f"(expected (B, {C * (1 + len(branches))}, {source_feature.shape[-2]}, "
                                 f"{source_feature.shape[-1]}); recompute them with encode_references)")
            parts = reference.split(C, 1)
        code = self.warp_code(source_feature, parts[0], audio)
        for i, appearance in zip(branches, parts[1:]):  # only the last branch's output is used (official)
            warped = self.lawLayer_list[i](appearance, code)
        return self.out_conv(torch.cat([source_feature, warped], 1))
