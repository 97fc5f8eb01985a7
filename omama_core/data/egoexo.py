"""Ego-Exo4D correspondence pairs: the official sample list, and a dataset that loads them.

Dataset root (the processed layout the O-MaMa community uses, plus optional raw files)::

    ROOT/split.json                      {"train": [take, ...], "val": [...], "test": [...]}
    ROOT/{take}/annotation.json          {"masks": obj -> cam -> frame -> RLE, "subsample_idx",
                                          optional "annotated_frames": obj -> cam -> [frames]}
    ROOT/{take}/{camera}/{frame}.jpg     1 fps frames (ego 704x704, exo 960x540 for real data)
    ROOT/relations_{split}.json          optional raw annotations (or ROOT/annotations/...)

Samples follow the official scoring rules (``correspondence/evaluation/evaluate_egoexo.py``):
for every object, its single ego camera (name containing ``aria``) is paired with each of its
exo cameras; Ego2Exo has one sample per ego frame with a mask that is among the exo camera's
annotated frames (Exo2Ego swaps the roles), and ``gt_exists`` says whether the target camera
has a mask at that frame. Anything that cannot be used is skipped and counted in ``skipped``.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import cv2
import numpy as np
from tqdm import tqdm

from ..directions import DIRECTIONS, source_and_target
from ..errors import DatasetError, OmamaError
from ..image_io import read_image
from .annotations import (
    ANNOTATION_FILE,
    SPLITS_FILE,
    TakeAnnotation,
    entry_to_rle,
    find_relations_file,
    is_ego_camera,
    read_gt_file,
    read_processed_take,
    read_relations,
    read_split,
)
from .rle import decode_rle

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class SampleRef:
    """One scored sample, without pixels: which object, which camera pair, which frame."""

    take: str
    object_name: str
    source_camera: str
    target_camera: str
    frame: int
    gt_exists: bool

    @property
    def pair_key(self) -> str:
        """Camera-pair key of the submission format: ``{source}_{target}``."""
        return f"{self.source_camera}_{self.target_camera}"


@dataclass
class Sample:
    """A loaded sample. Images HxWx3 uint8 RGB; masks (H, W) bool at their image's size."""

    take: str
    object_name: str
    source_camera: str
    target_camera: str
    frame: int
    source_image: np.ndarray  # (Hs, Ws, 3) uint8
    source_mask: np.ndarray  # (Hs, Ws) bool
    target_image: np.ndarray  # (Ht, Wt, 3) uint8
    target_mask: np.ndarray | None  # (Ht, Wt) bool, None when the object is not visible there
    gt_exists: bool


def check_direction(direction: str) -> str:
    """Return ``direction`` if it is "ego2exo" or "exo2ego", else raise DatasetError."""
    if direction not in DIRECTIONS:
        raise DatasetError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    return direction


def build_samples(
    take: TakeAnnotation,
    direction: str,
    skipped: Counter,
    notes: Counter,
    has_frame: Callable[[str, int], bool] | None = None,
) -> list[SampleRef]:
    """The scored samples of one take, in the official order (object, exo camera, frame).

    has_frame(camera, frame) -> bool: whether the frame image exists (None: do not check).
    Unusable samples are counted in ``skipped`` (reason -> count); ``notes`` counts fallbacks.
    """
    check_direction(direction)
    samples = []
    for obj, cams in take.masks.items():
        ego_cams = [c for c in cams if is_ego_camera(c)]
        if len(ego_cams) != 1:
            skipped["objects_without_ego_camera" if not ego_cams else "objects_with_several_ego_cameras"] += 1
            continue
        ego = ego_cams[0]
        for exo in (c for c in cams if not is_ego_camera(c)):
            source, target = source_and_target(direction, ego, exo)
            annotated = _annotated_frames(take, obj, target, notes)
            target_frames = {int(key): key for key in cams[target]}
            for key in sorted(cams[source], key=int):
                frame = int(key)
                if frame not in annotated:
                    continue  # not scored by the official rules; not a skip
                target_key = target_frames.get(frame)
                reason = None
                if cams[source][key] is None:
                    reason = "null_source_mask"
                elif target_key is not None and cams[target][target_key] is None:
                    reason = "null_target_mask"
                elif has_frame is not None and not has_frame(source, frame):
                    reason = "missing_source_image"
                elif has_frame is not None and not has_frame(target, frame):
                    reason = "missing_target_image"
                if reason:
                    skipped[reason] += 1
                    continue
                samples.append(SampleRef(take.take, obj, source, target, frame, target_key is not None))
    return samples


