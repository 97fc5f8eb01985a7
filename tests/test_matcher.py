"""Matcher.match on the offline default config, and matchers built from checkpoints.

The scene (conftest.two_views) has four distinctly coloured objects seen by both cameras at
different scales and white balances; the offline default must find each one.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import yaml

from omama_core import Matcher, MatchResult, available_configs, load_config
from omama_core.errors import ConfigError, DeviceError, InputError, OmamaError, WeightsNotFoundError
from omama_core.modeling import MatchingHead, save_head
from omama_core.matcher import resolve_device
from omama_core.proposals import Proposals

STAGES = {"convert", "preprocess", "backbone_source", "backbone_target", "proposals", "regions", "encoder", "model",
          "selection", "results", "total"}
needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


class Counting:
    """Wraps a callable and counts its calls."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.inner(*args, **kwargs)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def assert_well_formed(result: MatchResult, target_hw: tuple[int, int]) -> None:
    """Types, shapes and the internal consistency of one result."""
    assert isinstance(result, MatchResult)
    assert result.mask.dtype == bool and result.mask.shape == target_hw
    assert isinstance(result.score, float) and isinstance(result.visibility, float)
    assert isinstance(result.visible, bool)
    assert isinstance(result.candidate, int) and isinstance(result.num_candidates, int)
    if result.visible:
        assert result.reason is None
        assert 0 <= result.candidate < result.num_candidates
        assert -1.0 - 1e-5 <= result.score <= 1.0 + 1e-5
        ys, xs = np.nonzero(result.mask)
        assert len(ys) > 0
        # exclusive right/bottom: the box is the tightest one that holds every mask pixel
        assert result.box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert all(isinstance(v, int) for v in result.box)
    else:
        assert result.reason
        assert not result.mask.any() and result.box is None and result.candidate == -1


@pytest.fixture(scope="module")
def queries(two_views):
    """(names, (4, Hs, Ws) bool) of the ego objects, in a fixed order."""
    _, ego_masks, _, _ = two_views
    names = list(ego_masks)
    return names, np.stack([ego_masks[name] for name in names])


@pytest.fixture(scope="module")
def batch(knn_matcher, two_views, queries):
    """The k-NN matcher's answers to all four queries in one call."""
    ego, _, exo, _ = two_views
    return knn_matcher.match(ego, queries[1], exo)


# ---- the normal call ------------------------------------------------------------------------

def test_one_result_per_query_in_query_order(batch, two_views, queries):
    _, _, exo, exo_masks = two_views
    names, masks = queries
    assert len(batch) == len(masks) == 4
    for name, result in zip(names, batch):
        assert result.visible, (name, result.to_json())
        overlaps = {other: iou(result.mask, truth) for other, truth in exo_masks.items()}
        assert max(overlaps, key=overlaps.get) == name, (name, overlaps)
        assert overlaps[name] > 0.5, (name, overlaps)


def test_results_are_well_formed(batch, two_views, knn_matcher):
    _, _, exo, _ = two_views
    for result in batch:
        assert_well_formed(result, exo.shape[:2])
        assert result.num_candidates > 0
        assert result.visibility >= knn_matcher.visibility_threshold  # since visible
        # k-NN: visibility is the best cosine; the chosen candidate (the whole object, selection.py)
        # scores at most whole_object_margin below it
        assert result.score - 1e-6 <= result.visibility <= result.score + knn_matcher.config.selection.whole_object_margin + 1e-6


def test_timings_per_stage(batch):
    for result in batch:
        assert set(result.timings) == STAGES
        assert all(v >= 0 for v in result.timings.values())
        stages = sum(v for k, v in result.timings.items() if k != "total")
        assert result.timings["total"] >= stages - 1e-6
    assert batch[0].timings is not batch[1].timings  # each result owns its dict


