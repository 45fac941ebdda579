"""VGG19 feature trunk for the perceptual loss (docs/original.md, 'Losses'), without torchvision.

Layer indices match torchvision's ``vgg19().features`` so its ImageNet weight file (``vgg19-dcbb9e9d.pth``) loads
directly; only layers 0..29 (up to relu5_1) are built because the loss never looks deeper. The weights are not
downloaded at run time (the original downloaded them): the user passes the file.
"""
from __future__ import annotations

import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.checkpoint import read_checkpoint
from utils.errors import UserError

VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
# torchvision's VGG19 configuration "E": conv widths, "M" = 2x2 max pool.
VGG19_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
# Exclusive end index of each slice; the slice outputs are relu1_1, relu2_1, relu3_1, relu4_1, relu5_1.
SLICE_ENDS = (2, 7, 12, 21, 30)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _build_features(num_layers: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    in_ch = 3
    for item in VGG19_CFG:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_ch, item, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            in_ch = item
        if len(layers) >= num_layers:
            break
    return nn.Sequential(*layers[:num_layers])


def _hint() -> str:
    return (f"download torchvision's ImageNet VGG19 weights ({VGG19_URL}) and pass the file with --vgg_path "
            "(or train without the perceptual loss: --no_perception)")


class Vgg19Features(nn.Module):
    """Frozen-by-default VGG19 trunk; forward(x RGB in [0,1]) -> [relu1_1, relu2_1, relu3_1, relu4_1, relu5_1]."""

    def __init__(self, weights_path: str = "", requires_grad: bool = False):
        super().__init__()
        self.features = _build_features(SLICE_ENDS[-1])
        # buffers, not parameters: they follow .to(device) but are not trained nor stored as weights to load
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if weights_path:
            self.load_weights(weights_path)
        for p in self.parameters():
            p.requires_grad_(requires_grad)

    def load_weights(self, path: str) -> None:
        """Load ``features.{i}.*`` from our own file or a full torchvision vgg19 state dict (classifier ignored)."""
        if not path or not os.path.isfile(path):
            raise UserError(f"VGG19 weight file not found: '{path}'; {_hint()}")
        try:
            obj = read_checkpoint(path)
        except UserError as e:
            raise UserError(f"{e}; {_hint()}") from None
        if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
            obj = obj["state_dict"]
        if not isinstance(obj, dict):
            raise UserError(f"'{path}' does not hold a VGG19 state dict; {_hint()}")
        own = self.features.state_dict()
        sd = {}
        for key, value in obj.items():
            key = key[len("module."):] if key.startswith("module.") else key
            if key.startswith("features."):
                sub = key[len("features."):]
                if sub in own:
                    sd[sub] = value
        missing = [k for k in own if k not in sd]
        if missing:
            raise UserError(f"'{path}' is not a VGG19 state dict (missing features.{missing[0]}); {_hint()}")
        bad = [k for k in own if tuple(sd[k].shape) != tuple(own[k].shape)]
        if bad:
            raise UserError(f"'{path}' has features.{bad[0]} of shape {tuple(sd[bad[0]].shape)}, expected "
                            f"{tuple(own[bad[0]].shape)}: not VGG19 weights; {_hint()}")
        self.features.load_state_dict(sd, strict=True)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        outs = []
        start = 0
        for end in SLICE_ENDS:
            for i in range(start, end):
                x = self.features[i](x)
            outs.append(x)
            start = end
        return outs


def load_vgg19(path: str, device: str | torch.device = "cpu") -> Vgg19Features:
    """Frozen VGG19 trunk in eval mode with the weights from ``path`` (UserError if missing or not VGG19)."""
    if not path:
        raise UserError(f"the perceptual loss needs VGG19 weights: {_hint()}")
    return Vgg19Features(path, requires_grad=False).to(device).eval()


def half_resolution(x: torch.Tensor) -> torch.Tensor:
    """The one down-sampling used for BOTH real and fake images in the multi-scale perceptual loss.

    Fixes the original's (DINet's) bug: it shrank the real image with bilinear x0.5 but the generated one with
    a 3x3/stride-2 average pool, so even a perfect generator had a non-zero loss at the half scale. Here both go
    through the same 3x3/stride-2 average pool (a small low-pass before decimation, so little aliasing).
    """
    return F.avg_pool2d(x, kernel_size=3, stride=2, padding=1, count_include_pad=False)


def perceptual_loss(vgg: Vgg19Features, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mean of the 10 L1 distances between VGG19 activations (5 layers x full and half scale).

    This is (1/10) * sum_k [|phi_k(fake) - phi_k(real)| + |phi_k(fake/2) - phi_k(real/2)|]; multiply by
    lamb_perception outside. Gradients flow to ``fake`` only.
    """
    if fake.shape != real.shape:
        raise ValueError(f"perceptual_loss: fake {tuple(fake.shape)} and real {tuple(real.shape)} differ")
    real = real.detach()
    total = fake.new_zeros(())
    for f_img, r_img in ((fake, real), (half_resolution(fake), half_resolution(real))):
        f_feats = vgg(f_img)
        with torch.no_grad():
            r_feats = vgg(r_img)
        for f, r in zip(f_feats, r_feats):
            total = total + F.l1_loss(f, r.to(f.dtype))
    return total / (2 * len(SLICE_ENDS))
