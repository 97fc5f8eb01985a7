"""One training step: the head's forward and the losses (InfoNCE and visibility)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..modeling import MatchingHead, cosine_scores


class TrainingStep(nn.Module):
    """Head + losses in one forward, so that DDP sees every parameter used."""

    def __init__(self, head: MatchingHead, temperature: float, visibility_weight: float):
        super().__init__()
        self.head, self.temperature, self.visibility_weight = head, temperature, visibility_weight

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        source = self.head.embed_sources(batch["source_desc"][:, None], batch["target_tokens"])  # (B, 1, D)
        candidates = self.head.embed_candidates(batch["candidates"], batch["source_tokens"])  # (B, K, D)
        scores = cosine_scores(source, candidates)[:, 0]  # (B, K)
        visible = batch["visible"].float()
        # InfoNCE; a sample whose object is not visible adds zero but counts in the mean
        per_sample = F.cross_entropy(scores / self.temperature, batch["label"], reduction="none") * visible
        match_loss = per_sample.mean()
        out = {"match_loss": match_loss,
               "top1": ((scores.argmax(1) == batch["label"]).float() * visible).sum() / visible.sum().clamp(min=1)}
        loss = match_loss
        if self.head.visibility is not None:
            with torch.no_grad():  # the visibility output learns on the matcher's scores, not the reverse
                all_scores = proposal_scores(self.head, batch, source)
            logits = self.head.visibility_logit(source[:, 0].detach(), all_scores, batch["valid"])
            # class-balanced: most objects are visible, and the metric is balanced accuracy
            share = visible.mean().clamp(0.05, 0.95)
            weights = visible * (0.5 / share) + (1 - visible) * (0.5 / (1 - share))
            visibility_loss = F.binary_cross_entropy_with_logits(logits, visible, weight=weights)
            out["visibility_loss"] = visibility_loss
            loss = loss + self.visibility_weight * visibility_loss
        out["loss"] = loss
        return out


def proposal_scores(head: MatchingHead | None, batch: dict[str, torch.Tensor],
                    source: torch.Tensor | None = None) -> torch.Tensor:
    """Scores (B, P) of every proposal of the target view, -1 on padding. head None: the
    k-NN variant (cosine of the raw descriptors)."""
    if head is None:
        source = F.normalize(batch["source_desc"], dim=-1)[:, None]  # (B, 1, 2C)
        scores = cosine_scores(source, F.normalize(batch["proposals"], dim=-1))[:, 0]
    else:
        if source is None:
            source = head.embed_sources(batch["source_desc"][:, None], batch["target_tokens"])
        scores = cosine_scores(source, head.embed_candidates(batch["proposals"], batch["source_tokens"]))[:, 0]
    return scores.masked_fill(~batch["valid"], -1.0)
