"""Sampling ideas from the Composer: latents (prior, variations, interpolation), cached
autoregressive decoding after the conditioning prefix with temperature (0 = greedy) and
top-p under the grammar, and grammar repair through PerTok."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from composer import grammar
from composer.ideas import cut_points, select_bars
from composer.model import BOS_ID, PAD_ID, ComposerModel
from pertok import EmptyScoreError, TokenType
from pertok import grammar as grammar_rules

EOS_ID = 2
_NEVER = -1e9  # logit of a token that may not be sampled (finite: top-p sorts it last)


def top_p_logits(logits_BxV: jax.Array, top_p: float | jax.Array) -> jax.Array:
    """Nucleus filtering: keep the most likely tokens whose probabilities sum to `top_p`.

    The most likely token is always kept; top_p >= 1 keeps every token.
    """
    order_BxV = jnp.argsort(-logits_BxV, axis=-1)
    sorted_BxV = jnp.take_along_axis(logits_BxV, order_BxV, axis=-1)
    probs_BxV = jax.nn.softmax(sorted_BxV.astype(jnp.float32), axis=-1)
    before_BxV = jnp.cumsum(probs_BxV, axis=-1) - probs_BxV  # mass of the more likely tokens
    sorted_BxV = jnp.where(before_BxV >= top_p, _NEVER, sorted_BxV)
    return jnp.take_along_axis(sorted_BxV, jnp.argsort(order_BxV, axis=-1), axis=-1)


def prior_latents(rng: jax.Array, num: int, latent_shape: tuple[int, ...]) -> jax.Array:
    """z ~ N(0, I): [num, *latent_shape] (`ComposerModel.latent_shape`), for ideas from nothing."""
    return jax.random.normal(rng, (num, *latent_shape), jnp.float32)


def variation_latents(rng: jax.Array, mu_Z: jax.Array, num: int, strength: float) -> jax.Array:
    """[num, *mu.shape] latents `strength` (0 to 1) of the way from one idea ([Z], or [K, Z]
    with several latents per idea) to unrelated ones:
    z = sqrt(1 - s^2) mu + s eps, eps ~ N(0, I). 0 is the encoded idea (its posterior mean), 1 a
    draw from the prior that knows nothing of it; the mix keeps the prior's scale in between.
    (Noise scaled by the posterior's own sigma barely moves a latent that carries the idea: its
    sigma is small, and the similarity to the input stayed flat from 0.25 to 1.)"""
    eps_NxZ = jax.random.normal(rng, (num, *mu_Z.shape), jnp.float32)
    keep = jnp.sqrt(jnp.maximum(1.0 - jnp.float32(strength) ** 2, 0.0))
    return keep * mu_Z[None].astype(jnp.float32) + jnp.float32(strength) * eps_NxZ


class IdeaGenerator:
    """Decodes ideas from latents, one token at a time with a KV cache (jitted once per shape).

    The decoder first reads the conditioning prefix ([B, P] from `model.prefix_ids`: TimeSig,
    Programs, bar count; `model.open_prefix` leaves every field open), as in training.
    Sampling follows PerTok's grammar automaton (`composer.grammar`) with the token budget,
    so every idea decodes strictly: it ends at EOS, or within `max_tokens` after a whole note.
    The grammar also keeps to the prefix's known fields: its TimeSig right after the first Bar
    (and no other TimeSig), only its Programs, and its bar count (no more bars, and no EOS
    before the last bar has begun). Temperature 0 takes
    the most likely allowed token (greedy).
    """

    def __init__(self, model: ComposerModel, tokenizer, max_tokens: int, num_bars: int):
        self.model, self.max_tokens, self.num_bars = model, max_tokens, num_bars
        self.grammar = grammar.idea_grammar(tokenizer, num_bars)
        self.vocab_size = self.grammar.vocab_size
        self._sample = jax.jit(self._sample_impl)

    def __call__(self, params: dict, z_BxKxZ: jax.Array, rng: jax.Array, temperature: float = 1.0,
                 top_p: float = 1.0, prefix_BxP: np.ndarray | jax.Array | None = None) -> np.ndarray:
        """Token ids [B, max_tokens]: each idea, its EOS, then PAD.

        Args:
          z_BxKxZ: one latent per idea, of `model.latent_shape` each.
          prefix_BxP: the decoder's conditions per idea (a [P] row is used for every idea);
            None = every field open.
          temperature: 0 = greedy (the most likely token the grammar allows).
        """
        z_BxKxZ = jnp.asarray(z_BxKxZ, jnp.float32)
        if z_BxKxZ.shape[1:] != self.model.latent_shape:
            raise ValueError(f"latents of shape {z_BxKxZ.shape}: expected (ideas, "
                             f"{', '.join(map(str, self.model.latent_shape))}) (model.latent_shape)")
        batch = z_BxKxZ.shape[0]
        if prefix_BxP is None:
            prefix_BxP = self.model.open_prefix(batch)
        prefix_BxP = jnp.asarray(prefix_BxP, jnp.int32)
        if prefix_BxP.ndim == 1:
            prefix_BxP = jnp.broadcast_to(prefix_BxP[None], (batch, prefix_BxP.shape[0]))
        if prefix_BxP.shape != (batch, self.model.prefix_length):
            raise ValueError(f"prefix of shape {prefix_BxP.shape}: expected "
                             f"({batch}, {self.model.prefix_length}) (model.prefix_ids per idea)")
        ids = self._sample(params, z_BxKxZ, prefix_BxP, rng, jnp.float32(temperature),
                           jnp.float32(top_p))
        return np.asarray(ids)

    def _prefix_mask(self, prefix_BxP, rules):
        """bool [B, V]: the tokens the prefix's known fields allow next (PAD = field open)."""
        ids_1xV = jnp.arange(self.vocab_size)[None]
        types_1xV = jnp.asarray(self.grammar.types)[None]
        signature_Bx1 = prefix_BxP[:, :1]
        programs_BxM = prefix_BxP[:, 1:-1]
        bar_id_Bx1 = prefix_BxP[:, -1:]
        bars_Bx1 = jnp.where(bar_id_Bx1 >= self.vocab_size, bar_id_Bx1 - self.vocab_size + 1, 0)

        is_signature = types_1xV == TokenType.TIME_SIG
        known_signature = signature_Bx1 != PAD_ID
        # Only the prefix's TimeSig, and it must follow the idea's first Bar (the model was
        # trained on standalone ideas, which carry their TimeSig there).
        after_first_bar = ((rules.phase == grammar_rules.AFTER_BAR) & (rules.bars == 1))[:, None]
        signature_ok = ~known_signature | jnp.where(
            after_first_bar, ids_1xV == signature_Bx1, ~is_signature | (ids_1xV == signature_Bx1))
        listed = (ids_1xV[:, :, None] == programs_BxM[:, None, :]).any(-1)
        program_ok = ((programs_BxM == PAD_ID).all(-1, keepdims=True)
                      | (types_1xV != TokenType.PROGRAM) | listed)
        bar_ok = (bars_Bx1 == 0) | (types_1xV != TokenType.BAR) | (rules.bars[:, None] < bars_Bx1)
        # A known bar count is the idea's length: no EOS before its last bar has begun (an early
        # EOS is how sampled ideas collapsed to a few notes).
        end_ok = (bars_Bx1 == 0) | (ids_1xV != EOS_ID) | (rules.bars[:, None] >= bars_Bx1)
        return signature_ok & program_ok & bar_ok & end_ok

    def _next_token(self, params, token_B, segment_state, z_BxKxZ, prefix_BxP, caches, rules, remaining,
                    rng, temperature, top_p):
        segments = self.model.segments  # the fed token's latent and onset position
        latent_Bx1 = segments.current(segment_state, xp=jnp)[:, None]
        position_Bx1 = segments.current_position(segment_state, xp=jnp)[:, None]
        logits_Bx1xV, caches = self.model.decode(params, token_B[:, None], z_BxKxZ, latents_BxT=latent_Bx1,
                                                 positions_BxT=position_Bx1, caches=caches)
        allowed_BxV = self.grammar.allowed(rules, remaining, xp=jnp)
        constrained_BxV = allowed_BxV & self._prefix_mask(prefix_BxP, rules)
        # The prefix's limits only narrow the grammar; should they leave nothing, the grammar rules.
        allowed_BxV = jnp.where(constrained_BxV.any(-1, keepdims=True), constrained_BxV, allowed_BxV)
        logits_BxV = jnp.where(allowed_BxV, logits_Bx1xV[:, 0].astype(jnp.float32), _NEVER)
        greedy_B = jnp.argmax(logits_BxV, axis=-1)
        nucleus_BxV = top_p_logits(logits_BxV / jnp.maximum(temperature, 1e-6), top_p)
        sampled_B = jax.random.categorical(rng, nucleus_BxV)
        return jnp.where(temperature > 0, sampled_B, greedy_B).astype(jnp.int32), caches

    def _sample_impl(self, params, z_BxKxZ, prefix_BxP, rng, temperature, top_p):
        batch = z_BxKxZ.shape[0]
        out_BxN = jnp.full((batch, self.max_tokens), PAD_ID, jnp.int32)
        caches = self.model.prefill(params, prefix_BxP, z_BxKxZ, self.max_tokens)
        segments = self.model.segments  # which latent each fed token reads (BOS: the first)
        state = (jnp.int32(0), jnp.full((batch,), BOS_ID, jnp.int32), caches,
                 self.grammar.start(batch, xp=jnp), segments.start(batch, xp=jnp), rng, out_BxN,
                 jnp.zeros((batch,), bool))

        def running(state):
            position, *_, done_B = state
            return (position < self.max_tokens) & ~done_B.all()

        def step(state):
            position, token_B, caches, rules, segment_state, rng, out_BxN, done_B = state
            rng, draw = jax.random.split(rng)
            token_B, caches = self._next_token(params, token_B, segment_state, z_BxKxZ, prefix_BxP,
                                               caches, rules, self.max_tokens - position, draw,
                                               temperature, top_p)
            token_B = jnp.where(done_B, PAD_ID, token_B)
            rules = self.grammar.advance(rules, token_B, xp=jnp)
            segment_state = segments.advance(segment_state, token_B, xp=jnp)
            out_BxN = jax.lax.dynamic_update_slice(out_BxN, token_B[:, None], (0, position))
            return (position + 1, token_B, caches, rules, segment_state, rng, out_BxN,
                    done_B | (token_B == EOS_ID))

        return jax.lax.while_loop(running, step, state)[6]


