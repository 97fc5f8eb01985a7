"""Training configuration: the published recipe as defaults, every value overridable.

A training config names the matcher config whose frozen parts (backbone, proposals,
sizing, context) produce the features, and sets the head, loss and optimiser. Files live in
training/configs/ of the repository; `--set key=value` overrides any value, and the
resolved config is saved next to every run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..config import Range, build_dataclass, check_ranges, check_types, set_dotted
from ..directions import DIRECTIONS
from ..errors import ConfigError


TRAIN_RANGES = (
    Range("data.train_fraction", 0.0, 1.0, open_low=True),
    Range("data.val_fraction", 0.0, 1.0, open_low=True),
    Range("head.hidden_dim", 1),
    Range("head.num_heads", 1),
    Range("loss.temperature", 0.0, open_low=True),
    Range("loss.num_candidates", 2),  # the positive and at least one negative
    Range("loss.adjacency_order", 1),
    Range("loss.visibility_weight", 0.0),
    Range("optim.lr", 0.0, open_low=True),
    Range("optim.min_lr", 0.0),
    Range("optim.weight_decay", 0.0),
    Range("optim.epochs", 1),
    Range("optim.batch_size", 1),
    Range("checkpoint_every", 1),
    Range("log_every", 1),
    Range("num_workers", 0),
)


@dataclass
class DataConfig:
    """train_fraction / val_fraction: share of the split's pairs used (the publication
    trains on 20% of the training pairs and picks the best epoch on 10% of val)."""

    train_split: str = "train"
    val_split: str = "val"
    train_fraction: float = 0.2
    val_fraction: float = 0.1
    cache_dir: str | None = None


@dataclass
class HeadTrainConfig:
    """hidden_dim: projection width D. context / cross_attention: the ablation switches.
    visibility: train the learned visibility output; residual: start from the k-NN and learn
    a correction (modeling/head.py; neither is in the publication)."""

    hidden_dim: int = 768
    num_heads: int = 4
    context: bool = True
    cross_attention: bool = True
    visibility: bool = False
    residual: bool = False


@dataclass
class LossConfig:
    """InfoNCE over num_candidates (the positive + negatives) at temperature;
    negatives: "adjacent" (Hard Negative Adjacent Mining, order adjacency_order) or "random"."""

    temperature: float = 0.07
    num_candidates: int = 32
    negatives: str = "adjacent"
    adjacency_order: int = 2
    visibility_weight: float = 1.0


@dataclass
class OptimConfig:
    """AdamW (default weight decay 0.01), cosine annealing per iteration to min_lr."""

    lr: float = 8e-5
    min_lr: float = 1e-6
    weight_decay: float = 0.01
    epochs: int = 3
    batch_size: int = 24


@dataclass
class TrainConfig:
    matcher: str = "dinov2_fastsam_knn"
    direction: str = "ego2exo"
    data: DataConfig = field(default_factory=DataConfig)
    head: HeadTrainConfig = field(default_factory=HeadTrainConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    seed: int = 42
    checkpoint_every: int = 50
    log_every: int = 10
    num_workers: int = 2  # processes that build the feature cache on the CPU

    def validate(self) -> "TrainConfig":
        check_types(self)
        if self.direction not in DIRECTIONS:
            raise ConfigError(f"direction must be one of {DIRECTIONS}, got {self.direction!r}")
        if self.loss.negatives not in ("adjacent", "random"):
            raise ConfigError(f"loss.negatives must be 'adjacent' or 'random', got {self.loss.negatives!r}")
        check_ranges(self, TRAIN_RANGES)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_train_config(path: str | None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a training config YAML (None: the published defaults) and apply overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        if not Path(path).is_file():
            raise ConfigError(f"training config file not found: {path}")
        data = yaml.safe_load(Path(path).read_text()) or {}
    for key, value in (overrides or {}).items():
        set_dotted(data, key, value)
    return build_dataclass(TrainConfig, data, "").validate()