def test_to_json_has_no_mask_and_is_serialisable(batch):
    import json

    data = json.loads(json.dumps(batch[0].to_json()))
    assert {"visible", "score", "visibility", "box", "candidate", "num_candidates", "reason",
            "timings_ms"} == set(data)
    assert data["box"] == list(batch[0].box)
    assert set(data["timings_ms"]) == STAGES


def test_single_hw_mask_alone_equals_the_same_query_in_a_batch(knn_matcher, two_views, queries, batch):
    ego, ego_masks, exo, _ = two_views
    alone = knn_matcher.match(ego, ego_masks["blue_box"].astype(np.uint8), exo)  # (H, W), 0/1
    assert len(alone) == 1
    reference = batch[queries[0].index("blue_box")]
    assert alone[0].candidate == reference.candidate
    assert alone[0].num_candidates == reference.num_candidates
    np.testing.assert_array_equal(alone[0].mask, reference.mask)
    assert alone[0].score == pytest.approx(reference.score, abs=1e-5)
    assert alone[0].visible == reference.visible


def test_k_queries_share_one_backbone_pass_per_image_and_one_proposal_pass(knn_matcher, two_views,
                                                                           queries, batch, monkeypatch):
    ego, _, exo, _ = two_views
    proposals = Counting(knn_matcher.proposals)
    backbone = Counting(knn_matcher.backbone.encode)
    monkeypatch.setattr(knn_matcher, "proposals", proposals)
    monkeypatch.setattr(knn_matcher.backbone, "encode", backbone)
    order = [3, 0, 2]
    results = knn_matcher.match(ego, queries[1][order], exo)
    assert proposals.calls == 1
    assert backbone.calls == 2  # source and target, not once per query
    assert len(results) == 3
    for index, result in zip(order, results):  # another order and subset: the same answers
        assert result.candidate == batch[index].candidate
        assert result.score == pytest.approx(batch[index].score, abs=1e-5)


def test_visibility_threshold_changes_live(knn_matcher, two_views, queries, monkeypatch):
    ego, _, exo, _ = two_views
    masks = queries[1][:2]
    monkeypatch.setattr(knn_matcher, "visibility_threshold", 2.0)  # no cosine reaches 2
    high = knn_matcher.match(ego, masks, exo)
    for result in high:
        assert_well_formed(result, exo.shape[:2])
        assert not result.visible
        assert "threshold" in result.reason and "2.000" in result.reason
        assert result.score > -1.0 and result.num_candidates > 0  # it was scored, just judged not visible
    monkeypatch.setattr(knn_matcher, "visibility_threshold", -2.0)
    low = knn_matcher.match(ego, masks, exo)
    for before, result in zip(high, low):
        assert_well_formed(result, exo.shape[:2])
        assert result.visible and result.mask.any()
        assert result.score == pytest.approx(before.score, abs=1e-5)


def test_empty_query_mask_is_not_visible_and_the_others_are_answered(knn_matcher, two_views, queries, batch):
    ego, _, exo, _ = two_views
    masks = np.stack([np.zeros_like(queries[1][0]), queries[1][0]])
    results = knn_matcher.match(ego, masks, exo)
    assert len(results) == 2
    assert_well_formed(results[0], exo.shape[:2])
    assert not results[0].visible and results[0].reason == "empty query mask"
    assert results[1].visible and results[1].candidate == batch[0].candidate
    np.testing.assert_array_equal(results[1].mask, batch[0].mask)


def test_all_queries_empty(knn_matcher, two_views):
    ego, _, exo, _ = two_views
    results = knn_matcher.match(ego, np.zeros((2,) + ego.shape[:2], bool), exo)
    assert len(results) == 2
    for result in results:
        assert_well_formed(result, exo.shape[:2])
        assert not result.visible and result.reason == "empty query mask"


