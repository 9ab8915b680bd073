"""Sample files: prompts cut at a whole note, names that never overwrite, honest dropped counts."""
import io

import ml_collections
import numpy as np

from experiments import samples
from pertok import PerTok
from pertok.synthetic import generate_score

TOKENIZER = PerTok()


def test_prompt_is_cut_after_a_whole_note(tmp_path):
    path = tmp_path / "piece.mid"
    generate_score(0).dump_midi(str(path))
    sample = ml_collections.ConfigDict({"prompt": str(path), "prompt_tokens": 50})
    prompt = samples.prompt_tokens(sample, TOKENIZER)
    assert prompt[0] == TOKENIZER.bos_id and 40 < len(prompt) <= 51
    TOKENIZER.decode(prompt, strict=True)  # whole notes only


def test_names_never_overwrite_and_the_line_counts_generated_drops_only(tmp_path):
    first = samples.sample_path(tmp_path, 600, 0, 0, "in/mozart.mid")
    assert first.name == "step600-mozart-seed0-0.mid"
    prompt = np.concatenate([[TOKENIZER.bos_id], TOKENIZER.encode(generate_score(0))[:200]])
    prompt = prompt[:np.flatnonzero(TOKENIZER.token_types(prompt) == 14)[-1] + 1]  # after a Duration
    ids = TOKENIZER.vocab.ids
    good = [ids[n] for n in ("Bar", "Program_0", "Pitch_60", "MicroTiming_0", "Velocity_66",
                             "Duration_960")]
    broken = good[:3] + [ids["Velocity_66"]] + good[5:]  # the note lost its MicroTiming
    generated = np.zeros((2, len(good) + 3), np.int32)
    generated[0, :len(good) + 1] = good + [2]  # EOS, then padding
    generated[1, :len(broken)] = broken
    sample = ml_collections.ConfigDict({"seed": 0, "prompt": "in/mozart.mid"})
    written, _ = samples.write_samples(tmp_path, TOKENIZER, prompt, generated, 600, sample, True)
    assert written.path == first and written.dropped == 0 and written.generated == len(good)
    assert written.seconds > 0 and first.with_suffix(".png").stat().st_size > 0
    assert "0 of the generated tokens dropped by decoding (sampled under PerTok's grammar)" in \
        written.line(len(prompt) - 1, grammar=True)
    assert samples.write_samples(tmp_path, TOKENIZER, prompt, generated[1:], 600, sample,
                                 False)[0].dropped == 3
    second = samples.sample_path(tmp_path, 600, 0, 0, "in/mozart.mid")
    assert second != first and second.name.startswith("step600-mozart-seed0-0-")
    assert len(list(tmp_path.glob("*.mid"))) == 3  # nothing was overwritten


def test_progress_line_gives_rate_and_eta():
    stream = io.StringIO()
    progress = samples.Progress(100, rows=2, every_s=0.0, stream=stream)
    for done in (10, 50, 100):
        progress(done)
    lines = stream.getvalue().splitlines()
    assert "first chunk" in lines[0] and "tokens/s" in lines[1] and "ETA 0 s" in lines[-1]


def test_a_prompt_with_beat_annotations_is_aligned_as_training_data_is(tmp_path):
    from pertok.align import align_file

    path = tmp_path / "performance.mid"
    generate_score(3).dump_midi(str(path))
    annotations = tmp_path / "performance_annotations.txt"  # ASAP's format: a beat every 0.4 s, 3/4
    labels = [("db,3/4,0" if k == 0 else "db") if k % 3 == 0 else "b" for k in range(300)]
    annotations.write_text("".join(f"{0.4 * k:.6f}\t{0.4 * k:.6f}\t{label}\n" for k, label in enumerate(labels)))
    sample = ml_collections.ConfigDict({"prompt": str(path), "prompt_tokens": 0})
    prompt = samples.prompt_tokens(sample, TOKENIZER)
    aligned = TOKENIZER.encode(align_file(path, annotations)[0])
    np.testing.assert_array_equal(prompt[1:], aligned)
    assert not np.array_equal(aligned, TOKENIZER.encode(path))  # the alignment changed the tokens


def test_a_scored_continuation_is_decoded_after_its_prompt_and_holds_only_its_own_notes():
    from experiments.sample_eval import continuation

    ids = TOKENIZER.encode(generate_score(0))
    names = TOKENIZER.names(ids)
    cut = [i for i, name in enumerate(names) if name.startswith("Pitch")][10]  # the 11th note's Pitch
    while not names[cut - 1].startswith("Duration"):  # back to the end of the 10th note
        cut -= 1
    prompt, generated = np.concatenate([[TOKENIZER.bos_id], ids[:cut]]), ids[cut:]
    notes = lambda score: sum(len(track.notes) for track in score.tracks)  # noqa: E731
    whole, prompt_score = TOKENIZER.decode(ids, strict=False), TOKENIZER.decode(ids[:cut], strict=False)
    assert notes(prompt_score) == 10 and "Program" not in " ".join(names[cut:])  # a piece names it once
    assert notes(TOKENIZER.decode(generated, strict=False)) < notes(whole) - 10  # alone, notes are lost
    score = continuation(TOKENIZER, prompt, generated)
    assert notes(score) == notes(whole) - 10 == sum(name.startswith("Pitch") for name in names[cut:])
    first = min(track.notes[0].time for track in score.tracks if len(track.notes))
    assert first >= max(note.time for track in prompt_score.tracks for note in track.notes)
    alone = continuation(TOKENIZER, np.array([TOKENIZER.bos_id]), ids)  # unprompted: the row itself
    assert notes(alone) == notes(whole)
