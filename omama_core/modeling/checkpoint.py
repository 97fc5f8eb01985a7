"""Head checkpoints: omama's own format (`omama train`) and the authors' released file,
both loaded strictly (every key must fit; errors name the missing, unexpected and
mis-shaped keys). The released file's key layout: docs/method.md."""

from __future__ import annotations

import math
import os
from typing import Any

import torch
from torch import nn

from ..config import MatcherConfig
from ..errors import CheckpointMismatchError, WeightsNotFoundError
from ..files import atomic_write
from .head import MatchingHead

CHECKPOINT_FORMAT = "omama-head/1"

_OFFICIAL_PREFIXES = (
    ("pos_embed_Q", "source_pos_embed"),
    ("pos_embed_T", "target_pos_embed"),
    ("CROSS_context_attn", "cross_attention"),
    ("mlp.mlp", "projection"),
)
_PUBLISHED_GRIDS = {2500: (50, 50), 2584: (38, 68)}


def load_configured_head(config: MatcherConfig) -> MatchingHead | None:
    """The head config.head names: None for "knn", the authors' release for "official",
    an `omama train` checkpoint for "trained" (per direction when a mapping)."""
    if config.head.kind == "official":
        return load_official_head(config.head_checkpoint())
    if config.head.kind == "trained":
        return load_head(config.head_checkpoint())
    return None


def save_head(head: MatchingHead, path: str, **extra: Any) -> None:
    """Write {format, head_args, state_dict, **extra} atomically (temp file + rename)."""
    payload = {"format": CHECKPOINT_FORMAT, "head_args": head.args, "state_dict": head.state_dict(), **extra}
    atomic_write(path, lambda temporary: torch.save(payload, temporary))


def read_checkpoint(path: str, map_location: str = "cpu"):
    """torch.load with weights_only; a missing or unreadable file is a WeightsNotFoundError."""
    if not os.path.isfile(path):
        raise WeightsNotFoundError(f"head checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise WeightsNotFoundError(f"could not read head checkpoint {path} (corrupt or not a torch file): "
                                   f"{type(error).__name__}: {str(error)[:200]}") from None


def load_head(path: str, map_location: str = "cpu") -> MatchingHead:
    """A head written by `save_head` (an `omama train` checkpoint), loaded strictly."""
    payload = read_checkpoint(path, map_location)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointMismatchError(
            f"{path} is not an omama head checkpoint (format {found!r}, expected {CHECKPOINT_FORMAT!r}); "
            "for the authors' released file use head.kind: official")
    head = MatchingHead(**payload["head_args"])
    load_strict(head, payload["state_dict"], path)
    return head


def load_official_head(path: str, source_grid: tuple[int, int] | None = None,
                       target_grid: tuple[int, int] | None = None, map_location: str = "cpu") -> MatchingHead:
    """The authors' released checkpoint, loaded strictly.

    Every key must map to a parameter of the head and every parameter must be filled;
    otherwise CheckpointMismatchError lists the missing and unexpected keys by their released
    names. The untrained `mlp_visible.*` block of the release is recognised and dropped. The
    grids default to the published ones, read from the position embeddings' sizes.
    """
    state = read_checkpoint(path, map_location)
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
    head = MatchingHead(dim=dim, source_grid=source_grid, target_grid=target_grid, hidden_dim=hidden)
    load_strict(head, mapped, path, rename=_official_name)
    return head


def load_strict(module: nn.Module, state: dict[str, torch.Tensor], path: str, rename=lambda k: k) -> None:
    """module.load_state_dict(state, strict=True), with an error that names the missing,
    unexpected and mis-shaped keys (through `rename`, e.g. into the released names)."""
    expected = module.state_dict()
    missing = sorted(rename(k) for k in expected.keys() - state.keys())
    unexpected = sorted(rename(k) for k in state.keys() - expected.keys())
    wrong = sorted(f"{rename(k)}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
                   for k in expected.keys() & state.keys() if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        raise CheckpointMismatchError(f"{path} does not fit the head: missing keys {missing}, "
                                      f"unexpected keys {unexpected}, shape mismatches {wrong}")
    module.load_state_dict(state, strict=True)


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