def test_flat_target_has_no_candidates(knn_matcher, two_views, queries):
    ego, _, exo, _ = two_views
    flat = np.full((200, 300, 3), 128, np.uint8)
    results = knn_matcher.match(ego, queries[1][:2], flat)
    assert len(results) == 2
    for result in results:
        assert_well_formed(result, (200, 300))
        assert not result.visible and result.num_candidates == 0 and result.score == -1.0
        assert "no mask candidates" in result.reason


def test_no_proposals_gives_not_visible_at_target_size(knn_matcher, two_views, queries, monkeypatch):
    ego, _, exo, _ = two_views
    monkeypatch.setattr(knn_matcher, "proposals", lambda image: Proposals.empty(*image.shape[:2]))
    results = knn_matcher.match(ego, queries[1], exo)
    assert len(results) == 4
    for result in results:
        assert_well_formed(result, exo.shape[:2])
        assert not result.visible and result.num_candidates == 0
        assert "no mask candidates" in result.reason


# ---- inputs ---------------------------------------------------------------------------------

def test_source_mask_of_another_size_names_both_sizes(knn_matcher, two_views):
    ego, _, exo, _ = two_views
    with pytest.raises(InputError) as error:
        knn_matcher.match(ego, np.ones((100, 120), bool), exo)
    message = str(error.value)
    assert "120x100" in message and f"{ego.shape[1]}x{ego.shape[0]}" in message


def test_masks_of_a_bad_rank_are_an_input_error(knn_matcher, two_views):
    ego, _, exo, _ = two_views
    with pytest.raises(InputError, match="shape"):
        knn_matcher.match(ego, np.ones((1, 1) + ego.shape[:2], bool), exo)


def test_uint16_source_and_rgba_target_are_converted(knn_matcher, two_views, queries, batch):
    ego, _, exo, _ = two_views
    ego16 = ego.astype(np.uint16) * 257  # converts back to exactly ego
    alpha = np.random.default_rng(0).integers(0, 256, exo.shape[:2], dtype=np.uint8)
    exo_rgba = np.dstack([exo, alpha])  # alpha is dropped, so this is exactly exo
    results = knn_matcher.match(ego16, queries[1], exo_rgba)
    for result, reference in zip(results, batch):
        assert_well_formed(result, exo.shape[:2])
        assert result.candidate == reference.candidate
        assert result.score == pytest.approx(reference.score, abs=1e-5)


def test_grayscale_images_are_accepted(knn_matcher, two_views, queries):
    ego, _, exo, _ = two_views
    ego_gray = cv2.cvtColor(ego, cv2.COLOR_RGB2GRAY)  # (H, W)
    exo_gray = cv2.cvtColor(exo, cv2.COLOR_RGB2GRAY)[:, :, None]  # (H, W, 1)
    results = knn_matcher.match(ego_gray, queries[1][:2], exo_gray)
    assert len(results) == 2
    for result in results:
        assert_well_formed(result, exo.shape[:2])
        assert result.num_candidates > 0


def test_unsupported_image_is_an_input_error_naming_the_image(knn_matcher, two_views, queries):
    ego, _, exo, _ = two_views
    with pytest.raises(InputError, match="target image"):
        knn_matcher.match(ego, queries[1], exo[:, :, :2])


# ---- building a matcher ---------------------------------------------------------------------

@needs_no_cuda
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_without_cuda_is_a_device_error(device):
    with pytest.raises(DeviceError) as error:
        Matcher.from_config("default", device=device)
    message = str(error.value)
    assert device in message and "CUDA is not available" in message and "cpu" in message


def test_unknown_device_is_a_device_error():
    with pytest.raises(DeviceError, match="'tpu'.*auto, cpu, cuda"):
        resolve_device("tpu")


@needs_no_cuda
def test_auto_device_is_cpu_here():
    assert resolve_device("auto") == torch.device("cpu")
    matcher = Matcher.from_config("default", device="auto")
    assert matcher.device.type == "cpu"
    assert next(matcher.backbone.buffers()).device.type == "cpu"


