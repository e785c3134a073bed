"""StyleGAN2 building blocks: equalised-learning-rate layers and modulated convolutions.

Simplified from StyleGAN2/EG3D where their custom CUDA ops have no pure-PyTorch equivalent:
resampling is bilinear instead of FIR-filtered, and there is no per-pixel noise input (EG3D renders
with constant noise at inference anyway). Shapes are written beside the code.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LRELU_GAIN = math.sqrt(2.0)


class EqualLinear(nn.Module):
    """Fully connected layer with the weight scale applied at run time (equalised lr)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias_init: float = 0.0,
        lr_multiplier: float = 1.0,
        activation: str = "linear",
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., in) → (..., out)."""
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.bias_gain)
        if self.activation == "lrelu":
            x = F.leaky_relu(x, 0.2) * LRELU_GAIN
        return x


def modulated_conv2d(
    x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True
) -> torch.Tensor:
    """x: (B, I, H, W), weight: (O, I, k, k), styles: (B, I) → (B, O, H, W); 'same' padding.

    Each sample gets its own modulated kernel, run as one grouped convolution.
    """
    batch, in_channels, height, width = x.shape
    out_channels, _, kh, kw = weight.shape
    w = weight[None] * styles[:, None, :, None, None]  # (B, O, I, k, k)
    if demodulate:
        w = w * torch.rsqrt(w.square().sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
    x = x.reshape(1, batch * in_channels, height, width)
    out = F.conv2d(x, w.reshape(batch * out_channels, in_channels, kh, kw), padding=kh // 2, groups=batch)
    return out.reshape(batch, out_channels, height, width)


class ModulatedConv(nn.Module):
    """Style-modulated k×k convolution (+ bias, leaky ReLU), optionally upsampling ×2 first."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        kernel: int = 3,
        up: bool = False,
        demodulate: bool = True,
        activation: str = "lrelu",
    ):
        super().__init__()
        self.affine = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel * kernel)
        self.up, self.demodulate, self.activation = up, demodulate, activation

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """x: (B, I, H, W), w: (B, w_dim) → (B, O, H·s, W·s), s = 2 if up else 1."""
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        styles = self.affine(w) * (self.weight_gain if not self.demodulate else 1.0)
        x = modulated_conv2d(x, self.weight, styles, self.demodulate)
        x = x + self.bias[None, :, None, None]
        if self.activation == "lrelu":
            x = F.leaky_relu(x, 0.2) * LRELU_GAIN
        return x


class ToRGB(nn.Module):
    """1×1 modulated convolution without demodulation: features → output channels."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int):
        super().__init__()
        self.conv = ModulatedConv(
            in_channels, out_channels, w_dim, kernel=1, demodulate=False, activation="linear"
        )

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w)


class SynthesisBlock(nn.Module):
    """One resolution of StyleGAN2's skip generator: (up)conv, conv, toRGB; uses 3 ws."""

    num_ws = 3

    def __init__(
        self, in_channels: int, out_channels: int, w_dim: int, img_channels: int, first: bool, resolution: int
    ):
        super().__init__()
        self.first = first
        if first:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
            self.conv0 = None
        else:
            self.conv0 = ModulatedConv(in_channels, out_channels, w_dim, up=True)
        self.conv1 = ModulatedConv(out_channels, out_channels, w_dim)
        self.torgb = ToRGB(out_channels, img_channels, w_dim)

    def forward(
        self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """ws: (B, 3, w_dim); x, img: the previous block's features and image (None first)."""
        if self.first:
            x = self.const[None].expand(ws.shape[0], -1, -1, -1)
        else:
            x = self.conv0(x, ws[:, 0])
        x = self.conv1(x, ws[:, 1])
        y = self.torgb(x, ws[:, 2])
        if img is not None:
            y = y + F.interpolate(img, scale_factor=2, mode="bilinear", align_corners=False)
        return x, y


class SynthesisNetwork(nn.Module):
    """StyleGAN2 synthesis: ws (B, num_ws, w_dim) → (B, img_channels, R, R), from 4² up to R."""

    def __init__(
        self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int, channel_max: int
    ):
        super().__init__()
        if img_resolution < 4 or img_resolution & (img_resolution - 1):
            raise ValueError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
        self.resolutions = [2**i for i in range(2, int(math.log2(img_resolution)) + 1)]
        channels = {r: min(channel_base // r, channel_max) for r in self.resolutions}
        self.blocks = nn.ModuleList()
        for i, res in enumerate(self.resolutions):
            in_ch = channels[res // 2] if i else 0
            self.blocks.append(
                SynthesisBlock(in_ch, channels[res], w_dim, img_channels, first=i == 0, resolution=res)
            )
        # consecutive blocks share one w: the toRGB of one and the first conv of the next
        self.num_ws = 2 * len(self.resolutions) + 1

    def forward(self, ws: torch.Tensor) -> torch.Tensor:
        x = img = None
        for i, block in enumerate(self.blocks):
            x, img = block(x, img, ws[:, 2 * i : 2 * i + 3])
        return img


class EqualConv2d(nn.Module):
    """k×k convolution with equalised lr, optional leaky ReLU and ×2 average-pool downsampling."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        bias: bool = True,
        activation: str = "lrelu",
        down: bool = False,
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel * kernel)
        self.activation, self.down, self.padding = activation, down, kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight * self.weight_gain, self.bias, padding=self.padding)
        if self.down:
            x = F.avg_pool2d(x, 2)
        if self.activation == "lrelu":
            x = F.leaky_relu(x, 0.2) * LRELU_GAIN
        return x
