"""Sampling from the baseline LM: each token from a full forward pass over the last
`context_length` tokens (no cache: the baseline is small), optionally under PerTok's grammar.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from baseline.model import CausalTransformer
from pertok.grammar import Grammar, GrammarState


def draw_tokens(rng: jax.Array, logits_BxV: jax.Array, temperature: jax.Array, top_k: int,
                top_p: jax.Array) -> jax.Array:
    """int32 [B]: argmax at temperature 0, else a draw from the top-k, top-p filtered softmax."""
    logits_BxV = logits_BxV.astype(jnp.float32)
    greedy_B = jnp.argmax(logits_BxV, axis=-1)
    scaled_BxV = logits_BxV / jnp.maximum(temperature, 1e-6)
    if top_k > 0:
        kth_Bx1 = jax.lax.top_k(scaled_BxV, min(top_k, scaled_BxV.shape[-1]))[0][:, -1:]
        scaled_BxV = jnp.where(scaled_BxV < kth_Bx1, -jnp.inf, scaled_BxV)
    sorted_BxV = jnp.sort(scaled_BxV, axis=-1)[:, ::-1]
    probs_BxV = jax.nn.softmax(sorted_BxV, axis=-1)
    before_BxV = jnp.cumsum(probs_BxV, axis=-1) - probs_BxV  # mass of the more likely tokens
    threshold_Bx1 = jnp.where(before_BxV < top_p, sorted_BxV, jnp.inf).min(-1, keepdims=True)
    scaled_BxV = jnp.where(scaled_BxV < threshold_Bx1, -jnp.inf, scaled_BxV)
    drawn_B = jax.random.categorical(rng, scaled_BxV, axis=-1)
    return jnp.where(temperature <= 0, greedy_B, drawn_B).astype(jnp.int32)


class LMDecoder:
    """Decodes `model` token by token over a sliding window of its context length.

    Args:
      grammar: sample only what PerTok's grammar allows (None = unconstrained).
      chunk: tokens per compiled scan (a progress report after each).
    """

    def __init__(self, model: CausalTransformer, grammar: Grammar | None = None, chunk: int = 64):
        self.model, self.grammar, self.chunk = model, grammar, chunk
        self._run = jax.jit(self._run_fn, static_argnames=("steps", "top_k"))

    def prompt_state(self, prompt_BxP: np.ndarray, num_tokens: int) -> GrammarState | None:
        """The grammar's state after the prompt (None without a grammar); ValueError if the
        prompt breaks the grammar or cannot be finished in `num_tokens`."""
        if self.grammar is None:
            return None
        return self.grammar.after_prompt(prompt_BxP, num_tokens)

    def generate(self, params, prompt_BxP: np.ndarray, num_tokens: int, rng: jax.Array,
                 temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                 eos_id: int | None = None, pad_id: int = 0,
                 progress: Callable[[int], None] | None = None) -> np.ndarray:
        """int32 [B, num_tokens] tokens after the prompt (at least BOS); `pad_id` after EOS."""
        prompt_BxP = np.asarray(prompt_BxP, np.int32)
        B, P = prompt_BxP.shape
        if P < 1 or num_tokens < 1:
            raise ValueError(f"need a prompt of at least one token (BOS) and num_tokens >= 1, "
                             f"got {P} and {num_tokens}")
        rules = self.prompt_state(prompt_BxP, num_tokens)
        buffer_BxS = np.full((B, max(P + num_tokens, self.model.context_length)), pad_id, np.int32)
        buffer_BxS[:, :P] = prompt_BxP
        # Placed like the parameters (and so like each chunk's output), so that every chunk
        # reuses the first one's program.
        buffer_BxS, rules = jax.device_put((buffer_BxS, rules), jax.tree.leaves(params)[0].sharding)
        done = 0
        while done < num_tokens:
            steps = min(self.chunk, num_tokens - done)
            buffer_BxS, rules = self._run(params, buffer_BxS, jnp.int32(P + done), rules,
                                          jax.random.fold_in(rng, done), jnp.float32(temperature),
                                          jnp.float32(top_p), jnp.int32(num_tokens - done),
                                          steps=steps, top_k=top_k)
            done += steps
            out_BxT = np.array(buffer_BxS)[:, P:P + num_tokens]  # a writable copy
            if progress is not None:
                progress(done)
            if eos_id is not None and (out_BxT[:, :done] == eos_id).any(1).all():
                break
        if eos_id is not None:  # every token after a row's first EOS becomes PAD
            out_BxT[np.cumsum(out_BxT == eos_id, axis=1) - (out_BxT == eos_id) > 0] = pad_id
        return out_BxT

    def _run_fn(self, params, buffer_BxS, start, rules, rng, temperature, top_p, remaining, *,
                steps: int, top_k: int):
        """Append `steps` tokens at positions start, start + 1, ...: (buffer, grammar state)."""
        C = self.model.context_length
        B = buffer_BxS.shape[0]

        def body(carry, inputs):
            buffer_BxS, rules = carry
            index, step_rng = inputs
            length = start + index  # tokens so far
            window_start = jnp.maximum(length - C, 0)
            window_BxC = jax.lax.dynamic_slice(buffer_BxS, (0, window_start), (B, C))
            logits_BxCxV = self.model.apply({"params": params}, window_BxC)
            logits_BxV = jax.lax.dynamic_index_in_dim(logits_BxCxV, length - 1 - window_start,
                                                      axis=1, keepdims=False)
            if rules is not None:
                allowed_BxV = self.grammar.allowed(rules, remaining - index, xp=jnp)
                logits_BxV = jnp.where(allowed_BxV, logits_BxV, -jnp.inf)
            token_B = draw_tokens(step_rng, logits_BxV, temperature, top_k, top_p)
            if rules is not None:
                rules = self.grammar.advance(rules, token_B, xp=jnp)
            buffer_BxS = jax.lax.dynamic_update_slice(buffer_BxS, token_B[:, None], (0, length))
            return (buffer_BxS, rules), None

        inputs = (jnp.arange(steps), jax.random.split(rng, steps))
        (buffer_BxS, rules), _ = jax.lax.scan(body, (buffer_BxS, rules), inputs)
        return buffer_BxS, rules
