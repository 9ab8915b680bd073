"""Per-feature comparison: exclusions, the minimum set sizes, and what OA depends on."""
import numpy as np
import pytest

from evaluation import compare, overlap


def _pairs(generated: np.ndarray, reference: np.ndarray) -> compare.Pairs:
    return compare.draw_pairs(len(generated), len(reference), 10_000, 0)


def test_project_oa_reads_only_intra_generated_and_inter_distances():
    rng = np.random.default_rng(0)
    generated = rng.normal(0, 1, 20)
    tight, wide = rng.normal(0.5, 0.01, 15), rng.normal(0.5, 0.01, 15)
    wide[0] = 50.0  # one far reference piece widens the reference's own spread
    for reference in (tight, wide):
        result = compare.compare_feature("avg_ioi", generated, reference, "project", 10_000, 0,
                                         _pairs(generated, reference))
        pairs = _pairs(generated, reference)
        intra = overlap.pair_distances(generated, generated, *pairs["intra generated"])
        inter = overlap.pair_distances(generated, reference, *pairs["inter"])
        assert result.summary["oa"] == pytest.approx(overlap.overlap_and_kl(intra, inter)["oa"], abs=1e-12)


def test_nan_pieces_are_left_out_and_counted():
    rng = np.random.default_rng(1)
    generated, reference = rng.normal(0, 1, (6, 12)), rng.normal(0, 1, (5, 12))
    generated[[1, 4]] = np.nan
    for protocol in compare.PROTOCOLS:
        summary = compare.compare_feature("pitch_class_histogram", generated, reference, protocol,
                                          10_000, 0, _pairs(generated, reference)).summary
        assert summary["excluded"] == {"generated": 2, "reference": 0}
        assert summary["num_pieces"] == {"generated": 4, "reference": 5}
        kept = generated[[0, 2, 3, 5]]
        expected = compare.compare_feature("pitch_class_histogram", kept, reference, protocol,
                                           10_000, 0, _pairs(kept, reference)).summary
        assert summary["oa"] == expected["oa"] and 0 < summary["oa"] <= 1


def test_too_few_pieces_with_a_feature_give_no_oa_and_say_why():
    generated, reference = np.array([1.0, np.nan, np.nan]), np.array([1.0, 2.0])
    comparison = compare.compare_feature("avg_ioi", generated, reference, "mgeval", 100, 0,
                                         _pairs(generated, reference))
    assert comparison.summary["oa"] is None and comparison.summary["kl"] is None
    assert "1 generated and 2 reference" in comparison.summary["reason"]
    single_reference = compare.compare_feature("avg_ioi", np.array([1.0, 2.0, 4.0]), np.array([3.0]),
                                               "mgeval", 100, 0, compare.draw_pairs(3, 1, 100, 0))
    assert single_reference.summary["oa"] is not None and single_reference.summary["oa_reference"] is None


def test_mean_oa_averages_the_named_features_that_have_one():
    rng = np.random.default_rng(2)
    generated = {name: rng.normal(0, 1, 8) for name in ("total_used_note", "avg_ioi", "pitch_range")}
    reference = {name: rng.normal(0, 1, 8) for name in generated}
    generated["pitch_range"][:] = np.nan
    comparisons = {name: compare.compare_feature(name, generated[name], reference[name], "mgeval", 100, 0,
                                                 compare.draw_pairs(8, 8, 100, 0)) for name in generated}
    mean = compare.mean_oa(comparisons)
    assert mean["features"] == ["NC", "IOI"]
    assert mean["value"] == pytest.approx(np.mean([comparisons[n].summary["oa"] for n in ("total_used_note", "avg_ioi")]))
