"""Matcher configuration: dataclasses, read from YAML, with named configs that ship inside
the package (omama_core/configs/NAME.yaml).

Relative paths in a YAML file are resolved against the file's folder, so a config and its
weights can travel together; paths given as overrides are relative to the working folder.
Unknown keys are an error (a typo must not silently fall back to a default), and every value
is checked against its field's type annotation and, in validate(), its range.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from .directions import DIRECTIONS
from .errors import ConfigError

CONFIG_DIR = Path(__file__).parent / "configs"
BASE_DIR = CONFIG_DIR / "base"  # shared blocks that the shipped configs extend (`extends: NAME`)
BACKBONE_KINDS = ("dinov2", "handcrafted", "convnet")
SIZING_MODES = ("scaled", "official")
CONFIDENCES = ("cosine", "sigmoid")
PATH_KEYS = ("backbone.weights", "proposals.weights", "head.checkpoint")  # file paths in a config


@dataclass
class BackboneConfig:
    """Dense feature extractor.

    kind: "dinov2" (timm DINOv2, any size, with or without registers), "handcrafted" (no
    weights) or "convnet" (a small network learned on the synthetic benchmark; offline).
    model: the timm model name (dinov2 only). weights: for dinov2 a local .pth or
    .safetensors file (original facebookresearch or timm layout), None meaning timm's cache;
    for convnet the file `omama train-backbone` writes. handcrafted_weight (convnet only): the
    share of the handcrafted backbone's cosine in the k-NN score (0: the convnet alone).
    """

    kind: str = "dinov2"
    model: str = "vit_base_patch14_reg4_dinov2"
    weights: str | None = None
    handcrafted_weight: float = 0.0


@dataclass
class SizingConfig:
    """How images, masks and boxes are brought to the backbone's input (omama_core/preprocess.py).

    mode "scaled" (the offline configs): each image is downscaled (never upscaled) so that its
    longer side is at most the view's max side, then each side is floored to a multiple of the
    14-px patch (area averaging); boxes are scaled by the downscale factor.
    mode "official" (the DINOv2 + FastSAM configs): the authors' pipeline: nearest-neighbour
    resize to the 14-multiple size only when the height is not a multiple of 14, masks resized
    to that size, every box in model-input pixels, truncated to integers. An image larger than
    the view's max side is first downscaled to it (the authors' frames were stored that size).
    With no candidates, "official" scores one all-zero candidate, as the authors' code does.
    For the published frames (ego 704x704, exo 960x540) both give 700x700 and 952x532.
    """

    mode: str = "scaled"
    ego_max_side: int = 704
    exo_max_side: int = 960


@dataclass
class ProposalsConfig:
    """Class-agnostic mask candidates for the target image.

    kind: "fastsam" (ultralytics, local .pt weights) or "classical" (scikit-image, no
    weights). imgsz, conf, iou, max_masks: FastSAM's own defaults (imgsz 1024, conf 0.4,
    iou 0.9, max_det 300); the authors never published the settings they extracted with.
    min_area_frac / max_area_frac drop candidates that are tiny or cover most of the image.
    segment_scale: Felzenszwalb scale of the classical generator's leaf regions;
    max_side: the classical generator segments a copy downscaled to this longer side.
    concurrent: run the classical generator in a worker thread while the backbone passes
    run (on the CPU with one torch thread fewer); same candidates, less wall time. FastSAM
    always runs after the backbones: it is torch work itself.
    """

    kind: str = "fastsam"
    weights: str | None = None
    imgsz: int = 1024
    conf: float = 0.4
    iou: float = 0.9
    max_masks: int = 300
    min_area_frac: float = 0.0002
    max_area_frac: float = 0.5
    segment_scale: float = 100.0
    max_side: int = 480
    concurrent: bool = True


@dataclass
class HeadConfig:
    """Matching head. kind: "knn" (cosine of raw descriptors, no training), "official"
    (the authors' released checkpoint) or "trained" (a checkpoint written by `omama train`).
    checkpoint: one path, or a mapping direction -> path for per-direction models."""

    kind: str = "knn"
    checkpoint: str | dict[str, str] | None = None


@dataclass
class SelectionConfig:
    """Which scored candidate answers each query (omama_core/selection/). The defaults are
    the published rule: the best score wins; `visible` thresholds the visibility. Every other
    value is a rule the publication does not have; the ones marked "joint" use the other
    queries of the same `Matcher.match` call and do nothing under the independent protocol.

    whole_object_margin: 0 = the best-scoring candidate; else the largest candidate that
        contains it and scores within the margin (per query).
    whole_object_part_margin: None = off; else every part a container adds must itself
        score within it of the best (per query; needs whole_object_margin > 0).
    exclusive_matches: the queries of one call never share (or nest) candidates (joint).
    reverse_check: penalty weight for candidates that match another region of the source
        image better than the query (per query; 0 = off).
    layout_weight, layout_tolerance, layout_cap: the layout prior: candidates far from where
        the call's other queries put the object lose score (joint; weight 0 = off).
    """

    whole_object_margin: float = 0.0
    whole_object_part_margin: float | None = None
    exclusive_matches: bool = False
    reverse_check: float = 0.0
    layout_weight: float = 0.0
    layout_tolerance: float = 0.05
    layout_cap: float = 0.3


@dataclass
class MatcherConfig:
    """Everything that defines a matcher. See omama_core/configs/*.yaml for examples.

    visibility_threshold: `visible` is visibility >= threshold. confidence: what the
    visibility is when the head has no learned visibility output: the best score ("cosine")
    or its sigmoid ("sigmoid", the publication's confidence, thresholded at 0.5).
    """

    name: str = "custom"
    direction: str = "ego2exo"
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    sizing: SizingConfig = field(default_factory=SizingConfig)
    proposals: ProposalsConfig = field(default_factory=ProposalsConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    context_px: int = 100
    visibility_threshold: float = 0.5
    confidence: str = "cosine"
    selection: SelectionConfig = field(default_factory=SelectionConfig)

    def validate(self) -> "MatcherConfig":
        check_types(self)
        if self.direction not in DIRECTIONS:
            raise ConfigError(f"direction must be one of {DIRECTIONS}, got {self.direction!r}")
        if self.backbone.kind not in BACKBONE_KINDS:
            raise ConfigError(f"backbone.kind must be one of {BACKBONE_KINDS}, got {self.backbone.kind!r}")
        if not 0.0 <= self.backbone.handcrafted_weight < 1.0:
            raise ConfigError(f"backbone.handcrafted_weight must be in [0, 1), got {self.backbone.handcrafted_weight}")
        if self.backbone.handcrafted_weight and self.backbone.kind != "convnet":
            raise ConfigError("backbone.handcrafted_weight applies to backbone.kind 'convnet' only, "
                              f"not {self.backbone.kind!r}")
        if self.proposals.kind not in ("fastsam", "classical"):
            raise ConfigError(f"proposals.kind must be 'fastsam' or 'classical', got {self.proposals.kind!r}")
        if self.head.kind not in ("knn", "official", "trained"):
            raise ConfigError(f"head.kind must be 'knn', 'official' or 'trained', got {self.head.kind!r}")
        if self.head.kind != "knn" and not self.head.checkpoint:
            raise ConfigError(f"head.kind {self.head.kind!r} needs head.checkpoint (a path)")
        check_ranges(self, MATCHER_RANGES)
        if self.proposals.min_area_frac >= self.proposals.max_area_frac:
            raise ConfigError("proposals.min_area_frac must be below proposals.max_area_frac, got "
                              f"{self.proposals.min_area_frac} and {self.proposals.max_area_frac}")
        if self.sizing.mode not in SIZING_MODES:
            raise ConfigError(f"sizing.mode must be one of {SIZING_MODES}, got {self.sizing.mode!r}")
        if self.confidence not in CONFIDENCES:
            raise ConfigError(f"confidence must be one of {CONFIDENCES}, got {self.confidence!r}")
        selection = self.selection
        # the part check refines the margin rule; alone it would do nothing
        if selection.whole_object_part_margin is not None and selection.whole_object_margin <= 0:
            raise ConfigError("selection.whole_object_part_margin needs whole_object_margin > 0 (it checks the "
                              "containers that margin admits); set whole_object_part_margin: null to turn it off")
        if not selection.layout_tolerance < selection.layout_cap:
            raise ConfigError("selection.layout_tolerance must be below selection.layout_cap (fractions of the image "
                              f"diagonal), got {selection.layout_tolerance} and {selection.layout_cap}")
        return self

    def head_checkpoint(self, direction: str | None = None) -> str | None:
        """The head checkpoint path for a direction (mappings are keyed by direction)."""
        checkpoint = self.head.checkpoint
        if isinstance(checkpoint, dict):
            direction = direction or self.direction
            if direction not in checkpoint:
                raise ConfigError(f"head.checkpoint has no entry for direction {direction!r} "
                                  f"(has {sorted(checkpoint)})")
            return checkpoint[direction]
        return checkpoint

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def available_configs() -> list[str]:
    """Names of the configs that ship inside the package."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def load_config(name_or_path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> MatcherConfig:
    """Load a named config or a YAML file, apply dotted overrides ({"proposals.conf": 0.2}).

    Raises ConfigError naming the available configs when the name is unknown.
    """
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = CONFIG_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ConfigError(f"unknown config {str(name_or_path)!r}: not a file, and not one of the "
                              f"shipped configs {available_configs()}")
    elif not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    data = _read_with_bases(path)
    data.setdefault("name", path.stem)
    for key, value in (overrides or {}).items():
        if key in PATH_KEYS or key.startswith("head.checkpoint."):
            value = _from_working_folder(value)  # an override's path is not relative to the YAML's folder
        set_dotted(data, key, value)
    config = config_from_dict(data)
    _resolve_paths(config, path.parent)
    return config.validate()


def _read_with_bases(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A YAML config as a dict, merged over the base it names with `extends: NAME` (a file
    of configs/base/, or a path relative to the YAML): the file's values win, sections merge
    key by key. Bases hold shared blocks; relative paths belong in the extending file."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys, got {type(data).__name__}")
    base_name = data.pop("extends", None)
    if base_name is None:
        return data
    base = Path(str(base_name))
    if base.suffix not in (".yaml", ".yml"):
        base = BASE_DIR / f"{base_name}.yaml"
    elif not base.is_absolute():
        base = path.parent / base
    if not base.is_file():
        known = sorted(p.stem for p in BASE_DIR.glob("*.yaml"))
        raise ConfigError(f"{path}: extends {base_name!r}, which is neither a base config {known} nor a YAML file")
    if base.resolve() in seen:
        raise ConfigError(f"{path}: `extends` goes round in a circle through {base}")
    return _merged(_read_with_bases(base, seen + (path.resolve(),)), data)


def _merged(base: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """base updated by data, sections (dicts) merged recursively."""
    merged = dict(base)
    for key, value in data.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            value = _merged(merged[key], value)
        merged[key] = value
    return merged


def stored_config(data: dict[str, Any]) -> dict[str, Any]:
    """A config dict stored in a checkpoint -> today's layout: checkpoints written before the
    `selection:` section hold its keys at the top level (stored files cannot be rewritten;
    YAML files are read as they are)."""
    data = dict(data)
    moved = {key: data.pop(key) for key in [f.name for f in dataclasses.fields(SelectionConfig)] if key in data}
    if moved:
        data["selection"] = {**moved, **(data.get("selection") or {})}
    return data


def config_from_dict(data: dict[str, Any]) -> MatcherConfig:
    """Build a MatcherConfig from a nested dict; unknown keys raise ConfigError."""
    return build_dataclass(MatcherConfig, data, "")


def build_dataclass(cls, data: dict[str, Any], prefix: str):
    """Build dataclass `cls` from a nested dict, checking every value against the field's
    annotation (nested dataclasses recurse; see check_type). `prefix` is the dotted path of
    this section ("" at the root, "proposals." below), used in error messages."""
    if not isinstance(data, dict):
        raise ConfigError(f"config section {prefix.rstrip('.') or '<root>'!r} must be a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config keys {[prefix + k for k in unknown]}; "
                          f"known in this section: {sorted(fields)}")
    hints = typing.get_type_hints(cls)  # the annotations as types (they are strings under `from __future__`)
    kwargs = {}
    for key, value in data.items():
        if dataclasses.is_dataclass(hints[key]):
            kwargs[key] = build_dataclass(hints[key], value, f"{prefix}{key}.")
        else:
            kwargs[key] = check_type(value, hints[key], prefix + key)
    return cls(**kwargs)


def check_type(value: Any, expected: Any, key: str) -> Any:
    """Return `value` if it fits the annotation `expected`, else raise ConfigError naming the
    key, the value and the expected type.

    Handles bool, int, float, str, None, unions (`X | None`, `str | dict[str, str]`), dict[K, V]
    and list[X]. An int is a valid float (YAML reads `50` as an int) and is kept as it is, so
    that a config's dict, and the cache keys hashed from it, do not change; a bool is neither
    an int nor a float (YAML reads `yes`/`no`/`on`/`off` as bools)."""
    if not _fits(value, expected):
        raise ConfigError(f"{key} must be {_describe(expected)}, got {value!r} ({type(value).__name__})")
    return value


def _fits(value: Any, expected: Any) -> bool:
    if expected is Any:
        return True
    if expected is None or expected is type(None):
        return value is None
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in args)
    if origin is dict:
        key_type, value_type = args or (Any, Any)
        return isinstance(value, dict) and all(_fits(k, key_type) and _fits(v, value_type) for k, v in value.items())
    if origin in (list, tuple):
        item_type = args[0] if args else Any
        return isinstance(value, (list, tuple)) and all(_fits(item, item_type) for item in value)
    if isinstance(expected, type):
        return isinstance(value, expected)
    raise TypeError(f"check_type does not know the annotation {expected!r} of {type(value).__name__} values")


def _describe(expected: Any) -> str:
    """Words for an annotation: 'true or false', 'a number', 'a string or null', ..."""
    if expected is None or expected is type(None):
        return "null"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", Any: "any value"}
    if expected in names:
        return names[expected]
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in args)
    if origin is dict:
        key_type, value_type = args or (Any, Any)
        return f"a mapping of {_plural(key_type)} to {_plural(value_type)}"
    if origin in (list, tuple):
        return f"a list of {_plural(args[0] if args else Any)}"
    return f"a {getattr(expected, '__name__', expected)}"


def _plural(expected: Any) -> str:
    names = {bool: "bools", int: "integers", float: "numbers", str: "strings", Any: "values"}
    return names.get(expected, _describe(expected))


class Range(NamedTuple):
    """A numeric range that validate() checks: low <= value <= high, None unbounded, open_low /
    open_high making that bound strict."""

    key: str  # dotted, e.g. "proposals.conf"
    low: float | None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False


MATCHER_RANGES = (
    Range("sizing.ego_max_side", 1),
    Range("sizing.exo_max_side", 1),
    Range("proposals.imgsz", 1),
    Range("proposals.conf", 0.0, 1.0),
    Range("proposals.iou", 0.0, 1.0),
    Range("proposals.max_masks", 1),  # zero candidates could never answer a query
    Range("proposals.min_area_frac", 0.0, 1.0, open_high=True),
    Range("proposals.max_area_frac", 0.0, 1.0, open_low=True),
    Range("proposals.segment_scale", 0.0, open_low=True),
    Range("proposals.max_side", 1),
    Range("context_px", 0),
    Range("visibility_threshold", -1.0, 1.0),  # a cosine score or a probability
    Range("selection.whole_object_margin", 0.0, 2.0),  # cosine differences
    Range("selection.whole_object_part_margin", 0.0, 2.0),  # null: off
    Range("selection.reverse_check", 0.0, 10.0),  # penalty weights, 0: off
    Range("selection.layout_weight", 0.0, 10.0),
    Range("selection.layout_tolerance", 0.0, 2.0),  # fractions of the image diagonal
    Range("selection.layout_cap", 0.0, 2.0),
)


def check_types(config: Any, prefix: str = "") -> None:
    """check_type every field of a dataclass built in Python rather than by build_dataclass."""
    hints = typing.get_type_hints(type(config))
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        if dataclasses.is_dataclass(hints[item.name]):
            check_types(value, f"{prefix}{item.name}.")
        else:
            check_type(value, hints[item.name], prefix + item.name)


def check_ranges(config: Any, ranges: tuple[Range, ...]) -> None:
    """Raise ConfigError naming the first value of `config` (a dataclass) outside its range;
    None (an optional value switched off) is in every range."""
    for key, low, high, open_low, open_high in ranges:
        value = config
        for part in key.split("."):
            value = getattr(value, part)
        if value is None:
            continue
        below = low is not None and (value <= low if open_low else value < low)
        above = high is not None and (value >= high if open_high else value > high)
        if not (below or above):
            continue
        if high is None:
            wanted = f"above {low}" if open_low else f"at least {low}"
        else:
            wanted = f"in {'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
        raise ConfigError(f"{key} must be {wanted}, got {value!r}")


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    for depth, parent in enumerate(parents):
        data = data.setdefault(parent, {})
        if not isinstance(data, dict):
            raise ConfigError(f"cannot set {key!r}: {'.'.join(parents[:depth + 1])!r} is {data!r}, not a section")
    data[leaf] = value


def _from_working_folder(value: Any) -> Any:
    """Override paths (command line, API) are relative to the working folder: make them absolute."""
    if isinstance(value, str):
        return os.path.abspath(os.path.expanduser(value))
    if isinstance(value, dict):
        return {k: _from_working_folder(v) for k, v in value.items()}
    return value


def _resolve(path: str | None, base: Path) -> str | None:
    if path is None or os.path.isabs(os.path.expanduser(path)):
        return os.path.expanduser(path) if path else path
    return str((base / path).resolve())


def _resolve_paths(config: MatcherConfig, base: Path) -> None:
    config.backbone.weights = _resolve(config.backbone.weights, base)
    config.proposals.weights = _resolve(config.proposals.weights, base)
    if isinstance(config.head.checkpoint, dict):
        config.head.checkpoint = {k: _resolve(v, base) for k, v in config.head.checkpoint.items()}
    else:
        config.head.checkpoint = _resolve(config.head.checkpoint, base)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Parse command-line `key=value` overrides; values are read as YAML (numbers, lists...)."""
    overrides = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. proposals.conf=0.2)")
        key, value = item.split("=", 1)
        try:
            overrides[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as error:
            problem = getattr(error, "problem", None) or error
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({problem})") from None
    return overrides
