"""The language-modelling task: next-token prediction over windows of each piece."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from baseline.model import CausalTransformer, flops_per_token
from baseline.sample import LMDecoder
from layers import transformer_config_errors
from pertok.grammar import Grammar


def framed(piece: np.ndarray, start: int, stop: int, bos_id: int, eos_id: int) -> np.ndarray:
    """Positions start .. stop - 1 of BOS + piece + EOS, reading only that slice."""
    stop = min(stop, len(piece) + 2)
    parts = [[bos_id]] if start == 0 else []
    parts.append(piece[max(start - 1, 0): min(stop - 1, len(piece))])
    if stop == len(piece) + 2:
        parts.append([eos_id])
    return np.concatenate(parts).astype(np.int32)


class WindowSampler:
    """Cuts BOS + piece + EOS into windows of `context_length + 1` tokens at stride
    `context_length`, so every token of the split is a target exactly once per epoch."""

    token_keys = ("inputs", "targets")

    def __init__(self, pieces, context_length: int, pad_id: int, bos_id: int, eos_id: int):
        self.pieces, self.context_length = pieces, context_length
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        targets = pieces.lengths() + 1  # every token and EOS is a target once
        counts = -(-targets // context_length)
        self.windows = np.stack([np.repeat(np.arange(len(pieces)), counts),
                                 np.concatenate([np.arange(c) * context_length for c in counts])
                                 if len(counts) else np.zeros(0, np.int64)], axis=1)

    def __len__(self) -> int:
        return len(self.windows)

    def _window(self, piece: np.ndarray, start: int) -> np.ndarray:
        return framed(piece, start, start + self.context_length + 1, self.bos_id, self.eos_id)

    def example(self, index: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        del rng  # windows are fixed; augmentation is the harness's
        piece, start = (int(v) for v in self.windows[index])
        window = self._window(self.pieces.piece(piece), start)
        window = np.pad(window, (0, self.context_length + 1 - len(window)),
                        constant_values=self.pad_id)
        targets = window[1:]
        return {"inputs": window[:-1], "targets": targets,
                "weights": (targets != self.pad_id).astype(np.float32)}


class LMTask:
    """`training.Task` for `CausalTransformer`.

    Args:
      model: config block with d_model, num_layers, num_heads, mlp_dim, dropout, dtype.
    """

    def __init__(self, model, vocab_size: int, context_length: int, pad_id: int = 0,
                 bos_id: int = 1, eos_id: int = 2):
        self.config, self.vocab_size, self.context_length = model, vocab_size, context_length
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.model = CausalTransformer(
            vocab_size=vocab_size, context_length=context_length, d_model=model.d_model,
            num_layers=model.num_layers, num_heads=model.num_heads, mlp_dim=model.mlp_dim,
            dropout=model.dropout, dtype=jnp.dtype(model.dtype))

    def example_batch(self, batch_size: int) -> dict:
        """An all-padding batch of `batch_size` examples shaped like the sampler's."""
        shape = (batch_size, self.context_length)
        return {"inputs": np.full(shape, self.pad_id, np.int32),
                "targets": np.full(shape, self.pad_id, np.int32),
                "weights": np.zeros(shape, np.float32)}

    def init(self, rng: jax.Array, batch: dict) -> dict:
        return self.model.init(rng, batch["inputs"])["params"]

    def loss(self, params, batch, rng, train):
        logits_BxTxV = self.model.apply({"params": params}, batch["inputs"], train=train,
                                        rngs={"dropout": rng})
        losses_BxT = optax.softmax_cross_entropy_with_integer_labels(logits_BxTxV, batch["targets"])
        weights_BxT = batch["weights"]
        count = jnp.maximum(weights_BxT.sum(), 1.0)
        loss = (losses_BxT * weights_BxT).sum() / count
        correct_BxT = logits_BxTxV.argmax(-1) == batch["targets"]
        return loss, {"accuracy": (correct_BxT * weights_BxT).sum() / count,
                      "bits_per_token": loss / jnp.log(2.0)}  # as PerceiverS logs it

    def token_losses(self, params, batch) -> jax.Array:
        """Cross-entropy in nats of every position, float32 [B, C] (`training.heldout`)."""
        logits_BxTxV = self.model.apply({"params": params}, batch["inputs"], train=False)
        return optax.softmax_cross_entropy_with_integer_labels(logits_BxTxV.astype(jnp.float32), batch["targets"])

    def heldout_example(self, tokens: np.ndarray, first_target: int, stop: int) -> dict[str, np.ndarray]:
        """Targets first_target .. stop - 1 scored from the window of the C inputs that ends at
        stop - 1 (from the piece's start while it is shorter): `training.heldout`'s protocol."""
        C = self.context_length
        if not 0 < stop - first_target <= C:
            raise ValueError(f"a held-out block of {stop - first_target} targets does not fit context_length={C}")
        start = max(0, stop - C)
        window = framed(tokens, start, stop + 1, self.bos_id, self.eos_id)  # inputs and their targets
        inputs = np.full(C, self.pad_id, np.int32)
        targets = np.full(C, self.pad_id, np.int32)
        inputs[:len(window) - 1], targets[:len(window) - 1] = window[:-1], window[1:]
        positions = start + np.arange(C)
        scored = (positions >= first_target) & (positions < stop)
        return {"inputs": inputs, "targets": targets, "weights": scored.astype(np.float32),
                "positions": np.where(scored, positions, -1).astype(np.int32)}

    def sampler(self, pieces) -> WindowSampler:
        return WindowSampler(pieces, self.context_length, self.pad_id, self.bos_id, self.eos_id)

    def decoder(self, grammar: Grammar | None = None) -> LMDecoder:
        """A sliding-window sampler of this model under `grammar` (None = unconstrained)."""
        return LMDecoder(self.model, grammar)

    def flops_per_token(self) -> float:
        c = self.config
        return flops_per_token(c.d_model, c.num_layers, c.mlp_dim, self.vocab_size,
                               self.context_length)

    def tokens_per_example(self) -> int:
        return self.context_length

    def validate(self) -> None:
        errors = transformer_config_errors(self.config)
        if self.context_length < 1:
            errors.append(f"data.context_length={self.context_length} must be positive")
        if errors:
            raise ValueError("\n  ".join(errors))
