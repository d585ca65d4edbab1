"""The training engine: run folders, the training loop, evaluation, checkpoints and reports.

The entry point is :class:`aerossl.engine.trainer.Trainer`; this package file imports nothing,
so that loading a checkpoint (:mod:`aerossl.engine.checkpoint`) does not load the engine.
"""