def test_direction_and_overrides_reach_the_config():
    matcher = Matcher.from_config("knn", device="cpu", direction="exo2ego",
                                  overrides={"visibility_threshold": 0.75})
    assert matcher.config.direction == "exo2ego"
    assert matcher.visibility_threshold == 0.75 and matcher.config.visibility_threshold == 0.75
    assert matcher.model.head is None and matcher.config.head.kind == "knn"


def test_unknown_config_name_lists_the_available_configs():
    with pytest.raises(ConfigError) as error:
        Matcher.from_config("not_a_config", device="cpu")
    assert "not_a_config" in str(error.value)
    for name in available_configs():
        assert name in str(error.value)


def test_config_with_an_unknown_key_names_it(tmp_path):
    data = load_config("default").to_dict()
    data["head"]["temperature"] = 0.1
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="head.temperature"):
        Matcher.from_config(str(path), device="cpu")


def test_official_head_without_checkpoint_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="head.checkpoint"):
        Matcher.from_config("knn", device="cpu", overrides={"head.kind": "official"})
    path = tmp_path / "official.yaml"
    path.write_text(yaml.safe_dump({"backbone": {"kind": "handcrafted"}, "proposals": {"kind": "classical"},
                                    "head": {"kind": "official"}}))
    with pytest.raises(ConfigError, match="head.checkpoint"):
        Matcher.from_config(str(path), device="cpu")


def test_official_head_with_a_missing_file_names_it(tmp_path):
    missing = tmp_path / "omama_exo2ego.pt"
    with pytest.raises(WeightsNotFoundError, match="omama_exo2ego.pt"):
        Matcher.from_config("default", device="cpu",
                            overrides={"head.kind": "official", "head.checkpoint": str(missing)})


# ---- a matcher from an `omama train` checkpoint ---------------------------------------------

def write_training_checkpoint(path, dim: int = 30) -> MatchingHead:
    torch.manual_seed(0)
    head = MatchingHead(dim=dim, num_heads=2, source_grid=(5, 5), target_grid=(4, 6), hidden_dim=32, visibility=True)
    config = load_config("handcrafted").to_dict()
    config["head"] = {"kind": "trained", "checkpoint": None}
    save_head(head, str(path), config=config, direction="ego2exo")
    return head


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("train") / "head.pt"
    head = write_training_checkpoint(path)
    return path, head


def test_matcher_from_a_training_checkpoint_loads_and_runs(checkpoint, two_views, queries):
    path, saved = checkpoint
    ego, _, exo, _ = two_views
    matcher = Matcher.from_config(str(path), device="cpu")
    assert matcher.config.head.kind == "trained" and matcher.config.head.checkpoint == str(path)
    assert matcher.config.direction == "ego2exo"
    assert matcher.model.head is not None and matcher.model.head.visibility is not None
    for name, tensor in saved.state_dict().items():  # the saved weights, not a fresh head
        assert torch.equal(matcher.model.head.state_dict()[name], tensor), name
    results = matcher.match(ego, queries[1], exo)
    assert len(results) == 4
    for result in results:
        assert_well_formed(result, exo.shape[:2])
        assert result.num_candidates > 0
        assert 0.0 <= result.visibility <= 1.0  # the learned probability
        assert result.visible == (result.visibility >= matcher.visibility_threshold)
        assert set(result.timings) == STAGES


def test_training_checkpoint_used_for_the_other_direction_warns(checkpoint):
    path, _ = checkpoint
    with pytest.warns(UserWarning, match="trained for ego2exo"):
        matcher = Matcher.from_config(str(path), device="cpu", direction="exo2ego")
    assert matcher.config.direction == "exo2ego"


def test_training_checkpoint_head_of_another_width_is_a_config_error(tmp_path):
    path = tmp_path / "narrow.pt"
    write_training_checkpoint(path, dim=32)
    with pytest.raises(ConfigError) as error:
        Matcher.from_config(str(path), device="cpu")
    assert "32" in str(error.value) and "30" in str(error.value)


