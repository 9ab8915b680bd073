"""Intra/inter-set distances, the KDE against scipy's, and OA/KL sanity checks."""
import numpy as np
import pytest
from scipy.stats import gaussian_kde

from evaluation import overlap


def _oa_kl(intra, inter):
    result = overlap.overlap_and_kl(np.asarray(intra, float), np.asarray(inter, float))
    return result["oa"], result["kl"]


def test_scott_bandwidth_is_gaussian_kde_default():
    values = np.random.default_rng(0).gamma(2.0, 1.5, 500)
    assert overlap.scott_bandwidth(values) == pytest.approx(np.sqrt(gaussian_kde(values).covariance[0, 0]))


@pytest.mark.parametrize("values", [
    np.random.default_rng(1).normal(0, 1, 3000),
    np.random.default_rng(2).exponential(1.0, 400),
    np.concatenate([np.zeros(50), np.random.default_rng(3).normal(5, 0.5, 200)]),
])
def test_binned_density_matches_gaussian_kde(values):
    grid = np.linspace(values.min() - 3, values.max() + 3, 4096)
    reference = gaussian_kde(values)(grid)
    binned = overlap.density_on_grid(values, grid, overlap.scott_bandwidth(values))
    assert np.abs(binned - reference).max() < 0.005 * reference.max()


def test_two_samples_of_one_distribution_overlap_nearly_fully():
    rng = np.random.default_rng(4)
    oa, kl = _oa_kl(rng.gamma(3.0, 1.0, 5000), rng.gamma(3.0, 1.0, 5000))
    assert oa > 0.95
    assert kl < 0.02


def test_far_apart_distance_sets_do_not_overlap():
    rng = np.random.default_rng(5)
    oa, kl = _oa_kl(rng.normal(1.0, 0.1, 2000), rng.normal(10.0, 0.1, 2000))
    assert oa < 0.01
    assert 5 < kl < np.inf


def test_identical_sets_have_oa_one_and_kl_zero():
    values = np.random.default_rng(6).normal(3, 1, 1000)
    oa, kl = _oa_kl(values, values.copy())
    assert oa == pytest.approx(1.0, abs=1e-9)
    assert kl == pytest.approx(0.0, abs=1e-12)


def test_degenerate_distance_sets_stay_finite():
    spread = np.random.default_rng(7).normal(5, 1, 500)
    oa, kl = _oa_kl(np.zeros(100), spread)  # a collapsed set: every distance 0
    assert 0.0 <= oa < 0.05 and np.isfinite(kl)
    assert _oa_kl(np.full(10, 2.0), np.full(10, 2.0)) == (pytest.approx(1.0), pytest.approx(0.0, abs=1e-12))
    oa, kl = _oa_kl(np.full(10, 2.0), np.full(10, 3.0))
    assert oa < 1e-6 and np.isfinite(kl) and kl > 5


def test_leave_one_out_pairs_never_pair_a_piece_with_itself():
    rng = np.random.default_rng(8)
    first, second = overlap.leave_one_out_pairs(5, 100, rng)
    assert len(first) == 20 and not np.any(first == second)  # all ordered pairs
    assert len(set(zip(first.tolist(), second.tolist()))) == 20
    first, second = overlap.leave_one_out_pairs(400, 5000, rng)
    assert len(first) == 5000 and not np.any(first == second)
    assert first.min() == 0 and first.max() == 399 and second.max() == 399


def test_pair_sampling_is_seeded():
    draws = [overlap.cross_pairs(300, 200, 1000, np.random.default_rng(9)) for _ in range(2)]
    np.testing.assert_array_equal(draws[0][0], draws[1][0])
    np.testing.assert_array_equal(draws[0][1], draws[1][1])
    first, second = overlap.cross_pairs(3, 2, 1000, np.random.default_rng(9))
    assert sorted(zip(first.tolist(), second.tolist())) == [(i, j) for i in range(3) for j in range(2)]


def test_pair_distances_are_euclidean_over_the_flattened_feature():
    a = np.array([[[0.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]])
    b = np.array([[[3.0, 0.0], [0.0, 4.0]]])
    np.testing.assert_allclose(overlap.pair_distances(a, b, np.array([0, 1]), np.array([0, 0])),
                               [5.0, np.sqrt(4 + 1 + 1 + 9)])


def _feature_oa(generated, reference, seed=0):
    rng = np.random.default_rng(seed)
    intra_pairs = overlap.leave_one_out_pairs(len(generated), 4000, rng)
    inter_pairs = overlap.cross_pairs(len(generated), len(reference), 4000, rng)
    intra = overlap.pair_distances(generated, generated, *intra_pairs)
    inter = overlap.pair_distances(generated, reference, *inter_pairs)
    return _oa_kl(intra, inter)[0]


def test_histogram_features_of_one_style_overlap_and_of_two_styles_do_not():
    rng = np.random.default_rng(10)
    alpha_a = np.array([8, 1, 6, 1, 7, 6, 1, 8, 1, 6, 1, 5], float)  # a major-key profile
    sample = lambda alpha, n: rng.dirichlet(alpha, n)  # noqa: E731
    same = _feature_oa(sample(alpha_a, 150), sample(alpha_a, 150))
    different = _feature_oa(sample(alpha_a, 150), sample(np.roll(alpha_a, 6) * 10, 150))
    assert same > 0.9
    assert different < 0.1
