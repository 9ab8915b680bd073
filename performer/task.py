"""The Performer as a `training.Task`: windows of performances with a random share of their
slots masked, the piece's dynamic level in front, and the loss on the masked slots only."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from layers import transformer_config_errors
from performer.model import PAD_ID, Performer, flops_per_token
from performer.slots import (LEVEL_SLOT, MASK_ID, MICROTIMING_SLOT, NO_SLOT, VELOCITY_SLOT,
                             level_id, mask_slots, piece_velocities, random_mask, slot_kinds,
                             windows)


def window_example(full_ids: np.ndarray, kinds: np.ndarray, context_length: int,
                   masked: np.ndarray | None = None, level: int = MASK_ID) -> dict[str, np.ndarray]:
    """One padded window: inputs [level, ids with the `masked` slots MASK], slot kinds, targets
    (the full ids) and weights (1 on the masked slots).

    Args:
      full_ids, kinds: at most `context_length - 1` tokens of a performance and their slot kinds.
      masked: bool, the slots to fill (default: all of them).
      level: the piece's dynamic level (`slots.level_id`), MASK when not given.
    """
    if len(full_ids) > context_length - 1:
        raise ValueError(f"a window of {len(full_ids)} tokens does not fit context_length={context_length}")
    kinds = np.asarray(kinds, np.int32)
    masked = kinds != NO_SLOT if masked is None else masked & (kinds != NO_SLOT)
    pad = context_length - 1 - len(full_ids)
    padded = lambda first, a: np.pad(np.concatenate([[first], np.asarray(a, np.int32)]),  # noqa: E731
                                     (0, pad), constant_values=PAD_ID).astype(np.int32)
    return {"inputs": padded(level, mask_slots(full_ids, kinds, masked)),
            "slot_kinds": padded(LEVEL_SLOT, kinds), "targets": padded(PAD_ID, full_ids),
            "weights": padded(0, masked).astype(np.float32)}


class PerformanceSampler:
    """Every window of every performance (`slots.windows`): each slot is in one window per epoch.

    Each example masks a random share of its window's slots (`slots.random_mask`) and is told
    the piece's mean velocity, except with probability `level_dropout` (then MASK), so the
    Performer also works when no level is known. Without an rng (evaluation of a fixed window)
    every slot is masked and the level given. Windows without a slot are left out.
    """

    token_keys = ("inputs", "targets")

    def __init__(self, pieces, tokenizer, context_length: int, level_dropout: float = 0.0,
                 continuation: float = 0.0):
        self.pieces, self.tokenizer, self.context_length = pieces, tokenizer, context_length
        self.level_dropout, self.continuation = level_dropout, continuation
        self.windows, self.levels = [], []
        for index in range(len(pieces)):
            ids = np.asarray(pieces.piece(index))
            kinds = slot_kinds(ids, tokenizer)
            self.levels.append(level_id(piece_velocities(ids, tokenizer), tokenizer))
            self.windows += [(index, start, end) for start, end in
                             windows(tokenizer.token_types(ids), context_length - 1)
                             if kinds[start:end].any()]

    def __len__(self) -> int:
        return len(self.windows)

    def example(self, index: int, rng: np.random.Generator | None) -> dict[str, np.ndarray]:
        piece, start, end = self.windows[index]
        ids = np.asarray(self.pieces.piece(piece))[start:end]
        kinds = slot_kinds(ids, self.tokenizer)
        level, masked = self.levels[piece], None
        if rng is not None:
            masked = random_mask(kinds, rng, self.continuation)
            if rng.random() < self.level_dropout:
                level = MASK_ID
        return window_example(ids, kinds, self.context_length, masked, level)


class PerformerTask:
    """`training.Task` for the Performer.

    Args:
      model: config block (context_length, d_model, num_layers, num_heads, mlp_dim, dropout,
        rotary_fraction, dtype, level_dropout, continuation).
    """

    def __init__(self, model, tokenizer):
        self.config, self.tokenizer, self.context_length = model, tokenizer, model.context_length
        ranges = tokenizer.type_ranges
        self.model = Performer(
            vocab_size=tokenizer.vocab_size,
            microtiming_ids=(ranges["MicroTiming"].start, ranges["MicroTiming"].stop),
            velocity_ids=(ranges["Velocity"].start, ranges["Velocity"].stop),
            d_model=model.d_model, num_layers=model.num_layers, num_heads=model.num_heads,
            mlp_dim=model.mlp_dim, dropout=model.dropout, rotary_fraction=model.rotary_fraction,
            dtype=jnp.dtype(model.dtype))
        self.values = np.asarray(tokenizer.vocab.value_of, np.float32)  # velocity or timing bin

    def example_batch(self, batch_size: int = 1) -> dict[str, np.ndarray]:
        """An all-padding batch of the right shapes (for init and restoring)."""
        example = window_example(np.zeros(0, np.int32), np.zeros(0, np.int32), self.context_length)
        return {k: np.repeat(v[None], batch_size, 0) for k, v in example.items()}

    def init(self, rng: jax.Array, batch: dict) -> dict:
        return self.model.init(rng, batch["inputs"], batch["slot_kinds"])["params"]

    def logits(self, params, inputs_BxT, kinds_BxT, rng=None, train: bool = False) -> jax.Array:
        rngs = {"dropout": rng} if rng is not None else {}
        return self.model.apply({"params": params}, inputs_BxT, kinds_BxT, deterministic=not train,
                                rngs=rngs)

    def loss(self, params, batch, rng, train: bool):
        kinds_BxT = batch["slot_kinds"]
        logits_BxTxV = self.logits(params, batch["inputs"], kinds_BxT, rng, train)
        losses_BxT = optax.softmax_cross_entropy_with_integer_labels(logits_BxTxV, batch["targets"])
        weights_BxT = batch["weights"]  # 1 exactly on the masked MicroTiming and Velocity slots
        loss = (losses_BxT * weights_BxT).sum() / jnp.maximum(weights_BxT.sum(), 1.0)
        predicted_BxT = logits_BxTxV.argmax(-1)
        error_BxT = jnp.abs(jnp.asarray(self.values)[predicted_BxT] - jnp.asarray(self.values)[batch["targets"]])
        metrics = {}
        for name, kind in (("microtiming", MICROTIMING_SLOT), ("velocity", VELOCITY_SLOT)):
            on_kind = weights_BxT * (kinds_BxT == kind)
            count = jnp.maximum(on_kind.sum(), 1.0)
            metrics[f"{name}_accuracy"] = ((predicted_BxT == batch["targets"]) * on_kind).sum() / count
            metrics[f"{name}_mae"] = (error_BxT * on_kind).sum() / count  # MIDI velocity / timing bins
        return loss, metrics

    def sampler(self, pieces) -> PerformanceSampler:
        return PerformanceSampler(pieces, self.tokenizer, self.context_length,
                                  self.config.level_dropout, self.config.continuation)

    def flops_per_token(self) -> float:
        return flops_per_token(self.config, self.tokenizer.vocab_size, self.context_length)

    def tokens_per_example(self) -> int:
        return self.context_length

    def validate(self) -> None:
        c, errors = self.config, transformer_config_errors(self.config)
        if c.context_length < 16:
            errors.append(f"model.context_length={c.context_length} must be at least 16")
        for key in ("level_dropout", "continuation"):
            if not 0 <= c[key] <= 1:
                errors.append(f"model.{key}={c[key]} must be in [0, 1]")
        if errors:
            raise ValueError("\n  ".join(errors))
