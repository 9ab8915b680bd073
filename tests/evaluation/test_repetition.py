"""The repetition measure on hand-made pieces with a known number of repeated 4-bar spans."""
import pytest

from evaluation.notes import piece_notes
from evaluation.repetition import bar_patterns, mean_repetition, repetition, self_similarity
from tests.evaluation.scores import TPQ, make_score

BAR = 4 * TPQ


def bars(pitch_lists, drum=False, offset=0):
    """One quarter note per pitch, bar after bar; `offset` ticks of microtiming on every note."""
    rows = [(b * BAR + k * TPQ + offset, TPQ, pitch, 80) for b, pitches in enumerate(pitch_lists)
            for k, pitch in enumerate(pitches)]
    return piece_notes(make_score([(drum, rows)]))


def test_bar_patterns_read_16ths_and_pitches_not_expression():
    patterns = bar_patterns(bars([[60, 62], [64]], offset=20))  # 20 ticks late: still on the beat
    assert patterns[:2] == [frozenset({(0, 60), (4, 62)}), frozenset({(0, 64)})]


@pytest.mark.parametrize("pitch_lists, expected", [
    ([[60], [62], [64], [65]] * 2, 1 / 5),  # A B C D A B C D: the last span repeats the first
    ([[60]] * 8, 4 / 5),  # one bar looped: every span after the first repeats it
    ([[60 + b] for b in range(8)], 0.0),  # nothing repeats
])
def test_share_of_repeated_spans(pitch_lists, expected):
    assert repetition(bars(pitch_lists)) == pytest.approx(expected)


def test_pieces_without_a_full_span_are_left_out():
    short, drums_only = bars([[60], [62]]), bars([[36]] * 8, drum=True)
    assert repetition(short) is None and repetition(drums_only) is None
    summary = mean_repetition([short, drums_only, bars([[60]] * 8)])
    assert (summary["mean"], summary["pieces"]) == (0.8, 1)
    assert (summary["self_similarity"], summary["self_similarity_pieces"]) == (0.5, 2)  # short: 0, loop: 1


def test_self_similarity_is_each_bars_best_echo_of_the_bars_before():
    assert self_similarity(bars([[60]] * 8)) == 1.0  # a loop
    assert self_similarity(bars([[60], [62], [64]])) == 0.0  # nothing shared
    # bar 1 shares one of three (onset, pitch) pairs with bar 0; bar 2 repeats bar 0
    assert self_similarity(bars([[60, 62], [60, 64], [60, 62]])) == pytest.approx((1 / 3 + 1) / 2)
    assert self_similarity(bars([[60], [61], [60]]), lookback=1) == 0.0  # bar 0 is out of reach of bar 2
