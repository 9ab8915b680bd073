"""A user's tracks: which ones a command plays, which it drops and why, and drums apart.

PerTok keeps one part per instrument (a General MIDI program, or drums): two tracks of the same
program become one part, and a track with no notes has nothing to keep. `track_report` says so,
one line per track of the file. `fill_by_part` lets the drum part be performed by a drum
Performer (trained on Groove) while the piano Performer plays the rest: each part is encoded on
its own (so each Performer sees music like its training data) and the performed values go back
into the composition's own slots, every composition token in place.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import symusic

from performer import MICROTIMING_SLOT, VELOCITY_SLOT, performance_slot_kinds
from pertok import PerTok, TokenType

# The sixteen General MIDI program families, eight programs each.
FAMILIES = ("piano", "chromatic percussion", "organ", "guitar", "bass", "strings", "ensemble", "brass",
            "reed", "pipe", "synth lead", "synth pad", "synth effects", "ethnic", "percussive",
            "sound effects")


def instrument(program: int, is_drum: bool) -> str:
    return "drums" if is_drum else f"{FAMILIES[program // 8]} (program {program})"


@dataclasses.dataclass(frozen=True)
class TrackUse:
    """One track of the user's file and what a command does with it."""

    index: int
    name: str
    instrument: str
    notes: int
    kept: bool
    why: str

    def line(self) -> str:
        name = f" {self.name!r}" if self.name else ""
        return (f"  track {self.index}{name}: {self.instrument}, {self.notes} notes: "
                f"{'kept' if self.kept else 'dropped'}{', ' if self.why else ''}{self.why}")


def _part_notes(score: symusic.Score) -> dict[tuple[bool, int], int]:
    counts: dict[tuple[bool, int], int] = {}
    for track in score.tracks:
        key = (bool(track.is_drum), 0 if track.is_drum else int(track.program))
        counts[key] = counts.get(key, 0) + len(track.notes)
    return counts


def track_report(score: symusic.Score, idea: symusic.Score | None = None, whole: symusic.Score | None = None,
                 bars: str = "", drum_performer: bool | None = None) -> list[TrackUse]:
    """What happens to each track of `score` (a user's file, as read).

    Args:
      idea, whole: for `vary`, the idea's score and the same bars uncut by the token limit:
        each kept track says how many of its notes in `bars` the idea holds.
      drum_performer: for `perform`, whether drums go to a drum Performer (None: not said).
    """
    idea_notes = _part_notes(idea) if idea is not None else {}
    whole_notes = _part_notes(whole) if whole is not None else {}
    first_of_part: dict[tuple[bool, int], int] = {}
    uses = []
    for index, track in enumerate(score.tracks):
        key = (bool(track.is_drum), 0 if track.is_drum else int(track.program))
        notes = len(track.notes)
        what = instrument(key[1], key[0])
        if notes == 0:
            uses.append(TrackUse(index, track.name, what, 0, False, "no notes"))
            continue
        why = []
        if key in first_of_part:
            why.append(f"merged with track {first_of_part[key]} (the same instrument: one part)")
        else:
            first_of_part[key] = index
            if whole is not None:
                held, uncut = idea_notes.get(key, 0), whole_notes.get(key, 0)
                if uncut == 0:
                    why.append(f"silent in {bars}")
                elif held < uncut:
                    why.append(f"{held} of its {uncut} notes in {bars} (the idea's token limit cut the rest)")
                else:
                    why.append(f"its {held} notes in {bars}")
            if drum_performer is not None:
                why.append("performed by the " + ("drum Performer" if key[0] and drum_performer
                                                  else "piano Performer"))
        uses.append(TrackUse(index, track.name, what, notes, True, "; ".join(why)))
    return uses


def print_tracks(path, uses: list[TrackUse]) -> None:
    """The report, when there is anything to say: more than one track, or a track dropped."""
    if len(uses) > 1 or any(not use.kept for use in uses):
        print(f"{path}: {len(uses)} tracks")
        for use in uses:
            print(use.line())


