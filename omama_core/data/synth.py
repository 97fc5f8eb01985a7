"""Synthetic two-camera data: a moving head-mounted ego camera and a fixed exo camera.

In memory::

    pairs = generate_take(seed=3, num_frames=8)     # list[FramePair] of one take
    pair = render_pair(seed=3)                      # one FramePair

On disk, ``write_dataset`` writes the processed Ego-Exo4D layout (docs/data.md), so
``CorrespondenceDataset`` reads synthetic and real data alike::

    OUT/split.json, OUT/{take}/annotation.json, OUT/{take}/{aria01,cam01}/{frame}.jpg

Masks are the visible pixels of each object after occlusion; an object with fewer than
``MIN_VISIBLE_PIXELS`` visible pixels in a view has no mask there ("not visible"). Every
camera is "annotated" at every frame, as the benchmark's annotators look at every 1 fps frame.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from .rle import encode_lzstring_mask, encode_rle
from .synth_render import develop, draw, noise_crop, noise_field, render_static, visible_masks
from .synth_scene import EGO_SIZE, EXO_SIZE, Scene, ego_camera, person_shapes, sample_scene

EGO_CAMERA = "aria01"
EXO_CAMERA = "cam01"
FRAME_STEP = 30  # frame numbers of a 30 fps video sampled at 1 fps, as in the benchmark
MIN_VISIBLE_PIXELS = 48
ARM_ID = -3


@dataclass
class FramePair:
    """One moment seen by both cameras.

    ego_image (704, 704, 3) and exo_image (540, 960, 3): uint8 RGB.
    ego_masks / exo_masks: object name -> (H, W) bool, only for objects visible in that view.
    object_names: every annotated object of the take, visible or not.
    """

    take: str
    frame: int
    ego_image: np.ndarray
    exo_image: np.ndarray
    ego_masks: dict[str, np.ndarray]
    exo_masks: dict[str, np.ndarray]
    object_names: list[str]
    ego_camera: str = EGO_CAMERA
    exo_camera: str = EXO_CAMERA


class TakeRenderer:
    """Renders the frames of one take; the exo camera's fixed part is rendered once."""

    def __init__(self, seed: int, take: str | None = None) -> None:
        self.seed = seed
        self.take = take or f"synth-{seed:06d}"
        self.scene: Scene = sample_scene(np.random.default_rng([seed, 0]))
        self.names = [obj.name for obj in self.scene.objects]
        exo = self.scene.exo_camera
        self._exo_rays = exo.pixel_rays()
        self._exo_static = render_static(exo, self._exo_rays, self.scene)
        noise_rng = np.random.default_rng([seed, 2])
        self._ego_noise = noise_field(noise_rng, *EGO_SIZE, self.scene.ego_response.noise_sigma)
        self._exo_noise = noise_field(noise_rng, *EXO_SIZE, self.scene.exo_response.noise_sigma)

    def render(self, index: int, num_frames: int) -> FramePair:
        """Frame ``index`` of ``num_frames`` (take time index / num_frames)."""
        rng = np.random.default_rng([self.seed, 1, index])
        t = index / max(num_frames, 1)
        body, arm = person_shapes(self.scene, t, rng)
        camera = ego_camera(self.scene, t, rng)
        rays = camera.pixel_rays()
        ego = render_static(camera, rays, self.scene, background_factor=2)
        draw(ego, camera, rays, [(part, ARM_ID) for part in arm], self.scene)
        exo = self._exo_static.copy()
        draw(exo, self.scene.exo_camera, self._exo_rays, [(part, ARM_ID) for part in body + arm], self.scene)
        return FramePair(
            take=self.take,
            frame=index * FRAME_STEP,
            ego_image=develop(ego.color, self.scene.ego_response, noise_crop(self._ego_noise, *EGO_SIZE, rng),
                              float(rng.normal(0, 0.06))),
            exo_image=develop(exo.color, self.scene.exo_response, noise_crop(self._exo_noise, *EXO_SIZE, rng)),
            ego_masks=visible_masks(ego.ids, self.names, MIN_VISIBLE_PIXELS),
            exo_masks=visible_masks(exo.ids, self.names, MIN_VISIBLE_PIXELS),
            object_names=list(self.names),
        )


def generate_take(seed: int, num_frames: int = 8, take: str | None = None) -> list[FramePair]:
    """All ``num_frames`` frame pairs of the take drawn from ``seed`` (deterministic)."""
    renderer = TakeRenderer(seed, take)
    return [renderer.render(i, num_frames) for i in range(num_frames)]


def render_pair(seed: int, frame_index: int = 0, num_frames: int = 8) -> FramePair:
    """One frame pair of the take drawn from ``seed``."""
    return TakeRenderer(seed).render(frame_index, num_frames)


