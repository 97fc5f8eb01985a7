"""The two matching directions and the views they join, named once.

A direction is "<source view>2<target view>": query masks are given on the source view's
image and answered on the target view's. Plain Python (no torch), so anything may import it.
"""

from __future__ import annotations

from typing import TypeVar

from .errors import ConfigError

VIEWS = ("ego", "exo")
DIRECTIONS = ("ego2exo", "exo2ego")

T = TypeVar("T")


def views(direction: str) -> tuple[str, str]:
    """(source view, target view) of a direction: "exo2ego" -> ("exo", "ego").
    Raises ConfigError naming the direction when it is not one of DIRECTIONS."""
    if direction not in DIRECTIONS:
        raise ConfigError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    source, target = direction.split("2")
    return source, target


def source_view(direction: str) -> str:
    """"ego" for ego2exo, "exo" for exo2ego."""
    return views(direction)[0]


def target_view(direction: str) -> str:
    """"exo" for ego2exo, "ego" for exo2ego."""
    return views(direction)[1]


def source_and_target(direction: str, ego: T, exo: T) -> tuple[T, T]:
    """Order a pair of per-view things (cameras, images, masks) as (source, target):
    (ego, exo) for ego2exo, (exo, ego) for exo2ego."""
    return (ego, exo) if source_view(direction) == "ego" else (exo, ego)
