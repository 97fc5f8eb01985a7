"""The matching head: ego<->exo cross-attention, projection MLP, cosine scores, and (beyond
the publication) a learned visibility output.

Shapes: C is the backbone's channel count, D the projection width. The source mask's object
descriptor attends to the TARGET image's tokens, each candidate's to the SOURCE image's
tokens, through one block with shared weights; rho = [attended o; o; c] (3C) is projected to
D and L2-normalised, and a candidate's score is its cosine with the source.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .errors import CheckpointMismatchError, WeightsNotFoundError

CHECKPOINT_FORMAT = "omama-head/1"
TOP_SCORES = 4  # how many of the best candidate scores the visibility head sees


class CrossAttention(nn.Module):
    """One attention block as published: shared LayerNorm on queries and keys/values,
    multi-head attention, output projection WITHOUT a residual from the query, then a
    residual MLP on a LayerNorm."""

    def __init__(self, dim: int, num_heads: int = 4):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.norm_input = nn.LayerNorm(dim)
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.project = nn.Sequential(nn.Linear(dim, dim))
        self.norm_output = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """queries (B, N, C), context (B, L, C) -> (B, N, C)."""
        b, n, c = queries.shape
        heads = self.num_heads
        q = self.query(self.norm_input(queries)).view(b, n, heads, c // heads).transpose(1, 2)
        context = self.norm_input(context)
        k = self.key(context).view(b, -1, heads, c // heads).transpose(1, 2)
        v = self.value(context).view(b, -1, heads, c // heads).transpose(1, 2)
        attended = F.scaled_dot_product_attention(q, k, v)  # softmax(QK^T / sqrt(C/heads)) V
        y = self.project(attended.transpose(1, 2).reshape(b, n, c))
        return y + self.mlp(self.norm_output(y))


def resize_pos_embed(pos_embed: torch.Tensor, grid: tuple[int, int], new_grid: tuple[int, int]) -> torch.Tensor:
    """(1, h*w, C) position embedding of grid (h, w) -> (1, h'*w', C), bicubic, for images
    whose token grid differs from the one the model was trained on."""
    if tuple(grid) == tuple(new_grid):
        return pos_embed
    c = pos_embed.shape[-1]
    image = pos_embed.reshape(1, grid[0], grid[1], c).permute(0, 3, 1, 2)
    image = F.interpolate(image, size=new_grid, mode="bicubic", align_corners=False)
    return image.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], c)


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
        """source_desc (B, 1, 2C), candidate_desc (B, N, 2C), source_tokens (B, C, hs, ws),
        target_tokens (B, C, ht, wt) -> cosine scores (B, N)."""
        source = self.embed_sources(source_desc, target_tokens)  # (B, 1, D)
        candidates = self.embed_candidates(candidate_desc, source_tokens)  # (B, N, D)
        return (candidates * source).sum(-1)

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

    # ---- checkpoints -------------------------------------------------------------------
    def save(self, path: str, **extra: Any) -> None:
        """Write {format, head_args, state_dict, **extra} atomically (temp file + rename)."""
        payload = {"format": CHECKPOINT_FORMAT, "head_args": self.args, "state_dict": self.state_dict(), **extra}
        temporary = f"{path}.tmp"
        torch.save(payload, temporary)
        os.replace(temporary, path)

    @classmethod
    def from_checkpoint(cls, path: str, map_location: str = "cpu") -> "MatchingHead":
        """Load a head written by `save` (an `omama train` checkpoint), strictly."""
        payload = _load(path, map_location)
        if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointMismatchError(
                f"{path} is not an omama head checkpoint (format {payload.get('format') if isinstance(payload, dict) else type(payload).__name__!r}, "
                f"expected {CHECKPOINT_FORMAT!r}); for the authors' released file use head.kind: official")
        head = cls(**payload["head_args"])
        _load_strict(head, payload["state_dict"], path)
        return head

    @classmethod
    def from_official(cls, path: str, source_grid: tuple[int, int] | None = None,
                      target_grid: tuple[int, int] | None = None, map_location: str = "cpu") -> "MatchingHead":
        """Load the authors' released checkpoint strictly (key layout: docs/method.md).

        Every key must map to a parameter of this head and every parameter must be filled;
        otherwise CheckpointMismatchError lists the missing and unexpected keys by name. The
        untrained `mlp_visible.*` block of the release is recognised and dropped.
        """
        state = _load(path, map_location)
        for wrapper in ("state_dict", "model"):
            if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
                state = state[wrapper]
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise CheckpointMismatchError(f"{path} does not hold a state dict of tensors")
        state = {k.removeprefix("module."): v for k, v in state.items()}
        mapped, unexpected = {}, []
        for key, value in state.items():
            if key.startswith("mlp_visible."):
                continue  # the release's visibility MLP: never trained, never used
            for official, ours in _OFFICIAL_PREFIXES:
                if key == official or key.startswith(official + "."):
                    mapped[ours + key[len(official):]] = value
                    break
            else:
                unexpected.append(key)
        if unexpected:
            raise CheckpointMismatchError(f"{path}: unexpected keys {sorted(unexpected)}")
        for name in ("source_pos_embed", "target_pos_embed"):
            if name not in mapped:
                raise CheckpointMismatchError(f"{path}: missing keys {[_official_name(name)]}")
        dim = mapped["target_pos_embed"].shape[-1]
        hidden = mapped.get("projection.4.weight", torch.empty(dim, 0)).shape[0]
        source_grid = source_grid or _grid_from_count(mapped["source_pos_embed"].shape[1], "pos_embed_Q")
        target_grid = target_grid or _grid_from_count(mapped["target_pos_embed"].shape[1], "pos_embed_T")
        head = cls(dim=dim, source_grid=source_grid, target_grid=target_grid, hidden_dim=hidden)
        _load_strict(head, mapped, path, rename=_official_name)
        return head


_OFFICIAL_PREFIXES = (
    ("pos_embed_Q", "source_pos_embed"),
    ("pos_embed_T", "target_pos_embed"),
    ("CROSS_context_attn", "cross_attention"),
    ("mlp.mlp", "projection"),
)
_PUBLISHED_GRIDS = {2500: (50, 50), 2584: (38, 68)}


def _official_name(key: str) -> str:
    for official, ours in _OFFICIAL_PREFIXES:
        if key == ours or key.startswith(ours + "."):
            return official + key[len(ours):]
    return key


def _grid_from_count(count: int, key: str) -> tuple[int, int]:
    if count in _PUBLISHED_GRIDS:
        return _PUBLISHED_GRIDS[count]
    side = math.isqrt(count)
    if side * side == count:
        return side, side
    raise CheckpointMismatchError(f"{key} has {count} positions, which is not a published grid "
                                  f"(2500 = 50x50, 2584 = 38x68): pass the grid explicitly")


def _load(path: str, map_location: str):
    if not os.path.isfile(path):
        raise WeightsNotFoundError(f"head checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise WeightsNotFoundError(f"could not read head checkpoint {path} (corrupt or not a torch file): "
                                   f"{type(error).__name__}: {str(error)[:200]}") from None


def _load_strict(head: nn.Module, state: dict[str, torch.Tensor], path: str, rename=lambda k: k) -> None:
    expected = head.state_dict()
    missing = sorted(rename(k) for k in expected.keys() - state.keys())
    unexpected = sorted(rename(k) for k in state.keys() - expected.keys())
    wrong = sorted(f"{rename(k)}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
                   for k in expected.keys() & state.keys() if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        raise CheckpointMismatchError(f"{path} does not fit the head: missing keys {missing}, "
                                      f"unexpected keys {unexpected}, shape mismatches {wrong}")
    head.load_state_dict(state, strict=True)
