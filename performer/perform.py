"""Inference: give a composition its performance (MicroTiming and Velocity) with the Performer."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from performer.slots import NO_SLOT, masked_slot_kinds, windows
from performer.task import PAD_ID, PerformerTask


class PerformanceFiller:
    """Fills the performance slots of composition-only sequences, many at once.

    All windows of all sequences go through the model as one batch, padded to a power of
    two so that a handful of shapes are compiled.
    """

    def __init__(self, task: PerformerTask):
        self.task, self.tokenizer = task, task.tokenizer
        self._choose = jax.jit(self._choose_impl)

    def _choose_impl(self, params, inputs_RxT, kinds_RxT, rng, temperature):
        logits_RxTxV = self.task.logits(params, inputs_RxT, kinds_RxT)
        sampled_RxT = jax.random.categorical(rng, logits_RxTxV / jnp.maximum(temperature, 1e-6))
        return jnp.where(temperature > 0, sampled_RxT, logits_RxTxV.argmax(-1))

    def __call__(self, params, compositions: list[np.ndarray], rng: jax.Array,
                 temperature: float = 1.0) -> list[np.ndarray]:
        """Full-view ids of each composition; temperature 0 takes the most likely tokens."""
        slotted = [self.tokenizer.add_performance_slots(ids) for ids in compositions]
        kinds = [masked_slot_kinds(ids, self.tokenizer) for ids in slotted]
        length = self.task.context_length
        spans = [(n, start, end) for n, ids in enumerate(slotted)
                 for start, end in windows(self.tokenizer.token_types(ids), length)]
        rows = 1 << max(len(spans) - 1, 0).bit_length()
        inputs = np.full((rows, length), PAD_ID, np.int32)
        kinds_in = np.zeros((rows, length), np.int32)
        for row, (n, start, end) in enumerate(spans):
            inputs[row, :end - start] = slotted[n][start:end]
            kinds_in[row, :end - start] = kinds[n][start:end]
        chosen = np.asarray(self._choose(params, jnp.asarray(inputs), jnp.asarray(kinds_in), rng,
                                         jnp.float32(temperature)))
        performed = [ids.copy() for ids in slotted]
        for row, (n, start, end) in enumerate(spans):
            slot = kinds[n][start:end] != NO_SLOT
            performed[n][start:end][slot] = chosen[row, :end - start][slot]
        return performed
