"""Running sums and look-backs that restart at each piece of a concatenated batch.

Batched encoding and decoding hold several pieces back to back in one array, sorted by
piece. Every `cumsum` or `maximum.accumulate` that a single piece uses must then stop at the
piece's first element; these helpers do that with a constant number of NumPy calls.
"""
from __future__ import annotations

import numpy as np


def first_of_segment(segment: np.ndarray, num_segments: int) -> np.ndarray:
    """Index of the first element of each element's segment (`segment` sorted, one id per element)."""
    return np.searchsorted(segment, np.arange(num_segments), side="left")[segment]


def count_before(segment: np.ndarray, num_segments: int) -> np.ndarray:
    """[num_segments] number of elements in the segments before each one."""
    counts = np.bincount(segment, minlength=num_segments)
    return (np.cumsum(counts) - counts).astype(np.int64)


def cumsum(values: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Inclusive running sum of `values`, restarted at each segment (`first` from first_of_segment)."""
    total = np.cumsum(values)
    if not len(total):
        return total
    return total - total[first] + values[first]


def last_true(mask: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Index of the last True at or before each element within its segment, -1 where none."""
    last = np.maximum.accumulate(np.where(mask, np.arange(len(mask)), -1)) if len(mask) else np.zeros(0, np.int64)
    return np.where(last >= first, last, -1)


def offsets(segment: np.ndarray, num_segments: int) -> np.ndarray:
    """[num_segments + 1] start of each segment's elements, and the end."""
    return np.append(count_before(segment, num_segments), len(segment)).astype(np.int64)


def runs(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ranges [starts[i], starts[i] + lengths[i]) without a Python loop."""
    lengths = lengths.astype(np.int64)
    total = int(lengths.sum())
    run_starts = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return run_starts + np.arange(total)
