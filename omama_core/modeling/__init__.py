"""The published model (O-MaMa) in one place, readable beside docs/method.md:

    encoder.py     Mask-Context Encoder: object and context descriptors [o; c] of masks
    attention.py   the ego<->exo cross-attention block
    head.py        MatchingHead: position embeddings, cross-attention, projection, visibility
    scores.py      cosine scores (inference and training share them)
    omama.py       OMaMa: encoder + head + scores in one nn.Module; build_model(config)
    checkpoint.py  strict loading of omama's and the authors' head checkpoints
"""

from .checkpoint import load_configured_head, load_head, load_official_head, save_head
from .encoder import MaskContextEncoder
from .head import MatchingHead
from .omama import ModelOutput, OMaMa, build_model
from .scores import cosine_scores

__all__ = ["MaskContextEncoder", "MatchingHead", "ModelOutput", "OMaMa", "build_model", "cosine_scores",
           "load_configured_head", "load_head", "load_official_head", "save_head"]
