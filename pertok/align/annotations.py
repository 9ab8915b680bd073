"""Beat annotations: beat and downbeat times in seconds, with meters and keys where they change.

The reader takes ASAP-style files (one line per beat, `seconds<TAB>seconds<TAB>label`, the
label `b`, `bR` or `db`, a downbeat optionally carrying `,NUM/DEN` and `,KEY`); the plain
constructor `BeatAnnotations.from_arrays` takes arrays from any other source (a DAW's tempo
map, a beat tracker). Counting beats follows ASAP (and most musicians): a numerator divisible
by 3 and above 3 is compound, one dotted beat per three units (6/8: 2 beats, 12/16: 4);
otherwise one beat per denominator unit (3/8: 3, 2/2: 2).
"""
from __future__ import annotations

import dataclasses
import math
import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from pertok.errors import PerTokError

BEAT_LABELS = ("b", "bR", "db")  # bR: a beat of a bar whose notes do not fill it (ASAP)
KEY_RANGE = (-7, 7)  # sharps > 0, flats < 0, as in a MIDI key signature


class AnnotationError(PerTokError, ValueError):
    """A beat annotation that cannot be used: missing, empty, unordered or unparsable."""


def meter_beats(numerator: int, denominator: int) -> tuple[int, Fraction]:
    """(beats per bar, quarter notes per beat) of a meter, counted as ASAP counts it."""
    if numerator % 3 == 0 and numerator > 3:
        return numerator // 3, Fraction(3 * 4, denominator)
    return numerator, Fraction(4, denominator)


def parse_time_signature(text: str) -> tuple[int, int]:
    """`"6/8"` -> (6, 8); raises ValueError unless NUM >= 1 and DEN a power of two up to 64."""
    numerator, slash, denominator = text.strip().partition("/")
    num, den = int(numerator), int(denominator)  # ValueError on junk, also when no slash
    if not slash or num < 1 or num > 255 or den < 1 or den > 64 or den & (den - 1):
        raise ValueError(text)
    return num, den


@dataclasses.dataclass(frozen=True)
class BeatAnnotations:
    """Beats of one performance.

    Attributes:
      times: float64 [N] beat times in seconds, strictly increasing.
      downbeat: bool [N] whether each beat starts a bar.
      time_signatures: beat index -> (numerator, denominator) in force from that beat.
      key_signatures: beat index -> sharps (> 0) or flats (< 0) from that beat.
      source: where they came from (for messages).
      lines: int [N] line number of each beat in `source` (0 when not from a file).
    """

    times: np.ndarray
    downbeat: np.ndarray
    time_signatures: dict[int, tuple[int, int]]
    key_signatures: dict[int, int]
    source: str = "<arrays>"
    lines: np.ndarray | None = None

    def where(self, beat: int) -> str:
        """`source:line` of a beat, for messages."""
        if self.lines is not None and self.lines[beat] > 0:
            return f"{self.source}:{int(self.lines[beat])}"
        return f"{self.source}: beat {beat}"

    @classmethod
    def from_arrays(cls, times, downbeats=None, time_signatures: dict | None = None,
                    key_signatures: dict | None = None, source: str = "<arrays>",
                    lines=None) -> "BeatAnnotations":
        """Check and hold beats given as arrays.

        Args:
          times: beat times in seconds, strictly increasing, at least two.
          downbeats: bool mask over the beats, or the times of the downbeats (each must be a
            beat); None makes the first beat the only downbeat.
          time_signatures: beat index -> (numerator, denominator); meters without any default
            to the beat count of the first full bar over 4.
          key_signatures: beat index -> sharps/flats.
        """
        times = np.asarray(times, np.float64).reshape(-1)
        lines = None if lines is None else np.asarray(lines, np.int64)
        annotations = cls(times, _downbeat_mask(times, downbeats, source), dict(time_signatures or {}),
                          dict(key_signatures or {}), source, lines)
        annotations._check()
        return annotations

    def _check(self) -> None:
        if len(self.times) < 2:
            raise AnnotationError(f"{self.source}: needs at least two beats, found {len(self.times)}")
        if not np.all(np.isfinite(self.times)) or self.times[0] < 0:
            bad = int(np.flatnonzero(~np.isfinite(self.times) | (self.times < 0))[0])
            raise AnnotationError(f"{self.where(bad)}: beat time {self.times[bad]} is not a time >= 0")
        steps = np.diff(self.times)
        if np.any(steps <= 0):
            bad = int(np.flatnonzero(steps <= 0)[0]) + 1
            raise AnnotationError(f"{self.where(bad)}: beat at {self.times[bad]:.6f} s is not after the "
                                  f"previous beat ({self.times[bad - 1]:.6f} s)")
        for beat, (numerator, denominator) in self.time_signatures.items():
            if not 0 <= beat < len(self.times):
                raise AnnotationError(f"{self.source}: time signature at beat {beat} of {len(self.times)}")
            try:
                parse_time_signature(f"{numerator}/{denominator}")
            except ValueError:
                raise AnnotationError(f"{self.where(beat)}: time signature {numerator}/{denominator} "
                                      f"is not NUM/DEN with DEN a power of two") from None
        for beat, key in self.key_signatures.items():
            if not 0 <= beat < len(self.times) or not KEY_RANGE[0] <= key <= KEY_RANGE[1]:
                raise AnnotationError(f"{self.where(beat)}: key signature {key} outside "
                                      f"{KEY_RANGE[0]}..{KEY_RANGE[1]}")


