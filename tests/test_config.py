"""MatcherConfig from YAML: shipped configs, overrides, path resolution, errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from omama_core.config import (CONFIG_DIR, MatcherConfig, available_configs, config_from_dict, load_config,
                               parse_overrides)
from omama_core.errors import ConfigError


def write_yaml(path, data) -> str:
    path.write_text(yaml.safe_dump(data))
    return str(path)


# ---- shipped configs ------------------------------------------------------------------------

def test_available_configs_are_the_shipped_yaml_files():
    names = available_configs()
    assert names == sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    assert "default" in names and "knn" in names


@pytest.mark.parametrize("name", available_configs())
def test_every_shipped_config_loads_and_validates(name):
    config = load_config(name)
    assert isinstance(config, MatcherConfig)
    assert config.name == name
    raw = yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text())
    base = yaml.safe_load((CONFIG_DIR / "base" / f"{raw['extends']}.yaml").read_text())  # every one extends a base
    for section, key in (("backbone", "kind"), ("proposals", "kind"), ("head", "kind")):
        expected = raw.get(section, {}).get(key, base.get(section, {}).get(key))  # the file wins over its base
        assert getattr(getattr(config, section), key) == expected, (section, key)
    assert config.direction == raw.get("direction", base["direction"])
    # every path a shipped config names is absolute after loading (no '~', no relative path)
    for path in (config.backbone.weights, config.proposals.weights, config.head_checkpoint()):
        if path is not None:
            assert os.path.isabs(path) and "~" not in path, path


def test_default_config_needs_no_download():
    """Every file the default names ships inside the package (resolved next to the config), and
    no part would fetch one: DINOv2 reads timm's hub cache, FastSAM needs a downloaded .pt."""
    config = load_config("default")
    named = [p for p in (config.backbone.weights, config.proposals.weights, config.head_checkpoint()) if p]
    for path in named:
        assert Path(path).is_file() and Path(path).parent == CONFIG_DIR.parent / "weights", path
    assert config.backbone.kind != "dinov2" and config.proposals.kind != "fastsam"


def test_handcrafted_config_ships_its_heads():
    config = load_config("handcrafted")
    assert config.backbone.kind == "handcrafted" and config.backbone.weights is None
    assert config.head.kind == "trained"
    for direction in ("ego2exo", "exo2ego"):
        path = Path(config.head_checkpoint(direction))
        assert path.is_file() and path.parent == CONFIG_DIR.parent / "weights"


def test_shipped_weights_stay_small():
    weights = CONFIG_DIR.parent / "weights"
    assert sum(p.stat().st_size for p in weights.glob("*.pt")) < 20 * 2**20


def test_knn_config_needs_no_weights_at_all():
    config = load_config("knn")
    assert config.head.kind == "knn" and config.head.checkpoint is None


def test_load_config_accepts_a_yaml_path_to_a_shipped_file():
    by_path = load_config(CONFIG_DIR / "knn.yaml")
    assert by_path.to_dict() == load_config("knn").to_dict()


# ---- overrides ------------------------------------------------------------------------------

def test_dotted_overrides_reach_nested_sections():
    config = load_config("default", {"proposals.max_masks": 7, "visibility_threshold": 0.9,
                                     "direction": "exo2ego", "sizing.exo_max_side": 480})
    assert config.proposals.max_masks == 7
    assert config.visibility_threshold == 0.9
    assert config.direction == "exo2ego"
    assert config.sizing.exo_max_side == 480
    # the rest keeps the file's values
    assert config.proposals.kind == "classical"
    assert config.sizing.ego_max_side == load_config("default").sizing.ego_max_side


def test_overrides_do_not_leak_into_the_next_load():
    load_config("default", {"proposals.max_masks": 3})
    assert load_config("default").proposals.max_masks != 3


def test_parse_overrides_reads_values_as_yaml():
    overrides = parse_overrides(["proposals.conf=0.25", "proposals.max_masks=12", "head.kind=knn",
                                 "backbone.weights=~/w.pth", "sizing=[1, 2]", "flag=true", "empty=",
                                 " spaced.key =x=y"])
    assert overrides["proposals.conf"] == 0.25 and isinstance(overrides["proposals.conf"], float)
    assert overrides["proposals.max_masks"] == 12 and isinstance(overrides["proposals.max_masks"], int)
    assert overrides["head.kind"] == "knn"
    assert overrides["backbone.weights"] == "~/w.pth"
    assert overrides["sizing"] == [1, 2]
    assert overrides["flag"] is True
    assert overrides["empty"] is None
    assert overrides["spaced.key"] == "x=y"  # split at the first '='; key stripped


