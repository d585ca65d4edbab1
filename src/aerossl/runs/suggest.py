"""Which images to label next: ``aerossl suggest-labels RUN_DIR --budget N``.

Acquisition rule (uncertainty, balanced over predicted classes, diverse). For every image of
the run's unlabelled pool (the train part minus the labelled images), with the run's evaluated
(EMA) network:

1. ``p = mean over V weak views of softmax(f(view))`` (the run's ``augment.weak`` pipeline,
   else flips, rotations and a padded crop) and the uncertainty ``u = H(p) / log C`` (entropy
   of the averaged prediction, normalised to [0, 1]): high when the model is unsure or its
   views disagree;
2. ``z``: the features (before the head) of the image itself, centred on the mean of the pool
   and labelled images and L2-normalised (so that the cosine compares images relative to the
   dataset rather than the all-positive average feature);
3. greedy picks, ``budget`` times: the predicted class (``argmax p``) with the fewest picks so
   far among those with candidates left (ties: the class whose best candidate scores highest)
   gives its candidate with the highest ``score = u - diversity * s``, where ``s`` is the
   largest cosine similarity of ``z`` to the labelled images and the picks so far. The class
   balance spreads the labels over what the model believes the classes are; the similarity
   term keeps near-duplicates (of each other or of labelled images) out.

Outputs (in ``out_dir``, temporary names renamed at the end):

- ``suggestions.csv``: ``rank, path`` (relative to the dataset root, as in split files),
  ``predicted_class, confidence, uncertainty, margin, max_similarity, score, label`` (empty,
  for the labeller);
- ``suggestions.html``: the images in rank order with their predicted class, ready to label
  (and ``suggestions.png``, the same grid as a picture);
- ``labeled.txt``: the run's labelled images plus the suggestions: a split file that a new
  run reads with ``data.labeled_names_file`` (and the run's ``split/test.txt`` as
  ``data.test_names_file`` to keep the same test set).

The dataset stays the source of truth for classes (an image's class is its class folder, or
its manifest row). ``accept_labels`` turns a labelled ``suggestions.csv`` into ``labeled.txt``
from only the rows whose ``label`` is filled in, after checking each label against the dataset.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aerossl.data.dataset import task_of
from aerossl.engine.checkpoint import staged_files
from aerossl.errors import AerosslError, DataError

CSV_NAME, HTML_NAME, SPLIT_NAME = "suggestions.csv", "suggestions.html", "labeled.txt"
SHEET_NAME = "suggestions.png"


@dataclass
class Scores:
    """Per pool image: averaged class probabilities, uncertainty, margin and features."""

    probs: np.ndarray  # (N, C)
    uncertainty: np.ndarray  # (N,) normalised entropy of probs
    margin: np.ndarray  # (N,) top-1 minus top-2 probability
    features: np.ndarray  # (N, D) raw (see unit_features)


@dataclass
class SuggestResult:
    """What :func:`suggest_labels` chose and wrote."""

    out_dir: Path
    files: dict[str, Path]
    names: list[str]  # suggested images, rank order (paths relative to the dataset root)
    predicted: list[str]
    pool_size: int
    num_labeled: int
    seconds: float = 0.0
    rows: list[dict[str, Any]] = field(default_factory=list)


# ----------------------------------------------------------------------------- scoring


@torch.no_grad()
def score_images(network: torch.nn.Module, images: torch.Tensor, indices: np.ndarray,
                 weak: Any, views: int, device: torch.device, seed: int = 0,
                 batch_size: int = 256) -> Scores:
    """Uncertainty of the mean prediction over ``views`` weak views, margin and features
    of the images ``indices`` of the uint8 ``images``."""
    gen = torch.Generator().manual_seed(seed)
    probs, feats = [], []
    for start in range(0, len(indices), batch_size):
        x = images[torch.as_tensor(indices[start: start + batch_size])].to(device).float() / 255
        p = torch.zeros(x.shape[0], 0)
        for _ in range(max(views, 1)):
            v = weak(x, gen) if views > 0 else x
            q = torch.softmax(network(v).float(), dim=1)
            p = q if p.numel() == 0 else p + q
        probs.append((p / max(views, 1)).cpu())
        features = getattr(network, "forward_features", None)
        z = features(x) if features is not None else network(x)  # logits when no features
        feats.append(z.float().flatten(1).cpu())
    p = torch.cat(probs).clamp_min(1e-12) if probs else torch.zeros(0, 1)
    c = p.shape[1]
    entropy = -(p * p.log()).sum(1) / math.log(c) if c > 1 else torch.zeros(p.shape[0])
    top2 = p.topk(min(2, c), dim=1).values
    margin = top2[:, 0] - (top2[:, 1] if c > 1 else 0)
    z = torch.cat(feats) if feats else torch.zeros(0, 1)
    return Scores(p.numpy(), entropy.numpy(), margin.numpy(), z.numpy())


def unit_features(features: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Features centred on ``mean`` and scaled to unit length (rows)."""
    z = features - mean
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)


