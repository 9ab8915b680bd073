"""Per-feature OA and KL of a generated set against a reference set, under either protocol.

Protocols (`PROTOCOLS`):
  * "project" (the default): the features of `evaluation.features` and
    `evaluation.expressive`, and OA/KL of `evaluation.overlap` (KDEs on a grid padded by
    4 bandwidths, renormalised). Mean OA over all 15 features.
  * "mgeval": MGEval's own definitions (`evaluation.mgeval`) and integration
    (`evaluation.mgeval_overlap`), its nine whole-piece features, the papers' mean.

Both protocols:
  * A piece whose feature is undefined (NaN, e.g. PCH of a drum-only piece) is left out
    of that feature's distances, never zero-filled; `excluded` counts them per set.
  * OA needs two generated pieces (intra-set distances) and one reference piece; a
    feature left with fewer gets OA None and a `reason`. `oa_reference` (intra reference
    vs inter) needs two reference pieces, else it is None.
  * Pairs: all ordered pairs while they are at most `max_pairs`, else drawn with the seed
    (see `evaluation.overlap`); features without exclusions share one draw.
  * The bandwidths and grid of OA/KL depend only on the two distance sets compared
    (intra generated, inter); `oa_reference` is computed apart, on its own.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from evaluation import expressive, features, mgeval, mgeval_overlap, overlap

PROTOCOLS = ("project", "mgeval")
PROJECT_FEATURES = {**features.FEATURE_ABBREVIATIONS, **expressive.EXPRESSIVE_ABBREVIATIONS}
PROTOCOL_FEATURES = {"project": PROJECT_FEATURES, "mgeval": mgeval.PAPER_FEATURES}


def check_protocol(protocol: str) -> None:
    """Raise ValueError naming the protocols when `protocol` is not one of them."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")


@dataclasses.dataclass(frozen=True)
class FeatureComparison:
    """One feature's comparison: its JSON summary, and its distance densities for the plot.

    Attributes:
      summary: abbreviation, oa, kl (intra generated || inter; None when it cannot be
        computed, with a `reason`, or KL None when infinite), oa_reference, excluded
        pieces per set, pieces used, the distance sets' mean and std, and for scalar
        features each set's mean and std (MGEval's absolute measures).
      grid: float64 [num_points], the distances the densities are evaluated at (empty
        when OA was not computed).
      densities: "intra generated", "inter", "intra reference" -> float64 [num_points].
    """

    summary: dict
    grid: np.ndarray
    densities: dict[str, np.ndarray]


Pairs = dict[str, tuple[np.ndarray, np.ndarray]]


def draw_pairs(num_generated: int, num_reference: int, max_pairs: int, seed: int) -> Pairs:
    """Index pairs of "intra generated", "inter" and (with 2 reference pieces) "intra reference"."""
    rng = np.random.default_rng(seed)
    pairs = {"intra generated": overlap.leave_one_out_pairs(num_generated, max_pairs, rng)}
    if num_reference >= 2:
        pairs["intra reference"] = overlap.leave_one_out_pairs(num_reference, max_pairs, rng)
    pairs["inter"] = overlap.cross_pairs(num_generated, num_reference, max_pairs, rng)
    return pairs


def _finite_kl(kl: float) -> float | None:
    return float(kl) if math.isfinite(kl) else None


def _oa_kl(intra: np.ndarray, inter: np.ndarray, protocol: str,
           with_kl: bool = True) -> tuple[dict, np.ndarray, np.ndarray]:
    """{"oa", "kl"}, the grid and the two densities of one pair of distance sets."""
    if protocol == "mgeval":
        oa, grid, densities = mgeval_overlap.overlap_area(intra, inter)
        # MGEval's KL costs direct sums at 2 x 1000 points; skipped where it is not reported.
        kl = _finite_kl(mgeval_overlap.kl_divergence(intra, inter)) if with_kl else None
        return {"oa": oa, "kl": kl}, grid, densities
    result = overlap.distance_densities([intra, inter])
    p, q = result.densities
    return ({"oa": overlap.overlap_area(p, q, result.grid),
             "kl": _finite_kl(overlap.kl_divergence(p, q, result.grid))}, result.grid, result.densities)


