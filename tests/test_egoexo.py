"""The Ego-Exo4D reader on a small fixture written in the exact official formats: the
processed layout (split.json, {take}/annotation.json, frames) and raw relations_{split}.json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from omama_core.data.annotations import read_gt_file, read_relations
from omama_core.data.egoexo import CorrespondenceDataset, SampleRef
from omama_core.data.rle import decode_rle, encode_lzstring_mask, encode_rle
from omama_core.errors import DatasetError

EGO, EXO1, EXO2 = "aria01_214-1", "cam01", "cam02"
NATIVE = {EGO: (1408, 1408), EXO1: (2160, 3840), EXO2: (2160, 3840)}  # as annotated
IMAGE = {EGO: (704, 704), EXO1: (540, 960), EXO2: (540, 960)}  # processed frames
# object -> camera -> frame -> box (y0, y1, x0, x1) at native size; None = null mask in the file
MASKS = {
    "cup": {EGO: {0: (200, 600, 300, 700), 30: (220, 620, 320, 720), 60: (240, 640, 340, 740)},
            EXO1: {0: (400, 800, 1000, 1600), 60: (420, 820, 1020, 1620)},
            EXO2: {30: (100, 300, 200, 400)}},
    "knife": {EXO1: {0: (1000, 1100, 2000, 2400)}},  # no ego camera: never scored
    "board": {EGO: {30: (800, 1200, 100, 900)}, EXO1: {30: None}},
}
ANNOTATED = {"cup": {EGO: [0, 30, 60], EXO1: [0, 30, 60], EXO2: [0, 30]},
             "knife": {EXO1: [0, 30, 60]}, "board": {EGO: [0, 30, 60], EXO1: [0, 30, 60]}}


def native_mask(camera, box):
    mask = np.zeros(NATIVE[camera], bool)
    y0, y1, x0, x1 = box
    mask[y0:y1, x0:x1] = True
    return mask


def make_fixture(root: Path, processed=True, annotated_in_file=True, relations=False, images=True) -> Path:
    """Write take "take-a" (plus "take-missing", listed in the split with no annotation)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "split.json").write_text(json.dumps({"train": [], "val": [], "test": ["take-a", "take-missing"]}))
    take = root / "take-a"
    take.mkdir(exist_ok=True)
    if processed:
        masks = {o: {c: {str(f): (encode_rle(native_mask(c, b)) if b else None) for f, b in fr.items()}
                     for c, fr in cams.items()} for o, cams in MASKS.items()}
        annotation = {"masks": masks, "subsample_idx": [0, 30, 60]}
        if annotated_in_file:
            annotation["annotated_frames"] = ANNOTATED
        (take / "annotation.json").write_text(json.dumps(annotation))
    if relations:
        object_masks = {o: {c: {"annotation": {str(f): {**encode_lzstring_mask(native_mask(c, b)), "intSegClicks": []}
                                              for f, b in fr.items() if b},
                                "annotation_fps": 1, "annotated_frames": ANNOTATED[o][c]}
                            for c, fr in cams.items()} for o, cams in MASKS.items()}
        record = {"scenario": "Cooking", "take_name": "fixture_take", "object_names": list(MASKS),
                  "object_masks": object_masks}
        (root / "relations_test.json").write_text(json.dumps({"annotations": {"take-a": record}}))
    if images:
        rng = np.random.default_rng(0)
        for camera, (h, w) in IMAGE.items():
            (take / camera).mkdir(exist_ok=True)
            for frame in (0, 30, 60):
                if (camera, frame) != (EXO2, 30):  # one frame missing on purpose
                    image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
                    cv2.imwrite(str(take / camera / f"{frame}.jpg"), image)
    return root


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory):
    return make_fixture(tmp_path_factory.mktemp("egoexo") / "root")


EGO2EXO = [SampleRef("take-a", "cup", EGO, EXO1, 0, True), SampleRef("take-a", "cup", EGO, EXO1, 30, False),
           SampleRef("take-a", "cup", EGO, EXO1, 60, True), SampleRef("take-a", "cup", EGO, EXO2, 0, False)]