def select(scores: Scores, budget: int, labeled_features: np.ndarray | None = None,
           diversity: float = 0.5) -> tuple[list[int], np.ndarray]:
    """Greedy class-balanced, diverse picks (positions into ``scores``); returns them and
    each pick's largest cosine similarity to the labelled images and earlier picks.
    ``scores.features`` and ``labeled_features`` must be unit rows (:func:`unit_features`)."""
    n = len(scores.uncertainty)
    if budget > n:
        raise AerosslError(f"budget {budget} is larger than the pool of {n} images")
    pred = scores.probs.argmax(1)
    z = scores.features
    max_sim = np.full(n, -1.0, dtype=np.float64)
    if labeled_features is not None and len(labeled_features):
        max_sim = (z @ labeled_features.T).max(1).astype(np.float64)
    remaining = np.ones(n, dtype=bool)
    counts = np.zeros(scores.probs.shape[1], dtype=np.int64)
    picks: list[int] = []
    sims = np.zeros(budget)
    for k in range(budget):
        score = scores.uncertainty - diversity * np.maximum(max_sim, 0.0)
        score = np.where(remaining, score, -np.inf)
        classes = np.unique(pred[remaining])
        fewest = counts[classes].min()
        candidates = classes[counts[classes] == fewest]
        best = {int(c): int(np.flatnonzero(pred == c)[np.argmax(score[pred == c])])
                for c in candidates}
        cls = max(best, key=lambda c: (score[best[c]], -c))
        i = best[cls]
        picks.append(i)
        sims[k] = max_sim[i]
        remaining[i] = False
        counts[cls] += 1
        max_sim = np.maximum(max_sim, z @ z[i])
    return picks, sims


# ----------------------------------------------------------------------------- outputs