def test_pt_file_without_an_embedded_config_is_a_config_error(tmp_path):
    path = tmp_path / "plain.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, path)
    with pytest.raises(ConfigError, match="plain.pt.*no embedded config"):
        Matcher.from_config(str(path), device="cpu")


def test_missing_checkpoint_file_is_a_weights_error(tmp_path):
    with pytest.raises(OmamaError, match="missing.pt"):
        Matcher.from_config(str(tmp_path / "missing.pt"), device="cpu")


# ---- resolution independence ----------------------------------------------------------------

@pytest.fixture(scope="module")
def ego_features(knn_matcher, two_views):
    ego, _, _, _ = two_views
    tokens, _ = knn_matcher.dense_features(ego, "ego")
    return tokens[0]


def descriptors_at_two_resolutions(features, masks, image_hw):
    """Descriptors of the same masks, once at image size and once at 4x the pixels
    (scale 0.25 maps them back to the model input): (small, big), each (N, 2C)."""
    from tests.test_encoder import mask_context_descriptors

    small = mask_context_descriptors(features, masks, image_hw)
    big = mask_context_descriptors(features, masks.repeat(4, 1).repeat(4, 2), (image_hw[0] * 4, image_hw[1] * 4),
                                   scale=0.25)
    return small, big


def test_object_descriptor_does_not_depend_on_the_image_resolution(ego_features, queries, two_views):
    """The same features and the same masks at 4x the pixels: the object half must agree."""
    small, big = descriptors_at_two_resolutions(ego_features, queries[1], two_views[0].shape[:2])
    c = ego_features.shape[0]
    torch.testing.assert_close(big[:, :c], small[:, :c])


def test_context_descriptor_does_not_depend_on_the_image_resolution(ego_features, queries, two_views):
    small, big = descriptors_at_two_resolutions(ego_features, queries[1], two_views[0].shape[:2])
    c = ego_features.shape[0]
    torch.testing.assert_close(big[:, c:], small[:, c:], atol=0.02, rtol=0)


def test_match_does_not_depend_on_the_source_resolution(two_views, queries, batch):
    ego, _, exo, _ = two_views
    # ego 352x352 -> model input 350x350 both in the knn config and here; 1408x1408 -> 350x350 here
    matcher = Matcher.from_config("knn", device="cpu", overrides={"sizing.ego_max_side": ego.shape[0]})
    big = cv2.resize(ego, None, fx=4, fy=4, interpolation=cv2.INTER_NEAREST)
    results = matcher.match(big, queries[1].repeat(4, 1).repeat(4, 2), exo)
    for result, reference in zip(results, batch):
        assert result.candidate == reference.candidate
        assert result.score == pytest.approx(reference.score, abs=0.02)


@pytest.mark.parametrize("direction", ["ego2exo", "exo2ego"])
def test_handcrafted_config_uses_the_shipped_trained_head_of_its_direction(direction, two_views, queries):
    import torch

    ego, _, exo, _ = two_views
    matcher = Matcher.from_config("handcrafted", device="cpu", direction=direction)
    assert matcher.model.head is not None and matcher.model.head.visibility is not None
    shipped = torch.load(matcher.config.head_checkpoint(direction), map_location="cpu", weights_only=True)
    assert shipped["direction"] == direction
    source, target = (ego, exo) if direction == "ego2exo" else (exo, ego)
    masks = queries[1] if direction == "ego2exo" else np.stack(list(two_views[3].values()))
    results = matcher.match(source, masks, target)
    assert len(results) == len(masks)
    for result in results:
        assert 0.0 <= result.visibility <= 1.0  # a probability, thresholded at 0.5
        assert result.visible == (result.visibility >= 0.5)
        assert result.candidate_mask is not None and result.candidate_mask.shape == target.shape[:2]