def _downbeat_mask(times: np.ndarray, downbeats, source: str) -> np.ndarray:
    if downbeats is None:
        mask = np.zeros(len(times), bool)
        mask[:1] = True
        return mask
    downbeats = np.asarray(downbeats)
    if downbeats.dtype == bool:
        if downbeats.shape != times.shape:
            raise AnnotationError(f"{source}: {len(downbeats)} downbeat flags for {len(times)} beats")
        return downbeats.copy()
    index = np.searchsorted(times, downbeats)
    index = np.clip(index, 0, max(len(times) - 1, 0))
    if len(times) == 0 or not np.allclose(times[index], downbeats, atol=1e-6, rtol=0):
        raise AnnotationError(f"{source}: every downbeat time must also be a beat time")
    mask = np.zeros(len(times), bool)
    mask[index] = True
    return mask


def read_annotations(path: str | os.PathLike) -> BeatAnnotations:
    """Read an ASAP-style annotation file; every problem is one AnnotationError naming the line."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"{path}: no such annotation file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise AnnotationError(f"{path}: cannot read annotation file ({error})") from None
    times, downbeat, lines = [], [], []
    time_signatures, key_signatures = {}, {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        where = f"{path}:{number}"
        if len(fields) < 3:
            raise AnnotationError(f"{where}: expected 'seconds<TAB>seconds<TAB>label', got {line.strip()!r}")
        try:
            seconds = float(fields[0])
        except ValueError:
            raise AnnotationError(f"{where}: beat time {fields[0]!r} is not a number") from None
        if not math.isfinite(seconds):
            raise AnnotationError(f"{where}: beat time {fields[0]!r} is not finite")
        label, *extra = fields[2].strip().split(",")
        if label not in BEAT_LABELS:
            raise AnnotationError(f"{where}: label {label!r} is not one of {', '.join(BEAT_LABELS)}")
        beat = len(times)
        if extra and extra[0].strip():
            try:
                time_signatures[beat] = parse_time_signature(extra[0])
            except ValueError:
                raise AnnotationError(f"{where}: time signature {extra[0]!r} does not parse "
                                      f"(expected NUM/DEN, DEN a power of two)") from None
        if len(extra) > 1 and extra[1].strip():
            try:
                key_signatures[beat] = int(extra[1])
            except ValueError:
                raise AnnotationError(f"{where}: key signature {extra[1]!r} is not an integer") from None
        times.append(seconds)
        downbeat.append(label == "db")
        lines.append(number)
    if not times:
        raise AnnotationError(f"{path}: empty annotation file (no beats)")
    return BeatAnnotations.from_arrays(times, np.array(downbeat, bool), time_signatures, key_signatures,
                                       source=str(path), lines=lines)


def annotation_path(midi_path: str | os.PathLike) -> Path:
    """Where the annotations of a MIDI file lie: `NAME_annotations.txt` beside `NAME.mid`."""
    midi_path = Path(midi_path)
    return midi_path.with_name(f"{midi_path.stem}_annotations.txt")
