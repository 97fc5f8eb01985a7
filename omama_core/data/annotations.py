"""Ego-Exo4D correspondence annotations, from any of the three files they come in.

- processed take folder: ``{take}/annotation.json`` = ``{"masks": object -> camera -> frame ->
  COCO RLE, "subsample_idx": [...]}``, optionally with ``"annotated_frames"`` (object -> camera
  -> [frames], as the official ground-truth file stores it) or the raw ``"object_masks"``;
- raw ``relations_{split}.json``: ``{"annotations": {take: {"object_masks": object -> camera ->
  {"annotation": {frame: {"width", "height", "encodedMask"}}, "annotated_frames": [...]}}}}``;
- the official evaluation ground truth (``process_annotations.py`` output):
  ``{"annotations": {take: {"masks", "subsample_idx", "annotated_frames"}}}``.

All become one ``TakeAnnotation``. Mask entries stay as they are in the file (RLE dict or raw
LZString entry) and are decoded only when a sample needs them (``entry_to_rle``): a split holds
hundreds of thousands of masks and building the sample index must not decode them.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DatasetError
from .rle import decode_encoded_mask, validate_rle

SPLITS_FILE = "split.json"
ANNOTATION_FILE = "annotation.json"

# object -> camera -> frame (str, as the files key it) -> mask entry (RLE dict, raw
# {"width", "height", "encodedMask"} dict, or None when the file holds null).
MaskTable = dict[str, dict[str, dict[str, Any]]]


@dataclass
class TakeAnnotation:
    """The masks of one take and which frames were annotated.

    masks: object -> camera -> frame key (str, e.g. "30") -> mask entry.
    annotated_frames: object -> camera -> set of frame numbers that annotators looked at (a
        frame there without a mask means "not visible"); None when the source had no such list.
    subsample_idx: frame numbers that were extracted as images (processed layout), else [].
    """

    take: str
    masks: MaskTable
    annotated_frames: dict[str, dict[str, set[int]]] | None = None
    subsample_idx: list[int] = field(default_factory=list)
    take_name: str | None = None
    scenario: str | None = None


def is_ego_camera(camera: str) -> bool:
    """Ego (Aria glasses) cameras are named ``aria...``; the official code tests ``'aria' in name``."""
    return "aria" in camera


def entry_to_rle(entry: Any, where: str) -> dict[str, Any]:
    """Turn a mask entry of any supported file into a COCO RLE dict (raises DatasetError)."""
    if entry is None:
        raise DatasetError(f"{where}: the mask is null in the annotation file")
    if isinstance(entry, dict) and "encodedMask" in entry:
        return decode_encoded_mask(entry["encodedMask"], entry.get("width"), entry.get("height"), where)
    validate_rle(entry, where)
    return entry


def load_json(path: str | os.PathLike) -> Any:
    """Read a JSON file, with DatasetError naming the file when it is missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatasetError(f"{path}: not a readable JSON file ({error})") from error


def read_processed_take(take_dir: str | os.PathLike) -> TakeAnnotation:
    """Read ``{take_dir}/annotation.json`` of the processed layout.

    annotated_frames come from its ``"annotated_frames"`` key, else from a kept raw
    ``"object_masks"`` key, else stay None (see ``CorrespondenceDataset`` for the fallback).
    """
    take_dir = Path(take_dir)
    path = take_dir / ANNOTATION_FILE
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("masks"), dict):
        raise DatasetError(f"{path}: expected a JSON object with a 'masks' object (object -> camera -> frame -> RLE)")
    masks = _mask_table(data["masks"], path)
    annotated = None
    if isinstance(data.get("annotated_frames"), dict):
        annotated = _frame_lists(data["annotated_frames"], path)
    elif isinstance(data.get("object_masks"), dict):
        annotated = _frame_lists(
            {o: {c: e.get("annotated_frames", []) for c, e in cams.items()}
             for o, cams in data["object_masks"].items()},
            path,
        )
    return TakeAnnotation(
        take=take_dir.name,
        masks=masks,
        annotated_frames=annotated,
        subsample_idx=[int(v) for v in data.get("subsample_idx", [])],
        take_name=data.get("take_name"),
        scenario=data.get("scenario"),
    )