def _skipped(summary: dict, reason: str) -> FeatureComparison:
    return FeatureComparison(summary={**summary, "oa": None, "kl": None, "oa_reference": None,
                                      "reason": reason},
                             grid=np.zeros(0), densities={})


def compare_feature(name: str, generated: np.ndarray, reference: np.ndarray, protocol: str,
                    max_pairs: int, seed: int, shared_pairs: Pairs) -> FeatureComparison:
    """OA and KL of one feature's intra-set (generated) and inter-set distances.

    Args:
      name: a key of PROTOCOL_FEATURES[protocol].
      generated, reference: the feature of every piece of each set, [num_pieces, ...];
        NaN marks a piece without this feature.
      protocol: "project" or "mgeval".
      max_pairs, seed: pair sampling for sets thinned by exclusions.
      shared_pairs: pairs over the full sets (`draw_pairs`), used when nothing is excluded.
    """
    valid = [np.isfinite(x.reshape(x.shape[0], -1)).all(axis=1) for x in (generated, reference)]
    generated, reference = generated[valid[0]], reference[valid[1]]
    summary = {
        "abbreviation": PROTOCOL_FEATURES[protocol][name],
        "num_pieces": {"generated": int(valid[0].sum()), "reference": int(valid[1].sum())},
        "excluded": {"generated": int((~valid[0]).sum()), "reference": int((~valid[1]).sum())},
    }
    if generated.shape[0] < 2 or reference.shape[0] < 1:
        return _skipped(summary, f"{generated.shape[0]} generated and {reference.shape[0]} reference "
                                 "pieces have this feature; OA needs 2 generated and 1 reference")
    pairs = (shared_pairs if valid[0].all() and valid[1].all()
             else draw_pairs(generated.shape[0], reference.shape[0], max_pairs, seed))
    sets = {"intra generated": (generated, generated), "inter": (generated, reference),
            "intra reference": (reference, reference)}
    distances = {label: overlap.pair_distances(*sets[label], *pairs[label]) for label in pairs}
    result, grid, (intra, inter) = _oa_kl(distances["intra generated"], distances["inter"], protocol)
    densities = {"intra generated": intra, "inter": inter}
    summary.update(result)
    summary["oa_reference"] = None
    if "intra reference" in distances:
        reference_result, reference_grid, (reference_density, _) = _oa_kl(
            distances["intra reference"], distances["inter"], protocol, with_kl=False)
        summary["oa_reference"] = reference_result["oa"]
        densities["intra reference"] = np.interp(grid, reference_grid, reference_density, left=0, right=0)
    summary["distances"] = {label.replace(" ", "_"): {"mean": float(d.mean()), "std": float(d.std())}
                            for label, d in distances.items()}
    if generated.ndim == 1:
        summary["generated"] = {"mean": float(generated.mean()), "std": float(generated.std())}
        summary["reference"] = {"mean": float(reference.mean()), "std": float(reference.std())}
    return FeatureComparison(summary=summary, grid=grid, densities=densities)


def compare_feature_sets(generated: dict[str, np.ndarray], reference: dict[str, np.ndarray],
                         protocol: str, max_pairs: int, seed: int) -> dict[str, FeatureComparison]:
    """`compare_feature` of every feature of the protocol.

    Args:
      generated, reference: feature name -> [num_pieces, ...] for each set.
      max_pairs: most distance pairs per set; beyond it pairs are drawn with `seed`.
    """
    check_protocol(protocol)
    num_generated = next(iter(generated.values())).shape[0]
    num_reference = next(iter(reference.values())).shape[0]
    shared = draw_pairs(num_generated, num_reference, max_pairs, seed)
    return {name: compare_feature(name, generated[name], reference[name], protocol, max_pairs, seed, shared)
            for name in PROTOCOL_FEATURES[protocol]}


def mean_oa(comparisons: dict[str, FeatureComparison], names: list[str] | None = None) -> dict:
    """Mean OA over `names` (default: all compared features) that have an OA, and which ones."""
    names = list(comparisons) if names is None else names
    used = [name for name in names if comparisons[name].summary["oa"] is not None]
    value = float(np.mean([comparisons[name].summary["oa"] for name in used])) if used else None
    return {"value": value, "features": [comparisons[name].summary["abbreviation"] for name in used]}
