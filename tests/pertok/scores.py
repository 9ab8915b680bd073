"""Scores made in the tests: hand-built pieces and a hypothesis strategy over random ones."""
from __future__ import annotations

import numpy as np
import symusic
from hypothesis import strategies as st


def make_score(tpq: int = 480, tracks=(), time_signatures=((0, 4, 4),), tempos=((0, 120.0),),
               pedals=None) -> symusic.Score:
    """A score from plain rows.

    Args:
      tracks: (program, is_drum, notes) with notes rows (time, duration, pitch, velocity).
      time_signatures: (time, numerator, denominator) rows.
      tempos: (time, qpm) rows.
      pedals: {track index: [(time, duration), ...]}.
    """
    score = symusic.Score(tpq)
    for index, (program, is_drum, notes) in enumerate(tracks):
        track = symusic.Track(f"t{index}", program, is_drum)
        notes = np.asarray(notes, dtype=np.int64).reshape(-1, 4)
        track.notes = symusic.Note.from_numpy(
            time=notes[:, 0].astype(np.int32), duration=notes[:, 1].astype(np.int32),
            pitch=notes[:, 2].astype(np.int8), velocity=notes[:, 3].astype(np.int8))
        rows = np.asarray((pedals or {}).get(index, []), dtype=np.int64).reshape(-1, 2)
        track.pedals = symusic.Pedal.from_numpy(time=rows[:, 0].astype(np.int32),
                                                duration=rows[:, 1].astype(np.int32))
        score.tracks.append(track)
    signatures = np.asarray(time_signatures, dtype=np.int64).reshape(-1, 3)
    score.time_signatures = symusic.TimeSignature.from_numpy(
        time=signatures[:, 0].astype(np.int32), numerator=signatures[:, 1].astype(np.uint8),
        denominator=signatures[:, 2].astype(np.uint8))
    tempo_rows = np.asarray(tempos, dtype=np.float64).reshape(-1, 2)
    score.tempos = symusic.Tempo.from_numpy(time=tempo_rows[:, 0].astype(np.int32),
                                            mspq=np.round(6e7 / tempo_rows[:, 1]).astype(np.int32))
    return score


def note_rows(score: symusic.Score, tpq: int | None = None) -> np.ndarray:
    """Notes as float rows (program or -1 for drums, onset, pitch, duration, velocity), times
    rescaled to `tpq`, sorted by (program, pitch, onset)."""
    tpq = tpq or score.ticks_per_quarter
    scale = tpq / score.ticks_per_quarter
    rows = []
    for track in score.tracks:
        notes = track.notes.numpy()
        program = -1 if track.is_drum else track.program
        rows.append(np.stack([np.full(len(notes["time"]), program), notes["time"] * scale,
                              notes["pitch"].astype(np.int64), notes["duration"] * scale,
                              notes["velocity"].astype(np.int64)], axis=1).astype(np.float64))
    table = np.concatenate(rows) if rows else np.zeros((0, 5))
    return table[np.lexsort((table[:, 3], table[:, 1], table[:, 2], table[:, 0]))]


def score_arrays(score: symusic.Score) -> dict[str, np.ndarray]:
    """Everything a Score holds that PerTok writes, as canonical arrays (for exact equality)."""
    out = {"tpq": np.array([score.ticks_per_quarter]), "notes": note_rows(score)}
    pedals = [np.stack([np.full(len(p["time"]), -1 if t.is_drum else t.program), p["time"], p["duration"]], 1)
              for t in score.tracks for p in [t.pedals.numpy()]]
    pedals = np.concatenate(pedals) if pedals else np.zeros((0, 3))
    out["pedals"] = pedals[np.lexsort(pedals.T[::-1])] if len(pedals) else pedals
    for name in ("tempos", "time_signatures"):
        arrays = getattr(score, name).numpy()
        out[name] = np.stack([arrays[k].astype(np.int64) for k in sorted(arrays)], 1)
    return out


METERS = [(4, 4), (3, 4), (6, 8), (2, 2), (5, 4), (7, 8), (12, 8), (9, 8), (5, 8), (3, 2), (7, 16)]


@st.composite
def random_scores(draw, max_notes: int = 60, drums: bool = True) -> symusic.Score:
    """Random multi-track scores with meter and tempo changes, odd resolutions, pedals."""
    tpq = draw(st.sampled_from([96, 120, 220, 384, 480, 960, 1000]))
    horizon = tpq * 48
    num_tracks = draw(st.integers(1, 3))
    tracks = []
    for index in range(num_tracks):
        is_drum = drums and index == 2
        count = draw(st.integers(1, max_notes))
        ints = st.integers
        notes = draw(st.lists(st.tuples(ints(0, horizon), ints(0, tpq * 20), ints(0, 127), ints(1, 127)),
                              min_size=count, max_size=count))
        tracks.append((draw(st.integers(0, 127)), is_drum, notes))
    num_changes = draw(st.integers(0, 3))
    change_times = sorted(draw(st.lists(st.integers(1, horizon), min_size=num_changes, max_size=num_changes)))
    meters = draw(st.lists(st.sampled_from(METERS + [(11, 32), (1, 1)]), min_size=num_changes + 1,
                           max_size=num_changes + 1))
    signatures = [(0, *meters[0])] + [(t, *m) for t, m in zip(change_times, meters[1:])]
    tempos = [(0, draw(st.floats(40, 240)))] + [
        (draw(st.integers(0, horizon)), draw(st.floats(20, 400))) for _ in range(draw(st.integers(0, 3)))]
    pedal_rows = draw(st.lists(st.tuples(st.integers(0, horizon), st.integers(0, tpq * 12)), max_size=5))
    return make_score(tpq, tracks, signatures, sorted(tempos), {0: pedal_rows})
