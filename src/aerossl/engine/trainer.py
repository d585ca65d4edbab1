"""The training engine: one loop for every algorithm.

The engine owns the run folder, data order, augmentation, optimiser and learning-rate schedule,
EMA, evaluation, atomic checkpoints, exact resume, logs and the report. An algorithm only turns a
batch of views into a loss (see :mod:`aerossl.algorithms.base`).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import nn

from aerossl.algorithms import Algorithm, StepContext, get_algorithm
from aerossl.algorithms.base import Batch, RunData, StepOutput
from aerossl.augment import build_pipeline
from aerossl.config import Config
from aerossl.data.cache import default_cache_dir
from aerossl.engine import distributed
from aerossl.engine.bank import BankBatchBuilder, ViewBank
from aerossl.engine.data import DataBundle, load_data
from aerossl.engine.evaluate import EvalResult, evaluate_model, predict
from aerossl.engine.lock import RunLock
from aerossl.engine.logger import MetricLogger
from aerossl.engine.loop import StopOnSignal, batch_statistics, mean_window
from aerossl.engine.network import resolve_data_config, setup_network
from aerossl.engine.optim import build_optimizer
from aerossl.engine.pseudo_stats import (
    offline_pseudo_label_metrics,
    step_log,
    visible_labels,
)
from aerossl.engine.run_folder import (
    RunResult,
    new_run_dir,
    write_eval,
    write_pseudo_label_errors,
    write_summary,
)
from aerossl.engine.state import RunState
from aerossl.engine.stream import BatchBuilder
from aerossl.engine.transfer import frozen_norms_eval, norms_eval, probe_head
from aerossl.errors import AerosslError, ConfigError
from aerossl.models.ema import EMA
from aerossl.runs.loader import load_source_network, resolve_device

log = logging.getLogger("aerossl")


class Trainer(RunState):
    """Sets a run up from a config (or resumes one from its folder) and trains it.

    Only one process trains in a run folder: :meth:`fit` holds ``run_dir/.lock`` (see
    :mod:`aerossl.engine.lock`), and a Trainer is refused a folder another process holds.

    Launched by ``torchrun`` the Trainer trains data-parallel (see
    :mod:`aerossl.engine.distributed`): every rank takes its slice of each global batch, the
    algorithm's whole step runs inside one DistributedDataParallel forward, and rank 0 alone
    evaluates and writes the run folder.
    """

    def __init__(self, cfg: Config, run_dir: Path | None = None, resume: bool = False) -> None:
        self.resume = resume
        t = cfg.train
        torch.set_num_threads(t.num_threads or distributed.cpu_threads())
        self.device = distributed.local_device(resolve_device(t.device))
        if self.device.type == "cuda" and self.device.index is None:  # "cuda" == "cuda:N"
            self.device = torch.device("cuda", torch.cuda.current_device())
        distributed.init(self.device)
        self.rank, self.world_size = distributed.rank(), distributed.world_size()
        self.is_main = self.rank == 0
        if t.sync_bn and self.world_size > 1 and self.device.type != "cuda":
            raise ConfigError("train.sync_bn: synchronised batch norm needs CUDA devices")
        if t.batch_size % self.world_size:
            raise ConfigError(f"train.batch_size: {t.batch_size} is the global batch and must "
                              f"divide by the {self.world_size} processes")
        self.run_dir = distributed.broadcast_object(
            Path(run_dir) if run_dir is not None else new_run_dir(cfg))
        RunLock(self.run_dir).check()
        self.amp = (self.device.type == "cuda") if t.amp is None else t.amp
        torch.manual_seed(cfg.seed)

        split_dir = self.run_dir / "split" if resume else None
        if not self.is_main:  # rank 0 builds the image cache first; the others then map it
            distributed.barrier()
        self.data: DataBundle = load_data(cfg.data, cfg.seed, split_dir)
        if self.is_main:
            distributed.barrier()
        self.cfg = cfg = resolve_data_config(cfg, self.data)

        algo_cls = get_algorithm(cfg.algorithm.name)
        params = algo_cls.Params(**cfg.algorithm_params())
        self.views = algo_cls.views(params)
        network, self.entry = setup_network(cfg, self.data, algo_cls.needs_images,
                                            algo_cls.name, resume)
        self.has_frozen = cfg.model.freeze_backbone or cfg.model.trainable_stages is not None
        if t.sync_bn and self.world_size > 1:
            network = nn.SyncBatchNorm.convert_sync_batchnorm(network)
        if t.channels_last:
            network = network.to(memory_format=torch.channels_last)
        self.algorithm: Algorithm = algo_cls(
            network, params, self.data.num_classes, num_images=len(self.data.labels),
            task=self.data.task, meta_dim=self.data.meta_dim, load_network=load_source_network,
        ).to(self.device)
        self.ema = EMA(self.algorithm.eval_model(), t.ema) if t.ema > 0 else None
        if t.compile:
            network.compile()  # in place: state_dict keys (checkpoints) are unchanged
        self.ddp = distributed.wrap(self.algorithm, self.device)
        if self.rank:  # per-rank randomness of the algorithm (MixUp draws, dropout)
            torch.manual_seed(cfg.seed + 1_000_003 * self.rank)
        self.optimizer, self.scheduler = build_optimizer(self.algorithm, cfg)
        amp_dtype = torch.bfloat16
        if self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            amp_dtype = torch.float16
        self.amp_dtype = amp_dtype
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.amp and amp_dtype == torch.float16
        )
        self._network = network
        self._batches_state: dict | None = None
        self.bank: ViewBank | None = None
        self.bank_seconds = 0.0  # time this process spent filling the view bank
        self.step = 0
        self.window: dict[str, list] = defaultdict(list)  # values logged since the last log row
        self.best_acc, self.best_step = -1.0, 0
        self.elapsed = 0.0
        self.skipped_steps = 0  # steps whose update was skipped for a non-finite loss
        self.extra_metrics: dict[str, float] = {}  # the algorithm's, from the last evaluation
        self._setup_run_dir()
        self.batches = self._batch_source()
        if self._batches_state is not None:
            self.batches.load_state_dict(self._batches_state)
        if not resume:
            if cfg.model.head_init == "probe":
                self._probe_head()
            self.algorithm.prepare(self.run_data())

    def _probe_head(self) -> None:
        """``model.head_init: probe``: the head starts as a logistic regression on the starting
        network's features of the labelled images (rank 0's, on every rank); the EMA copy
        starts from it too."""
        if self.data.task.name != "multiclass":
            raise ConfigError(f"model.head_init: probe fits a softmax head; this run's task is "
                              f"{self.data.task.name} (use head_init: random)")
        head = self._network.head
        if self.is_main:
            acc = probe_head(self._network, self.run_data(), self.data.num_classes,
                             self.cfg.model.probe_l2)
            log.info("model.head_init: probe fitted on %d labelled images (their accuracy "
                     "%.1f %%)", len(self.data.split.labeled), 100 * acc)
        state = distributed.broadcast_object({k: v.cpu() for k, v in head.state_dict().items()})
        head.load_state_dict(state)
        if self.ema is not None:
            self.ema = EMA(self.algorithm.eval_model(), self.cfg.train.ema)

    def _batch_source(self) -> BatchBuilder | BankBatchBuilder:
        """Augmenting batches of cached images, or (``entry`` > 0) draws from the view bank,
        built once the frozen weights are final (after a resumed run's state is loaded)."""
        cfg, t = self.cfg, self.cfg.train
        pipelines = {name: build_pipeline(cfg.augment[name]) for name in self.views.pipelines()}
        if not self.entry:
            return BatchBuilder(
                self.data, self.views, pipelines, t.batch_size, t.batch_size * t.mu, cfg.seed,
                self.device, t.channels_last, self.rank, self.world_size,
            )
        folder = (Path(cfg.bank.dir) if cfg.bank.dir else
                  Path(cfg.data.cache_dir or default_cache_dir()) / "banks")
        specs = {p: cfg.augment[p] for p in pipelines}
        if not self.is_main:  # rank 0 creates the bank's files; the others then map them
            distributed.barrier()
        self.bank = ViewBank(self._network, self.entry, self.data, pipelines, specs,
                             cfg.bank.views, cfg.bank.seed, cfg.bank.dtype, folder, self.device,
                             t.eval_batch_size, cfg.bank.backend)
        if self.is_main:
            distributed.barrier()
        distributed.barrier()  # every rank has opened the files before rank 0 locks the folder
        s = self.data.split
        t0 = time.perf_counter()  # every rank computes its share (see ViewBank.fill)
        self.bank.fill(np.union1d(s.labeled, s.unlabeled), np.arange(len(self.data.labels)),
                       self.rank, self.world_size)
        self.bank_seconds += time.perf_counter() - t0
        return BankBatchBuilder(self.bank, self.data, self.views, t.batch_size,
                                t.batch_size * t.mu, cfg.seed, self.device, self.rank,
                                self.world_size, cfg.bank.dihedral)

    @property
    def eval_inputs(self) -> torch.Tensor:
        """What evaluation feeds the network: the cached images, or the bank's plain draws."""
        return self.bank.clean if self.bank is not None else self.data.images

    def eval_network(self) -> nn.Module:
        """The weights that are evaluated: the EMA copy when EMA is on."""
        return self.ema.module if self.ema is not None else self.algorithm.eval_model()

    # ---------------------------------------------------------------- training

    def evaluate(self) -> EvalResult:
        """Evaluate the evaluated weights on the test split."""
        return evaluate_model(
            self.eval_network(), self.eval_inputs, self.data.labels, self.data.split.test,
            self.cfg.train.eval_batch_size, self.device, self.data.num_classes,
            amp_dtype=self.amp_dtype if self.amp else None,
            channels_last=self.cfg.train.channels_last, task=self.data.task,
        )

    def run_data(self) -> RunData:
        """The run's images, split and inference function, for the algorithm's hooks."""
        t = self.cfg.train

        def infer(module: nn.Module, indices: np.ndarray) -> torch.Tensor:
            return predict(module, self.eval_inputs, indices, t.eval_batch_size, self.device,
                           self.amp_dtype if self.amp else None, t.channels_last)

        s = self.data.split
        labels = visible_labels(self.data.labels, s.unlabeled, s.labeled)  # hidden ones: -1
        return RunData(self.eval_inputs, labels, s.labeled, s.unlabeled, s.test, infer,
                       self.data.classes, self.eval_network())

    def _train_step(self, ctx: StepContext) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        refresh = self._refresh(ctx)
        t0 = time.perf_counter()
        batch = self.batches.next()
        t1 = time.perf_counter()
        self.algorithm.train()
        if self.has_frozen:
            frozen_norms_eval(self.algorithm.model)  # a frozen backbone keeps its BN statistics
        if self.cfg.model.bn == "frozen":
            norms_eval(self.algorithm.model)
        step = self.ddp if self.ddp is not None else self.algorithm.training_step
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
            out = step(batch, ctx)
        if distributed.any_rank(not bool(torch.isfinite(out.loss)), self.device):
            self._on_nonfinite(batch, out, ctx)
            values = step_log(out, batch, self.batches.labels)
            return values, {"time/data": t1 - t0, "time/model": time.perf_counter() - t1,
                            **refresh}
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(out.loss).backward()
        t2 = time.perf_counter()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.algorithm.eval_model(), ctx.step)
        self.algorithm.on_step_end(ctx)
        t3 = time.perf_counter()
        values = step_log(out, batch, self.batches.labels)
        times = {"time/data": t1 - t0, "time/model": t2 - t1, "time/optim": t3 - t2, **refresh}
        return values, times

    def _refresh(self, ctx: StepContext) -> dict[str, float]:
        """The algorithm's periodic :meth:`~aerossl.algorithms.Algorithm.refresh` (every rank
        runs it on the same weights), timed as ``time/refresh``."""
        every = self.algorithm.refresh_interval()
        if not every or ctx.step % every:
            return {}
        t0 = time.perf_counter()
        self.algorithm.refresh(self.run_data())
        return {"time/refresh": time.perf_counter() - t0}

    def _on_nonfinite(self, batch: Batch, out: StepOutput, ctx: StepContext) -> None:
        """A non-finite loss: skip the update (``on_nonfinite: skip``) or log the batch's
        statistics as a ``diverged`` row and stop, leaving last.pt as the last good state."""
        terms = {k: float(v) for k, v in out.log.items() if k.startswith("loss")}
        step = ctx.step + 1  # the step number its train row would have been logged under
        if self.cfg.train.on_nonfinite == "skip":
            self.optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()  # keep the learning rate on schedule; no update, no EMA
            self.skipped_steps += 1
            log.warning("non-finite loss at step %d %s; update skipped (%d so far)", step, terms,
                        self.skipped_steps)
            return
        if self.logger is not None:
            self.logger.log(step, "diverged", {"loss": float(out.loss.detach()), **terms,
                                               **batch_statistics(batch)})
        last = self.checkpoint_dir / "last.pt"
        saved = f"the last good checkpoint is {last}" if last.is_file() else "no checkpoint yet"
        raise AerosslError(
            f"non-finite loss at step {step}: {terms}; the batch's statistics are logged to "
            f"{self.run_dir / 'metrics.jsonl'} (split 'diverged'); {saved}. Lower train.lr, or set "
            f"train.on_nonfinite=skip to skip such steps"
        )

    def fit(self, until: int | None = None) -> RunResult | None:
        """Train to ``train.steps``, evaluating and checkpointing on the way.

        With ``until`` stop after that many steps instead, writing a checkpoint to resume from,
        and return None. The run folder's lock is held throughout (CheckpointError if another
        process holds it).
        """
        with RunLock(self.run_dir) if self.is_main else nullcontext():
            self.logger = (MetricLogger(self.run_dir, self.cfg.train.tensorboard, self.step)
                           if self.is_main else None)
            try:
                return self._fit(until)
            finally:
                if self.logger is not None:
                    self.logger.close()

    def _fit(self, until: int | None) -> RunResult | None:
        t = self.cfg.train
        stop = t.steps if until is None else min(until, t.steps)
        window = self.window
        from tqdm.auto import tqdm

        bar = tqdm(total=t.steps, initial=self.step, disable=not (t.progress and self.is_main),
                   desc=self.cfg.name, dynamic_ncols=True, leave=False)
        last_time = time.perf_counter()
        with StopOnSignal() as stop_signal:
            while self.step < stop:
                if distributed.any_rank(stop_signal.received is not None, self.device):
                    signame = stop_signal.received or "a signal to another rank"
                    bar.close()
                    self.save()
                    log.warning("stopped by %s at step %d; checkpoint written. Continue with: "
                                "aerossl train --resume %s", signame, self.step, self.run_dir)
                    raise KeyboardInterrupt(signame)
                ctx = StepContext(self.step, t.steps)
                values, times = self._train_step(ctx)
                self.step += 1
                for k, v in values.items():
                    window[k].append(v.detach().float() if torch.is_tensor(v) else float(v))
                for k, v in times.items():
                    window[k].append(v)
                bar.update(1)
                now = time.perf_counter()
                self.elapsed += now - last_time
                last_time = now
                if self.step % t.log_every == 0 or self.step == t.steps:
                    row = distributed.mean_over_ranks(mean_window(window), self.device)
                    row["lr"] = self.optimizer.param_groups[0]["lr"]
                    row["skipped_steps"] = self.skipped_steps
                    if self.logger is not None:
                        self.logger.log(self.step, "train", row)
                    bar.set_postfix(loss=f"{row['loss']:.3f}", best=f"{max(self.best_acc, 0):.3f}")
                    window.clear()
                if self.step % t.eval_every == 0 or self.step == t.steps:
                    self._eval_and_checkpoint()
        bar.close()
        if self.step < t.steps:
            self.save()
            return None
        return self.finish()

    def _eval_and_checkpoint(self) -> None:
        best = False
        if self.is_main:  # the other ranks hold the same weights and wait in save()
            result = self.evaluate()
            best = result.score > self.best_acc  # best_acc: best of the task's selection metric
            if best:
                self.best_acc, self.best_step = result.score, self.step
            self.extra_metrics = {
                **self.algorithm.extra_metrics(self.eval_network(), self.run_data()),
                **offline_pseudo_label_metrics(self.algorithm, self.data.labels,
                                               self.data.split.unlabeled, self.data.split.labeled)}
            self.logger.log(self.step, "test", {"acc": result.accuracy, "loss": result.loss,
                                                **result.metrics, f"best_{result.metric}":
                                                self.best_acc, **self.extra_metrics})
            for k, v in self.extra_metrics.items():
                log.info("step %d  %s %.4f", self.step, k, v)
            log.info("step %d/%d  test %s %.4f  (best %.4f at %d)", self.step,
                     self.cfg.train.steps, result.metric, result.score, self.best_acc,
                     self.best_step)
        self.save(best=best)

    def pseudo_label_errors(self, k: int = 24) -> None:
        """Draw the unlabelled images the final model labels wrongly with most confidence."""
        write_pseudo_label_errors(self.run_dir, self.data,
                                  lambda idx: self.run_data().predict(self.eval_network(), idx), k)

    def finish(self) -> RunResult:
        """Final evaluation, eval.json, summary.json and the report (by rank 0, whose result
        every rank returns)."""
        return distributed.broadcast_object(self._finish() if self.is_main else None)

    def _finish(self) -> RunResult:
        result = self.evaluate()
        write_eval(self.run_dir, result, self.step, self.data.classes)
        if self.cfg.report:
            self.pseudo_label_errors()
        summary = {
            "algorithm": self.cfg.algorithm.name,
            "model": self.cfg.model.name,
            "dataset": self.cfg.data.root,
            "image_size": self.cfg.data.image_size,
            "seed": self.cfg.seed,
            "num_labeled": len(self.data.split.labeled),
            "num_unlabeled": len(self.data.split.unlabeled),
            "num_test": len(self.data.split.test),
            "classes": self.data.classes,
            "steps": self.step,
            "best_step": self.best_step,
            "best_acc": self.best_acc,
            "final_acc": result.score,
            "minutes": self.elapsed / 60,
            "bank_minutes": self.bank_seconds / 60,
            "threads": torch.get_num_threads(),
            **self.extra_metrics,
        }
        if result.metric != "acc":  # final_acc / best_acc hold this metric
            summary.update(task=self.data.task.name, metric=result.metric,
                           final_metrics={"accuracy": result.accuracy, **result.metrics})
        write_summary(self.run_dir, summary)
        self.logger.close()
        report = None
        if self.cfg.report:
            from aerossl.engine.report import write_report

            report = write_report(self.run_dir)
        return RunResult(self.run_dir, result.score, self.best_acc, self.best_step, self.step,
                         self.elapsed / 60, report, result.metric,
                         {"accuracy": result.accuracy, **result.metrics},
                         self.bank_seconds / 60)