def _thumbnail(path: Path, cached: np.ndarray, size: int = 128) -> Any:
    """A Pillow RGB thumbnail of the image (from its file when Pillow reads it, else the
    cached channels: multispectral TIFF, patch folder)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            thumb = img.convert("RGB")
            thumb.thumbnail((size, size))
    except Exception:  # not a Pillow image: show the cached channels
        chw = cached[:3] if cached.shape[0] >= 3 else np.repeat(cached[:1], 3, axis=0)
        thumb = Image.fromarray(np.ascontiguousarray(chw.transpose(1, 2, 0))).resize(
            (size, size), Image.Resampling.NEAREST)
    return thumb


def _data_uri(image: Any) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def write_contact_sheet(path: Path, thumbs: list[Any], captions: list[str],
                        columns: int = 7, size: int = 128) -> None:
    """A PNG grid of the suggested images with a caption under each."""
    from PIL import Image, ImageDraw

    rows = -(-len(thumbs) // columns)
    cell_h = size + 28
    sheet = Image.new("RGB", (columns * (size + 8) + 8, rows * cell_h + 8), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (thumb, caption) in enumerate(zip(thumbs, captions, strict=True)):
        x, y = 8 + (k % columns) * (size + 8), 8 + (k // columns) * cell_h
        sheet.paste(thumb.resize((size, size)), (x, y))
        for n, text in enumerate(caption.split("\n")[:2]):
            draw.text((x, y + size + 2 + 12 * n), text[:22], fill="black")
    sheet.save(path, format="PNG")


def write_html(path: Path, rows: list[dict[str, Any]], uris: list[str], title: str) -> None:
    """A self-contained page of the suggested images in rank order."""
    cells = []
    for row, uri in zip(rows, uris, strict=True):
        cells.append(
            f'<figure><img src="{uri}" alt="{html.escape(row["path"])}">'
            f'<figcaption><b>#{row["rank"]}</b> {html.escape(row["path"])}<br>'
            f'model: {html.escape(row["predicted_class"])} ({float(row["confidence"]):.2f}), '
            f'uncertainty {float(row["uncertainty"]):.2f}<br>label: ________</figcaption>'
            "</figure>")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            "</title><style>body{font-family:sans-serif;margin:1em}"
            "main{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));"
            "gap:10px}figure{margin:0;border:1px solid #ccc;padding:4px;font-size:11px;"
            "overflow-wrap:anywhere}img{width:160px;height:160px;object-fit:contain;"
            "image-rendering:pixelated;background:#eee}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p>Label these images in rank order; write each "
            f"label in the <code>label</code> column of {CSV_NAME}.</p>"
            f"<main>{''.join(cells)}</main></body></html>")
    path.write_text(page, encoding="utf-8")


def _write_split(path: Path, names: list[str], header: str) -> None:
    path.write_text(f"# {header}\n" + "".join(f"{n}\n" for n in names), encoding="utf-8")


# ----------------------------------------------------------------------------- main


def suggest_labels(
    run_dir: str | Path,
    budget: int,
    out_dir: str | Path | None = None,
    views: int = 8,
    diversity: float = 0.5,
    checkpoint: str = "last",
    device: str = "auto",
    seed: int = 0,
    images: bool = True,
) -> SuggestResult:
    """Rank the run's unlabelled images by the acquisition rule (module docstring) and write
    the ``budget`` best as CSV, HTML and a ``labeled.txt`` split file (in ``out_dir``,
    default ``RUN_DIR/suggestions``)."""
    from aerossl.augment import build_pipeline
    from aerossl.config import WEAK
    from aerossl.engine.data import load_data
    from aerossl.runs.loader import load_run_config, load_run_network, resolve_device

    start = time.perf_counter()
    run_dir = Path(run_dir)
    if budget < 1:
        raise AerosslError(f"budget must be at least 1, got {budget}")
    if views < 0 or diversity < 0:
        raise AerosslError(f"views and diversity must be >= 0, got {views}, {diversity}")
    cfg = load_run_config(run_dir)
    if task_of(cfg.data) != "multiclass":
        raise AerosslError(f"{run_dir} is a multilabel run; suggest-labels ranks multiclass "
                           "runs")
    dev = resolve_device(device)
    network, _info = load_run_network(run_dir, checkpoint, dev)
    data = load_data(cfg.data, cfg.seed, split_dir=run_dir / "split")
    labeled = data.split.labeled
    pool = np.setdiff1d(data.split.unlabeled, labeled)
    if budget > len(pool):
        raise AerosslError(f"budget {budget} is larger than the unlabelled pool of {run_dir}: "
                           f"{len(pool)} images ({len(data.split.unlabeled)} in the train part, "
                           f"{len(labeled)} of them labelled); lower --budget")
    weak = build_pipeline(cfg.augment.get("weak", WEAK))
    scores = score_images(network, data.images, pool, weak, views, dev, seed)
    lab = score_images(network, data.images, labeled, weak, 0, dev).features
    mean = np.concatenate([scores.features, lab]).mean(0)
    scores.features, lab = unit_features(scores.features, mean), unit_features(lab, mean)
    picks, sims = select(scores, budget, lab, diversity)

    classes = data.classes
    rows = []
    for rank, (i, sim) in enumerate(zip(picks, sims, strict=True), start=1):
        p = scores.probs[i]
        rows.append({"rank": rank, "path": data.dataset.files[pool[i]],
                     "predicted_class": classes[int(p.argmax())],
                     "confidence": f"{p.max():.4f}",
                     "uncertainty": f"{scores.uncertainty[i]:.4f}",
                     "margin": f"{scores.margin[i]:.4f}",
                     "max_similarity": f"{sim:.4f}",
                     "score": f"{scores.uncertainty[i] - diversity * max(sim, 0.0):.4f}",
                     "label": ""})
    out = Path(out_dir) if out_dir else run_dir / "suggestions"
    out.mkdir(parents=True, exist_ok=True)
    targets = {"csv": out / CSV_NAME, "split": out / SPLIT_NAME}
    if images:
        targets["html"] = out / HTML_NAME
        targets["sheet"] = out / SHEET_NAME
    with staged_files(targets) as temps:
        with temps["csv"].open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        names = [r["path"] for r in rows]
        _write_split(temps["split"], [data.dataset.files[i] for i in labeled] + names,
                     f"labelled images of {run_dir} plus {len(names)} suggested by aerossl "
                     "suggest-labels; use as data.labeled_names_file")
        if images:
            thumbs = [_thumbnail(data.dataset.root / data.dataset.files[pool[i]],
                                 data.images[int(pool[i])].numpy()) for i in picks]
            write_html(temps["html"], rows, [_data_uri(t) for t in thumbs],
                       f"{budget} images to label next ({run_dir.name}, pool {len(pool)})")
            write_contact_sheet(temps["sheet"], thumbs, [
                f"#{r['rank']} {r['predicted_class']}?\nu={float(r['uncertainty']):.2f} "
                f"s={float(r['max_similarity']):.2f}" for r in rows])
    return SuggestResult(out, targets, names, [r["predicted_class"] for r in rows], len(pool),
                         len(labeled), time.perf_counter() - start, rows)


def accept_labels(run_dir: str | Path, suggestions_csv: str | Path,
                  out: str | Path | None = None) -> Path:
    """``labeled.txt`` (next to the CSV unless ``out``) from the run's labelled images and the
    CSV rows whose ``label`` is filled in; each label must be a class of the run and agree with
    the dataset (else a :class:`DataError` naming the row: fix the image's class folder or
    manifest row first)."""
    from aerossl.engine.data import read_dataset
    from aerossl.runs.loader import load_run_config

    run_dir, suggestions_csv = Path(run_dir), Path(suggestions_csv)
    cfg = load_run_config(run_dir)
    dataset, _ = read_dataset(cfg.data)
    index = {f: i for i, f in enumerate(dataset.files)}
    accepted = []
    try:
        with suggestions_csv.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise DataError(f"{suggestions_csv}: cannot read ({exc})") from None
    for line, row in enumerate(rows, start=2):
        label = (row.get("label") or "").strip()
        if not label:
            continue
        where = f"{suggestions_csv}:{line}"
        if label not in dataset.classes:
            from aerossl.config import suggest

            raise DataError(f"{where}: label '{label}' is not a class of the run"
                            f"{suggest(label, dataset.classes)}")
        name = row.get("path", "")
        if name not in index:
            raise DataError(f"{where}: '{name}' is not an image of the dataset at "
                            f"{dataset.root}")
        actual = dataset.classes[int(dataset.labels[index[name]])]
        if actual != label:
            raise DataError(f"{where}: '{name}' is labelled '{label}' but the dataset has it in "
                            f"class '{actual}'; move the file to the '{label}' folder (or fix "
                            "its manifest row) and give its new path")
        accepted.append(name)
    base = [n.strip() for n in (run_dir / "split" / "labeled.txt").read_text().splitlines()
            if n.strip() and not n.startswith("#")]
    target = Path(out) if out else suggestions_csv.with_name(SPLIT_NAME)
    with staged_files({"split": target}) as temps:
        _write_split(temps["split"], list(dict.fromkeys(base + accepted)),
                     f"labelled images of {run_dir} plus {len(accepted)} labelled from "
                     f"{suggestions_csv.name}; use as data.labeled_names_file")
    return target


# ----------------------------------------------------------------------------- CLI


__all__ = ["SuggestResult", "accept_labels", "score_images", "select",
           "suggest_labels"]
