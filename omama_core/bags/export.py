"""Dataset takes -> a rosbag2 (mcap or sqlite3) that the node and `omama bag eval` read.

Per (take, ego camera, exo camera) segment and frame: the ego and exo images on the frame's
stamp (30 fps frame numbers), one QueryArray with every scored object's source mask on the
source image's stamp, and one ground-truth MatchArray with every scored object's true target
mask (at the evaluation size, the official scoring resolution) or "not visible". The objects
and frames are exactly the samples of `omama eval` (CorrespondenceDataset), so scoring the bag
scores the same samples.
"""

from __future__ import annotations

import os
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..data.egoexo import CorrespondenceDataset, SampleRef
from ..directions import source_and_target, source_view as source_view_of
from ..errors import DatasetError
from ..metrics import evaluation_size, resize_nearest
from ..submission import target_evaluation_size
from . import messages
from .layout import CUSTOM_DATA_KEY, NS, BagInfo, Segment, Topics, frame_offset_ns
from .typestore import (
    CLOCK,
    COMPRESSED_IMAGE,
    IMAGE,
    MATCH_ARRAY,
    QUERY_ARRAY,
    message_class,
    require_rosbags,
    typestore,
)

START_NS = 1_700_000_000 * NS  # first segment's start: a plausible wall-clock time
GAP_NS = 2 * NS  # between segments: more than any sync slop, so segments never pair across


