"""O-MaMa, the published model, on precomputed backbone features (docs/method.md 3-5).

    source mask, candidates --(Mask-Context Encoder)--> descriptors [o; c]          (2C)
    o of the source --attends to--> target tokens + pos;  o of each candidate --> source tokens + pos
    rho = [attended o; o; c] (3C) --projection MLP--> D, L2-normalised
    score = cosine(rho_source, rho_candidate);  the best score wins (selection stage)

Without a head (`head.kind: knn`) the embeddings are the L2-normalised descriptors: the
publication's training-free k-NN row. The learned visibility output is not published.
The backbone (frozen) runs before the model, once per image; which candidate answers is
decided after it, by the selection stage (omama_core/selection/).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import MatcherConfig
from ..errors import ConfigError
from ..preprocess import PATCH_SIZE, Regions
from .encoder import MaskContextEncoder
from .head import MatchingHead
from .scores import cosine_scores


@dataclass
class ModelOutput:
    """scores (K, N) cosines; visibility (K,) learned probability or None (no such output);
    sources (K, D) and candidates (N, D) unit embeddings."""

    scores: torch.Tensor
    visibility: torch.Tensor | None
    sources: torch.Tensor
    candidates: torch.Tensor


class OMaMa(nn.Module):
    """Mask-Context Encoder + cross-attention + projection + cosine scores (+ visibility).

    Args:
        encoder: the Mask-Context Encoder (its context size and the features' pooling stride).
        head: cross-attention, projection and optional visibility output; None for k-NN.
    """

    def __init__(self, *, encoder: MaskContextEncoder, head: MatchingHead | None = None):
        super().__init__()
        self.encoder, self.head = encoder, head

    def embed_sources(self, descriptors: torch.Tensor, target_tokens: torch.Tensor) -> torch.Tensor:
        """(K, 2C) descriptors of source-image masks, target tokens (1, C, ht, wt) -> (K, D)."""
        if self.head is None:
            return F.normalize(descriptors, dim=-1)
        return self.head.embed_sources(descriptors[None], target_tokens)[0]

    def embed_candidates(self, descriptors: torch.Tensor, source_tokens: torch.Tensor) -> torch.Tensor:
        """(N, 2C) descriptors of target-image candidates, source tokens (1, C, hs, ws) -> (N, D)."""
        if self.head is None:
            return F.normalize(descriptors, dim=-1)
        return self.head.embed_candidates(descriptors[None], source_tokens)[0]

    def forward(self, source_tokens: torch.Tensor, source_pooling: torch.Tensor, queries: Regions,
                target_tokens: torch.Tensor, target_pooling: torch.Tensor, candidates: Regions) -> ModelOutput:
        """Score every candidate against every query.

        Args:
            source_tokens, target_tokens: (1, C, h, w) backbone tokens (14-px grid) that the
                cross-attention reads.
            source_pooling, target_pooling: (1, C, h', w') features the encoder pools
                (the tokens themselves for DINOv2).
            queries: K source masks; candidates: N target masks (omama_core.preprocess).
        Returns:
            ModelOutput with scores (K, N).
        """
        query_desc, candidate_desc = self.describe(source_pooling, queries, target_pooling, candidates)
        return self.score(query_desc, source_tokens, candidate_desc, target_tokens)

    def describe(self, source_pooling: torch.Tensor, queries: Regions, target_pooling: torch.Tensor,
                 candidates: Regions) -> tuple[torch.Tensor, torch.Tensor]:
        """The Mask-Context Encoder on both images: (K, 2C) query and (N, 2C) candidate descriptors."""
        return self.encoder(source_pooling[0], queries), self.encoder(target_pooling[0], candidates)

    def score(self, query_desc: torch.Tensor, source_tokens: torch.Tensor, candidate_desc: torch.Tensor,
              target_tokens: torch.Tensor) -> ModelOutput:
        """Descriptors (K, 2C) and (N, 2C) -> cross-attention, projection, cosine scores (K, N)."""
        sources = self.embed_sources(query_desc, target_tokens)  # (K, D)
        embedded = self.embed_candidates(candidate_desc, source_tokens)  # (N, D)
        scores = cosine_scores(sources, embedded).float()  # (K, N)
        visibility = None
        if self.head is not None and self.head.visibility is not None:
            visibility = torch.sigmoid(self.head.visibility_logit(sources.float(), scores).float())
        return ModelOutput(scores, visibility, sources, embedded)


def build_model(config: MatcherConfig, backbone: nn.Module | None = None, head: MatchingHead | None = None) -> OMaMa:
    """The model of a config, for the features of `backbone` (its channel count, its pooling
    stride and, for fused offline backbones, its groups); None: the published DINOv2
    ViT-B/14 (768 channels, the tokens pooled as they are).

    head: the trained part, None for the k-NN variant; `load_configured_head(config)` loads
    the one config.head names (the authors' release or an `omama train` checkpoint).
    """
    channels = getattr(backbone, "embed_dim", 768)
    if head is not None and head.dim != channels:
        raise ConfigError(f"the head expects {head.dim}-channel features but backbone "
                          f"{config.backbone.kind}/{config.backbone.model} gives {channels}")
    encoder = MaskContextEncoder(config.context_px, getattr(backbone, "pooling_stride", PATCH_SIZE),
                                 getattr(backbone, "groups", None))
    return OMaMa(encoder=encoder, head=head)
