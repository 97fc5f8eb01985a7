"""Dense image features: the frozen DINOv2 backbone, as the publication uses it.

Every backbone has one interface, images ImageNet-normalised with H and W multiples of 14:
`forward(images (B, 3, H, W)) -> tokens (B, C, H/14, W/14)`, the features the head's
cross-attention reads, and `encode(images) -> (tokens, pooling_features)`, where
`pooling_features` are what the Mask-Context Encoder averages inside masks, on a grid of
`pooling_stride` pixels (14: the tokens themselves, as published; 4: the encoder's own grid).

- `DinoV2Backbone`: DINOv2 through timm (every size, with or without registers), last
  layer after the final norm, patch tokens only. timm's `vit_base_patch14_reg4_dinov2` with
  `dynamic_img_size=True` loading the original .pth gives the same tokens as the authors'
  torch.hub model (position-embedding interpolation included).
- The offline backbones (handcrafted, convnet, fused) are in omama_core/offline/.
Images are resized and normalised by omama_core/preprocess.py.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from .config import BackboneConfig
from .errors import WeightsNotFoundError
from .network import disable_hub_downloads
from .preprocess import PATCH_SIZE

DINOV2_MODELS = {
    "vit_small_patch14_dinov2", "vit_base_patch14_dinov2", "vit_large_patch14_dinov2",
    "vit_giant_patch14_dinov2", "vit_small_patch14_reg4_dinov2", "vit_base_patch14_reg4_dinov2",
    "vit_large_patch14_reg4_dinov2", "vit_giant_patch14_reg4_dinov2",
}
_WEIGHTS_HELP = (
    "Download the DINOv2 weights on a machine with internet access, e.g.\n"
    "  python -c \"import timm; timm.create_model('{model}', pretrained=True)\"  (fills timm's cache), or\n"
    "  wget https://dl.fbaipublicfiles.com/dinov2/... (the original .pth from facebookresearch/dinov2),\n"
    "and point backbone.weights (or --backbone-weights) at the file."
)


class DinoV2Backbone(nn.Module):
    """Frozen DINOv2 ViT from timm; returns patch tokens (B, C, H/14, W/14)."""

    def __init__(self, model_name: str = "vit_base_patch14_reg4_dinov2", weights: str | None = None,
                 model: nn.Module | None = None):
        """model_name: a timm DINOv2 name; weights: a local .pth/.safetensors (None: timm's
        cache). model: an already built timm DINOv2 to wrap instead (e.g. random weights)."""
        super().__init__()
        self.model = model if model is not None else _load_dinov2(model_name, weights)
        self.model.eval().requires_grad_(False)
        self.embed_dim = self.model.num_features
        self.num_prefix_tokens = self.model.num_prefix_tokens

    pooling_stride = PATCH_SIZE  # descriptors pool the tokens themselves, as published

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W), H and W multiples of 14 -> tokens (B, C, H/14, W/14)."""
        b, _, h, w = images.shape
        tokens = self.model.forward_features(images)  # (B, prefix + h*w/196, C), after the final norm
        patches = tokens[:, self.num_prefix_tokens:]
        return patches.transpose(1, 2).reshape(b, self.embed_dim, h // PATCH_SIZE, w // PATCH_SIZE)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, 3, H, W) -> (tokens, pooling features), both (B, C, H/14, W/14)."""
        tokens = self(images)
        return tokens, tokens


def _load_dinov2(model_name: str, weights: str | None) -> nn.Module:
    """timm's DINOv2 with the given weights (dynamic_img_size: any 14-multiple input size)."""
    disable_hub_downloads()  # before timm (and huggingface_hub) read the environment
    import timm  # heavy import, only when DINOv2 is used

    if model_name not in DINOV2_MODELS:
        raise WeightsNotFoundError(f"unknown DINOv2 model {model_name!r}; choose one of {sorted(DINOV2_MODELS)}")
    kwargs = dict(pretrained=True, num_classes=0, dynamic_img_size=True)
    if weights is not None:
        if not os.path.isfile(weights):
            raise WeightsNotFoundError(f"DINOv2 weights file not found: {weights}\n"
                                       + _WEIGHTS_HELP.format(model=model_name))
        kwargs["pretrained_cfg_overlay"] = dict(file=weights)
    elif os.environ.get("HF_HUB_OFFLINE") == "1" and not _in_hub_cache(model_name):
        # fail before building the model: timm would only find out after seconds
        raise WeightsNotFoundError(f"no DINOv2 weights for {model_name}: backbone.weights is not set and "
                                   "timm's cache has none (hub downloads are off)\n"
                                   + _WEIGHTS_HELP.format(model=model_name))
    try:
        return timm.create_model(model_name, **kwargs)
    except Exception as error:  # timm raises many types: hub errors, unpickling, key mismatches
        where = weights or f"timm's cache (HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', '0')})"
        raise WeightsNotFoundError(
            f"could not load DINOv2 weights for {model_name} from {where}: "
            f"{type(error).__name__}: {str(error)[:300]}\n" + _WEIGHTS_HELP.format(model=model_name)
        ) from None


def _in_hub_cache(model_name: str) -> bool:
    """Whether timm's pretrained weights for model_name are in the local Hugging Face cache."""
    import timm
    from huggingface_hub import try_to_load_from_cache

    hub_id = timm.models.get_pretrained_cfg(model_name).hf_hub_id
    return any(isinstance(try_to_load_from_cache(hub_id, name), str)
               for name in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"))


def build_backbone(config: BackboneConfig) -> nn.Module:
    """Backbone from its config section; raises WeightsNotFoundError for missing weights."""
    if config.kind in ("handcrafted", "convnet"):
        from .offline import ConvNetBackbone, FusedBackbone, HandcraftedBackbone
    if config.kind == "handcrafted":
        return HandcraftedBackbone()
    if config.kind == "convnet":
        convnet = ConvNetBackbone.from_file(config.weights)
        if config.handcrafted_weight > 0:
            return FusedBackbone([(convnet, 1.0 - config.handcrafted_weight),
                                  (HandcraftedBackbone(), config.handcrafted_weight)])
        return convnet
    return DinoV2Backbone(config.model, config.weights)