def read_relations(path: str | os.PathLike, skipped: Counter | None = None) -> dict[str, TakeAnnotation]:
    """Read a raw ``relations_{split}.json``; masks stay LZString entries until decoded.

    Camera entries without an ``annotation`` dict are skipped and counted in ``skipped``.
    """
    path = Path(path)
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), dict):
        raise DatasetError(f"{path}: expected a relations file with an 'annotations' object (take -> annotation)")
    skipped = skipped if skipped is not None else Counter()
    takes = {}
    for take, record in data["annotations"].items():
        object_masks = record.get("object_masks") if isinstance(record, dict) else None
        if not isinstance(object_masks, dict):
            skipped["takes_without_object_masks"] += 1
            continue
        masks: MaskTable = {}
        frames: dict[str, dict[str, list]] = {}
        for obj, cams in object_masks.items():
            masks[obj], frames[obj] = {}, {}
            for cam, entry in (cams or {}).items():
                if not isinstance(entry, dict) or not isinstance(entry.get("annotation"), dict):
                    skipped["cameras_without_annotation"] += 1
                    continue
                masks[obj][cam] = _frame_keyed(entry["annotation"], path, obj, cam)
                frames[obj][cam] = entry.get("annotated_frames", [])
        takes[take] = TakeAnnotation(
            take=take,
            masks=masks,
            annotated_frames=_frame_lists(frames, path),
            take_name=record.get("take_name"),
            scenario=record.get("scenario"),
        )
    return takes


def read_gt_file(path: str | os.PathLike) -> dict[str, TakeAnnotation]:
    """Read the official evaluation ground truth (``correspondence-gt.json``)."""
    path = Path(path)
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), dict):
        raise DatasetError(f"{path}: expected a ground-truth file with an 'annotations' object (take -> masks)")
    takes = {}
    for take, record in data["annotations"].items():
        if not isinstance(record, dict) or not isinstance(record.get("masks"), dict):
            raise DatasetError(f"{path}: take {take} has no 'masks' object")
        annotated = record.get("annotated_frames")
        takes[take] = TakeAnnotation(
            take=take,
            masks=_mask_table(record["masks"], path),
            annotated_frames=_frame_lists(annotated, path) if isinstance(annotated, dict) else None,
            subsample_idx=[int(v) for v in record.get("subsample_idx", [])],
        )
    return takes


def read_split(root: str | os.PathLike, split: str) -> list[str]:
    """Take ids of ``split`` from ``ROOT/split.json`` (``{"train": [...], "val": [...], "test": [...]}``)."""
    path = Path(root) / SPLITS_FILE
    data = load_json(path)
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise DatasetError(f"{path}: expected an object mapping split names to lists of take ids")
    if split not in data:
        raise DatasetError(f"{path}: no split '{split}'; it has {sorted(data)}")
    return [str(take) for take in data[split]]


def find_relations_file(root: str | os.PathLike, split: str) -> Path | None:
    """``ROOT/relations_{split}.json`` or ``ROOT/annotations/relations_{split}.json``, if present."""
    for candidate in (Path(root) / f"relations_{split}.json", Path(root) / "annotations" / f"relations_{split}.json"):
        if candidate.is_file():
            return candidate
    return None


def _mask_table(raw: Any, path: Path) -> MaskTable:
    table: MaskTable = {}
    for obj, cams in raw.items():
        if not isinstance(cams, dict):
            raise DatasetError(f"{path}: masks['{obj}'] must map camera -> frame -> RLE")
        table[obj] = {}
        for cam, frames in cams.items():
            if not isinstance(frames, dict):
                raise DatasetError(f"{path}: masks['{obj}']['{cam}'] must map frame -> RLE")
            table[obj][cam] = _frame_keyed(frames, path, obj, cam)
    return table


def _frame_keyed(frames: dict, path: Path, obj: str, cam: str) -> dict[str, Any]:
    """``frames`` with str keys, checked to be frame numbers (the sample index sorts them)."""
    bad = [frame for frame in frames if not str(frame).isdigit()]
    if bad:
        raise DatasetError(f"{path}: masks of '{obj}' in '{cam}' have keys that are not frame numbers: {bad[:5]}")
    return {str(frame): entry for frame, entry in frames.items()}


def _frame_lists(raw: dict, path: Path) -> dict[str, dict[str, set[int]]]:
    result: dict[str, dict[str, set[int]]] = {}
    for obj, cams in raw.items():
        result[obj] = {}
        for cam, frames in (cams or {}).items():
            try:
                result[obj][cam] = {int(f) for f in frames}
            except (TypeError, ValueError) as error:
                raise DatasetError(
                    f"{path}: annotated_frames['{obj}']['{cam}'] is not a list of frame numbers") from error
    return result