def test_exclusive_matches_never_give_two_queries_the_same_object(two_views):
    """The same query twice: without exclusive_matches both get the same candidate. With it
    the second copy chooses among what is left: at the shipped threshold nothing left looks
    like a red disc, so it is not visible, with the best score left as its visibility; at a
    threshold nothing falls below, it answers with a candidate that overlaps nothing of the
    first's."""
    ego, ego_masks, exo, _ = two_views
    twice = np.stack([ego_masks["red_disc"], ego_masks["red_disc"], ego_masks["blue_box"]])
    shared = Matcher.from_config("knn", device="cpu").match(ego, twice, exo)
    assert shared[0].candidate == shared[1].candidate >= 0
    exclusive = Matcher.from_config("knn", device="cpu", overrides={"selection.exclusive_matches": True})
    results = exclusive.match(ego, twice, exo)
    assert results[0].candidate == shared[0].candidate and results[0].visible
    second = results[1]
    assert not second.visible and second.candidate == -1
    assert second.visibility < exclusive.visibility_threshold < shared[1].visibility
    assert np.array_equal(second.candidate_mask, shared[1].candidate_mask)  # what the protocol scores
    assert results[2].candidate == shared[2].candidate  # the box is nobody else's
    exclusive.visibility_threshold = -1.0
    results = exclusive.match(ego, twice, exo)
    assert results[1].visible and results[1].candidate not in (-1, results[0].candidate)
    assert not (results[1].mask & results[0].mask).any()


def test_reverse_check_stops_a_hidden_object_answering_with_a_same_coloured_region():
    """The red disc is hidden in the exo view, where an orange-red 'arm' (a long ellipse) is in
    sight; the arm is in the ego view too. Without the reverse check the disc answers with the
    arm; with it the arm candidate matches the ego arm better than the disc, and loses score."""
    import cv2

    from tests.conftest import draw_scene

    def with_arm(image, centre, axes):
        image = image.copy()
        arm = np.zeros(image.shape[:2], np.uint8)
        cv2.ellipse(arm, centre, axes, 30, 0, 360, 1, -1)
        image[arm.astype(bool)] = (215, 95, 40)
        return image, arm.astype(bool)

    ego, ego_masks = draw_scene(352, 352, 0.14, seed=1)
    exo, _ = draw_scene(270, 480, 0.08, gain=(1.15, 1.0, 0.85), seed=2, hidden=("red_disc",))
    ego, ego_arm = with_arm(ego, (300, 300), (60, 20))
    exo, exo_arm = with_arm(exo, (420, 230), (40, 12))
    queries = np.stack([ego_masks["red_disc"] & ~ego_arm, ego_masks["blue_box"]])
    plain = Matcher.from_config("knn", device="cpu").match(ego, queries, exo)
    checked = Matcher.from_config("knn", device="cpu", overrides={"selection.reverse_check": 1.0}).match(ego, queries, exo)
    assert (plain[0].candidate_mask & exo_arm).sum() > 0.5 * exo_arm.sum()  # the disc answers with the arm
    assert checked[0].visibility < plain[0].visibility - 0.1
    assert "source_regions" in checked[0].timings and "source_regions" not in plain[0].timings
    assert checked[1].candidate == plain[1].candidate  # the box matches nothing else in the ego view
    assert abs(checked[1].score - plain[1].score) < 1e-6


def test_reverse_check_without_source_regions_changes_nothing(two_views):
    """A flat source image has no proposals: the check has nothing to compare with."""
    _, _, exo, _ = two_views
    flat = np.full((120, 160, 3), 128, np.uint8)
    query = np.zeros((120, 160), bool)
    query[40:80, 60:100] = True
    plain = Matcher.from_config("knn", device="cpu").match(flat, query, exo)[0]
    checked = Matcher.from_config("knn", device="cpu", overrides={"selection.reverse_check": 1.0}).match(flat, query, exo)[0]
    assert checked.candidate == plain.candidate and checked.score == pytest.approx(plain.score)


