"""What every sampler of a trained run shares: the prompt, a progress line, sample files that
never overwrite earlier ones, one line per sample, and a piano roll beside each MIDI file.

A sample is the prompt's tokens then the generated ones, decoded leniently. Its dropped tokens
are those lenient decoding drops beyond what it drops from the prompt alone: the prompt is cut
after a whole note, so for an encoded file that is 0 and every dropped token is the generated
part's doing. Under PerTok's grammar (`pertok.grammar`) the count is 0 by construction.
"""
from __future__ import annotations

import dataclasses
import datetime
import os
import sys
import time
from pathlib import Path

import numpy as np

from pertok import PerTok
from pertok.grammar import Grammar
from training.validate import ConfigError

def check_sample(sample) -> None:
    """One ConfigError listing every bad field of a `sample` config block."""
    errors = []
    if sample.num_tokens < 1:
        errors.append(f"sample.num_tokens={sample.num_tokens} must be positive")
    if sample.num_samples < 1:
        errors.append(f"sample.num_samples={sample.num_samples} must be positive")
    if sample.temperature < 0:
        errors.append(f"sample.temperature={sample.temperature} must be >= 0 (0 = greedy)")
    if not 0 < sample.top_p <= 1:
        errors.append(f"sample.top_p={sample.top_p} must lie in (0, 1]")
    counts = ("top_k", "reset_fill", "prompt_tokens")
    for name in (name for name in counts if name in sample and sample[name] < 0):
        errors.append(f"sample.{name}={sample[name]} must be >= 0")
    if sample.prompt and not os.path.isfile(sample.prompt):
        errors.append(f"sample.prompt={sample.prompt!r} is not a file")
    if errors:
        raise ConfigError("invalid config:\n  " + "\n  ".join(errors))


def encode_like_training(path: str, tokenizer: PerTok, quiet: bool = False) -> np.ndarray:
    """Full-view ids of a MIDI file as training data reads it: aligned to its beats when
    `NAME_annotations.txt` lies beside it; otherwise as it is, with one line when its onsets
    follow no beat grid (its microtiming would not be expression). `quiet`: no lines."""
    from pertok.align import GRIDLESS_PEAK, align_file, annotation_path, check_grid

    annotations = annotation_path(path)
    if annotations.is_file():
        score, _ = align_file(path, annotations, tokenizer.config)
        if not quiet:
            print(f"{path}: aligned to its beats ({annotations.name}), as training data is")
        return tokenizer.encode(score)
    ids = tokenizer.encode(path)  # PerTokError names the file
    if quiet:
        return ids
    grid = check_grid(ids, tokenizer)
    if not grid.follows_the_beat:
        print(f"{path}: its onsets follow no beat grid (at most {grid.peak_share:.0%} of notes near one offset "
              f"from the 16th/triplet grid; played to a click or quantized: over {GRIDLESS_PEAK:.0%}), as a "
              f"performance recorded without a click: its bars and microtiming are guessed from the file's own "
              f"tempo, so rhythm and timing will be off. Put {annotations.name} (beat times, ASAP's format) "
              f"beside it to align it.")
    return ids


def prompt_tokens(sample, tokenizer: PerTok) -> np.ndarray:
    """BOS, then the prompt file's tokens: the first `sample.prompt_tokens` if set, cut back to
    the end of the last whole note so that the prompt decodes on its own."""
    ids = np.zeros(0, np.int32)
    if sample.prompt:
        ids = encode_like_training(sample.prompt, tokenizer)
        if 0 < sample.prompt_tokens < len(ids):
            _, finished = Grammar(tokenizer, "full").run(ids[:sample.prompt_tokens])
            ends = np.flatnonzero(finished)
            ids = ids[:ends[-1] + 1] if len(ends) else ids[:0]
    return np.concatenate([[tokenizer.bos_id], ids]).astype(np.int32)


class Progress:
    """Prints `sampling: done/total tokens, tokens/s, ETA` (at most every `every_s` seconds,
    on one rewritten line at a terminal)."""

    def __init__(self, total: int, rows: int = 1, every_s: float = 2.0, stream=None):
        self.total, self.rows, self.every_s = total, rows, every_s
        self.stream = stream or sys.stdout
        self.start = self.last = time.perf_counter()
        self.first: tuple[float, int] | None = None  # (time, tokens) when the first chunk was back

    def __call__(self, done: int) -> None:
        now = time.perf_counter()
        end = "\r" if self.stream.isatty() and done < self.total else "\n"
        if self.first is None:  # the first chunk includes compiling: not a rate
            self.first = (now, done)
            print(f"sampling: {done}/{self.total} tokens x {self.rows} rows, first chunk (with "
                  f"compilation) in {now - self.start:.1f} s", end=end, file=self.stream, flush=True)
            return
        if done < self.total and now - self.last < self.every_s:
            return
        self.last = now
        rate = (done - self.first[1]) * self.rows / max(now - self.first[0], 1e-9)
        eta = (self.total - done) * self.rows / max(rate, 1e-9)
        print(f"sampling: {done}/{self.total} tokens x {self.rows} rows, {rate:.1f} tokens/s, "
              f"ETA {eta:.0f} s", end=end, file=self.stream, flush=True)


