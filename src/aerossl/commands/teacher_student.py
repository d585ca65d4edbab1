"""Pre-training, transfer, distillation and Noisy Student: ``pretrain``, ``finetune``,
``distill``, ``noisy-student`` and ``pipeline`` (each stage an ordinary run: continue a stopped
one with ``aerossl train --resume RUN_DIR``)."""

from __future__ import annotations

import argparse
from typing import Any

from aerossl import api
from aerossl.commands.common import print_run
from aerossl.pipelines.stages import summary_markdown


def _pretrain(a: argparse.Namespace) -> int:
    return print_run(api.pretrain(a.config, a.overrides))


def _finetune(a: argparse.Namespace) -> int:
    return print_run(api.finetune(
        a.init, a.config, a.overrides, algorithm=None if a.algorithm == "config" else a.algorithm,
        linear_probe=a.linear_probe, backbone_lr_scale=a.backbone_lr_scale))


def _distill(a: argparse.Namespace) -> int:
    return print_run(api.distill(a.teacher, a.config, a.overrides, mode=a.mode))


def _noisy_student(a: argparse.Namespace) -> int:
    print(summary_markdown(api.noisy_student(a.config, a.rounds, a.name,
                                             overrides=a.overrides)), end="")
    return 0


def _pipeline(a: argparse.Namespace) -> int:
    print(summary_markdown(api.run_pipeline(a.spec, a.overrides)), end="")
    return 0


def add_parsers(sub: Any) -> None:
    pre = sub.add_parser("pretrain", help="SimCLR pre-training on the unlabelled images")
    pre.add_argument("config", help="YAML config or shipped config name")
    pre.add_argument("overrides", nargs="*", help="dotted.key=value overrides")
    pre.set_defaults(func=_pretrain)

    ft = sub.add_parser("finetune", help="train from transferred weights (fine-tune or probe)")
    ft.add_argument("init", help="run folder, aerossl checkpoint or PyTorch state dict file")
    ft.add_argument("config", help="YAML config or shipped config name")
    ft.add_argument("overrides", nargs="*", help="dotted.key=value overrides")
    ft.add_argument("--linear-probe", action="store_true", help="freeze the backbone")
    ft.add_argument("--backbone-lr-scale", type=float, default=None,
                    help="backbone learning rate relative to train.lr (e.g. 0.1)")
    ft.add_argument("--algorithm", default="supervised",
                    help="training method (default supervised; 'config' keeps the config's)")
    ft.set_defaults(func=_finetune)

    di = sub.add_parser("distill", help="distil a trained run (teacher) into a student")
    di.add_argument("teacher", help="run folder of the teacher")
    di.add_argument("config", help="YAML config of the student run")
    di.add_argument("overrides", nargs="*", help="dotted.key=value overrides")
    di.add_argument("--mode", choices=["soft", "hard"], default=None)
    di.set_defaults(func=_distill)

    ns = sub.add_parser("noisy-student", help="supervised teacher, then Noisy Student rounds")
    ns.add_argument("config", help="YAML config shared by teacher and students")
    ns.add_argument("overrides", nargs="*", help="dotted.key=value overrides")
    ns.add_argument("--rounds", type=int, default=2)
    ns.add_argument("--name", default="noisy_student", help="folder of the rounds' runs")
    ns.set_defaults(func=_noisy_student)

    pi = sub.add_parser("pipeline", help="run or continue a multi-stage pipeline file")
    pi.add_argument("spec", help="pipeline YAML (base + stages, or noisy_student)")
    pi.add_argument("overrides", nargs="*", help="dotted.key=value overrides of its base")
    pi.set_defaults(func=_pipeline)
