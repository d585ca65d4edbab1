"""Multi-stage pipelines: each stage is an ordinary run whose config may name earlier stages.

A pipeline file holds a ``base`` config and a list of ``stages``; each stage's sections are
merged into the base (nested keys override), and any string ``"@stage"`` is replaced by that
earlier stage's run folder (for ``model.init`` or ``algorithm.teacher``)::

    name: simclr_ucm
    output_dir: runs
    base: {data: {root: demo}, model: {name: cnn}, train: {steps: 500}}
    stages:
      - {name: pretrain, algorithm: {name: simclr}}
      - {name: finetune, algorithm: {name: supervised}, model: {init: "@pretrain"}}
      - {name: distill, algorithm: {name: distill, teacher: "@finetune", alpha: 1.0}}

Instead of ``stages``, ``noisy_student: {rounds: N, teacher: {...}, student: {...}}`` expands to
a supervised teacher and N Noisy Student rounds, each student teaching the next round.

Stage runs live in ``output_dir/name/<stage>``. Running a pipeline again skips finished stages
and resumes a stopped one from its last checkpoint, so a whole pipeline is resumable.
``pipeline_summary.md`` / ``.json`` list every stage's accuracy (and its teacher's).
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aerossl.algorithms import algorithm_names, get_algorithm
from aerossl.config import AlgorithmConfig, Config, read_yaml
from aerossl.engine.checkpoint import writing
from aerossl.engine.trainer import Trainer
from aerossl.errors import ConfigError
from aerossl.runs.loader import load_run_config
from aerossl.validate import config_from_dict

log = logging.getLogger("aerossl")


class NoisyStudentPlan(BaseModel):
    """A supervised teacher, then ``rounds`` of Noisy Student."""

    model_config = ConfigDict(extra="forbid")
    rounds: int = Field(2, ge=1, description="student rounds after the first teacher")
    teacher: dict[str, Any] = Field(
        default_factory=dict, description="config sections of the first (supervised) teacher"
    )
    student: dict[str, Any] = Field(
        default_factory=lambda: {"model": {"dropout": 0.3}},
        description="config sections of every student (noise: dropout, strong augmentation)",
    )


class PipelineSpec(BaseModel):
    """A pipeline file."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field("pipeline", description="folder of the stage runs, under output_dir")
    output_dir: str = Field("runs", description="parent folder")
    base: dict[str, Any] = Field(default_factory=dict, description="config shared by stages")
    stages: list[dict[str, Any]] = Field(default_factory=list, description="stage configs")
    noisy_student: NoisyStudentPlan | None = Field(None, description="Noisy Student rounds")


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Deep merge: mappings merge key by key, anything else in ``extra`` replaces."""
    out = copy.deepcopy(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) \
            else copy.deepcopy(v)
    return out


def with_default_pipelines(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` with the augment pipelines its method brings
    (:meth:`~aerossl.algorithms.base.Algorithm.default_pipelines`, e.g. SimCLR's
    ``contrastive``) where its ``augment`` section lacks them."""
    algo = raw.get("algorithm") or {}
    name = algo.get("name", AlgorithmConfig().name)
    if name not in algorithm_names():
        return raw  # validation names the unknown method
    augment = raw.get("augment")
    own = augment if augment is not None else Config().augment
    missing = {k: v for k, v in get_algorithm(name).default_pipelines(algo).items()
               if k not in own}
    if not missing:
        return raw
    return merge(raw, {"augment": {**(own if augment is None else {}), **missing}})


def noisy_student_stages(plan: NoisyStudentPlan) -> list[dict[str, Any]]:
    """Stage configs of a Noisy Student plan: ``teacher``, ``round1``, ``round2``, ..."""
    stages = [merge({"name": "teacher", "algorithm": {"name": "supervised"}}, plan.teacher)]
    for r in range(1, plan.rounds + 1):
        previous = stages[-1]["name"]
        stage = merge({"name": f"round{r}",
                       "algorithm": {"name": "noisy_student", "teacher": f"@{previous}"}},
                      plan.student)
        stages.append(stage)
    return stages


def _resolve(value: Any, runs: dict[str, Path], stage: str) -> Any:
    if isinstance(value, dict):
        return {k: _resolve(v, runs, stage) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, runs, stage) for v in value]
    if isinstance(value, str) and value.startswith("@"):
        if value[1:] not in runs:
            raise ConfigError(f"stage '{stage}': '{value}' names no earlier stage (earlier: "
                              f"{', '.join(runs) or 'none'})")
        return str(runs[value[1:]])
    return value


