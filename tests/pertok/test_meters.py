"""Bars follow the time-signature map: ticks_per_bar = numerator x tpq x 4 / denominator."""
from __future__ import annotations

import numpy as np
import pytest

from pertok import PerTok
from tests.pertok.scores import make_score, note_rows

TOKENIZER = PerTok()


def bar_lengths_in_beats(numerator: int, denominator: int) -> float:
    return numerator * 4 / denominator


@pytest.mark.parametrize("meter", [(4, 4), (3, 4), (6, 8), (2, 2), (5, 4), (7, 8), (12, 8)])
@pytest.mark.parametrize("tpq", [480, 384])
def test_downbeats_start_bars_in_every_meter(meter, tpq):
    bar = round(bar_lengths_in_beats(*meter) * tpq)
    notes = [(b * bar, tpq // 2, 60 + b, 80) for b in range(6)]
    ids = TOKENIZER.encode(make_score(tpq, [(0, False, notes)], [(0, *meter)]))
    names = TOKENIZER.names(ids)
    assert names.count("Bar") == 6
    assert names[:4] == ["Bar", f"TimeSig_{meter[0]}/{meter[1]}", "Program_0", "Pitch_60"]
    # Every note sits on its bar line: no TimeShift anywhere, no microtiming.
    assert not any(n.startswith("TimeShift") for n in names)
    assert {n for n in names if n.startswith("MicroTiming")} == {"MicroTiming_0"}


def test_mid_piece_changes_and_positions_inside_odd_bars():
    tpq = 480
    # 4/4 for one bar (1920), 7/8 for two bars (1680 each), then 12/8 (2880).
    signatures = [(0, 4, 4), (1920, 7, 8), (1920 + 2 * 1680, 12, 8)]
    notes = [(0, 240, 60, 80),
             (1920 + 1680 + 3 * 480, 240, 62, 80),  # last 8th of the second 7/8 bar
             (1920 + 2 * 1680 + 5 * 480 + 240, 240, 64, 80)]  # 5.5 beats into the 12/8 bar
    score = make_score(tpq, [(0, False, notes)], signatures)
    names = TOKENIZER.names(TOKENIZER.encode(score))
    assert names.count("Bar") == 4
    assert "TimeSig_7/8" in names and "TimeSig_12/8" in names
    second_bar = [i for i, n in enumerate(names) if n == "Bar"][2]
    assert names[second_bar + 1: second_bar + 3] == ["TimeShift_2880", "Pitch_62"]  # 3 beats at 960 tpq
    # 5.5 beats exceed the largest TimeShift (4 beats): chained.
    last_bar = [i for i, n in enumerate(names) if n == "Bar"][3]
    assert names[last_bar + 1: last_bar + 5] == ["TimeSig_12/8", "TimeShift_3840", "TimeShift_1440", "Pitch_64"]
    decoded = note_rows(TOKENIZER.decode(TOKENIZER.encode(score)), 480)
    np.testing.assert_array_equal(decoded[:, 1], [n[0] for n in notes])


def test_empty_bars_and_long_notes_are_kept():
    tpq = 480
    notes = [(0, 20 * tpq, 48, 70), (9 * 1920 + 960, 10, 72, 30)]  # 20-beat note; bar 9; tiny note
    score = make_score(tpq, [(0, False, notes)])
    ids = TOKENIZER.encode(score)
    names = TOKENIZER.names(ids)
    assert names.count("Bar") == 10
    # 20 beats = 2 x 8 beats + 4 beats, chained Duration tokens.
    assert names[4:9] == ["MicroTiming_0", "Velocity_70", "Duration_7680", "Duration_7680", "Duration_3840"]
    decoded = note_rows(TOKENIZER.decode(ids), 480)
    np.testing.assert_array_equal(decoded[:, 1], [0, 9 * 1920 + 960])
    np.testing.assert_array_equal(decoded[:, 3], [20 * tpq, 15])  # 10 ticks -> shortest token (1/32 beat)


def test_time_signature_change_inside_a_bar_moves_to_the_next_bar_line():
    tpq = 480
    score = make_score(tpq, [(0, False, [(0, 100, 60, 80), (3000, 100, 62, 80)])],
                       [(0, 4, 4), (1000, 3, 4)])
    quantized = TOKENIZER.quantize(score)
    signatures = quantized.time_signatures.numpy()
    np.testing.assert_array_equal(signatures["time"], [0, 1920 * 2])  # at 960 tpq: next bar line
    np.testing.assert_array_equal(signatures["numerator"], [4, 3])


def test_unsupported_meter_keeps_onsets_exact():
    score = make_score(480, [(0, False, [(0, 100, 60, 80), (700, 100, 62, 80), (5000, 50, 64, 80)])],
                       [(0, 9, 32)])  # 9/32 has no token: replaced by the nearest bar length
    decoded = note_rows(TOKENIZER.decode(TOKENIZER.encode(score)), 480)
    np.testing.assert_array_equal(decoded[:, 1], [0, 700, 5000])


def test_drums_and_programs_make_tracks():
    score = make_score(480, [(0, False, [(0, 480, 60, 80)]), (33, False, [(0, 480, 36, 90)]),
                             (0, True, [(0, 60, 36, 100), (240, 60, 42, 50)])])
    names = TOKENIZER.names(TOKENIZER.encode(score))
    assert "Program_drums" in names and "DrumPitch_36" in names and "Program_33" in names
    decoded = TOKENIZER.decode(TOKENIZER.encode(score))
    assert sorted((t.program, t.is_drum, t.note_num()) for t in decoded.tracks) == [
        (0, False, 1), (0, True, 2), (33, False, 1)]
