"""The node's parameters: one table with defaults, descriptions, ranges and allowed values.

docs/ros.md, config/omama.yaml and the launch file use the same names; tests check that.
"""

from __future__ import annotations

from dataclasses import dataclass

from omama_core.directions import DIRECTIONS

# Parameters that may change while the node runs (the rest are read once at start-up).
DYNAMIC = ("visibility_threshold", "publish_overlay")


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: default, description, numeric range or allowed strings."""

    name: str
    default: object
    description: str
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    choices: tuple[str, ...] = ()


PARAMS = (
    ParamSpec("config", "default",
              "Matcher config: a shipped name (default, knn, ...), a YAML file or an `omama train` checkpoint (.pt)"),
    ParamSpec("device", "auto", "Compute device: auto (cuda when available), cpu, cuda or cuda:N"),
    ParamSpec("half", False, "Half precision (float16) inference; used on CUDA only"),
    ParamSpec("direction", "ego2exo", "Which way queries go: ego2exo (masks on ego images, answers on exo) "
              "or exo2ego", choices=DIRECTIONS),
    ParamSpec("visibility_threshold", 0.5,
              "Visibility score at or above which an object is reported visible; changeable live. "
              "Default: the matcher config's value", low=-1.0, high=1.0),
    ParamSpec("sync_slop", 0.02, "Ego and exo images pair only when their stamps are strictly closer than this (s)",
              low=0.001, high=1.0),
    ParamSpec("sync_queue_size", 10, "Images kept per camera while waiting for the other camera's; also "
              "frame pairs kept for late queries and query arrays kept waiting for their pair",
              low=1, high=100, step=1),
    ParamSpec("qos_reliability", "best_effort", "Image subscriptions' reliability (sensor-data QoS by default)",
              choices=("best_effort", "reliable")),
    ParamSpec("qos_depth", 5, "Image subscriptions' history depth", low=1, high=100, step=1),
    ParamSpec("image_transport", "raw", "raw: sensor_msgs/Image on ego/image and exo/image; compressed: "
              "sensor_msgs/CompressedImage (jpeg/png) on ego/image/compressed and exo/image/compressed",
              choices=("raw", "compressed")),
    ParamSpec("publish_overlay", True, "Publish ~/overlay (rgb8 target image with the matches drawn)"),
    ParamSpec("diagnostics_period", 1.0, "Seconds between diagnostics messages on /diagnostics",
              low=0.1, high=60.0),
)

BY_NAME = {spec.name: spec for spec in PARAMS}


def descriptor(spec: ParamSpec):
    """rcl_interfaces/ParameterDescriptor for a spec (ranges and read-only flag filled in)."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    text = spec.description
    if spec.choices:
        text += f" (one of: {', '.join(spec.choices)})"
    result = ParameterDescriptor(name=spec.name, description=text, read_only=spec.name not in DYNAMIC)
    if spec.low is not None and isinstance(spec.default, float):
        result.floating_point_range = [FloatingPointRange(from_value=float(spec.low), to_value=float(spec.high),
                                                          step=0.0)]
    elif spec.low is not None:
        result.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high),
                                             step=int(spec.step or 1))]
    return result


def check_choice(name: str, value) -> str | None:
    """None when `value` is allowed for parameter `name`, else the reason it is not."""
    spec = BY_NAME[name]
    if spec.choices and value not in spec.choices:
        return f"parameter {name}={value!r} is not one of {', '.join(spec.choices)}"
    return None
