"""What an omama bag holds: topic names, stamps of dataset frames, and the take segments.

Topics (the node's inputs under their default names, plus the ground truth):

    /ego/image, /exo/image          sensor_msgs/Image (or CompressedImage on .../compressed)
    /queries                        omama_ros/QueryArray on the source image's stamp
    /ground_truth                   omama_ros/MatchArray: the TARGET camera's true masks, one Match per
                                    annotated object (visible false and an empty mask when not visible)
    /clock                          rosgraph_msgs/Clock (optional)

Dataset frame numbers are 30 fps: frame f of a segment is stamped start + f/30 s. A bag
exported from a dataset keeps one segment per (take, ego camera, exo camera) in the bag's
metadata (rosbag2 custom_data, key "omama"), so that scores keep their take, camera and frame
names; a bag recorded on a robot has no such record and is one segment named after the bag.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

FPS = 30
NS = 1_000_000_000
CUSTOM_DATA_KEY = "omama"


@dataclass
class Topics:
    """Topic names of a bag (options of every `omama bag` command)."""

    ego: str = "/ego/image"
    exo: str = "/exo/image"
    queries: str = "/queries"
    ground_truth: str = "/ground_truth"
    clock: str = "/clock"
    compressed: bool = False  # images as CompressedImage on <ego>/compressed and <exo>/compressed

    @property
    def ego_image(self) -> str:
        return self.ego + "/compressed" if self.compressed else self.ego

    @property
    def exo_image(self) -> str:
        return self.exo + "/compressed" if self.compressed else self.exo


@dataclass
class Segment:
    """One (take, ego camera, exo camera) stretch of an exported bag; frame f at
    start_ns + frame_offset_ns(f)."""

    take: str
    ego_camera: str
    exo_camera: str
    start_ns: int
    end_ns: int
    subsample_idx: list[int] = field(default_factory=list)

    def stamp(self, frame: int) -> int:
        return self.start_ns + frame_offset_ns(frame)

    def frame(self, stamp: int) -> int:
        return round((stamp - self.start_ns) * FPS / NS)

    def holds(self, stamp: int) -> bool:
        return self.start_ns <= stamp <= self.end_ns


def frame_offset_ns(frame: int) -> int:
    """Offset of a 30 fps frame number from its segment's start, integer nanoseconds."""
    return round(frame * NS / FPS)


@dataclass
class BagInfo:
    """The "omama" custom data of an exported bag."""

    direction: str
    segments: list[Segment]
    source: str = ""  # dataset root and split it was exported from

    def to_json(self) -> str:
        return json.dumps({"direction": self.direction, "source": self.source,
                           "segments": [asdict(s) for s in self.segments]})

    @classmethod
    def from_json(cls, text: str) -> "BagInfo":
        data = json.loads(text)
        return cls(data["direction"], [Segment(**s) for s in data["segments"]], data.get("source", ""))

    def segment_of(self, stamp: int) -> Segment | None:
        return next((s for s in self.segments if s.holds(stamp)), None)