def sample_path(out_dir: Path, step: int, seed: int, index: int, prompt: str = "") -> Path:
    """`step{step}[-{prompt}]-seed{seed}-{index}.mid`; when taken, a UTC time is added."""
    stem = f"step{step}" + (f"-{Path(prompt).stem}" if prompt else "") + f"-seed{seed}-{index}"
    path = out_dir / f"{stem}.mid"
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S")
    counter = 0
    while path.exists() or path.with_suffix(".png").exists():
        counter += 1
        path = out_dir / (f"{stem}-{stamp}" + ("" if counter == 1 else f"-{counter}") + ".mid")
    return path


@dataclasses.dataclass(frozen=True)
class Written:
    """One sample on disk and what it holds."""

    path: Path
    notes: int
    seconds: float
    generated: int  # tokens generated (up to EOS)
    dropped: int  # of those, dropped by lenient decoding

    def line(self, prompt_length: int, grammar: bool) -> str:
        rule = " (sampled under PerTok's grammar)" if grammar else ""
        return (f"{self.path}: {self.notes} notes, {self.seconds:.1f} s of music, "
                f"{prompt_length} prompt + {self.generated} generated tokens, "
                f"{self.dropped} of the generated tokens dropped by decoding{rule}")


def playable(score):
    """The score without empty tracks, and with no note before time 0: a negative MicroTiming
    on the first beat decodes to a negative onset, which a MIDI file cannot hold."""
    score.tracks = [track for track in score.tracks if len(track.notes)]
    for track in score.tracks:
        for note in track.notes:
            if note.time < 0:
                note.duration, note.time = max(note.duration + note.time, 1), 0
    return score


def _until_eos(tokenizer: PerTok, generated: np.ndarray) -> np.ndarray:
    generated = np.asarray(generated)
    ends = np.flatnonzero((generated == tokenizer.eos_id) | (generated == tokenizer.pad_id))
    return generated[:ends[0]] if len(ends) else generated


def write_sample(path: Path, decoded: tuple, prompt_decoded: tuple, generated: np.ndarray) -> Written:
    """Write a decoded sample (score, report) as MIDI with its piano roll beside it: the
    prompt's notes grey, the continuation coloured by velocity, on PerTok's bar grid."""
    score, report = decoded
    prompt_score, prompt_report = prompt_decoded
    score = playable(score)
    path.parent.mkdir(parents=True, exist_ok=True)
    score.dump_midi(str(path))
    seconds = float(score.to("second").end()) if score.note_num() else 0.0
    write_piano_roll(path.with_suffix(".png"), score, prompt_score)
    return Written(path, score.note_num(), seconds, len(generated),
                   max(report.num_dropped - prompt_report.num_dropped, 0))


def write_piano_roll(path: Path, score, prompt_score) -> None:
    """The sample's piano roll (all its bars) with the prompt's part, up to the onset of its
    last note, drawn grey."""
    from evaluation.notes import piece_notes
    from evaluation.pianoroll import RollRow, write_piano_roll_figure

    notes = piece_notes(score)
    split = None
    if prompt_score.note_num():
        prompt_notes = piece_notes(prompt_score)
        split = float(prompt_notes.onset_ticks.max()) / prompt_notes.ticks_per_quarter + 1e-6
    label = "prompt (grey), then the continuation" if split is not None else "sample"
    write_piano_roll_figure(path, [RollRow(label, notes, split)], len(notes.bar_lines_ticks) - 1,
                            f"{path.stem}: {score.note_num()} notes")


def write_samples(out_dir: Path, tokenizer: PerTok, prompt: np.ndarray, generated: np.ndarray,
                  step: int, sample, grammar: bool) -> list[Written]:
    """Write each row of `generated` [B, T] after `prompt` and print its line."""
    rows = [_until_eos(tokenizer, row) for row in generated]
    # One batched decode of every sample and of the prompt alone (its drops are not the model's).
    *decoded, prompt_decoded = tokenizer.decode_batch(
        [np.concatenate([prompt, row]) for row in rows] + [prompt], strict=False, report=True)
    written = []
    for index, (row, result) in enumerate(zip(rows, decoded)):
        path = sample_path(Path(out_dir), step, sample.seed, index, sample.prompt)
        result = write_sample(path, result, prompt_decoded, row)
        print(result.line(len(prompt) - 1, grammar), flush=True)
        written.append(result)
    return written
