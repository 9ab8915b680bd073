"""Output names made from a user's input paths: inside their folder, unique per input, and a rerun
removes only what the same command wrote for the same input."""
import json
from pathlib import Path

import pytest

from experiments.outputs import MAX_NAME, RECORD, OutputError, Outputs, digest, input_names, named_inputs, safe_name
from training.validate import ConfigError


@pytest.mark.parametrize("relative, name", [
    ("..", "input"), (".", "input"), ("...", "input"), ("", "input"),
    ("a/b c", "a_b_c"), ("../../etc/passwd", "etc_passwd"), (".hidden", "hidden"),
    ("Chopin/Ballade_1/Kleeman", "Chopin_Ballade_1_Kleeman"), ("a\\b", "a_b")])
def test_safe_name_never_escapes_or_hides(relative, name):
    assert safe_name(relative) == name


def test_named_inputs_reads_a_file_or_a_folder_and_says_what_is_missing(tmp_path):
    (tmp_path / "set" / "sub").mkdir(parents=True)
    for relative in ("sub/b.mid", "a.MID", "notes.txt"):
        (tmp_path / "set" / relative).write_bytes(b"")
    inputs, names, folder = named_inputs(str(tmp_path / "set"), "vary.input")
    assert folder == str(tmp_path / "set") and sorted(names) == ["a", "sub_b"] and len(inputs) == 2
    inputs, names, folder = named_inputs(str(tmp_path / "set" / "sub" / "b.mid"), "vary.input")
    assert (inputs, names, folder) == ([tmp_path / "set" / "sub" / "b.mid"], ["b"], None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"perform.input='.*empty' holds no MIDI files"):
        named_inputs(str(tmp_path / "empty"), "perform.input")
    with pytest.raises(FileNotFoundError, match="vary.input='nowhere.mid': no such MIDI file or folder"):
        named_inputs("nowhere.mid", "vary.input")


def test_input_names_are_unique_and_bounded(tmp_path):
    long = "x" * 150
    paths = [tmp_path / "a" / "b.mid", tmp_path / "a_b.mid", tmp_path / long / long / "c.mid",
             tmp_path / "plain.mid"]
    names = input_names(paths, str(tmp_path))
    assert len(set(names)) == 4
    assert names[0].startswith("a_b-") and names[1].startswith("a_b-")  # collided: each hashed
    assert len(names[2]) <= MAX_NAME and names[2].startswith("xxx")
    assert names[3] == "plain"
    assert input_names([tmp_path / "...mid"], None) == ["input"]  # its stem is '..'
    assert input_names([tmp_path / "..mid"], None) == ["input"]   # its stem is '.'


def test_a_rerun_replaces_only_its_own_files(tmp_path):
    outputs = Outputs(tmp_path / "variations", "vary")
    name = outputs.claim("song", tmp_path / "song.mid")
    folder = outputs.root / name
    folder.mkdir()
    (folder / "variation_0.mid").write_bytes(b"first run")
    (folder / "variation_5.mid").write_bytes(b"first run")
    outputs.record(name, [folder / "variation_0.mid", folder / "variation_5.mid"])
    (folder / "notes.txt").write_text("the user's own file")
    again = Outputs(tmp_path / "variations", "vary")  # a later command reads the record
    assert again.claim("song", tmp_path / "song.mid") == "song"
    assert not (folder / "variation_0.mid").exists() and not (folder / "variation_5.mid").exists()
    assert (folder / "notes.txt").read_text() == "the user's own file"
    assert json.loads((outputs.root / RECORD).read_text())["outputs"]["song"]["files"] == []


def test_another_input_or_an_unknown_folder_never_loses_its_files(tmp_path):
    outputs = Outputs(tmp_path / "variations", "vary")
    first = outputs.claim("song", tmp_path / "x" / "song.mid")
    (outputs.root / first).mkdir()
    (outputs.root / first / "input.mid").write_bytes(b"x's")
    outputs.record(first, [outputs.root / first / "input.mid"])
    second = outputs.claim("song", tmp_path / "y" / "song.mid")  # same stem, another file
    assert second != first and second.startswith("song-")
    assert (outputs.root / first / "input.mid").read_bytes() == b"x's"
    (outputs.root / "take").mkdir()
    (outputs.root / "take" / "mine.mid").write_bytes(b"made by hand")
    taken = outputs.claim("take", tmp_path / "take.mid")
    assert taken.startswith("take-") and (outputs.root / "take" / "mine.mid").exists()
    source = tmp_path / "z.mid"
    (outputs.root / "z").mkdir()
    (outputs.root / f"z-{digest(source)}").mkdir()  # both names held by folders it did not make
    with pytest.raises(OutputError, match="move them away"):
        outputs.claim("z", source)


def test_files_beside_each_other_are_told_apart_by_their_suffixes(tmp_path):
    outputs = Outputs(tmp_path / "performed", "perform")
    (outputs.root / "song.mid").write_bytes(b"someone else's")
    name = outputs.claim("song", tmp_path / "song.mid", stems=(".mid", ".png"))
    assert name.startswith("song-")
    assert (outputs.root / "song.mid").read_bytes() == b"someone else's"


def test_a_record_pointing_outside_its_folder_is_not_followed(tmp_path):
    outside = tmp_path / "precious.txt"
    outside.write_text("keep")
    root = tmp_path / "variations"
    root.mkdir()
    (root / RECORD).write_text(json.dumps({"command": "vary", "outputs": {
        "song": {"source": str((tmp_path / "song.mid").resolve()), "files": ["../precious.txt"]}}}))
    assert Outputs(root, "vary").claim("song", tmp_path / "song.mid") == "song"
    assert outside.read_text() == "keep"


def test_a_damaged_record_is_one_error(tmp_path):
    root = tmp_path / "variations"
    root.mkdir()
    (root / RECORD).write_text("{not json")
    with pytest.raises(OutputError, match="move it away"):
        Outputs(root, "vary")
    (root / RECORD).write_text("[1, 2]")
    with pytest.raises(OutputError, match="not a record"):
        Outputs(Path(root), "vary")
