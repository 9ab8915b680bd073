"""The Performer as a `training.Task`: windows of performances, loss on the masked slots only."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from layers import transformer_config_errors
from performer.model import PAD_ID, Performer, flops_per_token
from performer.slots import MICROTIMING_SLOT, NO_SLOT, VELOCITY_SLOT, mask_slots, slot_kinds, windows


def window_example(full_ids: np.ndarray, kinds: np.ndarray, context_length: int) -> dict[str, np.ndarray]:
    """inputs (slots masked), slot kinds, targets (the full ids) and weights (1 on slots), padded."""
    pad = context_length - len(full_ids)
    padded = lambda a: np.pad(np.asarray(a, np.int32), (0, pad), constant_values=PAD_ID)  # noqa: E731
    kinds = padded(kinds)
    return {"inputs": padded(mask_slots(full_ids, kinds[:len(full_ids)])), "slot_kinds": kinds,
            "targets": padded(full_ids), "weights": (kinds != NO_SLOT).astype(np.float32)}


class PerformanceSampler:
    """Every window of every performance (`slots.windows`): each slot is a target once per epoch.

    Windows without a slot (e.g. only bar lines) are left out.
    """

    token_keys = ("inputs", "targets")

    def __init__(self, pieces, tokenizer, context_length: int):
        self.pieces, self.tokenizer, self.context_length = pieces, tokenizer, context_length
        self.windows = []
        for index in range(len(pieces)):
            ids = np.asarray(pieces.piece(index))
            kinds = slot_kinds(ids, tokenizer)
            self.windows += [(index, start, end) for start, end in
                             windows(tokenizer.token_types(ids), context_length)
                             if kinds[start:end].any()]

    def __len__(self) -> int:
        return len(self.windows)

    def example(self, index: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        del rng  # windows are fixed; augmentation is the harness's
        piece, start, end = self.windows[index]
        ids = np.asarray(self.pieces.piece(piece))[start:end]
        return window_example(ids, slot_kinds(ids, self.tokenizer), self.context_length)


class PerformerTask:
    """`training.Task` for the Performer.

    Args:
      model: config block (context_length, d_model, num_layers, num_heads, mlp_dim, dropout,
        rotary_fraction, dtype).
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
        correct_BxT = logits_BxTxV.argmax(-1) == batch["targets"]
        metrics = {}
        for name, kind in (("microtiming", MICROTIMING_SLOT), ("velocity", VELOCITY_SLOT)):
            on_kind = weights_BxT * (kinds_BxT == kind)
            metrics[f"{name}_accuracy"] = (correct_BxT * on_kind).sum() / jnp.maximum(on_kind.sum(), 1.0)
        return loss, metrics

    def sampler(self, pieces) -> PerformanceSampler:
        return PerformanceSampler(pieces, self.tokenizer, self.context_length)

    def flops_per_token(self) -> float:
        return flops_per_token(self.config, self.tokenizer.vocab_size, self.context_length)

    def tokens_per_example(self) -> int:
        return self.context_length

    def validate(self) -> None:
        c, errors = self.config, transformer_config_errors(self.config)
        if c.context_length < 16:
            errors.append(f"model.context_length={c.context_length} must be at least 16")
        if errors:
            raise ValueError("\n  ".join(errors))
