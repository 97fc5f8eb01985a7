"""What omama runs without downloads: the offline backbones (the classical proposals are in
omama_core/proposals.py, beside FastSAM)."""

from .backbones import ConvNetBackbone, FusedBackbone, HandcraftedBackbone

__all__ = ["ConvNetBackbone", "FusedBackbone", "HandcraftedBackbone"]
