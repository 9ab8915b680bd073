"""Beat alignment: rewrite a performance so that its ticks follow the music's beat.

PerTok's microtiming is a distance from a grid, which is expression only where the file's
grid follows the beat. This package sits above the tokenizer's core (it reads its config and
vocabulary of meters) and below the token store (which aligns files with annotations):

- `annotations`: ASAP's `NAME_annotations.txt` beat/downbeat/meter files, read and checked;
- `grid`: beats and downbeats -> the ticks of each beat and the bars of PerTok's bar map;
- `score`: a Score re-timed onto that grid, every event keeping its time in seconds;
- `grid_check`: whether a file's own grid follows its beat (before its microtiming is believed).
"""
from pertok.align.annotations import (AnnotationError, BeatAnnotations, annotation_path, meter_beats,
                                      parse_time_signature, read_annotations)
from pertok.align.grid import AlignmentWarning, BeatGrid, lay_grid
from pertok.align.grid_check import GRIDLESS_PEAK, GridCheck, check_grid
from pertok.align.score import AlignmentReport, align, align_file, align_score, tick_seconds

__all__ = ["GRIDLESS_PEAK", "AlignmentReport", "AlignmentWarning", "AnnotationError", "BeatAnnotations", "BeatGrid",
           "GridCheck", "align", "align_file", "align_score", "annotation_path", "check_grid", "lay_grid", "meter_beats",
           "parse_time_signature", "read_annotations", "tick_seconds"]