class CorrespondenceDataset:
    """Scored samples of one split and direction of a dataset root (layout in the module doc).

    ``samples`` lists every sample without loading pixels; ``dataset[i]`` loads one ``Sample``.
    ``skipped`` counts what could not be used (reason -> count) and ``notes`` counts fallbacks
    such as annotated frames inferred from the masks. ``require_images=False`` builds the index
    from annotations alone (enough to score a submission file).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "test",
        direction: str = "ego2exo",
        require_images: bool = True,
        takes: Iterable[str] | None = None,
    ) -> None:
        self.root: Path | None = Path(root)
        self.split = split
        self.direction = check_direction(direction)
        self.skipped: Counter = Counter()
        self.notes: Counter = Counter()
        self.errors: list[str] = []  # first messages behind the skip counts, for reports
        if not self.root.is_dir():
            raise DatasetError(f"dataset root {self.root} is not a directory")
        relations_path = find_relations_file(self.root, split)
        if (self.root / SPLITS_FILE).is_file():
            take_ids = read_split(self.root, split)
        elif relations_path is not None:
            take_ids = list(read_relations(relations_path).keys())
        else:
            raise DatasetError(
                f"{self.root} is not a dataset root: it has neither {SPLITS_FILE} nor relations_{split}.json "
                f"(expected ROOT/{SPLITS_FILE} listing takes per split and ROOT/{{take}}/{ANNOTATION_FILE}; "
                "see docs/data.md, or make one with `omama synth`)"
            )
        if takes is not None:
            wanted = set(takes)
            take_ids = [t for t in take_ids if t in wanted]
        self.takes = self._read_takes(take_ids, relations_path)
        self._frames: dict[tuple[str, str], dict[int, str]] = {}
        self.samples: list[SampleRef] = []
        for take in self.takes.values():
            has_frame = None
            if require_images:
                has_frame = lambda cam, frame, t=take.take: self._frame_file(t, cam, frame) is not None  # noqa: E731
            self.samples += build_samples(take, direction, self.skipped, self.notes, has_frame)

    @classmethod
    def from_annotations(cls, takes: dict[str, TakeAnnotation], direction: str) -> "CorrespondenceDataset":
        """An image-less dataset over already read annotations (e.g. ``read_gt_file``)."""
        self = cls.__new__(cls)
        self.root, self.split, self.direction = None, "", check_direction(direction)
        self.skipped, self.notes, self.errors = Counter(), Counter(), []
        self.takes, self._frames, self.samples = dict(takes), {}, []
        for take in self.takes.values():
            self.samples += build_samples(take, direction, self.skipped, self.notes)
        return self

    @classmethod
    def from_gt_file(cls, path: str | os.PathLike, direction: str) -> "CorrespondenceDataset":
        """An image-less dataset over the official ground-truth file (``correspondence-gt.json``)."""
        return cls.from_annotations(read_gt_file(path), direction)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        """Load sample ``index``; raises DatasetError for an unreadable image or mask."""
        ref = self.samples[index]
        source_image = self.load_image(ref.take, ref.source_camera, ref.frame)
        target_image = self.load_image(ref.take, ref.target_camera, ref.frame)
        source_mask = self.load_mask(ref.take, ref.object_name, ref.source_camera, ref.frame, source_image.shape[:2])
        target_mask = None
        if ref.gt_exists:
            target_mask = self.load_mask(ref.take, ref.object_name, ref.target_camera, ref.frame,
                                         target_image.shape[:2])
        return Sample(
            ref.take, ref.object_name, ref.source_camera, ref.target_camera, ref.frame,
            source_image, source_mask, target_image, target_mask, ref.gt_exists,
        )

    def groups(self) -> list[list[int]]:
        """Sample indices grouped by (take, frame, source camera, target camera), in order:
        the objects of one frame pair go to the matcher together."""
        grouped: dict[tuple, list[int]] = defaultdict(list)
        for index, ref in enumerate(self.samples):
            grouped[(ref.take, ref.frame, ref.source_camera, ref.target_camera)].append(index)
        return list(grouped.values())

    def mask_rle(self, take: str, obj: str, camera: str, frame: int) -> dict[str, Any] | None:
        """The ground-truth COCO RLE (native annotation size) of a mask, or None if absent."""
        frames = self.takes[take].masks[obj].get(camera, {})
        if str(frame) in frames:
            return entry_to_rle(frames[str(frame)], f"{take}/{obj}/{camera}/{frame}")
        for key, entry in frames.items():  # keys written another way, e.g. "030"
            if int(key) == frame:
                return entry_to_rle(entry, f"{take}/{obj}/{camera}/{frame}")
        return None

    def load_mask(self, take: str, obj: str, camera: str, frame: int,
                  size: tuple[int, int] | None = None) -> np.ndarray:
        """Decode a mask to (H, W) bool; with ``size`` (H, W), resize it (nearest) to that size."""
        where = f"{take}/{obj}/{camera}/{frame}"
        rle = self.mask_rle(take, obj, camera, frame)
        if rle is None:
            raise DatasetError(f"{where}: no mask at this frame")
        mask = decode_rle(rle, where)
        return mask if size is None else resize_mask(mask, size, where)

    def load_image(self, take: str, camera: str, frame: int) -> np.ndarray:
        """Read ``ROOT/{take}/{camera}/{frame}.jpg`` as HxWx3 uint8 RGB."""
        path = self._frame_file(take, camera, frame)
        if path is None:
            raise DatasetError(f"{take}/{camera}: no image for frame {frame} under {self.root}")
        try:
            return read_image(path)
        except OmamaError as error:
            raise DatasetError(str(error)) from error

    def summary(self) -> dict[str, Any]:
        """Counts for reports: takes, samples, samples visible in the target, skips, notes."""
        visible = sum(ref.gt_exists for ref in self.samples)
        return {
            "direction": self.direction,
            "takes": len(self.takes),
            "samples": len(self.samples),
            "visible_in_target": visible,
            "not_visible_fraction": (1 - visible / len(self.samples)) if self.samples else 0.0,
            "skipped": dict(self.skipped),
            "notes": dict(self.notes),
        }

    def _read_takes(self, take_ids: list[str], relations_path: Path | None) -> dict[str, TakeAnnotation]:
        relations: dict[str, TakeAnnotation] | None = None
        takes = {}
        for take in tqdm(take_ids, desc="reading annotations", unit="take", disable=len(take_ids) < 50):
            annotation = None
            if (self.root / take / ANNOTATION_FILE).is_file():
                try:
                    annotation = read_processed_take(self.root / take)
                except DatasetError as error:
                    self._skip("takes_with_unreadable_annotation", str(error))
                    continue
            if (annotation is None or annotation.annotated_frames is None) and relations_path is not None:
                if relations is None:  # large file: read once, and only when needed
                    relations = read_relations(relations_path, self.skipped)
                raw = relations.get(take)
                if annotation is None:
                    annotation = raw
                elif raw is not None:
                    annotation.annotated_frames = raw.annotated_frames
            if annotation is None:
                self._skip("takes_without_annotation", f"{take}: no {ANNOTATION_FILE} and not in a relations file")
                continue
            takes[take] = annotation
        return takes

    def _frame_file(self, take: str, camera: str, frame: int) -> Path | None:
        if self.root is None:
            raise DatasetError("this dataset was built from a ground-truth file and has no images")
        key = (take, camera)
        if key not in self._frames:  # list each camera folder once instead of a stat per frame
            folder = self.root / take / camera
            files: dict[int, str] = {}
            if folder.is_dir():
                for name in os.listdir(folder):
                    stem, ext = os.path.splitext(name)
                    if ext.lower() in IMAGE_EXTENSIONS and stem.isdigit():
                        files.setdefault(int(stem), name)
            self._frames[key] = files
        name = self._frames[key].get(frame)
        return None if name is None else self.root / take / camera / name

    def _skip(self, reason: str, message: str) -> None:
        self.skipped[reason] += 1
        if len(self.errors) < 20:
            self.errors.append(message)


def resize_mask(mask: np.ndarray, size: tuple[int, int], where: str = "mask") -> np.ndarray:
    """Resize an (H, W) bool mask to ``size`` (H, W) with nearest neighbour (as the official code).

    Masks are annotated at the video's resolution while frames are stored downscaled; the
    aspect ratios must agree (within 2%), else DatasetError.
    """
    height, width = mask.shape
    if (height, width) == tuple(size):
        return mask
    if abs(height / width - size[0] / size[1]) > 0.02 * (size[0] / size[1]):
        raise DatasetError(f"{where}: mask size {width}x{height} does not have the image's aspect "
                           f"({size[1]}x{size[0]})")
    return cv2.resize(mask.astype(np.uint8), (size[1], size[0]), interpolation=cv2.INTER_NEAREST).astype(bool)


def _annotated_frames(take: TakeAnnotation, obj: str, camera: str, notes: Counter) -> set[int]:
    """Frames of ``camera`` that annotators looked at for ``obj``.

    Without a list in the files, fall back to the frames where the object has a mask in any
    camera of the take (annotators label an object in all views at the same moments).
    """
    if take.annotated_frames is not None and camera in take.annotated_frames.get(obj, {}):
        return take.annotated_frames[obj][camera]
    notes["annotated_frames_inferred"] += 1
    return {int(key) for frames in take.masks[obj].values() for key in frames}