def test_parse_overrides_rejects_an_item_without_equals():
    with pytest.raises(ConfigError, match="noequals.*key=value"):
        parse_overrides(["noequals"])


def test_parse_overrides_rejects_invalid_yaml_with_a_config_error():
    with pytest.raises(ConfigError, match=r"proposals.conf=\[1,"):
        parse_overrides(["proposals.conf=[1,"])


def test_override_below_a_scalar_is_a_config_error():
    with pytest.raises(ConfigError, match="direction"):
        load_config("default", {"direction.sub": 1})


def test_override_with_an_unknown_key_names_it():
    with pytest.raises(ConfigError, match="proposals.confidence"):
        load_config("default", {"proposals.confidence": 0.3})


def test_override_with_an_invalid_value_is_validated():
    with pytest.raises(ConfigError, match="direction"):
        load_config("default", {"direction": "ego2ego"})
    with pytest.raises(ConfigError, match="context_px"):
        load_config("default", {"context_px": -1})


# ---- paths ----------------------------------------------------------------------------------

def test_relative_paths_in_a_user_yaml_resolve_against_its_folder(tmp_path, monkeypatch):
    folder = tmp_path / "model"
    folder.mkdir()
    path = write_yaml(folder / "mine.yaml", {
        "backbone": {"kind": "dinov2", "weights": "weights/dino.pth"},
        "proposals": {"kind": "fastsam", "weights": "../shared/FastSAM-x.pt"},
        "head": {"kind": "trained", "checkpoint": {"ego2exo": "heads/e2x.pt", "exo2ego": "/abs/x2e.pt"}},
    })
    monkeypatch.chdir(tmp_path)  # the working folder must not matter
    config = load_config(path)
    assert config.name == "mine"
    assert config.backbone.weights == str((folder / "weights" / "dino.pth").resolve())
    assert config.proposals.weights == str((tmp_path / "shared" / "FastSAM-x.pt").resolve())
    assert config.head_checkpoint("ego2exo") == str((folder / "heads" / "e2x.pt").resolve())
    assert config.head_checkpoint("exo2ego") == "/abs/x2e.pt"


def test_tilde_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = write_yaml(tmp_path / "tilde.yaml", {"backbone": {"kind": "dinov2", "weights": "~/dino.pth"},
                                                "head": {"kind": "official", "checkpoint": "~/omama.pt"}})
    config = load_config(path)
    assert config.backbone.weights == str(tmp_path / "home" / "dino.pth")
    assert config.head.checkpoint == str(tmp_path / "home" / "omama.pt")


def test_path_overrides_are_relative_to_the_working_folder(tmp_path, monkeypatch):
    """A path typed on the command line (--backbone-weights, --set ...weights=) means the
    user's working folder, not the folder of the (shipped or user) YAML file."""
    monkeypatch.chdir(tmp_path)
    config = load_config("dinov2_fastsam_knn", {"backbone.weights": "w/dino.pth", "proposals.weights": "sam.pt"})
    assert config.backbone.weights == str(tmp_path / "w" / "dino.pth")
    assert config.proposals.weights == str(tmp_path / "sam.pt")


def test_head_checkpoint_mapping_is_keyed_by_direction(tmp_path):
    path = write_yaml(tmp_path / "two.yaml", {"head": {"kind": "trained", "checkpoint": {"ego2exo": "/a.pt"}}})
    config = load_config(path)
    assert config.head_checkpoint() == "/a.pt"
    with pytest.raises(ConfigError, match="exo2ego"):
        config.head_checkpoint("exo2ego")


# ---- errors ---------------------------------------------------------------------------------

def test_unknown_name_lists_the_available_configs():
    with pytest.raises(ConfigError) as error:
        load_config("no_such_config")
    assert "no_such_config" in str(error.value)
    for name in available_configs():
        assert name in str(error.value)


