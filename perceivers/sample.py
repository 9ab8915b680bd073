"""Cached sampling from a PerceiverS model: prefill a window, step token by token, reset.

A decoding window holds at most L context keys (L = context length) of which at most N are
latents (N = query length). A reset runs the full forward pass over the last
`L - N + reset_fill` tokens, left padded, with their last `reset_fill` positions as latents,
and fills the caches: every context key for the global cross-attention, the scale branch's
window, the latents' keys for each self-attention layer. Each step then appends one token as
a new context key and a new latent; after N - reset_fill steps the latent cache is full, the
window has L keys, and the next token starts a reset (Perceiver AR's latent reset). Between
resets the cached logits equal those of one full forward pass over the window's L tokens.

With a `pertok.grammar.Grammar`, every draw is restricted to the tokens PerTok's grammar allows
next (the prompt's state carried in, the token budget respected), so a sample decodes strictly.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from perceivers.cache import init_cache
from perceivers.model import PerceiverS
from pertok.grammar import Grammar, GrammarState


@dataclasses.dataclass(frozen=True)
class SampleSettings:
    """How a token is drawn from the logits."""

    temperature: float = 1.0  # 0 = greedy (argmax)
    top_k: int = 0  # keep the k most likely tokens; 0 = all
    top_p: float = 1.0  # keep the fewest tokens whose probability reaches p; 1 = all


def filter_logits(logits_BxV: jax.Array, top_k: int = 0,
                  top_p: float | jax.Array = 1.0) -> jax.Array:
    """Logits with every token outside the top k and the top-p nucleus set to -inf.

    The most likely token is always kept; tokens tied with the last kept one are kept too.

    Args:
      top_k: static; 0 keeps all.
      top_p: may be traced; a Python number >= 1 skips the sort.
    """
    logits_BxV = logits_BxV.astype(jnp.float32)
    if top_k > 0:
        kth_Bx1 = jax.lax.top_k(logits_BxV, min(top_k, logits_BxV.shape[-1]))[0][:, -1:]
        logits_BxV = jnp.where(logits_BxV < kth_Bx1, -jnp.inf, logits_BxV)
    if not (isinstance(top_p, (int, float)) and top_p >= 1.0):
        sorted_BxV = jnp.sort(logits_BxV, axis=-1)[:, ::-1]
        probs_BxV = jax.nn.softmax(sorted_BxV, axis=-1)
        before_BxV = jnp.cumsum(probs_BxV, axis=-1) - probs_BxV  # mass of the more likely tokens
        kept_BxV = jnp.where(before_BxV < top_p, sorted_BxV, jnp.inf)
        threshold_Bx1 = kept_BxV.min(axis=-1, keepdims=True)
        logits_BxV = jnp.where(logits_BxV < threshold_Bx1, -jnp.inf, logits_BxV)
    return logits_BxV


def sample_tokens(rng: jax.Array, logits_BxV: jax.Array, temperature: float | jax.Array = 1.0,
                  top_k: int = 0, top_p: float | jax.Array = 1.0) -> jax.Array:
    """int32 [B] tokens drawn from softmax(logits / temperature), filtered; temperature 0 = argmax.

    Args:
      temperature, top_p: may be traced (one compiled sampler serves every value).
      top_k: static.
    """
    logits_BxV = logits_BxV.astype(jnp.float32)
    greedy_B = jnp.argmax(logits_BxV, axis=-1)
    filtered_BxV = filter_logits(logits_BxV / jnp.maximum(temperature, 1e-6), top_k, top_p)
    drawn_B = jax.random.categorical(rng, filtered_BxV, axis=-1)
    return jnp.where(jnp.asarray(temperature) <= 0, greedy_B, drawn_B).astype(jnp.int32)


class Decoder:
    """Cached decoding of `model` over windows of `context_length` tokens.

    Args:
      reset_fill: latents kept by a reset, 1 .. N - 1 (default N // 2): more keeps the
        decoding closer to training's N latents, fewer makes resets rarer.
      grammar: sample only what PerTok's grammar allows (None = unconstrained).
    """

    def __init__(self, model: PerceiverS, context_length: int, reset_fill: int | None = None,
                 pad_id: int = 0, grammar: Grammar | None = None):
        N = model.query_length
        self.model, self.context_length, self.pad_id = model, context_length, pad_id
        self.grammar = grammar
        self.reset_fill = N // 2 if reset_fill is None else reset_fill
        if not 1 <= self.reset_fill < N:
            raise ValueError(f"reset_fill={self.reset_fill} must lie in 1..query_length - 1 = "
                             f"{N - 1}")
        if not N <= context_length:
            raise ValueError(f"query_length={N} exceeds context_length={context_length}")
        self.window_length = context_length - N + self.reset_fill
        self.steps_per_reset = N - self.reset_fill
        self._prefill = jax.jit(self._prefill_fn)
        # step consumes (donates) its cache, so that the keys are written in place.
        self._step = jax.jit(self._step_fn, donate_argnums=2)
        self._chunk = jax.jit(self._chunk_fn, static_argnames=("steps", "top_k"))

    def window(self, tokens_BxP: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The last `window_length` tokens, left padded: (ids int32 [B, R], mask bool [B, R])."""
        tokens_BxP = np.asarray(tokens_BxP, np.int32)
        R, P = self.window_length, tokens_BxP.shape[1]
        ids = np.full((tokens_BxP.shape[0], R), self.pad_id, np.int32)
        ids[:, R - min(P, R):] = tokens_BxP[:, max(P - R, 0):]
        mask = np.zeros(ids.shape, bool)
        mask[:, R - min(P, R):] = True
        return ids, mask

    def prefill(self, params, tokens_BxP: np.ndarray) -> tuple[jax.Array, dict]:
        """Reset on the tokens so far: (logits [B, reset_fill, V] of the last positions, cache)."""
        if np.asarray(tokens_BxP).shape[1] < 1:
            raise ValueError("decoding needs at least one token (BOS) to start from")
        ids, mask = self.window(tokens_BxP)
        return self._prefill(params, jnp.asarray(ids), jnp.asarray(mask))

    def step(self, params, token_B: jax.Array, cache: dict) -> tuple[jax.Array, dict]:
        """Append one token per row: (logits [B, V] of the next token, cache); consumes `cache`."""
        return self._step(params, jnp.asarray(token_B, jnp.int32), cache)

    def prompt_state(self, prompt_BxP: np.ndarray, num_tokens: int) -> GrammarState | None:
        """The grammar's state after the prompt (None without a grammar); ValueError if the
        prompt breaks the grammar or cannot be finished in `num_tokens`."""
        if self.grammar is None:
            return None
        return self.grammar.after_prompt(prompt_BxP, num_tokens)

    def generate(self, params, prompt_BxP: np.ndarray, num_tokens: int, rng: jax.Array,
                 settings: SampleSettings = SampleSettings(), eos_id: int | None = None,
                 progress: Callable[[int], None] | None = None) -> np.ndarray:
        """int32 [B, num_tokens] tokens after the prompt; after a row's EOS, `pad_id`.

        The same rng, prompt and settings give the same tokens. With a grammar, the tokens
        continue the prompt's grammatical state and the rows end where they may end.

        Args:
          progress: called with the number of tokens generated so far after each chunk.
        """
        if num_tokens < 1:
            raise ValueError(f"num_tokens={num_tokens} must be positive")
        tokens_BxP = np.asarray(prompt_BxP, np.int32)
        prompt_length, done = tokens_BxP.shape[1], 0
        rules = self.prompt_state(tokens_BxP, num_tokens)
        logits_BxFxV, cache = self.prefill(params, tokens_BxP)
        # Placed like the chunk's own output, so the second chunk reuses the first's program.
        rules = None if rules is None else jax.device_put(rules, logits_BxFxV.sharding)
        while True:
            steps = min(self.steps_per_reset, num_tokens - done - 1)
            chunk_BxK, rules = self._chunk(
                params, cache, logits_BxFxV[:, -1], jax.random.fold_in(rng, done),
                jnp.float32(settings.temperature), jnp.float32(settings.top_p), rules,
                jnp.int32(num_tokens - done), steps=steps, top_k=settings.top_k)
            tokens_BxP = np.concatenate([tokens_BxP, np.asarray(chunk_BxK)], axis=1)
            done += steps + 1
            if progress is not None:
                progress(done)
            ended = eos_id is not None and (tokens_BxP[:, prompt_length:] == eos_id).any(1).all()
            if done >= num_tokens or ended:
                break
            logits_BxFxV, cache = self.prefill(params, tokens_BxP)  # the latent reset
        return _pad_after(tokens_BxP[:, prompt_length:], eos_id, self.pad_id, num_tokens)

    def _prefill_fn(self, params, ids_BxR, mask_BxR):
        cache = init_cache(self.model, ids_BxR.shape[0], self.context_length, self.reset_fill)
        return self.model.apply({"params": params}, ids_BxR, mask_BxR,
                                query_length=self.reset_fill, cache=cache)

    def _step_fn(self, params, token_B, cache):
        logits_Bx1xV, cache = self.model.apply({"params": params}, token_B[:, None],
                                               query_length=1, cache=cache)
        return logits_Bx1xV[:, 0], cache

    def _chunk_fn(self, params, cache, logits_BxV, rng, temperature, top_p, rules, remaining,
                  *, steps: int, top_k: int):
        """`steps` times draw a token and step it in, then draw one more: (tokens [B, steps + 1],
        grammar state). `remaining`: the budget left at the chunk's first token."""
        sample = functools.partial(sample_tokens, temperature=temperature, top_k=top_k, top_p=top_p)

        def draw(step_rng, logits_BxV, rules, index):
            if self.grammar is None:
                return sample(step_rng, logits_BxV), rules
            allowed_BxV = self.grammar.allowed(rules, remaining - index, xp=jnp)
            token_B = sample(step_rng, jnp.where(allowed_BxV, logits_BxV.astype(jnp.float32), -jnp.inf))
            return token_B, self.grammar.advance(rules, token_B, xp=jnp)

        def body(carry, inputs):
            (cache, logits_BxV, rules), (step_rng, index) = carry, inputs
            token_B, rules = draw(step_rng, logits_BxV, rules, index)
            logits_BxV, cache = self._step_fn(params, token_B, cache)
            return (cache, logits_BxV, rules), token_B

        step_rngs = jax.random.split(rng, steps + 1)
        (_, logits_BxV, rules), tokens_KxB = jax.lax.scan(
            body, (cache, logits_BxV, rules), (step_rngs[:-1], jnp.arange(steps)))
        last_B, rules = draw(step_rngs[-1], logits_BxV, rules, steps)
        return jnp.concatenate([tokens_KxB.T, last_B[:, None]], axis=1), rules


def _pad_after(tokens_BxT: np.ndarray, eos_id: int | None, pad_id: int, length: int) -> np.ndarray:
    """Right pad to `length`; every token after a row's first EOS becomes `pad_id`."""
    out = np.full((tokens_BxT.shape[0], length), pad_id, np.int32)
    out[:, :tokens_BxT.shape[1]] = tokens_BxT
    if eos_id is not None:
        after_eos = np.cumsum(out == eos_id, axis=1) - (out == eos_id) > 0
        out[after_eos] = pad_id
    return out
