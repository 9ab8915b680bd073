"""A tiny LM run on random in-memory pieces, for the harness tests (in process or as a script).

    python -m tests.training.tiny --workdir DIR --steps N [--until K] [--devices D]
        [--set key=value ...] [--process_id I --num_processes P --port PORT]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

VOCAB = 100  # token ids 0..3 are special (pad, bos, eos, mask)
PITCH_IDS = range(10, 50)  # stand-ins for PerTok's Pitch and Velocity id ranges
VELOCITY_IDS = range(60, 70)


def tiny_config(**overrides):
    """The `lm.py:tiny` config shrunk further, with `overrides` ('train.steps': 6, ...)."""
    from experiments import config_file

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    config = config_file.load_config(os.path.join(root, "experiments/configs/lm.py:tiny"))
    values = {"model.context_length": 16, "model.d_model": 32, "model.num_layers": 1,
              "model.num_heads": 2, "model.mlp_dim": 64, "model.dropout": 0.1,
              "train.steps": 6, "train.batch_size": 8, "train.warmup_steps": 2,
              "train.log_every": 1, "eval.every": 0, "eval.batches": 1, "eval.batch_size": 8,
              "checkpoint.every": 2, "checkpoint.keep": 2, "data.valid_fraction": 0.2,
              "data.pitch_shift": 2, "data.velocity_shift": 1, "data.prefetch": 2}
    values.update(overrides)
    for key, value in values.items():
        *path, leaf = key.split(".")
        block = config
        for name in path:
            block = block[name]
        block[leaf] = value
    return config


def random_pieces(num_pieces: int = 24, seed: int = 0, lengths: tuple[int, int] = (20, 80)):
    import numpy as np

    from training.data import MemoryPieces

    rng = np.random.default_rng(seed)
    pieces = [rng.integers(4, VOCAB, size=rng.integers(*lengths)).astype(np.uint16)
              for _ in range(num_pieces)]
    return MemoryPieces(pieces, [f"pieces/{i:03d}.mid" for i in range(num_pieces)])


def make_trainer(config, workdir: str, pieces=None, mesh=None, task=None):
    import jax

    from baseline import LMTask
    from training import Augmentation, Trainer, validate

    task = task or LMTask(config.model, VOCAB, config.model.context_length)
    validate(config, mesh.size if mesh is not None else jax.device_count(), jax.process_count(), task)
    augmentation = Augmentation(PITCH_IDS, VELOCITY_IDS, config.data.pitch_shift,
                                config.data.velocity_shift)
    return Trainer(task, config, workdir, pieces or random_pieces(), augmentation, mesh)


def train(config, workdir: str, **kwargs) -> dict[int, float]:
    """Train (or resume) and return {step: loss} read back from metrics.jsonl."""
    trainer = make_trainer(config, workdir, **kwargs)
    try:
        trainer.train()
    finally:
        trainer.close()
    return losses(workdir)


def losses(workdir: str) -> dict[int, float]:
    from training.metrics import read_metrics

    return {line["step"]: line["loss"] for line in read_metrics(os.path.join(workdir, "metrics.jsonl"))
            if "loss" in line}


class PoisonedTask:
    """The LM task with NaN target weights on example `poison_index` (NaN-loss tests).

    Only data changes, so the compiled step is the same as the healthy run's.
    """

    def __init__(self, task, poison_index: int):
        self._task, self.poison_index = task, poison_index

    def __getattr__(self, name):
        return getattr(self._task, name)

    def sampler(self, pieces):
        return _PoisonedSampler(self._task.sampler(pieces), self.poison_index)


class _PoisonedSampler:
    def __init__(self, sampler, poison_index: int):
        self._sampler, self.poison_index = sampler, poison_index
        self.token_keys = sampler.token_keys

    def __len__(self) -> int:
        return len(self._sampler)

    def example(self, index, rng):
        import numpy as np

        example = self._sampler.example(index, rng)
        if index == self.poison_index:
            example["weights"] = np.full_like(example["weights"], np.nan)
        return example


def _parse_value(text: str):
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--steps", type=int, default=6, help="train.steps (the schedule's length)")
    parser.add_argument("--until", type=int, default=None, help="stop after this step")
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--set", action="append", default=[], help="config key=value")
    parser.add_argument("--step_delay", type=float, default=0.0, help="seconds per host batch")
    parser.add_argument("--eval_delay", type=float, default=0.0, help="seconds per eval batch")
    parser.add_argument("--poison_index", type=int, default=-1, help="NaN on this example")
    parser.add_argument("--process_id", type=int, default=-1)
    parser.add_argument("--num_processes", type=int, default=1)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    # Optimisation level 0 halves CPU compile time; every run of a test uses the same flags.
    os.environ["XLA_FLAGS"] = (f"--xla_force_host_platform_device_count={args.devices} "
                               "--xla_backend_optimization_level=0")
    os.environ["JAX_PLATFORMS"] = "cpu"
    from absl import logging

    logging.set_verbosity(logging.INFO)
    overrides = {"train.steps": args.steps}
    overrides.update((k, _parse_value(v)) for k, v in (item.split("=", 1) for item in args.set))
    if args.num_processes > 1:
        overrides.update({"distributed.initialize": True, "distributed.process_id": args.process_id,
                          "distributed.num_processes": args.num_processes,
                          "distributed.coordinator_address": f"127.0.0.1:{args.port}"})
    config = tiny_config(**overrides)
    from baseline import LMTask
    from training import ConfigError, TrainingDiverged
    from training.checkpoint import CheckpointError
    from training.preemption import Preempted
    from training import mesh as mesh_lib

    mesh_lib.maybe_initialize_distributed(config.distributed)
    trainer = make_trainer(config, args.workdir, task=(
        PoisonedTask(LMTask(config.model, VOCAB, config.model.context_length), args.poison_index)
        if args.poison_index >= 0 else None))
    if args.step_delay:
        build = trainer.host_batch
        trainer.host_batch = lambda step: (time.sleep(args.step_delay), build(step))[1]
    if args.eval_delay and trainer.valid_data is not None:
        build_eval = trainer.valid_data.batch
        trainer.valid_data.batch = lambda positions: (time.sleep(args.eval_delay),
                                                      build_eval(positions))[1]
    try:
        trainer.train(args.until)
    except (TrainingDiverged, CheckpointError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except Preempted as error:
        print(f"stopped: {error}", file=sys.stderr)
        sys.exit(error.exit_status)
    finally:
        trainer.close()


if __name__ == "__main__":
    main(sys.argv[1:])
