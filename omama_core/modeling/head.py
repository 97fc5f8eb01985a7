"""The matching head: ego<->exo cross-attention, projection MLP, cosine scores, and (beyond
the publication) a learned visibility output.

Shapes: C is the backbone's channel count, D the projection width. The source mask's object
descriptor attends to the TARGET image's tokens, each candidate's to the SOURCE image's
tokens, through one block with shared weights; rho = [attended o; o; c] (3C) is projected to
D and L2-normalised, and a candidate's score is its cosine with the source.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import CrossAttention, resize_pos_embed
from .scores import cosine_scores

TOP_SCORES = 4  # how many of the best candidate scores the visibility head sees
RESIDUAL_INIT = 0.1  # scale of a residual head's last projection layer at initialisation


class MatchingHead(nn.Module):
    """Scores target candidates against a source mask (the trainable part of O-MaMa).

    Args:
        dim: backbone channels C (768 for DINOv2 ViT-B).
        num_heads: attention heads (4 published).
        source_grid, target_grid: token grids (h, w) the position embeddings are made for.
        hidden_dim: projection width D (768 published).
        visibility: add the learned visibility output (not in the publication).
        context, cross_attention: switch the context descriptor or the cross-attention off
            (their inputs to the projection become zeros): the publication's ablations.
        residual: the embedding is [unit descriptor; projection] (not in the publication),
            with the projection's last layer starting small: an untrained head scores
            nearly as the k-NN and training learns a correction. For features that already
            match well (the convnet backbone), where the published head, learned from
            scratch on a few scenes, falls below the k-NN.
    """

    def __init__(self, dim: int = 768, num_heads: int = 4, source_grid: tuple[int, int] = (38, 68),
                 target_grid: tuple[int, int] = (50, 50), hidden_dim: int = 768, visibility: bool = False,
                 context: bool = True, cross_attention: bool = True, residual: bool = False):
        super().__init__()
        self.args = dict(dim=dim, num_heads=num_heads, source_grid=tuple(source_grid),
                         target_grid=tuple(target_grid), hidden_dim=hidden_dim, visibility=visibility,
                         context=context, cross_attention=cross_attention, residual=residual)
        self.residual = residual
        self.embed_dim = hidden_dim + (2 * dim if residual else 0)
        self.dim = dim
        self.use_context, self.use_cross_attention = context, cross_attention
        self.source_grid, self.target_grid = tuple(source_grid), tuple(target_grid)
        self.source_pos_embed = nn.Parameter(torch.zeros(1, source_grid[0] * source_grid[1], dim))
        self.target_pos_embed = nn.Parameter(torch.zeros(1, target_grid[0] * target_grid[1], dim))
        nn.init.trunc_normal_(self.source_pos_embed, std=0.02)
        nn.init.trunc_normal_(self.target_pos_embed, std=0.02)
        self.cross_attention = CrossAttention(dim, num_heads)
        self.projection = nn.Sequential(nn.Linear(3 * dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, hidden_dim),
                                        nn.ReLU(), nn.Linear(hidden_dim, hidden_dim))
        if residual:  # small, not zero: at zero the product of two projections has no gradient
            with torch.no_grad():
                self.projection[-1].weight.mul_(RESIDUAL_INIT)
                self.projection[-1].bias.zero_()
        self.visibility = (nn.Sequential(nn.Linear(self.embed_dim + TOP_SCORES, hidden_dim // 2), nn.ReLU(),
                                         nn.Linear(hidden_dim // 2, 1)) if visibility else None)

    def _embed(self, descriptors: torch.Tensor, tokens: torch.Tensor, pos_embed: torch.Tensor,
               grid: tuple[int, int]) -> torch.Tensor:
        """descriptors (B, N, 2C) attend to tokens (B, C, h, w) -> unit embeddings (B, N, D),
        (B, N, 2C + D) when residual."""
        b, c, h, w = tokens.shape
        if not self.use_context:
            descriptors = torch.cat([descriptors[..., :c], torch.zeros_like(descriptors[..., c:])], dim=-1)
        if self.use_cross_attention:
            context = tokens.flatten(2).transpose(1, 2) + resize_pos_embed(pos_embed, grid, (h, w))
            attended = self.cross_attention(descriptors[..., :c], context)
        else:
            attended = torch.zeros_like(descriptors[..., :c])
        projected = self.projection(torch.cat([attended, descriptors], dim=-1))
        if self.residual:
            projected = torch.cat([F.normalize(descriptors, dim=-1), projected], dim=-1)
        return F.normalize(projected, dim=-1)

    def embed_sources(self, source_desc: torch.Tensor, target_tokens: torch.Tensor) -> torch.Tensor:
        """source_desc (B, K, 2C), target_tokens (B, C, ht, wt) -> (B, K, D)."""
        return self._embed(source_desc, target_tokens, self.target_pos_embed, self.target_grid)

    def embed_candidates(self, candidate_desc: torch.Tensor, source_tokens: torch.Tensor) -> torch.Tensor:
        """candidate_desc (B, N, 2C), source_tokens (B, C, hs, ws) -> (B, N, D)."""
        return self._embed(candidate_desc, source_tokens, self.source_pos_embed, self.source_grid)

    def forward(self, source_desc: torch.Tensor, candidate_desc: torch.Tensor, source_tokens: torch.Tensor,
                target_tokens: torch.Tensor) -> torch.Tensor:
        """source_desc (B, K, 2C), candidate_desc (B, N, 2C), source_tokens (B, C, hs, ws),
        target_tokens (B, C, ht, wt) -> cosine scores (B, K, N)."""
        sources = self.embed_sources(source_desc, target_tokens)  # (B, K, D)
        candidates = self.embed_candidates(candidate_desc, source_tokens)  # (B, N, D)
        return cosine_scores(sources, candidates)

    def visibility_logit(self, source_embedding: torch.Tensor, scores: torch.Tensor,
                         valid: torch.Tensor | None = None) -> torch.Tensor:
        """source_embedding (B, D), scores (B, N), valid (B, N) bool -> logits (B,) that the
        object is visible in the target. Sees the source embedding (which has attended to
        the target image) and the TOP_SCORES best candidate scores."""
        if self.visibility is None:
            raise RuntimeError("this head was built without a visibility output")
        if valid is not None:
            scores = scores.masked_fill(~valid, -1.0)
        if scores.shape[1] < TOP_SCORES:
            scores = F.pad(scores, (0, TOP_SCORES - scores.shape[1]), value=-1.0)
        top = scores.topk(TOP_SCORES, dim=1).values
        return self.visibility(torch.cat([source_embedding, top], dim=1)).squeeze(1)
