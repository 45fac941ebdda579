"""Conv building blocks of the LawDNet generator (docs/original.md, 'Generator').

Parameter names (`conv`, `conv1`, `conv2`, `norm1`, `norm2`) match the official state_dict. All 2-D blocks are
normalisation-free, as in the released model. ResBlock1d keeps two BatchNorm1d modules that the official
network constructs but never calls, only so that official checkpoints load strictly.
"""
import torch.nn as nn
import torch.nn.functional as F


class SameBlock2d(nn.Module):
    def __init__(self, cin, cout, kernel_size=3, padding=1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, padding=padding)

    def forward(self, x):
        return F.relu(self.conv(x))


class DownBlock2d(nn.Module):
    def __init__(self, cin, cout, kernel_size=3, padding=1, stride=2):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding)

    def forward(self, x):
        return F.relu(self.conv(x))


class UpBlock2d(nn.Module):
    def __init__(self, cin, cout, kernel_size=3, padding=1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, padding=padding)

    def forward(self, x):
        return F.relu(self.conv(F.interpolate(x, scale_factor=2, mode="nearest")))


class ResBlock2d(nn.Module):
    """y = conv2(relu(conv1(x))) + x (post-activation style of the released LawDNet, not DINet's pre-activation)."""

    def __init__(self, cin, cout, kernel_size=3, padding=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, kernel_size, padding=padding)
        self.conv2 = nn.Conv2d(cout, cout, kernel_size, padding=padding)
        self.channel_conv = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x):
        skip = x if self.channel_conv is None else self.channel_conv(x)
        return self.conv2(F.relu(self.conv1(x))) + skip


class SameBlock1d(nn.Module):
    def __init__(self, cin, cout, kernel_size=3, padding=1):
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel_size, padding=padding)

    def forward(self, x):
        return F.relu(self.conv(x))


class DownBlock1d(nn.Module):
    def __init__(self, cin, cout, kernel_size=3, padding=1):
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel_size, stride=2, padding=padding)

    def forward(self, x):
        return F.relu(self.conv(x))


class ResBlock1d(nn.Module):
    def __init__(self, cin, cout, kernel_size=3, padding=1):
        super().__init__()
        self.conv1 = nn.Conv1d(cin, cout, kernel_size, padding=padding)
        self.conv2 = nn.Conv1d(cout, cout, kernel_size, padding=padding)
        # Constructed but unused by the official model; kept for strict checkpoint loading.
        self.norm1 = nn.BatchNorm1d(cin)
        self.norm2 = nn.BatchNorm1d(cout)

    def forward(self, x):
        return self.conv2(F.relu(self.conv1(x))) + x