def _only(score: symusic.Score, drums: bool) -> symusic.Score:
    part = score.copy()
    kept = [track for track in part.tracks if bool(track.is_drum) == drums]
    part.tracks.clear()
    for track in kept:
        part.tracks.append(track)
    return part


def split_drums(ids: np.ndarray, tokenizer: PerTok, view: str = "full") -> tuple[np.ndarray, np.ndarray]:
    """(pitched part, drum part) of a sequence, each encoded on its own in the same view; a part
    with no notes is empty."""
    score = tokenizer.decode(ids, view=view)
    parts = []
    for drums in (False, True):
        part = _only(score, drums)
        parts.append(tokenizer.encode(part, view) if part.note_num() else np.zeros(0, np.int32))
    return parts[0], parts[1]


def has_drums(ids: np.ndarray, tokenizer: PerTok) -> tuple[bool, bool]:
    """(whether a sequence has pitched notes, whether it has drum notes)."""
    types = tokenizer.token_types(np.asarray(ids))
    return bool((types == TokenType.PITCH).any()), bool((types == TokenType.DRUM_PITCH).any())


def _note_slots(ids: np.ndarray, tokenizer: PerTok, heads: tuple) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """(the head ids of every note or pedal whose type is in `heads`, in order; {slot kind: the
    positions of their slots}) of a full-view sequence, filled or MASK."""
    ids = np.asarray(ids)
    types = tokenizer.token_types(ids)
    is_head = np.isin(types, (TokenType.PITCH, TokenType.DRUM_PITCH, TokenType.PEDAL))
    owner = np.maximum.accumulate(np.where(is_head, np.arange(len(ids)), -1))
    owned = (owner >= 0) & np.isin(types[np.maximum(owner, 0)], heads)
    kinds = performance_slot_kinds(ids, tokenizer)
    return ids[np.isin(types, heads)], {kind: np.flatnonzero(owned & (kinds == kind))
                                for kind in (MICROTIMING_SLOT, VELOCITY_SLOT)}


def fill_by_part(fill_part: Callable[[bool, list, list], list], compositions: list[np.ndarray],
                 tokenizer: PerTok, levels: list, drum_levels: list) -> list[np.ndarray]:
    """Full-view ids of each composition, its drum notes performed apart from the rest.

    `fill_part(drums, compositions, levels)` performs a list of one-part compositions (drum
    ones when `drums`) into full-view ids. A composition of one kind is performed whole; one
    with both is split (`split_drums`), each part performed at its level, and every note's
    MicroTiming and Velocity written back into the composition's own slots: its composition
    tokens are never re-encoded.
    """
    jobs = {False: [], True: []}  # drums? -> (composition index, part, level)
    for n, ids in enumerate(compositions):
        pitched, drums = has_drums(ids, tokenizer)
        if pitched and drums:
            parts = split_drums(ids, tokenizer, "composition")
            jobs[False].append((n, parts[0], levels[n]))
            jobs[True].append((n, parts[1], drum_levels[n]))
        else:
            jobs[drums].append((n, ids, drum_levels[n] if drums else levels[n]))
    done: dict[bool, dict[int, np.ndarray]] = {}
    for drums, items in jobs.items():
        filled = fill_part(drums, [part for _, part, _ in items], [level for _, _, level in items]) if items else []
        done[drums] = {n: ids for (n, _, _), ids in zip(items, filled)}
    out = []
    for n, ids in enumerate(compositions):
        if (n in done[False]) != (n in done[True]):
            out.append(done[False].get(n, done[True].get(n)))
            continue
        whole = tokenizer.add_performance_slots(ids)
        for drums, heads in ((False, (TokenType.PITCH, TokenType.PEDAL)), (True, (TokenType.DRUM_PITCH,))):
            notes, slots = _note_slots(whole, tokenizer, heads)
            part_notes, part_slots = _note_slots(done[drums][n], tokenizer, heads)
            if not np.array_equal(notes, part_notes):
                raise AssertionError(f"the {'drum' if drums else 'pitched'} part's notes differ from the "
                                     f"composition's after splitting ({len(part_notes)} vs {len(notes)})")
            for kind, positions in slots.items():
                whole[positions] = done[drums][n][part_slots[kind]]
        out.append(whole)
    return out
