"""PerceiverS as a `training.Task`: the model from a config, its loss, its segmentation."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from layers import IMPLEMENTATIONS, rotary_dim, transformer_config_errors
from layers.masks import SCALE_MASKS
from perceivers.model import COMBINATIONS, PerceiverS, flops_per_token
from perceivers.sample import Decoder
from perceivers.segmentation import SEGMENTATIONS, make_sampler, window_example
from pertok.grammar import Grammar


def build_model(model, vocab_size: int) -> PerceiverS:
    """The PerceiverS of a `model` config block (`scale_window = 0` means None)."""
    return PerceiverS(
        vocab_size=vocab_size, query_length=model.query_length, d_model=model.d_model,
        num_heads=model.num_heads, num_layers=model.num_layers, mlp_dim=model.mlp_dim,
        scale_window=model.scale_window or None, combination=model.combination,
        scale_mask=model.get("scale_mask", "sliding"),  # configs saved before it: sliding
        rotary_fraction=model.rotary_fraction, context_dropout=model.context_dropout,
        dropout_rate=model.dropout, attention_impl=model.attention_impl, remat=model.remat,
        dtype=jnp.dtype(model.dtype))


class PerceiverSTask:
    """`training.Task` for `PerceiverS`: cross-entropy on the N latent positions.

    Throughput counts target tokens: `tokens_per_example` is N and `flops_per_token` is per
    target, so their product is the FLOPs of one example.

    Args:
      model: the config's `model` block.
      segmentation: "effective", "fixed" or "random_crop" (`perceivers.segmentation`).
    """

    def __init__(self, model, vocab_size: int, segmentation: str = "effective",
                 pad_id: int = 0, bos_id: int = 1, eos_id: int = 2):
        self.config, self.vocab_size, self.segmentation = model, vocab_size, segmentation
        self.context_length, self.query_length = model.context_length, model.query_length
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.model = build_model(model, vocab_size)

    def example_batch(self, batch_size: int) -> dict:
        """An all-padding batch of `batch_size` examples shaped like the sampler's."""
        return {"inputs": np.full((batch_size, self.context_length), self.pad_id, np.int32),
                "targets": np.full((batch_size, self.query_length), self.pad_id, np.int32),
                "weights": np.zeros((batch_size, self.query_length), np.float32)}

    def init(self, rng: jax.Array, batch: dict) -> dict:
        inputs_BxL = batch["inputs"]
        return self.model.init({"params": rng}, inputs_BxL, inputs_BxL != self.pad_id)["params"]

    def loss(self, params, batch, rng, train):
        inputs_BxL = batch["inputs"]
        logits_BxNxV = self.model.apply({"params": params}, inputs_BxL, inputs_BxL != self.pad_id,
                                        deterministic=not train, rngs={"dropout": rng})
        losses_BxN = optax.softmax_cross_entropy_with_integer_labels(logits_BxNxV, batch["targets"])
        weights_BxN = batch["weights"].astype(jnp.float32)
        count = jnp.maximum(weights_BxN.sum(), 1.0)
        loss = (losses_BxN * weights_BxN).sum() / count
        correct_BxN = logits_BxNxV.argmax(-1) == batch["targets"]
        return loss, {"accuracy": (correct_BxN * weights_BxN).sum() / count,
                      "bits_per_token": loss / math.log(2.0)}

    def token_losses(self, params, batch) -> jax.Array:
        """Cross-entropy in nats of every latent's target, float32 [B, N] (`training.heldout`)."""
        inputs_BxL = batch["inputs"]
        logits_BxNxV = self.model.apply({"params": params}, inputs_BxL, inputs_BxL != self.pad_id,
                                        deterministic=True)
        return optax.softmax_cross_entropy_with_integer_labels(logits_BxNxV.astype(jnp.float32), batch["targets"])

    def heldout_example(self, tokens: np.ndarray, first_target: int, stop: int) -> dict[str, np.ndarray]:
        """Targets first_target .. stop - 1 from the window of up to L inputs ending at stop - 1:
        at stride N these are effective segmentation's examples, whatever the run trained with."""
        L, N = self.context_length, self.query_length
        if not 0 < stop - first_target <= N:
            raise ValueError(f"a held-out block of {stop - first_target} targets does not fit query_length={N}")
        example = window_example(tokens, max(0, stop - L), stop, first_target, L, N, self.pad_id, self.bos_id,
                                 self.eos_id)
        positions = stop - N + np.arange(N)
        example["positions"] = np.where(example["weights"] > 0, positions, -1).astype(np.int32)
        return example

    def sampler(self, pieces):
        return make_sampler(self.segmentation, pieces, self.context_length, self.query_length,
                            self.pad_id, self.bos_id, self.eos_id)

    def decoder(self, reset_fill: int | None = None, grammar: Grammar | None = None) -> Decoder:
        """A cached decoder of this model (`reset_fill` 0 or None = N // 2), sampling under
        `grammar` (a `pertok.grammar.Grammar`; None = unconstrained)."""
        return Decoder(self.model, self.context_length, reset_fill or None, self.pad_id, grammar)

    def flops_per_token(self, context_length: int | None = None) -> float:
        """Per target token at the full context, or at `context_length` (a length bucket)."""
        return flops_per_token(self.model, context_length or self.context_length)

    def tokens_per_example(self) -> int:
        return self.query_length

    def validate(self) -> None:
        c, errors = self.config, transformer_config_errors(self.config)

        def check(ok: bool, message: str) -> None:
            if not ok:
                errors.append(message)

        check(0 < c.query_length <= c.context_length,
              f"model.query_length={c.query_length} must lie in 1..model.context_length="
              f"{c.context_length}")
        check(0 <= c.scale_window <= c.context_length,
              f"model.scale_window={c.scale_window} must lie in 0..model.context_length={c.context_length} "
              f"(0 = none; a window as long as the context is full attention)")
        check(c.combination in COMBINATIONS,
              f"model.combination={c.combination!r} must be one of {COMBINATIONS}")
        check(c.get("scale_mask", "sliding") in SCALE_MASKS,
              f"model.scale_mask={c.get('scale_mask')!r} must be one of {SCALE_MASKS}")
        check(self.segmentation in SEGMENTATIONS,
              f"data.segmentation={self.segmentation!r} must be one of {SEGMENTATIONS}")
        check(0 <= c.context_dropout < 1,
              f"model.context_dropout={c.context_dropout} must lie in [0, 1)")
        check(c.attention_impl in IMPLEMENTATIONS,
              f"model.attention_impl={c.attention_impl!r} must be one of {IMPLEMENTATIONS}")
        if c.num_heads > 0 and c.d_model % c.num_heads == 0:
            try:
                rotary_dim(c.d_model // c.num_heads, c.rotary_fraction)
            except ValueError as error:
                errors.append(f"model.rotary_fraction={c.rotary_fraction}: {error}")
        if errors:
            raise ValueError("\n  ".join(errors))
