"""`--mode=eval`'s held-out protocol for autoregressive models: `training.heldout` on the run's
validation split, written to WORKDIR/eval/heldout.json.

Every target of the held-out pieces (or the documented prefix `eval.heldout_max_tokens` keeps)
is scored once at stride `eval.heldout_stride`, whatever segmentation the run trained with, so
runs with different segmentations, and PerceiverS against the LM, are scored on the same targets.
"""
from __future__ import annotations

import json
import os

import jax
import numpy as np
from absl import logging

from training import heldout
from training.validate import ConfigError


def stride_of(config, task) -> int:
    """The configured stride, 0 = the most targets one example of the model scores."""
    most = getattr(task, "query_length", None) or task.context_length
    stride = config.eval.heldout_stride or most
    if not 0 < stride <= most:
        raise ConfigError(f"eval.heldout_stride={config.eval.heldout_stride} must lie in 0..{most} (the targets one "
                          f"example of this model scores; 0 = {most})")
    return stride


def check_heldout(config, task) -> None:
    """Refuse a held-out protocol the model cannot run, before anything trains."""
    if isinstance(task, heldout.HeldoutTask) and "heldout_stride" in config.eval:
        stride_of(config, task)
        bucket_edges(config.eval.heldout_buckets)


def bucket_edges(text: str) -> tuple[int, ...]:
    try:
        edges = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"eval.heldout_buckets={text!r}: expected increasing integers, e.g. '256,512'") from None
    if list(edges) != sorted(set(edges)) or (edges and edges[0] <= 0):
        raise ConfigError(f"eval.heldout_buckets={text!r}: expected increasing positive integers")
    return edges


def report_heldout(config, workdir: str, task, trainer, state=None) -> dict | None:
    """Score the latest checkpoint (or its restored `state`) by the held-out protocol; None for
    tasks or configs without it."""
    if not isinstance(task, heldout.HeldoutTask) or "heldout_stride" not in config.eval:
        return None
    if not len(trainer.valid_pieces):
        raise ConfigError("no validation pieces to evaluate on: raise data.valid_fraction or add pieces")
    stride, edges = stride_of(config, task), bucket_edges(config.eval.heldout_buckets)
    state = trainer.latest_state() if state is None else state
    try:
        result = heldout.evaluate(task, state.params, trainer.valid_pieces, stride, config.eval.batch_size, edges,
                                  config.eval.heldout_max_tokens)
    except ValueError as error:  # a stride the model cannot score
        raise ConfigError(f"eval.heldout_stride={stride}: {error}") from None
    result = {"step": int(jax.device_get(state.step)), "task": config.task,
              "parameters": int(sum(np.size(leaf) for leaf in jax.tree.leaves(state.params))),
              "data": trainer.data_hash, **result}
    if jax.process_index() == 0:
        out = os.path.join(workdir, "eval")
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "heldout.json"), "w") as f:
            json.dump(result, f, indent=1)
        buckets = ", ".join(f"{name} {b['bits_per_token']:.3f}" for name, b in result["by_position"].items()
                            if b["bits_per_token"] is not None)
        logging.info("held-out: %.4f bits/token over %d targets of %d pieces (stride %d); by position: %s -> %s",
                     result["bits_per_token"], result["targets"], result["pieces"], stride, buckets,
                     os.path.join(out, "heldout.json"))
    return result