def test_reverse_check_is_validated():
    with pytest.raises(ConfigError, match="reverse_check"):
        Matcher.from_config("knn", device="cpu", overrides={"selection.reverse_check": -1.0})


def test_whole_object_part_margin_is_validated():
    with pytest.raises(ConfigError, match="whole_object_part_margin"):
        Matcher.from_config("knn", device="cpu", overrides={"selection.whole_object_part_margin": -0.1})
    with pytest.raises(ConfigError, match="needs whole_object_margin > 0"):
        Matcher.from_config("knn", device="cpu", overrides={"selection.whole_object_part_margin": 0.25,
                                                            "selection.whole_object_margin": 0.0})


# ---- protocols, the caller's candidates, scores ------------------------------------------------

def test_independent_protocol_answers_each_query_as_if_alone(two_views):
    """The same query twice plus another: under "joint" exclusive_matches makes the second
    copy answer differently; under "independent" every answer is that of a call with the
    query alone."""
    ego, ego_masks, exo, _ = two_views
    twice = np.stack([ego_masks["red_disc"], ego_masks["red_disc"], ego_masks["blue_box"]])
    matcher = Matcher.from_config("knn", device="cpu", overrides={"selection.exclusive_matches": True})
    joint = matcher.match(ego, twice, exo)
    independent = matcher.match(ego, twice, exo, protocol="independent")
    alone = [matcher.match(ego, mask, exo)[0] for mask in twice]
    assert (joint[1].candidate, joint[1].visible) != (joint[0].candidate, joint[0].visible)
    for result, single in zip(independent, alone):
        assert (result.candidate, result.visible) == (single.candidate, single.visible)
        np.testing.assert_allclose(result.scores, single.scores, atol=1e-5)
    with pytest.raises(InputError, match="protocol"):
        matcher.match(ego, twice, exo, protocol="alone")


def test_caller_candidates_replace_the_proposals(knn_matcher, two_views, queries, monkeypatch):
    """(N, Ht, Wt) masks: scored as given (no proposal pass), boxes from the masks; the same
    masks with explicit boxes as Candidates give the same scores; every result carries the
    (N,) scores, its score among them."""
    from omama_core import Candidates
    from omama_core.masks import boxes_from_masks

    ego, _, exo, exo_masks = two_views
    names = list(exo_masks)
    masks = np.stack([exo_masks[name] for name in names])
    monkeypatch.setattr(knn_matcher, "proposals", lambda image: pytest.fail("the proposals must not run"))
    results = knn_matcher.match(ego, queries[1], exo, candidates=masks)
    boxed = knn_matcher.match(ego, queries[1], exo, candidates=Candidates(masks, boxes_from_masks(masks)))
    for name, result, other in zip(queries[0], results, boxed):
        assert result.num_candidates == len(masks) and result.scores.shape == (len(masks),)
        assert names[result.candidate] == name  # four distinct objects: each finds its own
        assert result.score == pytest.approx(float(result.scores[result.candidate]))
        np.testing.assert_array_equal(result.scores, other.scores)
    shifted = knn_matcher.match(ego, queries[1], exo, candidates=Candidates(masks, boxes_from_masks(masks) + 60))
    assert not np.allclose(shifted[0].scores, results[0].scores)  # the boxes are used (the context moves)
    with pytest.raises(InputError, match="candidate masks must be"):
        knn_matcher.match(ego, queries[1], exo, candidates=masks[:, :-1])
    with pytest.raises(InputError, match="candidate boxes must be"):
        knn_matcher.match(ego, queries[1], exo, candidates=Candidates(masks, np.zeros((1, 4))))


def test_importing_omama_core_leaves_torch_and_the_environment_alone():
    import subprocess
    import sys

    code = ("import os, sys; before = dict(os.environ); import omama_core; "
            "assert 'torch' not in sys.modules, 'torch imported'; assert dict(os.environ) == before, 'env changed'; "
            "omama_core.Matcher; assert 'torch' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, env={k: v for k, v in __import__("os").environ.items()
                                                                   if k not in ("HF_HUB_OFFLINE", "YOLO_OFFLINE")})


