"""Samples of a trained autoregressive model (PerceiverS or the LM) scored against held-out music.

The same for every run of the same data: prompts are the first `prompt_tokens` tokens (cut back
to a whole note) of the first `num_prompts` held-out pieces in the split's order, each continued
`per_prompt` times, plus `unprompted` rows from BOS alone; every row generates `num_tokens`
tokens under PerTok's grammar. Only the generated part is scored: Overlap Area under the mgeval
protocol against the held-out pieces (`evaluation.report`), and the share of repeated 4-bar
spans (`evaluation.repetition`), whose value on the held-out pieces themselves is the reference.

A continuation is decoded after its prompt, which sets the Program, meter and tempo in force,
and the prompt's own notes are then removed (`continuation`). Decoded alone, as before
`SampleProtocol.decode` existed, a piano continuation has no Program token (a piece names its
Program once, at its start), so its notes before any later Program were dropped: samples read
as thin or empty for a model that, rightly, never repeats the Program. Each row's tokens are kept
in `eval/samples_tokens.npz`.
"""
from __future__ import annotations

import collections
import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

import jax
import numpy as np
import symusic

from evaluation.errors import EvaluationError
from evaluation.notes import piece_notes
from evaluation.repetition import mean_repetition
from evaluation.report import write_report
from experiments.restore import restore_latest
from pertok import PerTok
from pertok.grammar import Grammar
from training import corpus
from training.data import split_pieces


DECODE = "after its prompt"  # see the module doc


@dataclasses.dataclass(frozen=True)
class SampleProtocol:
    num_prompts: int = 4  # held-out pieces whose openings are continued
    per_prompt: int = 3  # samples from each prompt
    unprompted: int = 4  # samples from BOS alone
    prompt_tokens: int = 256  # tokens of each prompt, cut back to a whole note
    num_tokens: int = 2048  # tokens generated per sample
    seed: int = 0
    decode: str = DECODE  # how a continuation is decoded (results without it decoded it alone)


def heldout_pieces(config):
    """The validation split of a run's data config (the same pieces for every run of that data)."""
    store = corpus.open_store(config.data)
    return split_pieces(store, config.data.valid_fraction, config.data.get("split", "file"))[1], store.tokenizer


def prompts_of(pieces, tokenizer: PerTok, protocol: SampleProtocol) -> list[np.ndarray]:
    """BOS + the opening of each of the first `num_prompts` pieces, ending after a whole note."""
    grammar, prompts = Grammar(tokenizer, "full"), []
    for index in range(min(protocol.num_prompts, len(pieces))):
        ids = np.asarray(pieces.piece(index)[:protocol.prompt_tokens])
        _, finished = grammar.run(ids)
        ends = np.flatnonzero(finished)
        prompts.append(np.concatenate([[tokenizer.bos_id], ids[:ends[-1] + 1] if len(ends) else ids[:0]]))
    return [prompt.astype(np.int32) for prompt in prompts]


def generate_rows(task, params, prompt: np.ndarray, rows: int, num_tokens: int, rng: jax.Array,
                  tokenizer: PerTok) -> np.ndarray:
    """int32 [rows, num_tokens] continuations of one prompt under the grammar, by either decoder."""
    grammar, batch = Grammar(tokenizer, "full"), np.repeat(prompt[None], rows, axis=0)
    if hasattr(task, "query_length"):  # PerceiverS: cached decoding
        from perceivers import SampleSettings

        return task.decoder(None, grammar).generate(params, batch, num_tokens, rng, SampleSettings(1.0, 0, 0.95),
                                                    eos_id=tokenizer.eos_id)
    return task.decoder(grammar).generate(params, batch, num_tokens, rng, 1.0, 0, 0.95, eos_id=tokenizer.eos_id,
                                          pad_id=tokenizer.pad_id)


