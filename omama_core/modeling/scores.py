"""Cosine scores: the one scoring function of inference (Matcher) and training."""

from __future__ import annotations

import torch


def cosine_scores(sources: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Unit embeddings sources (..., K, D) and candidates (..., N, D) -> scores (..., K, N),
    the cosine of every source with every candidate."""
    return sources @ candidates.transpose(-1, -2)