EXO2EGO = [SampleRef("take-a", "cup", EXO1, EGO, 0, True), SampleRef("take-a", "cup", EXO1, EGO, 60, True)]


def test_ego2exo_samples_follow_the_official_rules(fixture_root):
    dataset = CorrespondenceDataset(fixture_root, "test", "ego2exo")
    # cup/cam02 frame 60 is not among cam02's annotated frames: not scored at all
    assert dataset.samples == EGO2EXO
    assert dict(dataset.skipped) == {"objects_without_ego_camera": 1, "missing_target_image": 1,
                                     "null_target_mask": 1, "takes_without_annotation": 1}
    assert dataset.samples[0].pair_key == f"{EGO}_{EXO1}"


def test_exo2ego_samples_swap_the_roles(fixture_root):
    dataset = CorrespondenceDataset(fixture_root, "test", "exo2ego")
    assert dataset.samples == EXO2EGO
    assert dict(dataset.skipped) == {"objects_without_ego_camera": 1, "missing_source_image": 1,
                                     "null_source_mask": 1, "takes_without_annotation": 1}


def test_without_images_every_annotated_sample_is_listed(fixture_root):
    dataset = CorrespondenceDataset(fixture_root, "test", "ego2exo", require_images=False)
    assert dataset.samples == EGO2EXO + [SampleRef("take-a", "cup", EGO, EXO2, 30, True)]
    assert dataset.summary()["visible_in_target"] == 3


def test_getitem_loads_images_and_resized_masks(fixture_root):
    dataset = CorrespondenceDataset(fixture_root, "test", "ego2exo")
    sample = dataset[0]
    assert sample.source_image.shape == (704, 704, 3) and sample.source_image.dtype == np.uint8
    assert sample.target_image.shape == (540, 960, 3)
    assert sample.source_mask.dtype == bool and sample.source_mask.shape == (704, 704)
    # native 2160x3840 box rows 400:800, cols 1000:1600 -> a quarter at 540x960
    ys, xs = np.nonzero(sample.target_mask)
    assert (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1) == (100, 200, 250, 400)
    assert dataset[1].target_mask is None and not dataset[1].gt_exists
    native = dataset.mask_rle("take-a", "cup", EXO1, 0)
    assert native["size"] == [2160, 3840]


def test_groups_put_one_frame_pair_together(fixture_root):
    dataset = CorrespondenceDataset(fixture_root, "test", "ego2exo")
    groups = dataset.groups()
    assert sorted(i for g in groups for i in g) == list(range(len(dataset)))
    for group in groups:
        keys = {(dataset.samples[i].take, dataset.samples[i].frame, dataset.samples[i].target_camera) for i in group}
        assert len(keys) == 1


def test_raw_relations_file_gives_the_same_samples_and_masks(tmp_path):
    root = make_fixture(tmp_path / "raw", processed=False, relations=True)
    raw = CorrespondenceDataset(root, "test", "ego2exo")
    # null masks do not exist in the raw file: board/cam01/30 is simply absent there, so
    # the board sample is scored as not visible instead of skipped
    assert raw.samples[:4] == EGO2EXO
    assert raw.samples[4] == SampleRef("take-a", "board", EGO, EXO1, 30, False)
    mask = raw.load_mask("take-a", "cup", EXO1, 0)
    assert np.array_equal(mask, native_mask(EXO1, MASKS["cup"][EXO1][0]))
    takes = read_relations(root / "relations_test.json")
    assert takes["take-a"].take_name == "fixture_take" and takes["take-a"].scenario == "Cooking"


def test_annotated_frames_from_relations_when_the_take_lacks_them(tmp_path):
    root = make_fixture(tmp_path / "mixed", annotated_in_file=False, relations=True)
    dataset = CorrespondenceDataset(root, "test", "ego2exo")
    assert dataset.samples == EGO2EXO and not dataset.notes