def continuation(tokenizer: PerTok, prompt: np.ndarray, ids: np.ndarray) -> symusic.Score:
    """The generated part `ids` of a row, decoded after `prompt` (BOS first), the prompt's own notes
    and pedals removed: the prompt sets the Program, meter and tempo the continuation plays in."""
    body = np.asarray(prompt[1:] if len(prompt) and prompt[0] == tokenizer.bos_id else prompt, np.int32)
    whole = tokenizer.decode(np.concatenate([body, np.asarray(ids, np.int32)]), strict=False)
    if not len(body):
        return whole
    before = tokenizer.decode(body, strict=False)
    for kind, cls in (("notes", symusic.Note), ("pedals", symusic.Pedal)):
        taken = collections.Counter()  # the prompt's events, by track instrument: removed once each
        for track in before.tracks:
            arrays = getattr(track, kind).numpy()
            taken.update((track.program, track.is_drum, *event) for event in zip(*arrays.values()))
        for track in whole.tracks:
            arrays = getattr(track, kind).numpy()
            keep = np.ones(len(arrays["time"]), bool)
            for index, event in enumerate(zip(*arrays.values())):
                key = (track.program, track.is_drum, *event)
                if taken[key]:
                    taken[key] -= 1
                    keep[index] = False
            setattr(track, kind, cls.from_numpy(**{name: values[keep] for name, values in arrays.items()}))
    return whole


def write_reference(pieces, tokenizer: PerTok, out: Path) -> Path:
    """The held-out pieces as MIDI files in `out` (written once, atomically: runs share it)."""
    if out.is_dir():
        return out
    temporary = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    for index in range(len(pieces)):
        score = tokenizer.decode(pieces.piece(index), strict=False)
        score.dump_midi(str(temporary / f"heldout_{index:04d}.mid"))
    try:
        temporary.rename(out)
    except OSError:  # another run wrote it first
        shutil.rmtree(temporary, ignore_errors=True)
    return out


def score_samples(config, workdir: str, reference_dir: Path, protocol: SampleProtocol = SampleProtocol()) -> dict:
    """Generate the protocol's samples from the workdir's latest checkpoint and score them."""
    tokenizer = PerTok()
    task, params, saved, step = restore_latest(workdir, tokenizer, config.task)
    pieces, _ = heldout_pieces(saved)
    reference_dir = write_reference(pieces, tokenizer, Path(reference_dir))
    out = Path(workdir) / "eval" / "samples"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    rng = jax.random.key(protocol.seed)
    plan = [(prompt, protocol.per_prompt) for prompt in prompts_of(pieces, tokenizer, protocol)]
    plan.append((np.array([tokenizer.bos_id], np.int32), protocol.unprompted))
    generated, notes, kept = [], [], {}
    for index, (prompt, rows) in enumerate(plan):
        if rows < 1:
            continue
        tokens = generate_rows(task, params, prompt, rows, protocol.num_tokens, jax.random.fold_in(rng, index),
                               tokenizer)
        kept[f"prompt{index}"], kept[f"rows{index}"] = prompt, np.asarray(tokens)
        for row, ids in enumerate(np.asarray(tokens)):
            ids = ids[ids != tokenizer.pad_id]
            ids = ids[ids != tokenizer.eos_id]
            score = continuation(tokenizer, prompt, ids)
            path = out / f"prompt{index}-{row}.mid"
            score.dump_midi(str(path))
            generated.append(path)
            notes.append(piece_notes(score))
    np.savez_compressed(out.parent / "samples_tokens.npz", **kept)
    try:
        oa, oa_reason = write_report(out, reference_dir, out.parent / "samples-report", draw_plots=False,
                                     protocol="mgeval", workers=1)["mean_oa"], None
    except EvaluationError as error:  # e.g. fewer than 2 samples with notes: no OA, and why
        oa, oa_reason = None, str(error)
    reference = [piece_notes(tokenizer.decode(pieces.piece(i), strict=False)) for i in range(len(pieces))]
    return {"step": step, "samples": len(generated), "notes_per_sample": float(np.mean([n.num_notes for n in notes])),
            "oa_mgeval": oa, "oa_mgeval_missing": oa_reason, "repetition": mean_repetition(notes),
            "reference_repetition": mean_repetition(reference), "protocol": dataclasses.asdict(protocol),
            "reference_pieces": len(pieces), "workdir": os.path.abspath(workdir)}
