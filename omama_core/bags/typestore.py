"""The message types of a bag: ROS 2's standard ones plus the project's (msg/*.msg), for
`rosbags`, so that bags are written and read without a ROS install.

The project's types are registered from the text of msg/*.msg (the repository's msg/, or
share/omama_ros/msg of an install); type hashes (RIHS01) come from `Typestore.hash_rihs01`,
so a bag written here carries the same hashes as one recorded by ROS.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

from ..errors import DatasetError

PACKAGE = "omama_ros"
OMAMA_TYPES = ("Query", "QueryArray", "Match", "MatchArray")  # dependencies first
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
QUERY_ARRAY = f"{PACKAGE}/msg/QueryArray"
MATCH_ARRAY = f"{PACKAGE}/msg/MatchArray"
CLOCK = "rosgraph_msgs/msg/Clock"


def msg_dir() -> Path:
    """The folder holding the project's .msg files: the repository's msg/, else
    share/omama_ros/msg under AMENT_PREFIX_PATH or this Python's prefix."""
    candidates = [Path(__file__).resolve().parents[2] / "msg"]
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p] + [sys.prefix]
    candidates += [Path(prefix) / "share" / PACKAGE / "msg" for prefix in prefixes]
    for folder in candidates:
        if all((folder / f"{name}.msg").is_file() for name in OMAMA_TYPES):
            return folder
    raise DatasetError("cannot find the omama_ros message definitions (msg/Query.msg, ...): looked in "
                       + ", ".join(str(c) for c in candidates)
                       + "; run from the repository or source the workspace that installed omama_ros")


def require_rosbags() -> None:
    """DatasetError with the fix when the `rosbags` package is missing."""
    try:
        import rosbags  # noqa: F401
    except ImportError:
        raise DatasetError("omama bag needs the rosbags package (pure Python, no ROS needed): "
                           "pip install rosbags (it is in requirements/ros.txt)") from None


@functools.lru_cache(maxsize=1)
def typestore():
    """A rosbags Typestore with ROS 2 Kilted's standard types and omama_ros/msg/*."""
    require_rosbags()
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    folder = msg_dir()
    types = {}
    for name in OMAMA_TYPES:
        types.update(get_types_from_msg((folder / f"{name}.msg").read_text(), f"{PACKAGE}/msg/{name}"))
    store.register(types)
    return store


def message_class(msgtype: str):
    """The rosbags dataclass of a type name such as "sensor_msgs/msg/Image"."""
    return typestore().types[msgtype]
