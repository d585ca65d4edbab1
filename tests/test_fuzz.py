"""Property-based fuzzing of the user-facing parsers: config files, CLI overrides, split files.

Whatever the input, they either succeed or raise the documented error type (``ConfigError``
resp. ``DataError``); no ``TypeError``, ``KeyError`` or the like escapes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from aerossl.algorithms import algorithm_names, get_algorithm
from aerossl.augment.base import AUGMENTATIONS
from aerossl.config import Config, apply_overrides
from aerossl.data.folder import scan_folder
from aerossl.data.splits import split_from_files
from aerossl.errors import ConfigError, DataError
from aerossl.models.registry import model_names, model_params
from aerossl.validate import load_config

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

# ------------------------------------------------------------------------------ config values

SECTIONS = {name: list(getattr(field.annotation, "model_fields", {}))
            for name, field in Config.model_fields.items()}
PARAM_NAMES = sorted({p for m in model_names() for p in model_params(m)}
                     | {p for a in algorithm_names() for p in get_algorithm(a).Params.model_fields})
ALL_KEYS = sorted(set(SECTIONS) | {k for keys in SECTIONS.values() for k in keys}
                  | set(PARAM_NAMES) | {"name", "weak", "strong"})
NAMES = sorted(set(model_names()) | set(algorithm_names()) | set(AUGMENTATIONS))

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-3, 300),
    st.floats(allow_nan=True, allow_infinity=True), st.floats(0, 1),
    st.text(max_size=12), st.sampled_from(NAMES),
)
keys = st.one_of(st.sampled_from(ALL_KEYS), st.text(max_size=10))
# YAML keys need not be strings; safe_dump writes them and safe_load reads them back
any_keys = st.one_of(keys, st.integers(), st.booleans(), st.none(), st.floats(allow_nan=False))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(any_keys, inner, max_size=4)),
    max_leaves=12,
)


def section(name: str) -> st.SearchStrategy[dict]:
    """A section with mostly real keys (so validation goes past the unknown-key check)."""
    real = SECTIONS[name] or ["weak", "strong"]
    if name in ("model", "algorithm"):
        real = [*real, *PARAM_NAMES]
    named = {"name": st.sampled_from(NAMES)} if name in ("model", "algorithm") else {}
    return st.fixed_dictionaries(
        {}, optional={**{k: values for k in real}, **named},
    ) | st.dictionaries(any_keys, values, max_size=3)


configs = st.fixed_dictionaries(
    {}, optional={name: (section(name) if SECTIONS[name] or name == "augment" else values)
                  for name in SECTIONS},
) | st.dictionaries(any_keys, values, max_size=4)

DEFAULT_PIPELINES = set(Config().augment)
# Methods that run on the default data (one class per image) with the default pipelines
# (ccssl also needs a declared "contrast" pipeline).
PLAIN_ALGORITHMS = [a for a in algorithm_names() if "multiclass" in get_algorithm(a).tasks
                    and get_algorithm(a).pipelines(get_algorithm(a).Params()) <= DEFAULT_PIPELINES]

# A strategy for valid configs: real values only.
valid_configs = st.fixed_dictionaries(
    {},
    optional={
        "seed": st.integers(0, 2**31),
        "name": st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1,
                        max_size=8),
        "data": st.fixed_dictionaries({}, optional={
            "image_size": st.integers(8, 512), "test_fraction": st.floats(0.01, 0.99),
            "labels_per_class": st.none() | st.integers(1, 50)}),
        "model": st.fixed_dictionaries({"name": st.sampled_from(model_names())}),
        "algorithm": st.fixed_dictionaries({"name": st.sampled_from(PLAIN_ALGORITHMS)}),
        "train": st.fixed_dictionaries({}, optional={
            "steps": st.integers(1, 10**6), "batch_size": st.integers(1, 512),
            "lr": st.floats(1e-6, 10), "lr_schedule": st.sampled_from(["cosine", "constant"]),
            "ema": st.floats(0, 0.999), "progress": st.booleans()}),
        "report": st.lists(st.sampled_from(["html", "md"]), max_size=2),
    },
)


YAML_CHARS = " \n\t:-[]{},'\"#&*!|>?%@`.~0123456789abcdefnrstuxy_\\"
YAML_TOKENS = [*ALL_KEYS, ": ", ":", "\n", "\n  ", "- ", "[", "]", "{", "}", ", ", "null", "~",
               "true", "1", "-3", "0.5", ".nan", "1e400", "&a ", "*a", "!!str ", "!!binary ",
               "!!python/name:os.system ", "'", '"', "? ", "---\n", "...\n", "<<: "]


def call(fn, *args, **kwargs) -> Any:
    """Run ``fn``; only ``ConfigError`` may come out."""
    try:
        out = fn(*args, **kwargs)
    except ConfigError as e:
        event(f"ConfigError: {str(e).split(': ')[-1][:30]}")
        return None
    except Exception as e:  # pragma: no cover - the failure this file looks for
        pytest.fail(f"{type(e).__name__} instead of ConfigError: {e!r}")
    event("accepted")
    return out


@pytest.fixture(scope="module")
def cfg_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzzcfg") / "cfg.yaml"


@FUZZ
@given(text=st.text(max_size=200) | st.text(YAML_CHARS, max_size=120)
       | st.lists(st.sampled_from(YAML_TOKENS), max_size=30).map("".join))
@example(text="train: {steps: [1]}\n")
@example(text="!!python/object/apply:os.system ['true']")
@example(text="[1, 2]")
@example(text="a: &x [*x]")
def test_load_config_of_any_text_raises_only_config_error(cfg_file: Path, text: str) -> None:
    cfg_file.write_text(text, encoding="utf-8", errors="surrogatepass")
    call(load_config, cfg_file)


@FUZZ
@given(raw=configs)
@example(raw={"model": {"name": "cnn", 1: 2}})
@example(raw={"algorithm": {"name": "fixmatch", 1: 2}})
@example(raw={1: {"a": 1}})
def test_load_config_of_any_mapping_raises_only_config_error(cfg_file: Path, raw: dict) -> None:
    cfg_file.write_text(yaml.safe_dump(raw), encoding="utf-8")
    call(load_config, cfg_file)


@FUZZ
@given(raw=valid_configs)
def test_load_config_accepts_valid_configs(cfg_file: Path, raw: dict) -> None:
    cfg_file.write_text(yaml.safe_dump(raw), encoding="utf-8")
    cfg = load_config(cfg_file)
    for name, sec in raw.items():
        value = getattr(cfg, name)
        if isinstance(sec, dict):
            for key, v in sec.items():
                assert getattr(value, key) == v, (name, key)
        else:
            assert value == sec, name


dotted = st.lists(st.sampled_from(ALL_KEYS) | st.text(max_size=6), min_size=1, max_size=3).map(
    ".".join)
override_values = st.one_of(st.text(max_size=20), values.map(
    lambda v: yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()))
overrides = st.lists(st.one_of(st.text(max_size=30),
                               st.tuples(dotted, override_values).map("=".join)), max_size=4)


@FUZZ
@given(items=overrides)
@example(items=["=1"])
@example(items=["train=3", "train.steps=4"])
@example(items=["data.root.x=1"])
@example(items=["model.1=2"])
@example(items=["algorithm.threshold=[1]"])
def test_overrides_raise_only_config_error(items: list[str]) -> None:
    raw = call(apply_overrides, {"train": {"steps": 5}, "report": ["md"]}, items)
    assert raw is None or isinstance(raw, dict)
    call(load_config, None, items)


# ------------------------------------------------------------------------------ split files


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory):
    from PIL import Image

    root = tmp_path_factory.mktemp("fuzzdata")
    for c, name in enumerate(["forest", "river"]):
        for i in range(3):
            path = root / name / f"{name}{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8), (40 * c, 30 * i, 100)).save(path)
    return scan_folder(root)


NAMES_IN_SPLIT = ["forest/forest0.png", "forest/forest1.png", "river/river2.png",
                  "river\\river0.png", "./forest/forest2.png", "forest//forest1.png"]
lines = st.one_of(
    st.sampled_from(NAMES_IN_SPLIT),
    st.sampled_from(["..", "../x", "forest/../river/river1.png", "/etc/passwd", "C:\\x.png",
                     "\x00", "forest/forest0.png\x00", "# comment", "", " ", "\ufeff",
                     "\u2028", "forest/forest0.png\r", "x" * 5000]),
    st.text(max_size=40),
    st.text(st.characters(codec="utf-8"), max_size=40),
)
split_text = st.lists(lines, max_size=8).map("\n".join)


def split_call(fn, *args, **kwargs) -> Any:
    try:
        out = fn(*args, **kwargs)
    except DataError as e:
        event(f"DataError: {str(e).split(': ', 1)[-1][:30]}")
        return None
    except Exception as e:  # pragma: no cover - the failure this file looks for
        pytest.fail(f"{type(e).__name__} instead of DataError: {e!r}")
    event("accepted")
    return out


@FUZZ
@given(labeled=split_text, test=st.none() | split_text, raw=st.none() | st.binary(max_size=60),
       fraction=st.floats(-1, 2) | st.just(0.5))
@example(labeled="forest/forest0.png", test=None, raw=b"\xff\xfe\x00bad", fraction=0.5)
@example(labeled="forest/forest0.png\nriver/river0.png", test="forest/forest0.png", raw=None,
         fraction=0.5)
def test_split_files_raise_only_data_error(dataset, tmp_path_factory, labeled: str,
                                           test: str | None, raw: bytes | None,
                                           fraction: float) -> None:
    folder = tmp_path_factory.getbasetemp() / "fuzzsplit"
    folder.mkdir(exist_ok=True)
    lab = folder / "labeled.txt"
    lab.write_text(labeled, encoding="utf-8", errors="surrogatepass")
    tst = None
    if test is not None:
        tst = folder / "test.txt"
        tst.write_text(test, encoding="utf-8", errors="surrogatepass")
    if raw is not None:  # arbitrary bytes (not UTF-8, NULs) in the labelled file
        lab.write_bytes(raw)
    split = split_call(split_from_files, dataset, lab, tst, test_fraction=fraction)
    if split is not None:
        n = len(dataset.files)
        assert len(split.labeled) > 0 and not set(split.labeled) & set(split.test)
        assert set(split.unlabeled) == set(range(n)) - set(split.test)
    split_call(split_from_files, dataset, folder / "missing.txt")
