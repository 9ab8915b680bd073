"""The plug-in interface between the harness and a model package.

A model package (baseline, composer, performer, perceivers) implements `Task`; the harness
owns everything around it: which example each step sees, sharding, prefetching, token
augmentation, the validation split, optimisation, checkpoints and metrics.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import jax
import numpy as np

Params = Any  # a pytree of arrays
Batch = dict[str, jax.Array]  # every leaf has the batch as its leading axis
Example = dict[str, np.ndarray]  # one example, fixed shapes, no batch axis


@runtime_checkable
class Pieces(Protocol):
    """Tokenized pieces, e.g. a memory-mapped `pertok.store.TokenStore` or a view of one."""

    files: list[str]  # each piece's source path, relative to the MIDI directory

    def __len__(self) -> int: ...

    def piece(self, index: int) -> np.ndarray:
        """Token ids of one piece (no BOS/EOS)."""
        ...

    def lengths(self) -> np.ndarray:
        """Number of tokens of every piece, int64 [len(self)]."""
        ...


@runtime_checkable
class Sampler(Protocol):
    """A fixed, indexable set of examples cut from one split: one epoch is `len(sampler)`.

    The harness visits every index exactly once per epoch in a permutation that depends
    only on (seed, epoch), so a sampler that cuts each token into exactly one example
    promises that every token is seen exactly once per epoch.
    """

    token_keys: tuple[str, ...]  # keys of an example holding token ids (augmented alike)

    def __len__(self) -> int: ...

    def example(self, index: int, rng: np.random.Generator) -> Example:
        """Example `index`; `rng` is derived from (seed, global position) only."""
        ...


@runtime_checkable
class Task(Protocol):
    """What a model package provides to be trained by `training.Trainer`.

    Optional: `loss_uses_step = True` makes the train step call
    `loss(params, batch, rng, True, step=state.step)` (a traced int32 scalar), for losses
    scheduled by the step (e.g. a KL weight); evaluation calls it without `step`.
    """

    def init(self, rng: jax.Array, batch: Batch) -> Params:
        """Fresh parameters for inputs shaped like `batch`."""
        ...

    def loss(self, params: Params, batch: Batch, rng: jax.Array,
             train: bool) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Scalar float32 loss and scalar metrics (means over the batch)."""
        ...

    def sampler(self, pieces: Pieces) -> Sampler:
        """The examples of one split (training or validation)."""
        ...

    def flops_per_token(self) -> float | None:
        """Training FLOPs (forward and backward) per target token, or None if unknown."""
        ...

    def tokens_per_example(self) -> int:
        """Tokens one example contributes to throughput (its context length)."""
        ...

    def validate(self) -> None:
        """Raise ValueError naming the config key when the model config is inconsistent."""
        ...
