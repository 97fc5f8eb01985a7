"""Offline backbones: dense features without downloads, for machines with no network.

- `HandcraftedBackbone`: colour, brightness and gradient statistics, no weights; its
  pooling features are on the encoder's 4-px grid, so small objects keep descriptors of
  their own.
- `ConvNetBackbone`: a small network learned on the synthetic benchmark
  (`omama train-backbone`), 64 channels on the 4-px grid.
- `FusedBackbone`: backbones on one pooling grid, channels concatenated (the offline
  default: convnet + handcrafted).

They share DinoV2Backbone's interface (omama_core/backbone.py): `encode(images (B, 3, H, W))
-> (tokens (B, C, H/14, W/14), pooling features (B, C, H/4, W/4))`, `embed_dim`,
`pooling_stride`. They are no substitute for DINOv2 on real video.
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, WeightsNotFoundError
from ..preprocess import IMAGENET_MEAN, IMAGENET_STD, PATCH_SIZE


class HandcraftedBackbone(nn.Module):
    """Weight-free dense features: photometrically normalised colour, a soft hue histogram,
    brightness levels and gradient orientations (30 channels) computed per pixel at half
    resolution, standardised per image.

    Tokens are their means over 14-px patches. Pooling features are their means over 4-px
    cells, the encoder's grid: a 14-px token of a 40-px object in the exo view is half
    table, so descriptors pooled from tokens blur small objects into their surroundings
    (measured on held-out synthetic scenes, k-NN IoU 0.40 -> 0.48 Ego2Exo, 0.43 -> 0.52
    Exo2Ego, docs/results/). Gray-world normalisation (each channel divided by its image mean)
    cancels the per-camera exposure and white balance differences.
    """

    hue_bins = 12
    level_bins = 4
    orientation_bins = 8
    pooling_stride = 4

    def __init__(self):
        super().__init__()
        self.embed_dim = 6 + self.hue_bins + self.level_bins + self.orientation_bins
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)
        sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0
        self.register_buffer("sobel", torch.stack([sobel, sobel.t()]).unsqueeze(1), persistent=False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) ImageNet-normalised -> tokens (B, 30, H/14, W/14)."""
        return self.encode(images)[0]

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, 3, H, W) -> tokens (B, 30, H/14, W/14), pooling features (B, 30, H/4, W/4)."""
        rgb = (images * self.std + self.mean).clamp(0.0, 1.0)
        rgb = F.avg_pool2d(rgb, 2)  # half resolution: 4x less work, 4-px cell statistics barely change
        rgb = rgb / (rgb.mean(dim=(2, 3), keepdim=True) + 1e-3) * 0.5  # gray world
        pixels = self._pixel_features(rgb)  # (B, 30, H/2, W/2)
        cells = F.avg_pool2d(pixels, self.pooling_stride // 2)  # (B, 30, H/4, W/4)
        mean = cells.mean(dim=(2, 3), keepdim=True)
        std = cells.std(dim=(2, 3), keepdim=True) + 1e-4
        tokens = F.avg_pool2d(pixels, PATCH_SIZE // 2)
        return (tokens - mean) / std, (cells - mean) / std

    def _pixel_features(self, rgb: torch.Tensor) -> torch.Tensor:
        r, g, b = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
        intensity = (r + g + b) / 3.0
        total = r + g + b + 1e-3
        opponent_rg = r - g
        opponent_yb = (r + g) / 2.0 - b
        saturation = torch.sqrt(opponent_rg ** 2 + opponent_yb ** 2)
        hue = torch.atan2(opponent_yb, opponent_rg)  # (-pi, pi]
        colour = [r / total, g / total, opponent_rg, opponent_yb, torch.log(intensity + 0.02), saturation]

        # soft (linear-interpolated) hue histogram weighted by saturation
        position = (hue + math.pi) / (2 * math.pi) * self.hue_bins
        centres = torch.arange(self.hue_bins, device=rgb.device).view(1, -1, 1, 1) + 0.5
        distance = torch.remainder(position - centres + self.hue_bins / 2, self.hue_bins) - self.hue_bins / 2
        hue_hist = (1.0 - distance.abs()).clamp(min=0.0) * saturation.clamp(max=1.0) * 2.0

        levels = torch.linspace(0.0, 1.0, self.level_bins, device=rgb.device).view(1, -1, 1, 1)
        level_hist = (1.0 - (intensity.clamp(0, 1) - levels).abs() * (self.level_bins - 1)).clamp(min=0.0)

        gradient = F.conv2d(F.pad(intensity, (1, 1, 1, 1), mode="replicate"), self.sobel)
        magnitude = gradient.norm(dim=1, keepdim=True)
        angle = torch.atan2(gradient[:, 1:2], gradient[:, 0:1])
        position = torch.remainder(angle, math.pi) / math.pi * self.orientation_bins  # unsigned orientation
        centres = torch.arange(self.orientation_bins, device=rgb.device).view(1, -1, 1, 1) + 0.5
        distance = torch.remainder(position - centres + self.orientation_bins / 2,
                                   self.orientation_bins) - self.orientation_bins / 2
        orientation_hist = (1.0 - distance.abs()).clamp(min=0.0) * magnitude * 4.0

        return torch.cat(colour + [hue_hist, level_hist, orientation_hist], dim=1)


class ConvNetBackbone(nn.Module):
    """A small fully convolutional network learned on the synthetic benchmark
    (`omama train-backbone`, omama_core/training/features.py): 64 channels on the 4-px grid.

    Gray-world normalised colour, two stride-2 convolutions, residual 3x3 convolutions
    dilated 1, 2, 4, 8 and 16 (a receptive field of 255 px), a 1x1 projection, then per-image
    standardisation, as the handcrafted features. Tokens are the features' means over 14-px
    patches. About 13 GMAC for a 700x700 image: under half a second on a CPU.
    """

    pooling_stride = 4

    def __init__(self, channels: int = 64, width: int = 96, dilations: tuple[int, ...] = (1, 2, 4, 8, 16)):
        super().__init__()
        self.config = dict(channels=channels, width=width, dilations=list(dilations))
        self.embed_dim = channels
        self.dilations = tuple(dilations)
        self.stem = nn.Sequential(
            nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(32, width, 3, stride=2, padding=1),
        )
        self.norms = nn.ModuleList(nn.GroupNorm(8, width) for _ in self.dilations)
        self.convs = nn.ModuleList(nn.Conv2d(width, width, 3, padding=d, dilation=d) for d in self.dilations)
        self.project = nn.Conv2d(width, channels, 1)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "ConvNetBackbone":
        """Weights written by `omama train-backbone` (a dict with "config" and "state_dict")."""
        if path is None or not os.path.isfile(path):
            raise WeightsNotFoundError(
                f"convnet backbone weights not found: {path}\n"
                "The package ships omama_core/weights/synthetic_convnet.pt; "
                "`omama train-backbone --out FILE` writes new ones.")
        try:
            stored = torch.load(path, map_location="cpu", weights_only=True)
            model = cls(**stored["config"])
            model.load_state_dict(stored["state_dict"], strict=True)
        except Exception as error:  # unpickling, missing keys, shape mismatches: all mean a bad file
            raise WeightsNotFoundError(f"could not load convnet backbone weights from {path}: "
                                       f"{type(error).__name__}: {str(error)[:300]}") from None
        return model.eval().requires_grad_(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) ImageNet-normalised -> tokens (B, C, H/14, W/14)."""
        return self.encode(images)[0]

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, 3, H, W), H and W multiples of 14 -> tokens (B, C, H/14, W/14),
        pooling features (B, C, H//4, W//4). Differentiable (used in training)."""
        h, w = images.shape[2:]
        rgb = (images * self.std + self.mean).clamp(0.0, 1.0)
        rgb = rgb / (rgb.mean(dim=(2, 3), keepdim=True) + 1e-3) - 1.0  # gray world
        x = self.stem(rgb)
        for norm, conv in zip(self.norms, self.convs):
            x = x + conv(F.relu(norm(x)))
        cells = self.project(F.relu(x))[:, :, : h // 4, : w // 4]  # stride-2 convolutions round up
        cells = (cells - cells.mean(dim=(2, 3), keepdim=True)) / (cells.std(dim=(2, 3), keepdim=True) + 1e-4)
        tokens = F.adaptive_avg_pool2d(cells, (h // PATCH_SIZE, w // PATCH_SIZE))
        return tokens, cells


class FusedBackbone(nn.Module):
    """Backbones on the same pooling grid, their channels concatenated. `groups` lists each
    one's (channels, weight): the encoder balances the descriptors so that the k-NN score is
    the weighted sum of the backbones' own cosines (modeling.encoder.balance_groups)."""

    def __init__(self, parts: list[tuple[nn.Module, float]]):
        super().__init__()
        strides = {module.pooling_stride for module, _ in parts}
        if len(strides) != 1:
            raise ConfigError(f"fused backbones must share one pooling grid, got strides {sorted(strides)}")
        self.parts = nn.ModuleList(module for module, _ in parts)
        self.groups = [(module.embed_dim, float(weight)) for module, weight in parts]
        self.embed_dim = sum(channels for channels, _ in self.groups)
        self.pooling_stride = strides.pop()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode(images)[0]

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, 3, H, W) -> tokens (B, sum C, H/14, W/14), pooling features (B, sum C, h', w')."""
        tokens, pooling = zip(*(part.encode(images) for part in self.parts))
        return torch.cat(tokens, dim=1), torch.cat(pooling, dim=1)