def finish_idea(ids: np.ndarray, tokenizer, num_bars: int) -> tuple[np.ndarray, float]:
    """A sampled idea made grammatical: cut at EOS and after `num_bars` bars, decoded leniently
    (broken notes dropped) and re-encoded. An idea that ran out of tokens before its EOS is
    first cut after its last whole note. Returns (composition ids, token error rate); the ids
    are empty when no note survived."""
    ids = np.asarray(ids)
    ends = np.flatnonzero((ids == EOS_ID) | (ids == PAD_ID))
    if len(ends):
        ids = ids[:ends[0]]
    elif len(ids) and tokenizer.token_types(ids[-1:])[0] != TokenType.DURATION:
        whole = cut_points(tokenizer.token_types(ids))
        ids = ids[:whole[-1]] if len(whole) else ids
    bars = np.flatnonzero(tokenizer.token_types(ids) == TokenType.BAR)
    if len(bars) > num_bars:
        ids = ids[:bars[num_bars]]
    score, report = tokenizer.decode(ids, strict=False, view="composition", report=True)
    try:
        clean = tokenizer.encode(score, view="composition")
    except EmptyScoreError:
        return np.zeros(0, np.int32), report.error_rate
    if (tokenizer.token_types(clean) == TokenType.BAR).sum() > num_bars:  # long notes may add bars
        clean = select_bars(clean, tokenizer, 0, num_bars)[0]
    return clean, report.error_rate
