"""FixMatch step throughput: aerossl against the conventional pipeline, same model and batch.

Measured in one run, for the same network, resolution, batch size and mu:

1. ``aerossl``: the engine's real step (``Trainer._train_step``: BatchBuilder draws indices,
   gathers cached uint8 images, augments batched on the device; FixMatch's weak unlabelled view
   runs without autograd; channels_last; AMP on CUDA; EMA, scheduler);
2. ``reference``: the conventional pipeline of the FixMatch reference code / TorchSSL / USB,
   written here: a torch ``Dataset`` that turns each uint8 image into a PIL image and applies
   per-sample PIL transforms in ``DataLoader`` workers (flip, 90-degree rotation as in aerossl's
   weak pipeline, reflect-padded random crop; strong adds FixMatch's RandAugmentMC(2, 10) with
   its 14 PIL ops and Cutout), ToTensor and Normalize, then all views concatenated through one
   joint fp32 forward (no channels_last), SGD step, scheduler and a per-parameter EMA update;
3. ``model bound``: aerossl's FixMatch forward, backward and optimiser step on one batch already
   augmented and on the device (no data work at all): the floor for (1).

Also reported (not part of the targets): ``reference model``, the reference's joint forward,
backward and optimiser step on tensors in memory, which separates what the reference loses in
its data pipeline from what the joint step layout costs.

Each pipeline is timed over ``--steps`` steps after ``--warmup`` steps, ``--repeats`` times
(interleaved, so that load changes hit all pipelines alike); the median is reported. CPU
seconds include the DataLoader workers. Writes ``benchmarks/results/throughput_<device>.md``.

    python benchmarks/throughput.py --root ../shared/data/ucmerced --threads 1
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import os
import platform
import random
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageDraw
import PIL.ImageEnhance
import PIL.ImageOps
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, RandomSampler

from aerossl.algorithms import StepContext
from aerossl.engine.optim import build_optimizer
from aerossl.engine.trainer import Trainer
from aerossl.models import create_model
from aerossl.validate import config_from_dict

# ------------------------------------------------------------------ the conventional pipeline
# FixMatch reference augmentation (RandAugmentMC with fixmatch_augment_pool), per PIL image.

PARAMETER_MAX = 10


def _float_parameter(v: float, max_v: float) -> float:
    return float(v) * max_v / PARAMETER_MAX


def _int_parameter(v: float, max_v: float) -> int:
    return int(v * max_v / PARAMETER_MAX)


def AutoContrast(img, **kw):  # the reference code's op names
    return PIL.ImageOps.autocontrast(img)


def Brightness(img, v, max_v, bias=0):
    return PIL.ImageEnhance.Brightness(img).enhance(_float_parameter(v, max_v) + bias)


def Color(img, v, max_v, bias=0):
    return PIL.ImageEnhance.Color(img).enhance(_float_parameter(v, max_v) + bias)


def Contrast(img, v, max_v, bias=0):
    return PIL.ImageEnhance.Contrast(img).enhance(_float_parameter(v, max_v) + bias)


def Equalize(img, **kw):
    return PIL.ImageOps.equalize(img)


def Identity(img, **kw):
    return img


def Posterize(img, v, max_v, bias=0):
    return PIL.ImageOps.posterize(img, _int_parameter(v, max_v) + bias)


def Rotate(img, v, max_v, bias=0):
    v = _int_parameter(v, max_v) + bias
    return img.rotate(-v if random.random() < 0.5 else v)


def Sharpness(img, v, max_v, bias=0):
    return PIL.ImageEnhance.Sharpness(img).enhance(_float_parameter(v, max_v) + bias)


def ShearX(img, v, max_v, bias=0):
    v = _float_parameter(v, max_v) + bias
    v = -v if random.random() < 0.5 else v
    return img.transform(img.size, PIL.Image.AFFINE, (1, v, 0, 0, 1, 0))


def ShearY(img, v, max_v, bias=0):
    v = _float_parameter(v, max_v) + bias
    v = -v if random.random() < 0.5 else v
    return img.transform(img.size, PIL.Image.AFFINE, (1, 0, 0, v, 1, 0))


def Solarize(img, v, max_v, bias=0):
    return PIL.ImageOps.solarize(img, 256 - (_int_parameter(v, max_v) + bias))


def TranslateX(img, v, max_v, bias=0):
    v = _float_parameter(v, max_v) + bias
    v = int((-v if random.random() < 0.5 else v) * img.size[0])
    return img.transform(img.size, PIL.Image.AFFINE, (1, 0, v, 0, 1, 0))


def TranslateY(img, v, max_v, bias=0):
    v = _float_parameter(v, max_v) + bias
    v = int((-v if random.random() < 0.5 else v) * img.size[1])
    return img.transform(img.size, PIL.Image.AFFINE, (1, 0, 0, 0, 1, v))


FIXMATCH_AUGMENT_POOL = [
    (AutoContrast, None, None), (Brightness, 0.9, 0.05), (Color, 0.9, 0.05),
    (Contrast, 0.9, 0.05), (Equalize, None, None), (Identity, None, None), (Posterize, 4, 4),
    (Rotate, 30, 0), (Sharpness, 0.9, 0.05), (ShearX, 0.3, 0), (ShearY, 0.3, 0),
    (Solarize, 256, 0), (TranslateX, 0.3, 0), (TranslateY, 0.3, 0),
]


def cutout_abs(img: PIL.Image.Image, v: int) -> PIL.Image.Image:
    """A grey ``v``x``v`` square at a uniformly random centre."""
    w, h = img.size
    x0 = int(max(0, np.random.uniform(0, w) - v / 2.0))
    y0 = int(max(0, np.random.uniform(0, h) - v / 2.0))
    img = img.copy()
    PIL.ImageDraw.Draw(img).rectangle((x0, y0, min(w, x0 + v), min(h, y0 + v)), (127, 127, 127))
    return img


class RandAugmentMC:
    """n random ops, each applied with probability 1/2 at a random magnitude in [1, m), then
    Cutout of half the image side."""

    def __init__(self, n: int, m: int) -> None:
        self.n, self.m = n, m

    def __call__(self, img: PIL.Image.Image) -> PIL.Image.Image:
        for op, max_v, bias in random.choices(FIXMATCH_AUGMENT_POOL, k=self.n):
            v = np.random.randint(1, self.m)
            if random.random() < 0.5:
                img = op(img, v=v, max_v=max_v, bias=bias)
        return cutout_abs(img, int(img.size[0] * 0.5))


def weak(img: PIL.Image.Image) -> PIL.Image.Image:
    """Random horizontal flip, random 90-degree rotation (aerossl's aerial weak pipeline) and
    a random crop from the reflect-padded image (torchvision's RandomCrop(padding_mode=reflect))."""
    if random.random() < 0.5:
        img = img.transpose(PIL.Image.FLIP_LEFT_RIGHT)
    k = random.randrange(4)
    if k:
        img = img.transpose((PIL.Image.ROTATE_90, PIL.Image.ROTATE_180,
                             PIL.Image.ROTATE_270)[k - 1])
    w, h = img.size
    pad = int(w * 0.125)
    padded = PIL.Image.fromarray(np.pad(np.asarray(img), ((pad, pad), (pad, pad), (0, 0)),
                                        mode="reflect"))
    i, j = random.randint(0, 2 * pad), random.randint(0, 2 * pad)
    return padded.crop((j, i, j + w, i + h))


class ToTensorNormalize:
    """torchvision's ToTensor then Normalize."""

    def __init__(self, mean: list[float], std: list[float]) -> None:
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)

    def __call__(self, img: PIL.Image.Image) -> torch.Tensor:
        x = torch.from_numpy(np.array(img, copy=True)).permute(2, 0, 1).contiguous()
        return x.float().div(255).sub_(self.mean).div_(self.std)


class ImageArrayDataset(Dataset):
    """uint8 HWC images in memory (as CIFAR/STL datasets are held), one PIL image per item."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Callable) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.transform(PIL.Image.fromarray(self.images[i])), int(self.labels[i])


class WeakStrong:
    """The unlabelled transform: (weak view, strong view)."""

    def __init__(self, normalize: ToTensorNormalize) -> None:
        self.normalize, self.randaugment = normalize, RandAugmentMC(2, 10)

    def __call__(self, img: PIL.Image.Image):
        return self.normalize(weak(img)), self.normalize(self.randaugment(weak(img)))


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


class ReferenceFixMatch:
    """The conventional FixMatch training step (one joint forward of all views, fp32)."""

    def __init__(self, trainer: Trainer, workers: int) -> None:
        cfg, data, device = trainer.cfg, trainer.data, trainer.device
        self.device, self.cfg = device, cfg
        self.threshold = cfg.algorithm_params().get("threshold", 0.95)
        torch.manual_seed(cfg.seed)
        self.model = create_model(cfg.model.name, data.num_classes, data.channels,
                                  **cfg.model_params()).to(device)
        self.ema = copy.deepcopy(self.model)
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.optimizer, self.scheduler = build_optimizer(self.model, cfg)
        normalize = ToTensorNormalize(cfg.data.mean, cfg.data.std)
        hwc = data.images.numpy().transpose(0, 2, 3, 1)
        labels = data.labels.numpy()
        lab, unl = data.split.labeled, data.split.unlabeled
        b, mu = cfg.train.batch_size, cfg.train.mu
        pin = device.type == "cuda"

        def loader(ds: Dataset, batch: int) -> DataLoader:
            sampler = RandomSampler(ds, replacement=True, num_samples=10**8)
            return DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=workers,
                              drop_last=True, pin_memory=pin, persistent_workers=workers > 0,
                              worker_init_fn=_seed_worker)

        self.labeled = iter(loader(ImageArrayDataset(hwc[lab], labels[lab],
                                                     lambda im: normalize(weak(im))), b))
        self.unlabeled = iter(loader(ImageArrayDataset(hwc[unl], labels[unl],
                                                       WeakStrong(normalize)), b * mu))
        self.step_count = 0

    def worker_pids(self) -> list[int]:
        """Process ids of the DataLoader workers."""
        its = (self.labeled, self.unlabeled)
        return [w.pid for it in its for w in getattr(it, "_workers", [])]

    @torch.no_grad()
    def ema_update(self) -> None:
        decay = min(self.cfg.train.ema, (1 + self.step_count) / (10 + self.step_count))
        for e, p in zip(self.ema.parameters(), self.model.parameters(), strict=True):
            e.mul_(decay).add_(p.detach(), alpha=1 - decay)
        for e, b in zip(self.ema.buffers(), self.model.buffers(), strict=True):
            e.copy_(b)

    def next_batch(self):
        x, y = next(self.labeled)
        (u_w, u_s), _ = next(self.unlabeled)
        nb = self.device.type == "cuda"
        return (x.to(self.device, non_blocking=nb), y.to(self.device, non_blocking=nb),
                u_w.to(self.device, non_blocking=nb), u_s.to(self.device, non_blocking=nb))

    def train_on(self, x, y, u_w, u_s) -> None:
        self.model.train()
        logits = self.model(torch.cat([x, u_w, u_s]))
        logits_x = logits[: len(x)]
        logits_w, logits_s = logits[len(x):].chunk(2)
        loss_x = F.cross_entropy(logits_x, y)
        max_probs, pseudo = torch.softmax(logits_w.detach(), dim=-1).max(dim=-1)
        mask = max_probs.ge(self.threshold).float()
        loss_u = (F.cross_entropy(logits_s, pseudo, reduction="none") * mask).mean()
        (loss_x + loss_u).backward()
        self.optimizer.step()
        self.scheduler.step()
        self.ema_update()
        self.model.zero_grad(set_to_none=True)
        self.step_count += 1

    def step(self) -> None:
        self.train_on(*self.next_batch())


# ------------------------------------------------------------------ timing


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of this process and of ``pids`` (DataLoader workers)."""
    total = time.process_time()
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def timed(step: Callable[[], None], steps: int, warmup: int, device: torch.device,
          pids: Callable[[], list[int]] = list) -> tuple[float, float]:
    """(wall seconds, CPU seconds) per step over ``steps`` steps after ``warmup`` steps."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        step()
    sync()
    cpu0, t0 = cpu_seconds(pids()), time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return (time.perf_counter() - t0) / steps, (cpu_seconds(pids()) - cpu0) / steps


def run_config(args: argparse.Namespace, out_dir: str) -> dict:
    return {
        "name": "throughput", "output_dir": out_dir, "seed": 0,
        "data": {"root": args.root, "image_size": args.image_size, "labels_per_class": 4},
        "model": {"name": args.model, **({"widths": args.widths} if args.widths else {})},
        "algorithm": {"name": "fixmatch"},
        "train": {"steps": 100_000, "batch_size": args.batch_size, "mu": args.mu,
                  "device": args.device, "num_threads": args.threads, "progress": False,
                  "tensorboard": False},
        "report": [],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--root", default="demo", help="dataset folder (default: embedded demo set)")
    p.add_argument("--model", default="cnn")
    p.add_argument("--widths", type=int, nargs="*", help="cnn widths (default: the model's)")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--mu", type=int, default=3)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the main process")
    p.add_argument("--workers", type=int, help="reference DataLoader workers per loader "
                   "(default: 1 on CPU, 4 on CUDA)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", help="Markdown file (default benchmarks/results/throughput_<dev>.md)")
    p.add_argument("--append", action="store_true", help="append a section to --out")
    args = p.parse_args()
    workers = args.workers if args.workers is not None else (4 if args.device == "cuda" else 1)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()

    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config_from_dict(run_config(args, tmp)))
        device = trainer.device
        ref = ReferenceFixMatch(trainer, workers)
        fixed = trainer.batches.next()
        ref_fixed = ref.next_batch()
        ctx = StepContext(0, trainer.cfg.train.steps)

        def aerossl_step() -> None:
            trainer._train_step(ctx)

        def model_bound_step(joint: bool = False) -> None:
            algo = trainer.algorithm
            algo.train()
            params = algo.p
            algo.p = params.model_copy(update={"joint_batch": joint})
            try:
                with torch.autocast(device.type, dtype=trainer.amp_dtype, enabled=trainer.amp):
                    out = algo.training_step(fixed, ctx)
            finally:
                algo.p = params  # the configured layout for the other pipelines
            trainer.optimizer.zero_grad(set_to_none=True)
            trainer.scaler.scale(out.loss).backward()
            trainer.scaler.step(trainer.optimizer)
            trainer.scaler.update()

        pipelines: dict[str, tuple[Callable[[], None], Callable[[], list[int]]]] = {
            "aerossl": (aerossl_step, list),
            "model bound": (model_bound_step, list),
            "model bound, joint": (lambda: model_bound_step(joint=True), list),
            "reference": (ref.step, ref.worker_pids),
            "reference model": (lambda: ref.train_on(*ref_fixed), list),
        }
        results: dict[str, list[tuple[float, float]]] = {k: [] for k in pipelines}
        for r in range(args.repeats):
            for name, (fn, pids) in pipelines.items():
                results[name].append(timed(fn, args.steps, args.warmup, device, pids))
                wall, cpu = results[name][-1]
                print(f"repeat {r + 1}: {name:<16} {wall:.4f} s/step wall, {cpu:.4f} CPU s",
                      flush=True)
    load_after = os.getloadavg()

    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
           for k, v in results.items()}
    images = args.batch_size * (1 + 2 * args.mu)
    r13 = med["aerossl"][0] / med["model bound"][0]
    r21 = med["reference"][0] / med["aerossl"][0]
    r21_cpu = med["reference"][1] / med["aerossl"][1]
    print(f"(1)/(3) aerossl / model bound = {r13:.3f}  (target <= 1.10)")
    print(f"(2)/(1) reference / aerossl   = {r21:.3f} wall, {r21_cpu:.3f} CPU  (target >= 1.5)")

    rows = "\n".join(
        f"| {name} | {w:.4f} | {c:.4f} | {images / w:.0f} | "
        f"{' / '.join(f'{x:.3f}' for x, _ in results[name])} |"
        for name, (w, c) in med.items())
    widths = f", widths {args.widths}" if args.widths else ""
    title = f"{args.model}{widths} at {args.image_size}px, batch {args.batch_size}, mu {args.mu}"
    section = f"""## {title}, {device}

- date: {dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
- command: `PYTHONPATH=src python {shlex.join(sys.argv)}`
- machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__};
  load average before {load_before[0]:.2f}, after {load_after[0]:.2f}{
    ' (machine shared with other jobs during the measurement)' if max(load_before[0],
                                                                      load_after[0]) > 1.5 else ''}
- data: `{args.root}` ({len(trainer.data.labels)} images cached at {args.image_size}px,
  {len(trainer.data.split.labeled)} labelled)
- {images} images per step ({args.batch_size} labelled weak, {args.batch_size * args.mu}
  unlabelled weak + strong); torch threads {args.threads}; reference DataLoader workers
  {workers} per loader (2 loaders); aerossl AMP {'on' if trainer.amp else 'off'},
  channels_last {trainer.cfg.train.channels_last}
- {args.steps} timed steps after {args.warmup} warm-up steps, {args.repeats} interleaved
  repeats; medians. CPU s counts the main process and the DataLoader workers.

| pipeline | wall s/step | CPU s/step | images/s | wall s/step per repeat |
|---|---|---|---|---|
{rows}

- **(1)/(3)** aerossl step / model bound: **{r13:.3f}** (target <= 1.10)
- **(2)/(1)** reference / aerossl: **{r21:.3f}** wall, **{r21_cpu:.3f}** CPU (target >= 1.5)
- reference / reference model: {med['reference'][0] / med['reference model'][0]:.3f} wall
  (what its per-sample data pipeline adds); reference model / model bound:
  {med['reference model'][0] / med['model bound'][0]:.3f}, of which the joint step layout
  (aerossl's step with `joint_batch: true` / default): {
    med['model bound, joint'][0] / med['model bound'][0]:.3f} and the rest (fp32 contiguous
  tensors vs channels_last, normalisation in the Dataset vs in the model): {
    med['reference model'][0] / med['model bound, joint'][0]:.3f}
"""
    out = Path(args.out or f"benchmarks/results/throughput_{device.type}.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.append and out.exists():
        out.write_text(out.read_text().rstrip("\n") + "\n\n" + section)
    else:
        out.write_text(HEADER + section)
    print(f"wrote {out}")


HEADER = """# FixMatch step throughput: aerossl vs the conventional pipeline

Written by `benchmarks/throughput.py` (see its docstring for what each pipeline does).
(1) aerossl's real training step; (2) the conventional per-sample PIL pipeline in DataLoader
workers with one joint fp32 forward, as in the FixMatch reference code, TorchSSL and USB;
(3) aerossl's forward, backward and optimiser step on a batch already in memory.

GPU numbers are pending: no GPU was available to this measurement. On a GPU run
`python benchmarks/throughput.py --device cuda --out benchmarks/results/throughput_cuda.md`
(the reference then uses 4 DataLoader workers per loader, pinned memory, non-blocking copies).

"""


if __name__ == "__main__":
    main()
