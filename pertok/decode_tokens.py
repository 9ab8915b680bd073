"""The tokens of a batch of sequences, back to back, with their types: the parser's input.

Each sequence loses its leading PAD/BOS and everything from its first EOS on; what is left
is its content, concatenated with the others' and tagged with its sequence. Token types
come from the vocabulary through one lookup that also maps ids outside it to -1.
"""
from __future__ import annotations

import dataclasses
import functools
import types as _namespace
import weakref

import numpy as np

from pertok import segments
from pertok.vocab import TokenType, Vocabulary

# Plain ints: enum attribute lookups cost more than the array work on short pieces.
T = _namespace.SimpleNamespace(**{name: int(kind) for name, kind in TokenType.__members__.items()})


def _type_set(*kinds: int) -> np.ndarray:
    """Membership table indexed by token type; index -1 (not in the vocabulary) is False."""
    table = np.zeros(len(TokenType) + 1, bool)
    table[list(kinds)] = True
    return table


HEADS = [T.BAR, T.TIME_SIG, T.TIME_SHIFT, T.TEMPO, T.PROGRAM, T.PITCH, T.DRUM_PITCH, T.PEDAL]
IS_HEAD = _type_set(*HEADS)
IS_NOTE = _type_set(T.PITCH, T.DRUM_PITCH)
IS_TIMED = _type_set(T.PITCH, T.DRUM_PITCH, T.PEDAL)
IS_EVENT = _type_set(T.TEMPO, T.PITCH, T.DRUM_PITCH, T.PEDAL)
IS_PERFORMANCE = _type_set(T.MICROTIMING, T.VELOCITY)
LEADS_TO_EVENT = _type_set(T.TIME_SHIFT, T.PROGRAM, T.TEMPO, T.PITCH, T.DRUM_PITCH, T.PEDAL)


@dataclasses.dataclass
class Tokens:
    """The content tokens of every sequence of a batch, back to back."""

    types: np.ndarray  # [N] TokenType, -1 for ids outside the vocabulary
    content: np.ndarray  # int64 [N] ids
    sequence: np.ndarray  # int64 [N]
    first: np.ndarray  # int64 [N] index of its sequence's first token
    full: np.ndarray  # bool [N] its sequence is in the full view
    end: np.ndarray  # int64 [S] position just past each sequence's content
    num_sequences: int
    take: np.ndarray  # int64 [N] index in the concatenated input
    sequence_start: np.ndarray  # int64 [S] where each sequence starts in it
    lookup_index: np.ndarray  # [N] ids clipped to [-1, len(vocab)] (see _lookups)
    padded_values: np.ndarray  # value_of, then 0 for the ids outside the vocabulary

    @functools.cached_property
    def position(self) -> np.ndarray:
        """Index of each token in its own sequence (only error messages need it)."""
        return self.take - self.sequence_start[self.sequence]

    @functools.cached_property
    def values(self) -> np.ndarray:
        """The value of each token (0 for ids outside the vocabulary)."""
        return self.padded_values[self.lookup_index]


def content_of(sequences: list, vocab: Vocabulary, view: str) -> Tokens:
    """Leading PAD/BOS skipped and everything from the first EOS on cut, in every sequence."""
    arrays = [np.asarray(ids, dtype=np.int64).reshape(-1) for ids in sequences]
    lengths = np.array([len(a) for a in arrays], np.int64)
    ids = np.concatenate(arrays) if arrays else np.zeros(0, np.int64)
    seq_start = np.cumsum(lengths) - lengths
    seq_end = seq_start + lengths
    # The type of every id through one lookup: -1 (and ids past the end) -> -1.
    type_lookup, padded_values = _lookups(vocab)
    lookup_index = np.clip(ids, -1, len(vocab))
    types = type_lookup[lookup_index]
    start, end = _content_bounds(ids, seq_start, seq_end, np.flatnonzero(types == T.EOS))
    sequence = np.repeat(np.arange(len(arrays)), end - start)
    if (start == seq_start).all() and (end == seq_end).all():
        take, content = np.arange(len(ids)), ids  # nothing to cut: no copy
    else:
        take = segments.runs(start, end - start)
        content, types, lookup_index = ids[take], types[take], lookup_index[take]
    if view == "auto":
        sequence_full = np.bincount(sequence[IS_PERFORMANCE[types]], minlength=len(arrays)) > 0
    elif view in ("full", "composition"):
        sequence_full = np.full(len(arrays), view == "full")
    else:
        raise ValueError(f"view must be 'full', 'composition' or 'auto', not {view!r}")
    tokens = Tokens(types=types, content=content, sequence=sequence,
                     first=segments.first_of_segment(sequence, len(arrays)), full=sequence_full[sequence],
                     end=end - seq_start, num_sequences=len(arrays), take=take, sequence_start=seq_start,
                     lookup_index=lookup_index, padded_values=padded_values)
    return tokens


