"""The annotation reader, its errors (one line naming the file and line), and the align CLI."""
from __future__ import annotations

import numpy as np
import pytest
import symusic

from pertok.align import align
from pertok.align import AnnotationError, BeatAnnotations, meter_beats, read_annotations
from pertok.cli import main
from tests.pertok.scores import make_score

ASAP_STYLE = "0.5\t0.5\tb,,-2\n1.0\t1.0\tdb,3/4,-2\n1.5\t1.5\tb\n2.0\t2.0\tbR\n2.5\t2.5\tdb,6/8\n3.25\t3.25\tb\n4.0\t4.0\tdb\n"


def test_reader_takes_labels_meters_and_keys(tmp_path):
    path = tmp_path / "x_annotations.txt"
    path.write_text(ASAP_STYLE)
    annotations = read_annotations(path)
    np.testing.assert_array_equal(annotations.times, [0.5, 1.0, 1.5, 2.0, 2.5, 3.25, 4.0])
    np.testing.assert_array_equal(annotations.downbeat, [0, 1, 0, 0, 1, 0, 1])
    assert annotations.time_signatures == {1: (3, 4), 4: (6, 8)}
    assert annotations.key_signatures == {0: -2, 1: -2}
    assert annotations.where(4) == f"{path}:5"


@pytest.mark.parametrize("meter, beats, quarters", [
    ((6, 8), 2, 1.5), ((6, 4), 2, 3), ((9, 8), 3, 1.5), ((12, 8), 4, 1.5), ((12, 16), 4, 0.75),
    ((24, 16), 8, 0.75), ((3, 8), 3, 0.5), ((2, 2), 2, 2), ((3, 2), 3, 2), ((4, 8), 4, 0.5), ((3, 4), 3, 1)])
def test_beats_are_counted_as_asap_counts_them(meter, beats, quarters):
    assert meter_beats(*meter) == (beats, quarters)


@pytest.mark.parametrize("text, message", [
    ("", "empty annotation file"),
    ("\n\n", "empty annotation file"),
    ("0.5\t0.5\tdb,4/4\n", "needs at least two beats, found 1"),
    ("0.5\t0.5\tdb,4/4\n1.0\t1.0\tb\n0.9\t0.9\tb\n", ":3: beat at 0.900000 s is not after"),
    ("0.5\t0.5\tdb,4/4\n0.5\t0.5\tb\n", ":2: beat at 0.500000 s is not after"),
    ("0.5\t0.5\tdb,4/4\n1.0\t1.0\tdb,three/4\n", ":2: time signature 'three/4' does not parse"),
    ("0.5\t0.5\tdb,4/3\n1.0\t1.0\tb\n", ":1: time signature '4/3' does not parse"),
    ("0.5\t0.5\tdb,4/4\n1.0\t1.0\tdb,,x\n", ":2: key signature 'x' is not an integer"),
    ("0.5\t0.5\tdb,4/4,9\n1.0\t1.0\tb\n", ":1: key signature 9 outside -7..7"),
    ("0.5\t0.5\tdb\nabc\t1.0\tb\n", ":2: beat time 'abc' is not a number"),
    ("0.5\t0.5\tdb\n1.0 1.0 b\n", ":2: expected 'seconds<TAB>seconds<TAB>label'"),
    ("0.5\t0.5\tdb\n1.0\t1.0\tx\n", ":2: label 'x' is not one of"),
])
def test_bad_annotation_files_give_one_error_naming_file_and_line(tmp_path, text, message):
    path = tmp_path / "bad_annotations.txt"
    path.write_text(text)
    with pytest.raises(AnnotationError) as error:
        read_annotations(path)
    assert str(path) in str(error.value) and message in str(error.value)
    assert "\n" not in str(error.value)


def test_missing_file_and_bad_arrays():
    with pytest.raises(AnnotationError, match="no such annotation file"):
        read_annotations("/nonexistent/x_annotations.txt")
    with pytest.raises(AnnotationError, match="every downbeat time must also be a beat"):
        BeatAnnotations.from_arrays([0.0, 1.0, 2.0], downbeats=[0.5])
    with pytest.raises(AnnotationError, match="3 downbeat flags for 2 beats"):
        BeatAnnotations.from_arrays([0.0, 1.0], downbeats=np.array([True, False, True]))
    mask = BeatAnnotations.from_arrays([0.0, 1.0, 2.0], downbeats=[0.0, 2.0]).downbeat
    np.testing.assert_array_equal(mask, [True, False, True])


def test_beats_slower_than_a_midi_tempo_can_hold_are_an_error():
    score = make_score(480, [(0, False, [(0, 480, 60, 80)])])

    with pytest.raises(AnnotationError, match="<arrays>: beat 2: beat 30.0 s after the previous one"):
        align(score, [0.0, 0.5, 30.5], np.array([True, False, True]), {0: (4, 16)})


def test_cli_align_prints_counts_and_writes_a_score_that_sounds_the_same(tmp_path, capsys):
    notes = [(i * 240, 200, 60 + i % 7, 70) for i in range(24)]
    make_score(480, [(0, False, notes)]).dump_midi(str(tmp_path / "p.mid"))
    beats = "".join(f"{0.5 * i:.3f}\t{0.5 * i:.3f}\t{'db,3/4' if i % 3 == 0 else 'b'}\n" for i in range(8))
    (tmp_path / "p_annotations.txt").write_text(beats)
    assert main(["align", str(tmp_path / "p.mid"), "--beats", str(tmp_path / "p_annotations.txt"),
                 "-o", str(tmp_path / "out.mid")]) == 0
    printed = capsys.readouterr().out
    assert "8 beats, 3 bars, meters 3/4" in printed and "largest change of a note's time" in printed
    before = symusic.Score(str(tmp_path / "p.mid")).to("second").tracks[0].notes.numpy()["time"]
    after = symusic.Score(str(tmp_path / "out.mid")).to("second").tracks[0].notes.numpy()["time"]
    np.testing.assert_allclose(np.sort(after), np.sort(before), atol=1e-3)
    (tmp_path / "bad_annotations.txt").write_text("1\t1\tdb\n")
    assert main(["align", str(tmp_path / "p.mid"), "--beats", str(tmp_path / "bad_annotations.txt"),
                 "-o", str(tmp_path / "x.mid")]) == 1
    error = capsys.readouterr().err
    assert error.startswith("pertok: error:") and "bad_annotations.txt" in error and error.count("\n") == 1
