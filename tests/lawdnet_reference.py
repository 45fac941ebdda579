"""A literal, slow re-implementation of the LawDNet generator from a prose description of the original.

Written only from that description, on the raw state_dict with functional ops: it materialises every per-keypoint
field, does the official layout scramble step by step (swap, permute, contiguous, view, two resizes), samples
with the 3-D trilinear grid_sample, and computes both warp branches keeping the last one. It is the oracle of
tests/test_lawdnet.py and the "official cost" reference of benchmarks/bench_model.py.
"""
import math

import torch
import torch.nn.functional as F


def ref_conv(sd, prefix, x, stride=1, relu=True):
    w, b = sd[prefix + ".weight"], sd[prefix + ".bias"]
    conv = F.conv2d if w.dim() == 4 else F.conv1d
    y = conv(x, w, b, stride=stride, padding=w.shape[-1] // 2)
    return F.relu(y) if relu else y


def ref_res(sd, prefix, x):
    return ref_conv(sd, prefix + ".conv2", ref_conv(sd, prefix + ".conv1", x), relu=False) + x


def ref_encoder(sd, prefix, x):
    x = ref_conv(sd, prefix + ".0.conv", x)
    x = ref_conv(sd, prefix + ".1.conv", x, stride=2)
    return ref_conv(sd, prefix + ".2.conv", x, stride=2)


def ref_linear(sd, prefix, x):
    return x @ sd[prefix + ".weight"].T + sd[prefix + ".bias"]


def ref_warp(sd, prefix, feat, code, N, grid_size=60, antialias=True):
    B, C, H, W = feat.shape
    h = torch.relu(ref_linear(sd, prefix + ".commn_linear.0", code))
    K = torch.tanh(ref_linear(sd, prefix + ".kpoints_normalized_layer.0", h)).view(B, N, C, 2)
    rho = torch.sigmoid(ref_linear(sd, prefix + ".radius_layer.0", h)).view(B, N, C, 1)
    S = torch.tanh(ref_linear(sd, prefix + ".similarity_params_layer.0", h)).view(B, N, C, 4)
    n = grid_size
    u = torch.tensor([-1 + (2 * k + 1) / n for k in range(n)], dtype=torch.float32, device=feat.device)
    yy, xx = torch.meshgrid(u, u, indexing="ij")
    p = torch.stack([xx, yy], -1)                                       # (H0, W0, 2) = (x, y)
    p = p.view(1, 1, 1, n, n, 2)
    k = K.view(B, N, C, 1, 1, 2)
    d = p - k                                                            # (B, N, C, H0, W0, 2)
    r = torch.sqrt((d ** 2).sum(-1))
    w = torch.exp(-r / rho.view(B, N, C, 1, 1))
    s0, s1 = S[..., 0].view(B, N, C, 1, 1), S[..., 1].view(B, N, C, 1, 1)
    t = S[..., 2:].reshape(B, N, C, 1, 1, 2)
    sigma, alpha, tau = 1 + s0 * w, math.pi * s1 * w, t * w.unsqueeze(-1)
    qx = torch.cos(alpha) * d[..., 0] + torch.sin(alpha) * d[..., 1]
    qy = -torch.sin(alpha) * d[..., 0] + torch.cos(alpha) * d[..., 1]
    pn = sigma.unsqueeze(-1) * torch.stack([qx, qy], -1) + tau + k
    omega = torch.softmax(w, dim=1).unsqueeze(-1)
    P = (omega * pn).sum(1)                                              # (B, C, H0, W0, 2)
    # the released layout: swap last two axes, permute to (B, C, W0, H0, 2), contiguous, VIEW as (B, 2C, H0, W0)
    P = P.transpose(3, 4)                                                # (B, C, H0, 2, W0)
    P = P.permute(0, 1, 4, 2, 3).contiguous().view(B, 2 * C, n, n)
    for _ in range(2):  # torchvision tensor Resize = bilinear, align_corners=False, antialias on
        P = F.interpolate(P, size=(H, W), mode="bilinear", align_corners=False, antialias=antialias)
    P = P.view(B, C, 2, H, W).permute(0, 1, 3, 4, 2)
    z = torch.tensor([-1 + (2 * c + 1) / C for c in range(C)], dtype=torch.float32, device=feat.device)
    z = z.view(1, C, 1, 1, 1).expand(B, C, H, W, 1)
    grid3 = torch.cat([P, z], -1)
    out = F.grid_sample(feat.unsqueeze(1), grid3, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.squeeze(1)


def ref_attention(sd, img_para, audio_para):
    pre = "cross_attention."
    B = img_para.shape[0]
    V = (img_para + sd[pre + "positional_encoding_video"]).reshape(B, img_para.shape[1], -1)
    A = audio_para + sd[pre + "positional_encoding_audio"]
    Q = ref_linear(sd, pre + "query_proj", A)
    Kk = ref_linear(sd, pre + "key_proj", V)
    Vv = ref_linear(sd, pre + "value_proj", V)
    att = torch.softmax(Q @ Kk.transpose(1, 2) / math.sqrt(Q.shape[-1]), dim=-1)
    Z = ref_linear(sd, pre + "final_linear", att @ Vv)
    Z = F.max_pool1d(torch.relu(F.conv1d(Z, sd[pre + "output_reshape.conv1.weight"],
                                         sd[pre + "output_reshape.conv1.bias"], padding=1)), 2)
    return torch.relu(ref_linear(sd, pre + "output_reshape.fc", Z.reshape(B, -1)))


def ref_lawdnet(sd, source, reference, audio, N=5, warp_layers=2, grid=(8, 6)):
    src = ref_encoder(sd, "source_in_conv", source)
    ref = ref_encoder(sd, "ref_in_conv", reference)
    x = torch.cat([src, ref], 1)
    strides = [1, 1, 1, 2, 1, 1, 2, 1, 2, 1, 2]
    for i, s in enumerate(strides):
        x = ref_conv(sd, f"trans_conv.{i}.conv", x, stride=s)
    if tuple(x.shape[-2:]) != grid:
        x = F.interpolate(x, size=grid, mode="bilinear", align_corners=True)
    a = ref_conv(sd, "audio_encoder.0.conv", audio)
    a = ref_res(sd, "audio_encoder.1", a)
    a = ref_conv(sd, "audio_encoder.2.conv", a, stride=2)
    a = ref_res(sd, "audio_encoder.3", a)
    a = ref_conv(sd, "audio_encoder.4.conv", a, stride=2)
    a = ref_conv(sd, "audio_encoder.5.conv", a)
    code = ref_attention(sd, x, a)
    warped_list = []
    for i in range(warp_layers):  # both branches computed, only the last one kept (as released)
        f = ref_res(sd, f"appearance_conv_list.{i}.1", ref_res(sd, f"appearance_conv_list.{i}.0", ref))
        warped = ref_warp(sd, f"lawLayer_list.{i}", f, code, N)
    warped_list.append(warped)
    y = torch.cat([src] + warped_list, 1)
    y = ref_conv(sd, "out_conv.0.conv", y)
    y = ref_conv(sd, "out_conv.1.conv", F.interpolate(y, scale_factor=2, mode="nearest"))
    y = ref_res(sd, "out_conv.2", y)
    y = ref_conv(sd, "out_conv.3.conv", F.interpolate(y, scale_factor=2, mode="nearest"))
    return torch.sigmoid(ref_conv(sd, "out_conv.4", y, relu=False))


