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

from ..config import DIRECTIONS, build_dataclass, set_dotted
from ..errors import ConfigError


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
        if self.direction not in DIRECTIONS:
            raise ConfigError(f"direction must be one of {DIRECTIONS}, got {self.direction!r}")
        if self.loss.negatives not in ("adjacent", "random"):
            raise ConfigError(f"loss.negatives must be 'adjacent' or 'random', got {self.loss.negatives!r}")
        if self.loss.num_candidates < 2:
            raise ConfigError("loss.num_candidates must be at least 2 (the positive and one negative)")
        for name, value in (("data.train_fraction", self.data.train_fraction), ("data.val_fraction", self.data.val_fraction)):
            if not 0 < value <= 1:
                raise ConfigError(f"{name} must be in (0, 1], got {value}")
        if self.optim.batch_size < 1 or self.optim.epochs < 1 or self.checkpoint_every < 1:
            raise ConfigError("optim.batch_size, optim.epochs and checkpoint_every must be at least 1")
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
