"""Overlap area (OA) and KL divergence of intra-set and inter-set distances (MGEval).

For one feature: the intra-set distances of a set are, for each piece, its distances to
the other pieces of that set (leave-one-out); the inter-set distances are those from each
generated piece to each reference piece. Distances are Euclidean over the flattened
feature (|a - b| for scalars), as in MGEval. Each distance set gets a Gaussian KDE, and
  OA = integral of min(pdf_intra, pdf_inter),   KL = KL(pdf_intra || pdf_inter),
both on one shared grid. OA near 1 means the generated set sits among the reference set
as its own members do.

Choices made here:
  * Pairs: all of them while there are at most `max_pairs`, else `max_pairs` drawn
    uniformly (with replacement, never a piece with itself) by a seeded generator; the
    features without excluded pieces share one draw (`evaluation.compare`).
  * Bandwidth: scipy.stats.gaussian_kde's Scott's rule (std * n^(-1/5)), floored at 1% of
    the pooled range of the distance sets compared together (the report passes intra
    generated and inter only, so the reference's own spread does not move OA). The floor is the fallback for a degenerate set
    (zero variance, e.g. identical pieces), whose KDE would be singular: it becomes a
    narrow bump, so OA and KL stay finite. If every distance of every set is equal, all
    densities are the same bump: OA = 1, KL = 0. Never NaN.
  * Evaluation: the KDE is evaluated by linear binning onto the grid and an FFT
    convolution with the Gaussian kernel (tests check it against gaussian_kde itself);
    gaussian_kde's direct evaluation costs pairs x grid kernel terms, ~0.3 s per feature.
  * Grid: the pooled range widened by 4 bandwidths on each side, with a step of a quarter
    of the narrowest bandwidth (512 to 8192 points); each density is renormalised there.
  * KL has a floor of 1e-10 x the peak density on empty regions, so it stays finite.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

_BANDWIDTH_FLOOR_OF_RANGE = 0.01
_GRID_MARGIN_BANDWIDTHS = 4.0
_GRID_STEPS_PER_BANDWIDTH = 4.0
_MIN_GRID_POINTS, _MAX_GRID_POINTS = 512, 8192
_KERNEL_HALF_WIDTH_BANDWIDTHS = 5.0
_KL_FLOOR_OF_PEAK = 1e-10


def leave_one_out_pairs(num_pieces: int, max_pairs: int,
                        rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Ordered pairs (i, j), i != j, of one set: all, or `max_pairs` drawn at random."""
    if num_pieces < 2:
        raise ValueError(f"intra-set distances need at least 2 pieces, got {num_pieces}")
    if num_pieces * (num_pieces - 1) <= max_pairs:
        first, second = np.nonzero(~np.eye(num_pieces, dtype=bool))
        return first, second
    first = rng.integers(0, num_pieces, max_pairs)
    second = rng.integers(0, num_pieces - 1, max_pairs)
    return first, second + (second >= first)  # skips the piece itself


def cross_pairs(num_first: int, num_second: int, max_pairs: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i, j) of piece i of one set and piece j of another: all, or `max_pairs` drawn."""
    if num_first < 1 or num_second < 1:
        raise ValueError(f"inter-set distances need pieces in both sets, got {num_first} and {num_second}")
    if num_first * num_second <= max_pairs:
        first, second = np.meshgrid(np.arange(num_first), np.arange(num_second), indexing="ij")
        return first.ravel(), second.ravel()
    return rng.integers(0, num_first, max_pairs), rng.integers(0, num_second, max_pairs)


def pair_distances(first_set: np.ndarray, second_set: np.ndarray,
                   first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Euclidean distance between first_set[first[k]] and second_set[second[k]], flattened."""
    a = first_set.reshape(first_set.shape[0], -1)
    b = second_set.reshape(second_set.shape[0], -1)
    return np.linalg.norm(a[first] - b[second], axis=1)


def scott_bandwidth(values: np.ndarray) -> float:
    """gaussian_kde's default bandwidth in one dimension: std (ddof=1) * n^(-1/5); 0 if n < 2."""
    if values.size < 2:
        return 0.0
    return float(np.std(values, ddof=1) * values.size ** (-1 / 5))