def export_bag(
    root: str | os.PathLike,
    out: str | os.PathLike,
    split: str = "test",
    direction: str = "ego2exo",
    takes: list[str] | None = None,
    storage: str = "mcap",
    compressed: str | None = None,
    clock: bool = False,
    topics: Topics | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Write the samples of `root`'s `split` (optionally only `takes`) in `direction` to the
    bag folder `out` (must not exist). compressed: None (rgb8 Image), "png" or "jpeg".
    Returns a summary (counts, seconds, size)."""
    require_rosbags()
    from rosbags.rosbag2 import StoragePlugin, Writer

    started = time.perf_counter()
    topics = topics or Topics(compressed=compressed is not None)
    out = Path(out)
    if out.exists():
        raise DatasetError(f"{out} exists already; choose a new bag folder (a bag is never overwritten)")
    if storage not in ("mcap", "sqlite3"):
        raise DatasetError(f"--storage must be mcap or sqlite3, got {storage!r}")
    dataset = CorrespondenceDataset(root, split, direction, takes=takes)
    if takes:
        unknown = sorted(set(takes) - set(dataset.takes))
        if unknown:
            raise DatasetError(f"take(s) {', '.join(unknown)} not in {root} split {split!r} "
                               f"(or without annotation); it has {len(dataset.takes)} takes")
    if not dataset.samples:
        raise DatasetError(f"{root} split {split!r} has no {direction} samples to export "
                           f"(skipped: {dict(dataset.skipped) or 'none'})")
    segments = _segments(dataset)
    store = typestore()
    counts: Counter = Counter()
    info = BagInfo(direction, [], f"{root} split {split}")
    writer = Writer(out, version=9, storage_plugin=StoragePlugin[storage.upper()])
    with writer:
        image_type = COMPRESSED_IMAGE if compressed else IMAGE
        connections = {
            "ego": writer.add_connection(topics.ego_image, image_type, typestore=store),
            "exo": writer.add_connection(topics.exo_image, image_type, typestore=store),
            "queries": writer.add_connection(topics.queries, QUERY_ARRAY, typestore=store),
            "ground_truth": writer.add_connection(topics.ground_truth, MATCH_ARRAY, typestore=store),
        }
        if clock:
            connections["clock"] = writer.add_connection(topics.clock, CLOCK, typestore=store)

        def write(name: str, ns: int, msg) -> None:
            writer.write(connections[name], ns, store.serialize_cdr(msg, msg.__msgtype__))
            counts[name] += 1

        start = START_NS
        bar = tqdm(total=sum(len(frames) for frames in segments.values()), desc="exporting", unit="frame",
                   disable=not progress)
        for (take, ego_camera, exo_camera), frames in segments.items():
            last = max(frames)
            segment = Segment(take, ego_camera, exo_camera, start, start + frame_offset_ns(last),
                              list(dataset.takes[take].subsample_idx))
            info.segments.append(segment)
            for frame, group in sorted(frames.items()):
                ns = segment.stamp(frame)
                try:
                    ego = dataset.load_image(take, ego_camera, frame)
                    exo = dataset.load_image(take, exo_camera, frame)
                except DatasetError:
                    counts["frames_without_images"] += 1  # listed in subsample_idx, never extracted
                    bar.update()
                    continue
                if clock:
                    write("clock", ns, message_class(CLOCK)(clock=messages.stamp(ns)))
                for name, camera, pixels in (("ego", ego_camera, ego), ("exo", exo_camera, exo)):
                    head = messages.header(ns, camera)
                    write(name, ns, messages.compressed_image(pixels, compressed, head) if compressed
                          else messages.rgb_image(pixels, head))
                if group:
                    source, target = source_and_target(direction, ego, exo)
                    write("queries", ns, _queries(dataset, group, source.shape[:2], ns))
                    write("ground_truth", ns, _ground_truth(dataset, group, target.shape[:2], ns))
                    counts["samples"] += len(group)
                bar.update()
            start = segment.end_ns + GAP_NS
        bar.close()
        writer.set_custom_data(CUSTOM_DATA_KEY, info.to_json())
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    return {"bag": str(out), "storage": storage, "direction": direction, "segments": len(info.segments),
            "frames": counts["ego"], "query_arrays": counts["queries"], "samples": counts["samples"],
            "dataset_samples": len(dataset.samples), "frames_without_images": counts["frames_without_images"],
            "images": "compressed " + compressed if compressed else "rgb8", "clock": clock,
            "megabytes": round(size / 2**20, 1), "seconds": round(time.perf_counter() - started, 2)}


def _segments(dataset: CorrespondenceDataset) -> dict[tuple[str, str, str], dict[int, list[SampleRef]]]:
    """(take, ego camera, exo camera) -> frame -> the samples of that frame (empty for frames
    without a scored object: they are still published, as a camera would)."""
    segments: dict[tuple[str, str, str], dict[int, list[SampleRef]]] = defaultdict(lambda: defaultdict(list))
    for ref in dataset.samples:
        ego, exo = source_and_target(dataset.direction, ref.source_camera, ref.target_camera)
        segments[(ref.take, ego, exo)][ref.frame].append(ref)
    for (take, _, _), frames in segments.items():
        for frame in dataset.takes[take].subsample_idx:
            frames.setdefault(int(frame), [])
    return {key: dict(frames) for key, frames in segments.items()}


def _queries(dataset: CorrespondenceDataset, group: list[SampleRef], shape: tuple[int, int], ns: int):
    """The QueryArray of one frame: every scored object's source mask at the source image size."""
    view = message_class(QUERY_ARRAY.replace("QueryArray", "Query"))
    source_view = view.VIEW_EGO if source_view_of(dataset.direction) == "ego" else view.VIEW_EXO
    head = messages.header(ns, group[0].source_camera)
    queries = [view(header=head, id=ref.object_name, source_view=source_view,
                    mask=messages.mask_image(dataset.load_mask(ref.take, ref.object_name, ref.source_camera,
                                                               ref.frame, shape), head))
               for ref in group]
    return message_class(QUERY_ARRAY)(header=head, queries=queries)


def _ground_truth(dataset: CorrespondenceDataset, group: list[SampleRef], target_shape: tuple[int, int], ns: int):
    """The ground-truth MatchArray of one frame: the true target mask of every scored object at
    the evaluation size (resized from its annotation size exactly as the scorer does), empty
    and not visible where the object is not in the target."""
    match = message_class(MATCH_ARRAY.replace("MatchArray", "Match"))
    roi = message_class("sensor_msgs/msg/RegionOfInterest")
    head = messages.header(ns, group[0].target_camera)
    out = []
    for ref in group:
        if ref.gt_exists:
            native = dataset.load_mask(ref.take, ref.object_name, ref.target_camera, ref.frame)
            mask = resize_nearest(native, evaluation_size(*native.shape))
        else:
            size = target_evaluation_size(dataset, ref.take, ref.target_camera, fallback=target_shape)
            mask = np.zeros(size, bool)
        out.append(match(header=head, source_stamp=head.stamp, query_id=ref.object_name,
                         source_view=0 if source_view_of(dataset.direction) == "ego" else 1, visible=ref.gt_exists,
                         visibility=float(ref.gt_exists), score=-1.0, num_candidates=0,
                         reason="" if ref.gt_exists else "not visible (ground truth)",
                         box=roi(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
                         mask=messages.mask_image(mask, head)))
    return message_class(MATCH_ARRAY)(header=head, source_stamp=head.stamp, matches=out,
                                      processing_ms=0.0, latency_ms=0.0)