def test_shipped_head_checkpoint_from_before_the_selection_section_still_loads():
    """The shipped heads embed a config written when the selection keys were top-level."""
    from omama_core.config import CONFIG_DIR

    path = CONFIG_DIR.parent / "weights" / "synthetic_ego2exo.pt"
    assert "whole_object_margin" in torch.load(path, map_location="cpu", weights_only=True)["config"]
    matcher = Matcher.from_config(str(path), device="cpu")
    assert matcher.config.selection.whole_object_margin == 0.05 and matcher.model.head is not None


def test_classical_proposals_run_beside_the_backbones_with_the_same_answers(two_views, queries, monkeypatch):
    """proposals.concurrent: the classical pass runs in the worker thread while the backbones
    run on one torch thread fewer (here the proposals wait for the target pass, so both passes
    run spared; restored afterwards); the answers equal the serial path's."""
    import threading

    from omama_core.proposals import ClassicalProposals

    ego, _, exo, _ = two_views
    seen = {"proposal_threads": [], "backbone_torch_threads": []}
    target_pass = threading.Event()
    run_proposals = ClassicalProposals.__call__

    def recording_proposals(self, image):
        seen["proposal_threads"].append(threading.current_thread().name)
        if threading.current_thread() is not threading.main_thread():
            assert target_pass.wait(30)  # still running when the source pass ends
        return run_proposals(self, image)

    monkeypatch.setattr(ClassicalProposals, "__call__", recording_proposals)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)  # as on a 4-core machine, whatever this one has
    set_to = []
    monkeypatch.setattr(torch, "set_num_threads", set_to.append)
    answers = {}
    for concurrent in (True, False):
        matcher = Matcher.from_config("knn", device="cpu", overrides={"proposals.concurrent": concurrent})
        encode, passes = matcher.backbone.encode, []

        def recording_encode(image, encode=encode, passes=passes):
            seen["backbone_torch_threads"].append(set_to[-1] if set_to else None)
            passes.append(image)
            if len(passes) == 2:
                target_pass.set()
            return encode(image)

        monkeypatch.setattr(matcher.backbone, "encode", recording_encode)
        answers[concurrent] = matcher.match(ego, queries[1], exo)
        assert set(answers[concurrent][0].timings) == STAGES
    assert seen["proposal_threads"][0].startswith("omama-proposals")
    assert seen["proposal_threads"][1] == threading.main_thread().name
    assert seen["backbone_torch_threads"] == [3, 3, 4, 4]  # 4 - 1 beside the proposals, then restored
    assert set_to == [3, 4]  # the serial path never touches the thread count
    for beside, serial in zip(answers[True], answers[False]):
        assert beside.candidate == serial.candidate and beside.visible == serial.visible
        np.testing.assert_array_equal(beside.scores, serial.scores)
        np.testing.assert_array_equal(beside.mask, serial.mask)


def test_the_spared_core_is_given_back_once_the_proposals_are_done(monkeypatch):
    from concurrent.futures import Future

    from omama_core.matcher import _one_core_spared

    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    set_to = []
    monkeypatch.setattr(torch, "set_num_threads", set_to.append)
    pending = Future()
    with _one_core_spared(pending, cpu=True) as give_back_when_done:
        give_back_when_done()  # still running: keep the core spared
        assert set_to == [1]
        pending.set_result(None)
        give_back_when_done()
        give_back_when_done()
        assert set_to == [1, 2]
    assert set_to == [1, 2]  # nothing more to restore
    for pending, cpu in ((None, True), (Future(), False)):  # nothing beside torch, or not on the CPU
        with _one_core_spared(pending, cpu=cpu) as give_back_when_done:
            give_back_when_done()
    assert set_to == [1, 2]
