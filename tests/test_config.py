"""Config validation: errors name the file and the key, and suggest the closest valid key."""

from __future__ import annotations

from pathlib import Path

import pytest

import aerossl
from aerossl.config import apply_overrides
from aerossl.errors import ConfigError
from aerossl.validate import load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_every_shipped_config_validates() -> None:
    for name in aerossl.shipped_configs():
        cfg = load_config(aerossl.find_config(name))
        assert cfg.name == name


def test_misspelled_key_is_named_with_the_closest_valid_one(tmp_path: Path) -> None:
    path = write(tmp_path, "train:\n  batch_sise: 16\n")
    with pytest.raises(ConfigError, match=r"cfg.yaml: unknown key 'train.batch_sise'; "
                                          r"did you mean 'batch_size'\?"):
        load_config(path)


def test_misspelled_top_level_section_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'trian'; did you mean 'train'"):
        load_config(write(tmp_path, "trian:\n  steps: 3\n"))


def test_wrong_type_names_the_field_and_the_expected_type(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"train.steps: Input should be a valid integer.*'many'"):
        load_config(write(tmp_path, "train:\n  steps: many\n"))


def test_out_of_range_value_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"data.test_fraction"):
        load_config(overrides=["data.test_fraction=1.5"])


def test_algorithm_parameters_are_checked_against_the_algorithm() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'algorithm.treshold' for algorithm "
                                          r"'fixmatch'; did you mean 'threshold'"):
        load_config(overrides=["algorithm.treshold=0.9"])
    with pytest.raises(ConfigError, match=r"algorithm.threshold: .*less than or equal to 1"):
        load_config(overrides=["algorithm.threshold=2"])


def test_unknown_algorithm_and_model_suggest_names() -> None:
    with pytest.raises(ConfigError, match=r"algorithm.name: unknown algorithm 'fixmath'; "
                                          r"did you mean 'fixmatch'"):
        load_config(overrides=["algorithm.name=fixmath"])
    with pytest.raises(ConfigError, match=r"model.name: unknown model 'wrm'"):
        load_config(overrides=["model.name=wrm"])


def test_model_parameters_are_checked_against_the_model() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'model.widht_factor' for model 'wrn'; "
                                          r"did you mean 'widen_factor'"):
        load_config(overrides=["model.name=wrn", "model.widht_factor=4"])
    cfg = load_config(overrides=["model.name=wrn", "model.widen_factor=4"])
    assert cfg.model_params() == {"widen_factor": 4}


def test_augmentation_pipelines_are_validated_and_required() -> None:
    with pytest.raises(ConfigError, match=r"augment.strong: .*did you mean 'randaugment'"):
        load_config(overrides=["augment.strong=[randaugmnt]"])
    with pytest.raises(ConfigError, match=r"needs augment pipelines \['strong'\]"):
        load_config(augment={"weak": ["flip"]})


def test_dotted_overrides_parse_yaml_values() -> None:
    raw = apply_overrides({}, ["train.lr=0.1", "train.nesterov=false", "data.mean=[0.5, 0.5]",
                               "data.labels_per_class=null", "name=x=y"])
    assert raw == {"train": {"lr": 0.1, "nesterov": False}, "name": "x=y",
                   "data": {"mean": [0.5, 0.5], "labels_per_class": None}}


def test_bad_override_forms_are_errors() -> None:
    with pytest.raises(ConfigError, match="dotted.key=value"):
        apply_overrides({}, ["train.lr"])
    with pytest.raises(ConfigError, match="'seed' is not a section"):
        apply_overrides({"seed": 1}, ["seed.x=2"])


def test_missing_and_malformed_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="cfg.yaml: not valid YAML"):
        load_config(write(tmp_path, "train: [unclosed\n"))
    with pytest.raises(ConfigError, match="cfg.yaml: a config must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_yaml_tags_that_would_build_python_objects_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "name: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_shipped_config_names_resolve_with_suggestions() -> None:
    assert aerossl.find_config("demo_fixmatch").name == "demo_fixmatch.yaml"
    with pytest.raises(ConfigError, match="did you mean 'demo_fixmatch'"):
        aerossl.find_config("demo_fixmach")


def test_one_did_you_mean_hint_for_every_unknown_name() -> None:
    from aerossl.errors import suggest

    assert suggest("Steps", ["lr", "steps", "mu"]) == "; did you mean 'steps'?"
    assert suggest("widht", ["widths", "depth"]) == "; did you mean 'widths'?"
    assert suggest("zzz", ["lr", "steps"]) == ""
    for call in (lambda: aerossl.load_config(overrides=["train.stepz=3"]),
                 lambda: aerossl.load_config(overrides=["algorithm.name=fixmath"]),
                 lambda: aerossl.load_config(overrides=["model.name=resnet19"]),
                 lambda: aerossl.load_config(overrides=["augment.weak=[flpi]"])):
        with pytest.raises(ConfigError, match=r"did you mean '(steps|fixmatch|resnet18|flip)'"):
            call()