def take_annotation(pairs: list[FramePair]) -> dict[str, Any]:
    """The processed ``annotation.json`` content of one take's frame pairs.

    ``annotated_frames`` lists every frame for every (object, camera), so a frame without a
    mask means "not visible" exactly as in the benchmark's ground truth.
    """
    names = pairs[0].object_names
    frames = [p.frame for p in pairs]
    masks: dict[str, dict[str, dict[str, Any]]] = {n: {pairs[0].ego_camera: {}, pairs[0].exo_camera: {}} for n in names}
    for pair in pairs:
        for camera, views in ((pair.ego_camera, pair.ego_masks), (pair.exo_camera, pair.exo_masks)):
            for name, mask in views.items():
                masks[name][camera][str(pair.frame)] = encode_rle(mask)
    return {
        "take_name": pairs[0].take,
        "scenario": "synthetic tabletop",
        "object_names": names,
        "masks": masks,
        "subsample_idx": frames,
        "annotated_frames": {n: {cam: list(frames) for cam in masks[n]} for n in names},
    }


def relations_entry(annotation: dict[str, Any], pairs: list[FramePair]) -> dict[str, Any]:
    """The same take as a raw ``relations_{split}.json`` record (LZString ``encodedMask``)."""
    object_masks: dict[str, Any] = {}
    for name in annotation["object_names"]:
        object_masks[name] = {}
        for camera in annotation["masks"][name]:
            entries = {}
            for pair in pairs:
                views = pair.ego_masks if camera == pair.ego_camera else pair.exo_masks
                if name in views:
                    entries[str(pair.frame)] = encode_lzstring_mask(views[name])
            object_masks[name][camera] = {"annotation": entries, "annotation_fps": 1,
                                          "annotated_frames": annotation["annotated_frames"][name][camera]}
    return {"take_name": annotation["take_name"], "scenario": annotation["scenario"],
            "object_names": annotation["object_names"], "object_masks": object_masks}


def write_take(out: str | os.PathLike, seed: int, take: str, num_frames: int,
               relations: bool = False) -> dict[str, Any]:
    """Render one take into ``out/{take}``; returns counts and, with ``relations``, its raw record."""
    pairs = generate_take(seed, num_frames, take)
    take_dir = Path(out) / take
    for pair in pairs:
        for camera, image in ((pair.ego_camera, pair.ego_image), (pair.exo_camera, pair.exo_image)):
            (take_dir / camera).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(take_dir / camera / f"{pair.frame}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 92])
    annotation = take_annotation(pairs)
    with open(take_dir / "annotation.json", "w", encoding="utf-8") as handle:
        json.dump(annotation, handle)
    n = len(pairs[0].object_names) * len(pairs)
    return {
        "take": take,
        "frames": len(pairs),
        "objects": len(pairs[0].object_names),
        # of the (object, frame) pairs with a mask in the source view, how many lack one in the target
        "ego_visible": sum(len(p.ego_masks) for p in pairs),
        "exo_visible": sum(len(p.exo_masks) for p in pairs),
        "ego2exo_not_visible": sum(len(set(p.ego_masks) - set(p.exo_masks)) for p in pairs),
        "exo2ego_not_visible": sum(len(set(p.exo_masks) - set(p.ego_masks)) for p in pairs),
        "object_frames": n,
        "relations": relations_entry(annotation, pairs) if relations else None,
    }


def split_of(index: int, count: int, fractions: tuple[float, float, float]) -> str:
    """Split name of take ``index`` of ``count``: the first takes train, then val, then test."""
    train_end = round(count * fractions[0])
    val_end = train_end + round(count * fractions[1])
    return "train" if index < train_end else "val" if index < val_end else "test"


def write_dataset(
    out: str | os.PathLike,
    num_takes: int,
    seed: int = 0,
    num_frames: int = 8,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
    relations: bool = False,
    workers: int = 1,
) -> dict[str, Any]:
    """Write ``num_takes`` synthetic takes with ``split.json`` (and raw relations files).

    Take i is drawn from seed ``seed * 100003 + i``, so a dataset is reproducible and
    independent of ``workers``. Returns a summary with the not-visible fractions.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    takes = [f"synth-{seed:04d}-{i:04d}" for i in range(num_takes)]
    jobs = [(out, seed * 100003 + i, take, num_frames, relations) for i, take in enumerate(takes)]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = list(tqdm(pool.map(_write_take_job, jobs), total=len(jobs), desc="synth", unit="take"))
    else:
        results = [write_take(*job) for job in tqdm(jobs, desc="synth", unit="take")]
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for i, take in enumerate(takes):
        splits[split_of(i, num_takes, fractions)].append(take)
    with open(out / "split.json", "w", encoding="utf-8") as handle:
        json.dump(splits, handle, indent=1)
    if relations:
        for split, names in splits.items():
            records = {r["take"]: r["relations"] for r in results if r["take"] in names}
            with open(out / f"relations_{split}.json", "w", encoding="utf-8") as handle:
                json.dump({"annotations": records}, handle)
    ego = sum(r["ego_visible"] for r in results)
    exo = sum(r["exo_visible"] for r in results)
    return {
        "takes": num_takes,
        "frames": sum(r["frames"] for r in results),
        "splits": {k: len(v) for k, v in splits.items()},
        "objects": sum(r["objects"] for r in results),
        "ego2exo_not_visible_fraction": sum(r["ego2exo_not_visible"] for r in results) / max(ego, 1),
        "exo2ego_not_visible_fraction": sum(r["exo2ego_not_visible"] for r in results) / max(exo, 1),
    }


def _write_take_job(job: tuple) -> dict[str, Any]:
    return write_take(*job)
