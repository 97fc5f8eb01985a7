"""The ego<->exo cross-attention block, and the resizing of its position embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CrossAttention(nn.Module):
    """One attention block as published: shared LayerNorm on queries and keys/values,
    multi-head attention, output projection WITHOUT a residual from the query, then a
    residual MLP on a LayerNorm.

        q = Wq LN(queries)   k = Wk LN(context)   v = Wv LN(context)      (LN shared)
        y = Wo MHA(q, k, v)                        softmax(q k^T / sqrt(C / heads)) v
        y = y + MLP(LN'(y))                        MLP: Linear C->C, GELU, Linear C->C
    """

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
    whose token grid differs from the one the model was trained on (not published: the
    publication ties a model to its grids)."""
    if tuple(grid) == tuple(new_grid):
        return pos_embed
    c = pos_embed.shape[-1]
    image = pos_embed.reshape(1, grid[0], grid[1], c).permute(0, 3, 1, 2)
    image = F.interpolate(image, size=new_grid, mode="bicubic", align_corners=False)
    return image.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], c)