def load_pipeline(spec: str | Path | dict[str, Any]) -> PipelineSpec:
    """Validate a pipeline file or dict."""
    source = str(spec) if not isinstance(spec, dict) else "<pipeline>"
    raw = read_yaml(spec) if not isinstance(spec, dict) else spec
    try:
        p = PipelineSpec(**raw)
    except ValidationError as e:
        msgs = [f"{source}: {'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors()]
        raise ConfigError("\n".join(msgs)) from None
    if not p.stages and p.noisy_student is None:
        raise ConfigError(f"{source}: give 'stages' or 'noisy_student'")
    if p.stages and p.noisy_student is not None:
        raise ConfigError(f"{source}: give either 'stages' or 'noisy_student', not both")
    return p


def run_stage(cfg_raw: dict[str, Any], run_dir: Path, source: str) -> dict[str, Any]:
    """Run one stage in ``run_dir``: skip it if finished, resume it if stopped; its summary."""
    summary = run_dir / "summary.json"
    if summary.is_file():
        log.info("stage %s: already finished (%s)", run_dir.name, run_dir)
    elif (run_dir / "checkpoints" / "last.pt").is_file():
        log.info("stage %s: resuming %s", run_dir.name, run_dir)
        Trainer(load_run_config(run_dir), run_dir, resume=True).fit()
    else:
        cfg = config_from_dict(with_default_pipelines(cfg_raw), source)
        Trainer(cfg, run_dir).fit()
    return json.loads(summary.read_text())


def stage_configs(spec: str | Path | dict[str, Any] | PipelineSpec,
                  overrides: dict[str, Any] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """``(name, raw config)`` of every stage, with ``"@stage"`` resolved to run folders."""
    p = spec if isinstance(spec, PipelineSpec) else load_pipeline(spec)
    root = Path(p.output_dir) / p.name
    stages = noisy_student_stages(p.noisy_student) if p.noisy_student else p.stages
    runs: dict[str, Path] = {}
    out = []
    for i, stage in enumerate(stages):
        stage = dict(stage)
        name = stage.pop("name", None)
        if not isinstance(name, str) or not name or name in runs:
            raise ConfigError(f"stage {i + 1}: needs a unique 'name' (got {name!r})")
        raw = _resolve(merge(merge(p.base, stage), overrides or {}), runs, name)
        raw.update(name=name, output_dir=str(root))
        runs[name] = root / name
        out.append((name, raw))
    return out


def run_pipeline(spec: str | Path | dict[str, Any],
                 overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run (or continue) every stage in order; returns and writes the pipeline summary."""
    p = load_pipeline(spec)
    root = Path(p.output_dir) / p.name
    rows = []
    for name, raw in stage_configs(p, overrides):
        run_dir = root / name
        summary = run_stage(raw, run_dir, f"pipeline stage '{name}'")
        teacher = (raw.get("algorithm") or {}).get("teacher")
        teacher_acc = None
        if teacher and (Path(teacher) / "summary.json").is_file():
            teacher_acc = json.loads((Path(teacher) / "summary.json").read_text())["final_acc"]
        rows.append({"stage": name, "algorithm": summary["algorithm"], "model": summary["model"],
                     "run_dir": str(run_dir), "final_acc": summary["final_acc"],
                     "best_acc": summary["best_acc"], "teacher_acc": teacher_acc,
                     "linear_probe_acc": summary.get("linear_probe_acc")})
    result = {"name": p.name, "stages": rows}
    with writing(root):
        (root / "pipeline_summary.json").write_text(json.dumps(result, indent=2))
        (root / "pipeline_summary.md").write_text(summary_markdown(result))
    return result


def _pct(v: float | None) -> str:
    return "" if v is None else f"{v:.1%}"


def summary_markdown(result: dict[str, Any]) -> str:
    """The pipeline summary as a Markdown table."""
    lines = [f"# Pipeline {result['name']}", "",
             "| stage | algorithm | model | teacher acc | test acc (final) | best | "
             "linear probe |", "|---|---|---|---|---|---|---|"]
    for r in result["stages"]:
        lines.append(f"| {r['stage']} | {r['algorithm']} | {r['model']} | "
                     f"{_pct(r['teacher_acc'])} | {_pct(r['final_acc'])} | "
                     f"{_pct(r['best_acc'])} | {_pct(r['linear_probe_acc'])} |")
    return "\n".join(lines) + "\n"