def test_missing_yaml_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="not found.*missing.yaml"):
        load_config(tmp_path / "missing.yaml")


def test_invalid_yaml_is_a_config_error(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("backbone: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml"):
        load_config(path)


def test_unknown_key_in_a_yaml_is_named(tmp_path):
    path = write_yaml(tmp_path / "typo.yaml", {"proposals": {"kind": "classical", "max_mask": 10}})
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert "proposals.max_mask" in str(error.value)
    assert "max_masks" in str(error.value)  # the known keys are listed, so the typo is easy to spot


def test_unknown_top_level_key_is_named(tmp_path):
    path = write_yaml(tmp_path / "typo.yaml", {"visibility_treshold": 0.2})
    with pytest.raises(ConfigError, match="visibility_treshold"):
        load_config(path)


def test_section_that_is_not_a_mapping_is_a_config_error():
    with pytest.raises(ConfigError, match="backbone"):
        config_from_dict({"backbone": "dinov2"})


@pytest.mark.parametrize("kind", ["official", "trained"])
def test_head_with_weights_needs_a_checkpoint(tmp_path, kind):
    path = write_yaml(tmp_path / "head.yaml", {"head": {"kind": kind}})
    with pytest.raises(ConfigError, match="head.checkpoint"):
        load_config(path)


@pytest.mark.parametrize("section, value", [("backbone.kind", "resnet"), ("proposals.kind", "sam2"),
                                            ("head.kind", "mlp")])
def test_unknown_kinds_are_rejected(section, value):
    with pytest.raises(ConfigError, match=value):
        load_config("default", {section: value})


# ---- types and ranges -----------------------------------------------------------------------

@pytest.mark.parametrize("key, value, expected", [
    ("selection.exclusive_matches", "no", "true or false"),  # a non-empty string would turn the rule ON
    ("selection.exclusive_matches", 1, "true or false"),
    ("proposals.conf", "0.3", "a number"),
    ("proposals.max_masks", [10], "an integer"),
    ("proposals.max_masks", True, "an integer"),  # YAML reads yes/no/on/off as bools
    ("proposals.max_masks", 10.5, "an integer"),
    ("visibility_threshold", False, "a number"),
    ("direction", 2, "a string"),
    ("backbone.weights", 5, "a string or null"),
    ("head.checkpoint", {"ego2exo": 3}, "a mapping of strings to strings"),
    ("head.checkpoint", ["a.pt"], "a mapping of strings to strings"),
])
def test_a_value_of_the_wrong_type_names_key_value_and_type(key, value, expected):
    with pytest.raises(ConfigError) as error:
        load_config("default", {key: value})
    message = str(error.value)
    assert key in message and repr(value) in message and expected in message


def test_a_wrong_type_in_a_yaml_file_is_named(tmp_path):
    path = tmp_path / "typed.yaml"
    path.write_text('selection:\n  exclusive_matches: "no"\n')
    with pytest.raises(ConfigError, match=r"selection.exclusive_matches must be true or false, got 'no' \(str\)"):
        load_config(path)


def test_yaml_bools_and_ints_are_read_as_their_fields_want():
    # YAML 1.1 reads an unquoted no as false: that is a bool, and must switch the rule off
    config = load_config("default", parse_overrides(["selection.exclusive_matches=no", "proposals.conf=1",
                                                     "head.checkpoint=null"]))
    assert config.selection.exclusive_matches is False
    assert config.proposals.conf == 1  # an int is a valid float, kept as written (cache keys hash it)
    assert config.head.checkpoint is None


def test_a_mapping_of_paths_is_a_valid_head_checkpoint():
    config = load_config("knn", {"head.kind": "trained", "head.checkpoint": {"ego2exo": "/a.pt", "exo2ego": "/b.pt"}})
    assert config.head_checkpoint("exo2ego") == "/b.pt"


@pytest.mark.parametrize("key, value", [
    ("proposals.max_masks", 0), ("proposals.max_masks", -3), ("proposals.imgsz", 0),
    ("proposals.conf", 1.5), ("proposals.conf", -0.1), ("proposals.iou", 2),
    ("proposals.max_side", 0), ("proposals.segment_scale", 0), ("proposals.max_area_frac", 0),
    ("sizing.ego_max_side", 0), ("sizing.exo_max_side", -960), ("context_px", -1),
    ("visibility_threshold", 1.5), ("selection.whole_object_margin", -0.1),
    ("selection.whole_object_part_margin", 2.5), ("selection.reverse_check", 11),
    ("selection.layout_weight", -1), ("selection.layout_cap", 3),
])
def test_a_value_out_of_range_is_named(key, value):
    with pytest.raises(ConfigError) as error:
        load_config("default", {key: value})
    assert key in str(error.value) and str(value) in str(error.value)


def test_the_layout_bounds_must_be_ordered():
    with pytest.raises(ConfigError, match="layout_tolerance must be below selection.layout_cap"):
        load_config("default", {"selection.layout_tolerance": 0.3, "selection.layout_cap": 0.2})


def test_the_area_bounds_must_be_ordered():
    with pytest.raises(ConfigError, match="min_area_frac.*max_area_frac"):
        load_config("default", {"proposals.min_area_frac": 0.6, "proposals.max_area_frac": 0.5})


def test_range_edges_are_accepted():
    config = load_config("default", {"proposals.conf": 0.0, "proposals.iou": 1.0, "proposals.max_masks": 1,
                                     "sizing.ego_max_side": 1, "context_px": 0, "visibility_threshold": -1.0})
    assert config.proposals.max_masks == 1 and config.sizing.ego_max_side == 1


@pytest.mark.parametrize("key, value, message", [
    ("head.context", "no", "head.context must be true or false"),
    ("optim.epochs", "3", "optim.epochs must be an integer"),
    ("optim.lr", [1e-3], "optim.lr must be a number"),
    ("data.cache_dir", 7, "data.cache_dir must be a string or null"),
    ("loss.temperature", 0, "loss.temperature must be above 0"),
    ("loss.num_candidates", 1, "loss.num_candidates must be at least 2"),
    ("data.train_fraction", 0.0, r"data.train_fraction must be in \(0.0, 1.0\]"),
    ("num_workers", -1, "num_workers must be at least 0"),
])
def test_the_training_config_is_checked_the_same_way(key, value, message):
    from omama_core.training.config import load_train_config

    with pytest.raises(ConfigError, match=message):
        load_train_config(None, {key: value})


def test_the_training_config_builds_nested_sections_from_their_annotations():
    from omama_core.training.config import LossConfig, load_train_config

    config = load_train_config(None, {"loss.temperature": 0.1, "optim.epochs": 5})
    assert isinstance(config.loss, LossConfig) and config.loss.temperature == 0.1 and config.optim.epochs == 5


def test_validate_checks_the_types_of_a_config_built_in_python():
    config = MatcherConfig()
    config.selection.exclusive_matches = "no"
    with pytest.raises(ConfigError, match="selection.exclusive_matches must be true or false"):
        config.validate()
    config = MatcherConfig()
    config.proposals.max_masks = "100"
    with pytest.raises(ConfigError, match="proposals.max_masks must be an integer"):
        config.validate()


def test_extends_merges_a_base_section_by_section(tmp_path):
    write_yaml(tmp_path / "base.yaml", {"proposals": {"kind": "classical", "max_masks": 7, "max_side": 300},
                                        "visibility_threshold": 0.2})
    path = write_yaml(tmp_path / "child.yaml", {"extends": "base.yaml", "backbone": {"kind": "handcrafted"},
                                                "proposals": {"max_masks": 9}})
    config = load_config(path)
    assert (config.proposals.kind, config.proposals.max_masks, config.proposals.max_side) == ("classical", 9, 300)
    assert config.visibility_threshold == 0.2 and config.name == "child"
    assert load_config("default").proposals.kind == "classical"  # configs/base/offline.yaml
    assert "offline" not in available_configs()  # bases are not configs of their own


def test_extends_errors_name_the_base(tmp_path):
    with pytest.raises(ConfigError, match="'nowhere'.*offline"):
        load_config(write_yaml(tmp_path / "a.yaml", {"extends": "nowhere"}))
    write_yaml(tmp_path / "b.yaml", {"extends": "c.yaml"})
    with pytest.raises(ConfigError, match="circle"):
        load_config(write_yaml(tmp_path / "c.yaml", {"extends": "b.yaml"}))

