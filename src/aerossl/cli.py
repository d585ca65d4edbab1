"""Command line: ``aerossl train|evaluate|predict|export|compare|sweep|demo|validate|report|list``,
``map``, ``suggest-labels``, and the teacher-student stages
``pretrain|finetune|distill|noisy-student|pipeline|pseudo-label``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from aerossl import api
from aerossl.errors import AerosslError
from aerossl.runs import add_run_options


def _train(args: argparse.Namespace) -> int:
    if args.resume:
        if args.config and "=" not in args.config:
            raise AerosslError("give either CONFIG or --resume RUN_DIR, not both")
        overrides = ([args.config] if args.config else []) + args.overrides
        result = api.resume(args.resume, overrides)
    else:
        if not args.config:
            raise AerosslError("missing CONFIG (a YAML file or a shipped config name)")
        result = api.train(args.config, args.overrides)
    from aerossl.engine import distributed

    if not distributed.is_main():  # under torchrun rank 0 reports
        return 0
    name = "accuracy" if result.metric == "acc" else result.metric
    print(f"test {name} {result.final_acc:.4f} (best {result.best_acc:.4f} at step "
          f"{result.best_step}) after {result.steps} steps, {result.minutes:.1f} min")
    if result.metric != "acc":
        print("  " + "  ".join(f"{k} {v:.4f}" for k, v in result.metrics.items()))
    print(f"run folder: {result.run_dir}")
    if result.report:
        print(f"report: {result.report}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    if args.old_task:
        acc = api.evaluate_old_task(args.run_dir, args.old_task, args.checkpoint,
                                    "cpu" if args.device == "auto" else args.device)
        print(f"{args.run_dir} ({args.checkpoint}.pt): old-task accuracy {acc:.4f} on the test "
              f"split of {args.old_task}")
        return 0
    res = api.evaluate(args.run_dir, args.checkpoint, args.device)
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        scores = (f"macro mAP {res['map_macro']:.4f}, micro mAP {res['map_micro']:.4f}, "
                  f"macro F1 {res['f1_macro']:.4f}, micro F1 {res['f1_micro']:.4f}, exact match "
                  if res.get("task") == "multilabel" else "")
        print(f"{res['run_dir']} ({args.checkpoint}.pt, step {res['step']}): test {scores}"
              f"accuracy {res['accuracy']:.4f} on {res['num_test']} images, loss "
              f"{res['loss']:.4f}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    results = api.demo(args.steps_scale, args.output_dir, args.device)
    print("\naerossl demo: UC Merced mini (21 classes, 4 labels per class), same labels")
    for name, r in results.items():
        print(f"  {name:<26} test accuracy {r.final_acc:6.1%}   ({r.steps} steps, "
              f"{r.minutes + r.bank_minutes:.1f} min)   report: {r.report}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from aerossl.config import load_config

    cfg = load_config(api.find_config(args.config), args.overrides)
    import yaml

    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
    print(f"# {args.config}: valid", file=sys.stderr)
    return 0


def _report(args: argparse.Namespace) -> int:
    from aerossl.engine.report import write_report

    print(write_report(Path(args.run_dir)))
    return 0


def _list(args: argparse.Namespace) -> int:
    from aerossl.algorithms import algorithm_names
    from aerossl.augment import AUGMENTATIONS
    from aerossl.data.formats import format_names
    from aerossl.models import create_model, model_names
    from aerossl.models.pretrained import PRETRAINED

    print("algorithms:    ", ", ".join(algorithm_names()))
    models = []
    for name in model_names():  # feature units: the most model.trainable_stages can be
        units = len(create_model(name, 2).feature_units())
        weights = ", ".join(w for m, w in PRETRAINED if m == name)
        models.append(f"{name} ({units} units" + (f", pretrained: {weights})" if weights else ")"))
    print("models:        ", ", ".join(models))
    print("augmentations: ", ", ".join(sorted(AUGMENTATIONS)))
    print("data formats:  ", ", ".join(format_names()))
    print("configs:       ", ", ".join(api.shipped_configs()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    p = argparse.ArgumentParser(prog="aerossl", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a run, or resume one")
    t.add_argument("config", nargs="?", help="YAML config or shipped config name")
    t.add_argument("overrides", nargs="*", help="dotted.key=value overrides")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped run")
    t.set_defaults(func=_train)

    e = sub.add_parser("evaluate", help="re-evaluate a run's saved model on its test split")
    e.add_argument("run_dir")
    add_run_options(e)
    e.add_argument("--json", action="store_true", help="print per-class results as JSON")
    e.add_argument("--old-task", metavar="SOURCE_RUN", default=None,
                   help="transfer runs (lwf, fine-tuning): accuracy of the old task on the test "
                   "split of the run it transferred from")
    e.set_defaults(func=_evaluate)

    d = sub.add_parser("demo", help="supervised from scratch, supervised on the pretrained "
                       "network and FixMatch on it, on the embedded demo dataset")
    d.add_argument("--steps-scale", type=float, default=1.0, help="multiply the demo budget")
    d.add_argument("--output-dir", default="runs")
    d.add_argument("--device", default="auto")
    d.set_defaults(func=_demo)

    v = sub.add_parser("validate", help="check a config and print it resolved")
    v.add_argument("config")
    v.add_argument("overrides", nargs="*")
    v.set_defaults(func=_validate)

    r = sub.add_parser("report", help="(re)write a run's HTML and Markdown report")
    r.add_argument("run_dir")
    r.set_defaults(func=_report)

    li = sub.add_parser("list", help="list algorithms, models, augmentations, data formats "
                                          "and configs")
    li.set_defaults(func=_list)

    from aerossl import compare, export, label_sweep, mapping, predict, suggest

    for module in (predict, export, compare, label_sweep, mapping, suggest):
        module.add_parser(sub)
    add_teacher_student_parsers(sub)
    return p


# ------------------------------------------------------------------------------------------
# Pre-training, transfer, distillation and Noisy Student (each stage an ordinary run:
# continue a stopped one with ``aerossl train --resume RUN_DIR``).


def _print_run(result: api.RunResult) -> int:
    print(f"test accuracy {result.final_acc:.4f} (best {result.best_acc:.4f} at step "
          f"{result.best_step}) after {result.steps} steps, {result.minutes:.1f} min")
    print(f"run folder: {result.run_dir}")
    return 0


def _print_pipeline(summary: dict) -> int:
    from aerossl.pipeline import summary_markdown

    print(summary_markdown(summary), end="")
    return 0


def add_teacher_student_parsers(sub: argparse._SubParsersAction) -> None:
    """Sub-commands pretrain, finetune, distill, noisy-student, pipeline, pseudo-label."""
    pre = sub.add_parser("pretrain", help="SimCLR pre-training on the unlabelled images")
    pre.add_argument("config", help="YAML config or shipped config name")
    pre.add_argument("overrides", nargs="*", help="dotted.key=value overrides")
    pre.set_defaults(func=lambda a: _print_run(api.pretrain(a.config, a.overrides)))

    ft = sub.add_parser("finetune", help="train from transferred weights (fine-tune or probe)")
    ft.add_argument("init", help="run folder, aerossl checkpoint or PyTorch state dict file")
    ft.add_argument("config", help="YAML config or shipped config name")
    ft.add_argument("overrides", nargs="*", help="dotted.key=value overrides")
    ft.add_argument("--linear-probe", action="store_true", help="freeze the backbone")
    ft.add_argument("--backbone-lr-scale", type=float, default=None,
                    help="backbone learning rate relative to train.lr (e.g. 0.1)")
    ft.add_argument("--algorithm", default="supervised",
                    help="training method (default supervised; 'config' keeps the config's)")
    ft.set_defaults(func=lambda a: _print_run(api.finetune(
        a.init, a.config, a.overrides, algorithm=None if a.algorithm == "config" else a.algorithm,
        linear_probe=a.linear_probe, backbone_lr_scale=a.backbone_lr_scale)))

    di = sub.add_parser("distill", help="distil a trained run (teacher) into a student")
    di.add_argument("teacher", help="run folder of the teacher")
    di.add_argument("config", help="YAML config of the student run")
    di.add_argument("overrides", nargs="*", help="dotted.key=value overrides")
    di.add_argument("--mode", choices=["soft", "hard"], default=None)
    di.set_defaults(func=lambda a: _print_run(api.distill(a.teacher, a.config, a.overrides,
                                                          mode=a.mode)))

    ns = sub.add_parser("noisy-student", help="supervised teacher, then Noisy Student rounds")
    ns.add_argument("config", help="YAML config shared by teacher and students")
    ns.add_argument("overrides", nargs="*", help="dotted.key=value overrides")
    ns.add_argument("--rounds", type=int, default=2)
    ns.add_argument("--name", default="noisy_student", help="folder of the rounds' runs")
    ns.set_defaults(func=lambda a: _print_pipeline(api.noisy_student(
        a.config, a.rounds, a.name, overrides=a.overrides)))

    pi = sub.add_parser("pipeline", help="run or continue a multi-stage pipeline file")
    pi.add_argument("spec", help="pipeline YAML (base + stages, or noisy_student)")
    pi.add_argument("overrides", nargs="*", help="dotted.key=value overrides of its base")
    pi.set_defaults(func=lambda a: _print_pipeline(api.run_pipeline(a.spec, a.overrides)))

    pl = sub.add_parser("pseudo-label", help="class probabilities of every image to a CSV")
    pl.add_argument("run_dir")
    pl.add_argument("data_dir", help="folder of images (searched recursively)")
    pl.add_argument("--out", "-o", default="pseudo_labels.csv")
    add_run_options(pl)
    pl.set_defaults(func=lambda a: print(
        f"pseudo-labels: {api.pseudo_label(a.run_dir, a.data_dir, a.out, a.checkpoint, a.device)}"
    ) or 0)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``aerossl`` command."""
    from aerossl.engine import distributed

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    try:
        code = args.func(args)
        distributed.barrier()  # under torchrun: no rank leaves the group while another works
        return code
    except AerosslError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        distributed.shutdown()  # leave the process group a torchrun-launched command joined


if __name__ == "__main__":
    sys.exit(main())