def test_annotated_frames_are_inferred_and_counted_without_any_list(tmp_path):
    root = make_fixture(tmp_path / "bare", annotated_in_file=False)
    dataset = CorrespondenceDataset(root, "test", "ego2exo")
    assert dataset.notes["annotated_frames_inferred"] == 3  # cup/cam01, cup/cam02, board/cam01
    # cup's masks exist at 0, 30, 60 in some camera: frame 60 is now scored for cam02 too
    assert SampleRef("take-a", "cup", EGO, EXO2, 60, False) in dataset.samples


def test_official_gt_file(tmp_path):
    masks = {o: {c: {str(f): encode_rle(native_mask(c, b)) for f, b in fr.items() if b} for c, fr in cams.items()}
             for o, cams in MASKS.items()}
    path = tmp_path / "correspondence-gt.json"
    path.write_text(json.dumps({"version": "xx", "challenge": "xx", "annotations": {
        "take-a": {"masks": masks, "subsample_idx": [0, 30, 60], "annotated_frames": ANNOTATED}}}))
    assert set(read_gt_file(path)) == {"take-a"}
    dataset = CorrespondenceDataset.from_gt_file(path, "exo2ego")
    assert dataset.samples == EXO2EGO + [SampleRef("take-a", "cup", EXO2, EGO, 30, True)]
    with pytest.raises(DatasetError, match="no images"):
        dataset[0]


def test_frame_keys_must_be_frame_numbers(tmp_path, fixture_root):
    root = tmp_path / "keys"
    shutil.copytree(fixture_root, root)
    annotation = json.loads((root / "take-a" / "annotation.json").read_text())
    annotation["masks"]["cup"][EXO1]["first"] = annotation["masks"]["cup"][EXO1]["0"]
    (root / "take-a" / "annotation.json").write_text(json.dumps(annotation))
    dataset = CorrespondenceDataset(root, "test", "ego2exo")
    assert dataset.skipped["takes_with_unreadable_annotation"] == 1 and "first" in dataset.errors[0]


def test_corrupt_frame_and_mask_raise_dataset_error(tmp_path, fixture_root):
    root = tmp_path / "corrupt"
    shutil.copytree(fixture_root, root)
    (root / "take-a" / EGO / "60.jpg").write_bytes(b"not a jpeg")
    annotation = json.loads((root / "take-a" / "annotation.json").read_text())
    annotation["masks"]["cup"][EXO1]["0"]["counts"] = "0"
    (root / "take-a" / "annotation.json").write_text(json.dumps(annotation))
    dataset = CorrespondenceDataset(root, "test", "ego2exo")
    with pytest.raises(DatasetError, match="60.jpg"):
        dataset[2]
    with pytest.raises(DatasetError, match="cup/cam01/0"):
        dataset[0]
    (root / "take-a" / "annotation.json").write_text("{broken")
    dataset = CorrespondenceDataset(root, "test", "ego2exo")
    assert len(dataset) == 0 and dataset.skipped["takes_with_unreadable_annotation"] == 1
    assert "annotation.json" in dataset.errors[0]


def test_paths_that_are_not_datasets(tmp_path, fixture_root):
    with pytest.raises(DatasetError, match="not a directory"):
        CorrespondenceDataset(tmp_path / "nowhere", "test")
    with pytest.raises(DatasetError, match="split.json"):
        CorrespondenceDataset(tmp_path, "test")
    with pytest.raises(DatasetError, match="no split 'dev'"):
        CorrespondenceDataset(fixture_root, "dev")
    with pytest.raises(DatasetError, match="direction"):
        CorrespondenceDataset(fixture_root, "test", "ego2ego")


def test_mask_decoding_matches_native(fixture_root):
    dataset = CorrespondenceDataset(fixture_root, "test", "exo2ego")
    rle = dataset.mask_rle("take-a", "cup", EGO, 60)
    assert np.array_equal(decode_rle(rle), native_mask(EGO, MASKS["cup"][EGO][60]))
    assert dataset.mask_rle("take-a", "cup", EXO2, 0) is None
