"""Spatiotemporal metadata (CSV, BigEarthNet JSON, GeoTIFF), its encodings and errors, the
metadata in batches, and the metadata-teacher / image-only-student algorithm."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import get_args

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from geodata import write_bigearthnet_patch, write_geotiff
from pyproj import Transformer
from torch import nn

import aerossl
from aerossl.algorithms import Batch, StepContext, get_algorithm
from aerossl.algorithms.selectors import SELECTORS, SelectorName
from aerossl.data import scan_folder
from aerossl.data.metadata import (
    Location,
    collect_metadata,
    encode_metadata,
    read_metadata_csv,
)
from aerossl.engine.trainer import Trainer
from aerossl.errors import ConfigError, DataError
from aerossl.runs.loader import load_run_network
from aerossl.validate import load_config

FILES = ["forest/a.jpg", "forest/b.jpg", "river/c.jpg"]


def write_csv(path: Path, rows: list[list]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "lat", "lon", "date"])
        w.writerows(rows)
    return path


GOOD = [["forest/a.jpg", 45.0, 9.0, "2020-01-01"], ["forest/b.jpg", -33.9, 151.2, "2019-07-02"],
        ["river/c.jpg", 0.0, -180.0, "2018-12-31 10:10:32"]]


# ---------------------------------------------------------------------------- reading


def test_csv_metadata_is_read_in_dataset_order_and_encoded(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "m.csv", list(reversed(GOOD)))
    locs = read_metadata_csv(path, FILES)
    assert locs[0] == Location(45.0, 9.0, locs[0].date) and str(locs[0].date) == "2020-01-01"
    assert str(locs[2].date) == "2018-12-31"
    simple = encode_metadata(locs, "simple")
    assert simple.shape == (3, 4) and simple.dtype == np.float32
    # [lat/90, lon/180, sin, cos of 2 pi (day of year - 1) / 365.25]
    angle = 2 * math.pi * 182 / 365.25  # 2019-07-02 is day 183
    assert np.allclose(simple[1], [-33.9 / 90, 151.2 / 180, math.sin(angle), math.cos(angle)])
    assert np.allclose(simple[0], [0.5, 0.05, 0.0, 1.0])
    multi = encode_metadata(locs, "multiscale")
    assert multi.shape == (3, 20) and np.abs(multi).max() <= 1
    lat, lon = math.radians(45.0), math.radians(9.0)
    assert np.allclose(multi[0, 12:16], [math.sin(8 * lon), math.cos(8 * lon),
                                         math.sin(8 * lat), math.cos(8 * lat)], atol=1e-6)


def test_missing_metadata_error_or_fill(tmp_path: Path, caplog) -> None:
    path = write_csv(tmp_path / "m.csv", GOOD[:2])
    with pytest.raises(DataError, match=r"m\.csv: no metadata for 1 of 3 images "
                                        r"\(first: 'river/c\.jpg'\).*missing_metadata=fill"):
        read_metadata_csv(path, FILES)
    locs = read_metadata_csv(path, FILES, missing="fill")
    assert locs[2] is None and "no metadata for 1 of 3" in caplog.text
    enc = encode_metadata(locs)
    assert np.allclose(enc[2], enc[:2].mean(0))  # the average of the known encodings


def test_row_for_an_image_that_is_missing_error_or_fill(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "m.csv", [*GOOD, ["lake/gone.jpg", 1.0, 2.0, "2020-01-01"]])
    with pytest.raises(DataError, match=r"m\.csv:5: 'lake/gone\.jpg' is not an image of the "
                                        "dataset"):
        read_metadata_csv(path, FILES)
    assert None not in read_metadata_csv(path, FILES, missing="fill")


@pytest.mark.parametrize(("row", "message"), [
    (["river/c.jpg", 91.0, 0.0, "2020-01-01"], r"m\.csv:4: 'river/c\.jpg': latitude 91\.0 is "
                                               r"outside \[-90, 90\]"),
    (["river/c.jpg", 10.0, 200.0, "2020-01-01"], r"m\.csv:4: 'river/c\.jpg': longitude 200\.0"),
    (["river/c.jpg", 10.0, 20.0, "13/31/2020"], r"m\.csv:4: field 'date': cannot parse date "
                                                r"'13/31/2020'"),
    (["river/c.jpg", "north", 20.0, "2020-01-01"], r"m\.csv:4: field 'lat' is not a number"),
    (["forest/a.jpg", 1.0, 2.0, "2020-01-01"], r"m\.csv:4: 'forest/a\.jpg' already has "
                                               r"metadata on line 2"),
])
def test_bad_metadata_values_name_the_file_line_and_field(
    tmp_path: Path, row: list, message: str
) -> None:
    path = write_csv(tmp_path / "m.csv", [*GOOD[:2], row])
    with pytest.raises(DataError, match=message):
        read_metadata_csv(path, FILES, missing="fill")


def test_csv_without_a_needed_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("path,lat,lon\nforest/a.jpg,1,2\n")
    with pytest.raises(DataError, match=r"m\.csv:1: metadata CSV lacks column\(s\) date"):
        read_metadata_csv(path, FILES)


def test_geotiff_and_bigearthnet_metadata_sources(tmp_path: Path) -> None:
    root = tmp_path / "tifs"
    cube = np.ones((13, 8, 8), dtype=np.uint16)
    write_geotiff(root / "a" / "x.tif", cube, date="2020:03:01 00:00:00")
    write_geotiff(root / "a" / "undated.tif", cube, origin=(600000.0, 5000000.0))
    with pytest.raises(DataError, match=r"undated\.tif: no acquisition date"):
        collect_metadata(root, ["a/x.tif", "a/undated.tif"], "geotiff")
    locs = collect_metadata(root, ["a/x.tif", "a/undated.tif"], "geotiff", missing="fill")
    lon, lat = Transformer.from_crs(32632, 4326, always_xy=True).transform(600040.0, 4999960.0)
    assert locs[1].lat == pytest.approx(lat) and locs[1].lon == pytest.approx(lon)
    assert str(locs[0].date) == "2020-03-01" and locs[1].date is None
    enc = encode_metadata(locs)
    assert np.allclose(enc[1, 2:], enc[0, 2:])  # unknown date: the known dates' average

    ben = tmp_path / "ben"
    write_bigearthnet_patch(ben / "forest", "P_1", ["Mixed forest"], date="2017-08-01 10:00:00",
                            sizes={"B02": 12, "B03": 12})
    (locs_ben,) = collect_metadata(ben, ["forest/P_1"], "bigearthnet")
    assert str(locs_ben.date) == "2017-08-01"
    bad = write_bigearthnet_patch(ben / "forest", "P_2", ["Mixed forest"], date="sometime",
                                  sizes={"B02": 12})
    with pytest.raises(DataError, match=r"P_2_labels_metadata\.json: field 'acquisition_date': "
                                        "cannot parse date 'sometime'"):
        collect_metadata(ben, ["forest/P_1", "forest/P_2"], "bigearthnet")
    meta = json.loads((bad / "P_2_labels_metadata.json").read_text())
    meta["coordinates"] = {"ulx": 0, "uly": 95, "lrx": 1, "lry": 94}
    meta["projection"] = "EPSG:4326"
    meta["acquisition_date"] = "2017-08-01"
    (bad / "P_2_labels_metadata.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"P_2_labels_metadata\.json: field 'coordinates': "
                                        "latitude"):
        collect_metadata(ben, ["forest/P_2"], "bigearthnet")


def test_config_needs_a_metadata_file_for_csv() -> None:
    with pytest.raises(ConfigError, match="data.metadata=csv needs data.metadata_file"):
        load_config(data={"metadata": "csv"})
    with pytest.raises(ConfigError, match="data.metadata_encoding"):
        load_config(data={"metadata_encoding": "fourier"})


# ---------------------------------------------------------------------------- algorithm


class Linear(nn.Module):
    """A network with the Normalized interface: ``forward_features``, ``head``."""

    def __init__(self, seed: int, features: int = 3, classes: int = 3) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Linear(4, features)
        self.head = nn.Linear(features, classes)
        self.num_features = features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def make_spatiotemporal(**params):
    cls = get_algorithm("spatiotemporal")
    return cls(Linear(0), cls.Params(**params), num_classes=3, num_images=10, meta_dim=4)


def test_spatiotemporal_loss_matches_the_formula() -> None:
    torch.manual_seed(1)
    algo = make_spatiotemporal(threshold=0.6, lambda_u=0.7, lambda_d=0.3)
    with torch.no_grad():
        algo.teacher.body.weight.add_(0.5)  # teacher differs from the student
    x, u_w, u_s = torch.randn(2, 1, 2, 2), torch.randn(5, 1, 2, 2), torch.randn(5, 1, 2, 2)
    m_l, m_u = torch.randn(2, 4), torch.randn(5, 4)
    y = torch.tensor([0, 2])
    batch = Batch({"weak": x}, y, {"weak": u_w, "strong": u_s},
                  unlabeled_index=torch.arange(5), labeled_meta=m_l, unlabeled_meta=m_u)
    out = algo.training_step(batch, StepContext(0, 10))

    t, s, mlp = algo.teacher, algo.model, algo.meta_mlp
    with torch.no_grad():
        probs = torch.softmax(t.head(t.forward_features(u_w) + mlp(m_u)), 1)
        conf, pseudo = probs.max(1)
        mask = (conf >= 0.6).float()
        z, m = torch.cat([x, u_s]), torch.cat([m_l, m_u])
        ft, fs = t.forward_features(z) + mlp(m), s.forward_features(z)
        lt, ls = t.head(ft), s.head(fs)
        sup = F.cross_entropy(lt[:2], y) + F.cross_entropy(ls[:2], y)
        unsup = ((F.cross_entropy(lt[2:], pseudo, reduction="none")
                  + F.cross_entropy(ls[2:], pseudo, reduction="none")) * mask).mean()
        distill = ((fs - ft) ** 2).mean()
    assert 0 < mask.mean() < 1
    assert torch.isclose(out.log["loss/sup"], sup)
    assert torch.isclose(out.log["loss/unsup"], unsup)
    assert torch.isclose(out.log["loss/distill"], distill)
    assert torch.isclose(out.loss, sup + 0.7 * unsup + 0.3 * distill)
    assert torch.equal(out.mask, mask) and torch.equal(out.pseudo_labels, pseudo)

    # distillation pulls the student towards the teacher, never the teacher towards the student
    algo.zero_grad()
    only_distill = make_spatiotemporal(lambda_u=0.0, lambda_d=1.0)
    only_distill.load_state_dict(algo.state_dict())
    only_distill.training_step(batch, StepContext(0, 10)).loss.backward()
    grads = {name: p.grad for name, p in only_distill.named_parameters()}
    sup_only = make_spatiotemporal(lambda_u=0.0, lambda_d=0.0)
    sup_only.load_state_dict(algo.state_dict())
    sup_only.training_step(batch, StepContext(0, 10)).loss.backward()
    for name, p in sup_only.named_parameters():
        if name.startswith(("teacher.", "meta_mlp.")):
            assert torch.allclose(grads[name], p.grad), name
    assert not torch.allclose(grads["model.body.weight"], sup_only.model.body.weight.grad)


def test_spatiotemporal_student_ignores_metadata_and_is_the_evaluated_model() -> None:
    algo = make_spatiotemporal()
    assert algo.eval_model() is algo.model and algo.teacher is not algo.model
    x = torch.randn(3, 1, 2, 2)
    m1, m2 = torch.zeros(3, 4), torch.ones(3, 4)
    assert not torch.allclose(algo.teacher_features(x, m1), algo.teacher_features(x, m2))
    assert algo.eval_model()(x).shape == (3, 3)  # images only
    cls = get_algorithm("spatiotemporal")
    with pytest.raises(ConfigError, match="needs metadata: set data.metadata"):
        cls(Linear(0), cls.Params(), num_classes=3)
    with pytest.raises(ConfigError, match=r"algorithm\.selector: Input should be 'fixed', "
                                          r"'flexmatch' or 'freematch' \(got 'flex'\)"):
        load_config(algorithm={"name": "spatiotemporal", "selector": "flex"})
    assert set(get_args(SelectorName)) == set(SELECTORS)
    # the metadata teacher takes the selectors that need nothing but the weak predictions
    assert set(get_args(cls.Params.model_fields["selector"].annotation)) == {
        "fixed", "flexmatch", "freematch"}


def logit_net() -> Linear:
    """A :class:`Linear` whose logits are the first three pixels of its 1 x 2 x 2 input."""
    net = Linear(0)
    with torch.no_grad():
        net.body.weight.copy_(torch.eye(3, 4))
        net.head.weight.copy_(torch.eye(3))
        net.body.bias.zero_()
        net.head.bias.zero_()
    return net


def logit_images(logits: torch.Tensor) -> torch.Tensor:
    """Images (B x 1 x 2 x 2) that :func:`logit_net` maps to ``logits`` (B x 3)."""
    return torch.cat([logits, torch.zeros(len(logits), 1)], 1).view(-1, 1, 2, 2)


def record_masks(module: nn.Module) -> list[torch.Tensor]:
    masks: list[torch.Tensor] = []
    module.register_forward_hook(lambda mod, args, out: masks.append(out.clone()))
    return masks


@pytest.mark.parametrize(("selector", "params", "state"), [
    ("flexmatch", {"threshold": 0.7, "threshold_warmup": True},
     ("selected_label", "seen", "class_threshold")),
    ("freematch", {"ema_momentum": 0.6}, ("global_threshold", "p_model", "label_hist")),
])
def test_adaptive_selectors_select_like_their_algorithms(
    selector: str, params: dict, state: tuple[str, ...]
) -> None:
    """The teacher's probabilities through the selector give FlexMatch's / FreeMatch's masks and
    threshold state, step after step, on the same probabilities."""
    cls = get_algorithm("spatiotemporal")
    st = cls(Linear(0), cls.Params(selector=selector, **params), num_classes=3, num_images=10,
             meta_dim=4)
    st.teacher = logit_net()
    with torch.no_grad():  # no metadata offset: the teacher's logits are the weak images
        st.meta_mlp.net[2].weight.zero_()
        st.meta_mlp.net[2].bias.zero_()
    ref_cls = get_algorithm(selector)
    ref = ref_cls(logit_net(), ref_cls.Params(**params), num_classes=3, num_images=10)
    st_masks, ref_masks = record_masks(st.selector), record_masks(ref.thresholds)

    gen = torch.Generator().manual_seed(0)
    for step in range(5):
        logits = 3 * torch.randn(6, 3, generator=gen)
        index = torch.randperm(10, generator=gen)[:6]
        batch = Batch({"weak": logit_images(torch.randn(2, 3, generator=gen))},
                      torch.tensor([0, 1]),
                      {"weak": logit_images(logits), "strong": torch.randn(6, 1, 2, 2)},
                      unlabeled_index=index,
                      labeled_meta=torch.randn(2, 4), unlabeled_meta=torch.randn(6, 4))
        out_st = st.training_step(batch, StepContext(step, 10))
        out_ref = ref.training_step(batch, StepContext(step, 10))
        assert torch.equal(st_masks[-1], ref_masks[-1]), step
        assert torch.equal(out_st.mask, out_ref.mask), step
        for name in state:
            assert torch.equal(getattr(st.selector, name), getattr(ref.thresholds, name)), name
    masks = torch.cat(st_masks)
    assert len(st_masks) == 5 and 0 < masks.mean() < 1  # some kept, some not
    assert not torch.equal(st.selector.class_thresholds() if selector == "freematch"
                           else st.selector.class_threshold, torch.zeros(3))


@pytest.mark.parametrize("selector", ["flexmatch", "freematch"])
def test_adaptive_selector_state_is_checkpointed_and_frozen_in_eval(selector: str) -> None:
    algo = make_spatiotemporal(selector=selector, threshold=0.5, ema_momentum=0.5)
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        algo.selector(torch.softmax(3 * torch.randn(5, 3, generator=gen), 1),
                      torch.randperm(10, generator=gen)[:5])
    keys = {k.removeprefix("selector.") for k in algo.state_dict() if k.startswith("selector.")}
    assert keys == ({"selected_label", "seen", "class_threshold"} if selector == "flexmatch"
                    else {"global_threshold", "p_model", "label_hist"})
    other = make_spatiotemporal(selector=selector, threshold=0.5, ema_momentum=0.5)
    assert any(not torch.equal(algo.state_dict()[f"selector.{k}"],
                               other.state_dict()[f"selector.{k}"]) for k in keys)
    other.load_state_dict(algo.state_dict())
    probs, index = torch.softmax(3 * torch.randn(5, 3, generator=gen), 1), torch.arange(5)
    assert torch.equal(other.selector(probs, index), algo.selector(probs, index))
    for k in keys:
        assert torch.equal(other.state_dict()[f"selector.{k}"], algo.state_dict()[f"selector.{k}"])
    before = {k: v.clone() for k, v in algo.state_dict().items()}
    algo.eval()
    algo.selector(probs, index)
    assert all(torch.equal(v, algo.state_dict()[k]) for k, v in before.items())


def informative_csv(root: Path, path: Path) -> Path:
    """Each class at its own place and season: metadata that gives the class away."""
    ds = scan_folder(root)
    rng = np.random.default_rng(0)
    rows = [[f, -40 + 20 * y + rng.normal(0, 1), -100 + 50 * y + rng.normal(0, 1),
             f"2020-{1 + 2 * y:02d}-{rng.integers(1, 28):02d}"]
            for f, y in zip(ds.files, ds.labels, strict=True)]
    return write_csv(path, rows)


def test_spatiotemporal_trains_end_to_end_and_the_run_predicts_from_images_only(
    five_classes: Path, tmp_path: Path
) -> None:
    csv_path = informative_csv(five_classes, tmp_path / "meta.csv")
    cfg = {"name": "st", "output_dir": str(tmp_path / "runs"), "seed": 0,
           "data": {"root": str(five_classes), "image_size": 32, "labels_per_class": 4,
                    "metadata": "csv", "metadata_file": str(csv_path)},
           "model": {"name": "cnn", "widths": [16, 32, 64]},
           "algorithm": {"name": "spatiotemporal", "threshold": 0.8},
           "train": {"steps": 30, "batch_size": 10, "mu": 2, "eval_every": 15, "log_every": 10,
                     "progress": False, "tensorboard": False, "lr": 0.05},
           "report": []}
    trainer = Trainer(aerossl.load_config(**cfg))
    batch = trainer.batches.next()
    assert batch.unlabeled_meta is not None and batch.labeled_meta is not None
    assert torch.equal(batch.unlabeled_meta, trainer.data.meta[batch.unlabeled_index])
    assert trainer.data.meta.shape == (200, 4)
    result = trainer.fit()
    rows = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["split"] == "train"]
    assert all(math.isfinite(r["loss/distill"]) for r in train)
    # the teacher reads the class from the metadata: its guesses beat chance (0.2) by far
    assert train[-1]["pseudo_acc_all"] >= 0.7, train[-1]
    network, info = load_run_network(result.run_dir)
    assert info["channels"] == 3
    assert not any(k.startswith(("teacher", "meta_mlp")) for k in network.state_dict())
    assert network(torch.rand(2, 3, 32, 32)).shape == (2, 5)


@pytest.mark.parametrize(("mode", "lam"), [("mixup", 0.75), ("cutmix", 0.0)])
def test_spatiotemporal_mixes_labelled_metadata_with_its_images(
    monkeypatch: pytest.MonkeyPatch, mode: str, lam: float
) -> None:
    """With labeled_mix, the teacher sees each mixed labelled image with the metadata mixed by
    the same coefficient and partner as its targets."""
    algo = make_spatiotemporal(labeled_mix=mode)
    monkeypatch.setattr(torch.distributions.Beta, "sample", lambda self, *a: torch.tensor(lam))
    monkeypatch.setattr(torch, "randperm", lambda n, **kw: torch.arange(n).flip(0))
    monkeypatch.setattr(torch, "randint", lambda high, size, **kw: torch.full(size, 1))  # box
    seen: list[torch.Tensor] = []
    algo.meta_mlp.register_forward_hook(lambda mod, args, out: seen.append(args[0].clone()))
    x, m_l = torch.randn(3, 1, 2, 2), torch.randn(3, 4)
    y = torch.tensor([0, 1, 2])
    batch = Batch({"weak": x}, y, {"weak": torch.randn(2, 1, 2, 2),
                                   "strong": torch.randn(2, 1, 2, 2)},
                  unlabeled_index=torch.arange(2), labeled_meta=m_l,
                  unlabeled_meta=torch.randn(2, 4))
    algo.training_step(batch, StepContext(0, 10))
    _, targets = algo.mix_labeled(x, y)  # the same draws again
    own = targets.diagonal()[:, None]  # row i: this much of itself, the rest of its partner
    mixed = own * m_l + (1 - own) * m_l.flip(0)
    assert not torch.allclose(mixed, m_l)
    assert torch.allclose(seen[-1][:3], mixed)  # the labelled rows of the teacher's pass
