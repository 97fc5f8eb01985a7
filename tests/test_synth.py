"""The synthetic two-camera generator: geometry, occlusion, determinism, on-disk format."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from omama_core.cli import main as omama_main
from omama_core.data.egoexo import CorrespondenceDataset
from omama_core.data.synth import MIN_VISIBLE_PIXELS, TakeRenderer, generate_take, render_pair
from omama_core.data.synth_geometry import Camera, Shape
from omama_core.data.synth_render import Frame, draw, visible_masks
from omama_core.data.synth_scene import Material, SceneObject, sample_scene


@pytest.fixture(scope="module")
def take():
    return generate_take(seed=11, num_frames=3)


def test_frame_pair_shapes_and_types(take):
    pair = take[0]
    assert pair.ego_image.shape == (704, 704, 3) and pair.ego_image.dtype == np.uint8
    assert pair.exo_image.shape == (540, 960, 3) and pair.exo_image.dtype == np.uint8
    assert 4 <= len(pair.object_names) <= 8 and len(set(pair.object_names)) == len(pair.object_names)
    assert [p.frame for p in take] == [0, 30, 60]
    for masks, shape in ((pair.ego_masks, (704, 704)), (pair.exo_masks, (540, 960))):
        assert set(masks) <= set(pair.object_names)
        stack = np.stack(list(masks.values()))
        assert stack.dtype == bool and stack.shape[1:] == shape
        assert stack.sum(axis=(1, 2)).min() >= MIN_VISIBLE_PIXELS
        assert stack.sum(axis=0).max() == 1  # visible pixels belong to one object only


def test_same_seed_same_take_and_another_seed_differs(take):
    again = render_pair(seed=11, frame_index=1, num_frames=3)
    assert np.array_equal(again.ego_image, take[1].ego_image)
    assert np.array_equal(again.exo_image, take[1].exo_image)
    assert again.ego_masks.keys() == take[1].ego_masks.keys()
    other = render_pair(seed=12, frame_index=1, num_frames=3)
    assert not np.array_equal(other.exo_image, take[1].exo_image)


def test_ego_camera_moves_and_exo_camera_stays(take):
    # most exo pixels only change by sensor noise (the wearer moves); the ego view shifts
    exo_diff = np.median(np.abs(take[0].exo_image.astype(int) - take[2].exo_image.astype(int)))
    ego_diff = np.median(np.abs(take[0].ego_image.astype(int) - take[2].ego_image.astype(int)))
    assert exo_diff <= 10 and ego_diff > 2 * max(exo_diff, 1)


def test_projection_and_ray_casting_agree():
    camera = Camera.looking_at(np.array([0.0, -2.0, 1.0]), np.zeros(3), 320, 240, 60.0)
    point = np.array([[0.1, 0.2, 0.05]])
    uv, depth = camera.project(point)
    rays = camera.pixel_rays()
    x, y = int(round(uv[0, 0])), int(round(uv[0, 1]))
    direction = rays[:, y, x]
    assert direction @ camera.rotation[2] == pytest.approx(1.0, abs=1e-5)  # unit depth per t
    # a sphere at the point is hit by the ray through its projection, at about its depth
    sphere = Shape("ellipsoid", tuple(point[0]), (0.02, 0.02, 0.02))
    t = sphere.intersect(camera.position, *(direction[:, None]))
    assert np.isfinite(t[0]) and abs(t[0] - depth[0]) < 0.03
    # the image centre looks at the target
    uv0, _ = camera.project(np.zeros((1, 3)))
    assert np.allclose(uv0[0], (camera.cx, camera.cy), atol=1e-6)


def test_z_buffer_hides_the_farther_object():
    scene = sample_scene(np.random.default_rng(0))
    camera = Camera.looking_at(np.array([0.0, -1.5, 0.3]), np.array([0.0, 0.0, 0.05]), 320, 240, 50.0)
    flat = Material((0.5, 0.2, 0.2), (0.5, 0.2, 0.2))
    near = SceneObject("near", Shape("box", (0.0, -0.3, 0.0), (0.05, 0.05, 0.05)), flat)
    far = SceneObject("far", Shape("box", (0.0, 0.3, 0.0), (0.15, 0.05, 0.1)), flat)
    frame = Frame.empty(240, 320)
    draw(frame, camera, camera.pixel_rays(), [(far, 2), (near, 1)], dataclasses.replace(scene, objects=()))
    masks = visible_masks(frame.ids, ["near", "far"], 1)
    alone = Frame.empty(240, 320)
    draw(alone, camera, camera.pixel_rays(), [(far, 2)], scene)
    far_alone = alone.ids == 2
    assert masks["near"].sum() > 500
    assert not np.any(masks["near"] & masks["far"])
    # the far box loses exactly the pixels where the near one stands in front of it
    assert np.array_equal(masks["far"], far_alone & ~masks["near"])
    assert np.any(far_alone & masks["near"])


def test_objects_go_out_of_view_in_both_directions():
    ego_only = exo_only = total = 0
    for seed in range(4):
        renderer = TakeRenderer(seed)
        for index in range(4):
            pair = renderer.render(index, 4)
            ego, exo = set(pair.ego_masks), set(pair.exo_masks)
            ego_only += len(ego - exo)
            exo_only += len(exo - ego)
            total += len(pair.object_names)
    assert ego_only > 0 and exo_only > 0  # both directions have "not visible" targets


def test_synth_command_writes_a_dataset_the_reader_reads(tmp_path, capsys):
    out = tmp_path / "synth"
    code = omama_main(["synth", "--out", str(out), "--takes", "2", "--seed", "3", "--frames", "2",
                       "--split", "0.5,0,0.5", "--workers", "1", "--relations"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["takes"] == 2 and summary["frames"] == 4
    splits = json.loads((out / "split.json").read_text())
    assert len(splits["train"]) == 1 and len(splits["test"]) == 1 and splits["val"] == []
    take = splits["test"][0]
    annotation = json.loads((out / take / "annotation.json").read_text())
    assert set(annotation) >= {"masks", "subsample_idx", "annotated_frames"}
    dataset = CorrespondenceDataset(out, "test", "ego2exo")
    assert len(dataset) > 0 and not dataset.skipped and not dataset.notes
    sample = dataset[0]
    assert sample.source_image.shape == (704, 704, 3) and sample.target_image.shape == (540, 960, 3)
    # the written masks are the in-memory ones
    seed = 3 * 100003 + 1
    pair = generate_take(seed, 2, take)[sample.frame // 30]
    assert np.array_equal(sample.source_mask, pair.ego_masks[sample.object_name])
    assert sample.gt_exists == (sample.object_name in pair.exo_masks)
    # raw relations file of the same split reads to the same samples
    raw = CorrespondenceDataset(out, "test", "ego2exo", takes=[take])
    assert [s.frame for s in raw.samples] == [s.frame for s in dataset.samples]
    assert (out / "relations_test.json").is_file()


def test_synth_command_rejects_bad_split(tmp_path, capsys):
    assert omama_main(["synth", "--out", str(tmp_path / "x"), "--split", "0.5,0.5"]) == 2
    assert "--split" in capsys.readouterr().err