def density_on_grid(values: np.ndarray, grid: np.ndarray, bandwidth: float, *,
                    half_width_bandwidths: float = _KERNEL_HALF_WIDTH_BANDWIDTHS,
                    renormalise: bool = True) -> np.ndarray:
    """Gaussian KDE of `values` on an evenly spaced `grid`, by linear binning and FFT convolution.

    Args:
      half_width_bandwidths: the kernel is cut this many bandwidths from its centre (never
        wider than the grid: offsets beyond it never join two grid points).
      renormalise: scale the cut, sampled kernel to unit mass (the project protocol); False
        keeps the exact Gaussian's values, as scipy's gaussian_kde evaluates them (mgeval).
    """
    step = grid[1] - grid[0]
    position = np.clip((values - grid[0]) / step, 0, grid.size - 1)
    lower = np.minimum(np.floor(position).astype(np.int64), grid.size - 2)
    upper_share = position - lower
    mass = (np.bincount(lower, 1 - upper_share, minlength=grid.size)
            + np.bincount(lower + 1, upper_share, minlength=grid.size)) / values.size
    half_width = int(min(np.ceil(half_width_bandwidths * bandwidth / step), grid.size - 1))
    offsets = np.arange(-half_width, half_width + 1) * step
    kernel = np.exp(-0.5 * (offsets / bandwidth) ** 2)
    if renormalise:
        kernel /= kernel.sum() * step  # unit mass even when the bandwidth is near the step
    else:
        kernel /= bandwidth * math.sqrt(2 * math.pi)
    # Linear convolution by FFT (numpy's, so that importing scipy.signal costs nothing), at a
    # power-of-two length: pocketfft is slow on the odd lengths the grid would give.
    full_size = 1 << (mass.size + kernel.size - 2).bit_length()
    full = np.fft.irfft(np.fft.rfft(mass, full_size) * np.fft.rfft(kernel, full_size), full_size)
    return np.clip(full[half_width:half_width + grid.size], 0.0, None)


@dataclasses.dataclass(frozen=True)
class DistanceDensities:
    """KDEs of several distance sets on one shared grid.

    Attributes:
      grid: float64 [num_points], evenly spaced distances.
      densities: float64 [num_sets, num_points], each integrating to 1 on the grid.
      bandwidths: float64 [num_sets], the bandwidth each set was smoothed with.
    """

    grid: np.ndarray
    densities: np.ndarray
    bandwidths: np.ndarray


def distance_densities(distance_sets: Sequence[np.ndarray]) -> DistanceDensities:
    """Gaussian KDE of each distance set on one grid that holds them all (see module doc)."""
    pooled = np.concatenate([np.asarray(d, np.float64).ravel() for d in distance_sets])
    spread = float(np.ptp(pooled))
    # With no spread at all, any common width gives identical densities; scale it to the data.
    floor = _BANDWIDTH_FLOOR_OF_RANGE * (spread if spread > 0 else max(abs(float(pooled.mean())), 1.0))
    bandwidths = np.array([max(scott_bandwidth(np.asarray(d, np.float64)), floor) for d in distance_sets])
    low = pooled.min() - _GRID_MARGIN_BANDWIDTHS * bandwidths.max()
    high = pooled.max() + _GRID_MARGIN_BANDWIDTHS * bandwidths.max()
    num_points = int(np.clip(np.ceil((high - low) / (bandwidths.min() / _GRID_STEPS_PER_BANDWIDTH)) + 1,
                             _MIN_GRID_POINTS, _MAX_GRID_POINTS))
    grid = np.linspace(low, high, num_points)
    densities = np.stack([density_on_grid(np.asarray(d, np.float64).ravel(), grid, bandwidth)
                          for d, bandwidth in zip(distance_sets, bandwidths)])
    densities /= np.trapezoid(densities, grid, axis=1)[:, None]
    return DistanceDensities(grid=grid, densities=densities, bandwidths=bandwidths)


def overlap_area(p: np.ndarray, q: np.ndarray, grid: np.ndarray) -> float:
    """Integral of min(p, q) over the grid, in [0, 1] for two densities."""
    return float(np.clip(np.trapezoid(np.minimum(p, q), grid), 0.0, 1.0))


def kl_divergence(p: np.ndarray, q: np.ndarray, grid: np.ndarray) -> float:
    """KL(p || q) in nats over the grid, with a floor on q so that it stays finite."""
    floor = _KL_FLOOR_OF_PEAK * max(float(p.max()), float(q.max()))
    integrand = np.where(p > 0, p * np.log((p + floor) / (q + floor)), 0.0)
    return float(max(np.trapezoid(integrand, grid), 0.0))


def overlap_and_kl(intra: np.ndarray, inter: np.ndarray) -> dict[str, float]:
    """OA and KL(intra || inter) of two distance sets, as MGEval reports them."""
    result = distance_densities([intra, inter])
    p, q = result.densities
    return {"oa": overlap_area(p, q, result.grid), "kl": kl_divergence(p, q, result.grid)}