def concatenated(sequences: list, vocab: Vocabulary) -> tuple[np.ndarray, np.ndarray] | None:
    """The content ids (int64) of every sequence back to back, and [S + 1] offsets of each
    sequence's content in them; as `content_of` cuts them, without the per-token columns.

    None for ids that are not integers (`content_of` converts or refuses them).
    """
    arrays = [np.asarray(ids).reshape(-1) for ids in sequences]
    if not all(a.dtype.kind == "i" or (a.dtype.kind == "u" and a.dtype.itemsize < 8) for a in arrays):
        return None
    lengths = np.fromiter(map(len, arrays), np.int64, len(arrays))
    ids = np.concatenate(arrays).astype(np.int64, copy=False) if arrays else np.zeros(0, np.int64)
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    start, end = _content_bounds(ids, bounds[:-1], bounds[1:], np.flatnonzero(ids == vocab.first_id(TokenType.EOS)))
    if (start == bounds[:-1]).all() and (end == bounds[1:]).all():
        return ids, bounds  # nothing to cut: no copy
    kept = end - start
    return ids[segments.runs(start, kept)], np.concatenate([[0], np.cumsum(kept)])


def _content_bounds(ids: np.ndarray, seq_start: np.ndarray, seq_end: np.ndarray,
                    eos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each sequence's content starts (past leading PAD/BOS) and ends (at its first EOS).

    Args:
      ids: every sequence back to back; seq_start, seq_end: each one's bounds in them;
      eos: the positions of EOS tokens, increasing.
    """
    start = seq_start
    if (ids[seq_start[seq_end > seq_start]] <= 1).any():  # some sequence opens with PAD or BOS
        candidates = np.flatnonzero(ids > 1)
        start = np.minimum(np.append(candidates, len(ids))[np.searchsorted(candidates, seq_start)], seq_end)
    end = np.minimum(np.append(eos, len(ids))[np.searchsorted(eos, start)], seq_end)
    return start, end


_LOOKUPS: "weakref.WeakKeyDictionary[Vocabulary, tuple]" = weakref.WeakKeyDictionary()


def _lookups(vocab: Vocabulary) -> tuple[np.ndarray, np.ndarray]:
    """type_of and value_of with one entry appended, indexed by ids clipped to [-1, len(vocab)]:
    an id outside the vocabulary gets type -1 and value 0 in one lookup each."""
    if vocab not in _LOOKUPS:
        _LOOKUPS[vocab] = (np.append(vocab.type_of, np.int8(-1)).astype(np.int8), np.append(vocab.value_of, 0))
    return _LOOKUPS[vocab]


def subset(tokens: Tokens, keep: np.ndarray) -> tuple:
    """(index, types, content, sequence, first, full) of the kept tokens; index is a slice
    when all are kept (the common case: no copies)."""
    if keep.all():
        return slice(None), tokens.types, tokens.content, tokens.sequence, tokens.first, tokens.full
    kept = np.flatnonzero(keep)
    sequence = tokens.sequence[kept]
    return (kept, tokens.types[kept], tokens.content[kept], sequence,
            segments.first_of_segment(sequence, tokens.num_sequences), tokens.full[kept])
