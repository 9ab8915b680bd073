"""Which of an idea's latents each token reads: one latent per idea, per bar, or per equal
part of each bar (`model.latents_per_bar` = 0, 1 or S).

A token belongs to the part of its bar that holds the onset it stands at: PerTok's time-shifts
are offsets from the previous onset of the bar (the first from the bar line), so the onset is
the sum of the bar's TimeShift ticks up to and including the token, and the bar's length is
that of the TimeSig in force (4/4 before any). BOS, the conditioning prefix and a Bar token
read the first part of their bar (a Bar predicts its bar's start). The same index comes from a
whole sequence (`index`, training and the encoder) and one token at a time (`start` /
`advance` / `current`, sampling), in NumPy or jax.numpy (`xp`). The same walk gives each
token's onset position in its bar (`positions`), which the model can embed.
"""
from __future__ import annotations

import dataclasses

import jax
import numpy as np

from pertok import TokenType

def _cummax(x, xp):
    if xp is np:
        return np.maximum.accumulate(x, axis=-1)
    return jax.lax.cummax(x, axis=x.ndim - 1)


@dataclasses.dataclass(frozen=True, eq=False)
class Segments:
    """The latent index of tokens of ideas of at most `num_bars` bars, `per_bar` parts each.

    Attributes:
      num_bars: the longest idea (latents past it are never read).
      per_bar: 0 = one latent for the whole idea; S >= 1 = S equal parts of each bar.
      shift_ticks: [V] int64, a TimeShift token's ticks, else 0.
      bar_ticks: [V] int64, the bar length of a TimeSig token, else 0.
      default_bar_ticks: a 4/4 bar, before any TimeSig.
      bar_id: the Bar token.
      position_ticks: the step of `positions` (a twelfth of a quarter: 16ths and triplets).
      num_positions: positions in a bar (later onsets take the last).
    """

    num_bars: int
    per_bar: int
    shift_ticks: np.ndarray
    bar_ticks: np.ndarray
    default_bar_ticks: int
    bar_id: int
    position_ticks: int
    num_positions: int = 96  # eight quarters

    @classmethod
    def for_tokenizer(cls, tokenizer, num_bars: int, per_bar: int) -> Segments:
        vocab = tokenizer.vocab
        types, values = vocab.type_of, vocab.value_of
        shift = np.where(types == TokenType.TIME_SHIFT, values, 0).astype(np.int64)
        signature = types == TokenType.TIME_SIG
        bar = np.where(signature, vocab.bar_lengths[np.where(signature, values, -1)], 0).astype(np.int64)
        return cls(num_bars, per_bar, shift, bar, int(vocab.bar_lengths[-1]), vocab.ids["Bar"],
                   max(tokenizer.config.ticks_per_quarter // 12, 1))

    @property
    def num_latents(self) -> int:
        """K: 1, or the idea's most bars times the parts of each."""
        return 1 if self.per_bar == 0 else self.num_bars * self.per_bar

    def _lookup(self, table: np.ndarray, ids, xp):
        """table[ids], 0 for ids past the vocabulary (the prefix's bar counts)."""
        vocab_size = len(table)
        inside = (ids >= 0) & (ids < vocab_size)
        return xp.where(inside, xp.asarray(table)[xp.where(inside, ids, 0)], 0)

    def _latent(self, bars, ticks, bar_ticks, xp):
        """Latent index of a token in bar `bars` (Bars begun so far) at `ticks` into it."""
        bar = xp.clip(bars - 1, 0, self.num_bars - 1)
        part = xp.clip(ticks * self.per_bar // xp.maximum(bar_ticks, 1), 0, self.per_bar - 1)
        return (bar * self.per_bar + part).astype(xp.int32)

    def _position(self, ticks, xp):
        return xp.clip(ticks // self.position_ticks, 0, self.num_positions - 1).astype(xp.int32)

    def index(self, ids_BxT, xp=np):
        """int32 [B, T]: the latent each token of ideas [BOS, tokens..., PAD...] reads."""
        ids_BxT = xp.asarray(ids_BxT)
        if self.per_bar == 0:
            return xp.zeros(ids_BxT.shape, xp.int32)
        return self._latent(*self._where(ids_BxT, xp), xp)

    def positions(self, ids_BxT, xp=np):
        """int32 [B, T]: each token's onset in its bar, in steps of `position_ticks`."""
        return self._position(self._where(xp.asarray(ids_BxT), xp)[1], xp)

    def _where(self, ids_BxT, xp) -> tuple:
        """(Bars begun, ticks into the bar, bar length) [B, T] at each token."""
        positions_BxT = xp.broadcast_to(xp.arange(ids_BxT.shape[-1]), ids_BxT.shape)
        is_bar_BxT = ids_BxT == self.bar_id
        bars_BxT = xp.cumsum(is_bar_BxT, axis=-1)
        total_BxT = xp.cumsum(self._lookup(self.shift_ticks, ids_BxT, xp), axis=-1)
        ticks_BxT = total_BxT - _cummax(xp.where(is_bar_BxT, total_BxT, 0), xp)  # since the Bar
        signature_BxT = self._lookup(self.bar_ticks, ids_BxT, xp)
        last_BxT = _cummax(xp.where(signature_BxT > 0, positions_BxT, -1), xp)  # TimeSig in force
        in_force_BxT = xp.take_along_axis(signature_BxT, xp.maximum(last_BxT, 0), axis=-1)
        bar_ticks_BxT = xp.where(last_BxT >= 0, in_force_BxT, self.default_bar_ticks)
        return bars_BxT, ticks_BxT, bar_ticks_BxT

    def start(self, batch: int, xp=np) -> tuple:
        """Token-at-a-time state before BOS: (Bars so far, ticks into the bar, bar length)."""
        zeros = xp.zeros((batch,), xp.int32)
        return zeros, zeros, xp.full((batch,), self.default_bar_ticks, xp.int32)

    def advance(self, state: tuple, token_B, xp=np) -> tuple:
        bars_B, ticks_B, bar_ticks_B = state
        is_bar_B = token_B == self.bar_id
        signature_B = self._lookup(self.bar_ticks, token_B, xp)
        ticks_B = xp.where(is_bar_B, 0, ticks_B + self._lookup(self.shift_ticks, token_B, xp))
        return ((bars_B + is_bar_B).astype(xp.int32), ticks_B.astype(xp.int32),
                xp.where(signature_B > 0, signature_B, bar_ticks_B).astype(xp.int32))

    def current(self, state: tuple, xp=np):
        """int32 [B]: the latent of the last token `advance`d (the one fed next)."""
        if self.per_bar == 0:
            return xp.zeros(state[0].shape, xp.int32)
        return self._latent(*state, xp)

    def current_position(self, state: tuple, xp=np):
        """int32 [B]: the onset position (`positions`) of the last token `advance`d."""
        return self._position(state[1], xp)


def used_latents(latents_BxT, real_BxT, num_latents: int, xp=np):
    """bool [B, K]: the latents some real token of each idea reads."""
    member_BxTxK = latents_BxT[..., None] == xp.arange(num_latents)
    return (member_BxTxK & real_BxT[..., None]).any(axis=1)
