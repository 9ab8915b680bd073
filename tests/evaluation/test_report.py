"""The report and its command line on small hand-made sets, a broken file among them."""
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evaluation import corpus
from evaluation.__main__ import main
from evaluation.errors import EvaluationError
from evaluation.report import write_report
from tests.evaluation.scores import write_set

PIECES_PER_SET = 12


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sets")
    rng = np.random.default_rng(0)
    for folder, style in (("diatonic_a", "diatonic"), ("diatonic_b", "diatonic"), ("chromatic", "chromatic")):
        write_set(root / folder, rng, PIECES_PER_SET, style)
    (root / "diatonic_a" / "nested").mkdir()
    (root / "diatonic_a" / "nested" / "x.mid").write_bytes(b"this is not a MIDI file at all")
    (root / "diatonic_a" / "notes.txt").write_text("not MIDI, not listed")
    return root


@pytest.fixture(scope="module")
def same_style(sets, tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("same_style")
    return write_report(sets / "diatonic_a", sets / "diatonic_b", out, num_bars=4, workers=1,
                        num_piano_rolls=1), out


@pytest.fixture(scope="module")
def two_styles(sets, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("two_styles")
    return write_report(sets / "chromatic", sets / "diatonic_b", out, num_bars=4, workers=1,
                        draw_plots=False)


def _no_nan(text: str) -> dict:
    def refuse(constant):
        raise AssertionError(f"report.json holds {constant}")
    return json.loads(text, parse_constant=refuse)


def test_one_style_overlaps_far_more_than_two_styles(same_style, two_styles):
    report, _ = same_style
    assert two_styles["plots"] == []
    assert report["mean_oa"] > 0.75
    assert two_styles["mean_oa"] < report["mean_oa"] - 0.3
    # Features on which the styles differ in kind (range, rhythm, dynamics) separate fully;
    # the note count (NC) is drawn alike for both and must not.
    for name in ("pitch_range", "avg_ioi", "note_length_histogram", "velocity_mean"):
        assert report["features"][name]["oa"] > 0.8, name
        assert two_styles["features"][name]["oa"] < 0.05, name
    assert two_styles["features"]["total_used_note"]["oa"] > 0.8
    assert report["expressive"]["velocity"]["oa"] > 0.8
    assert two_styles["expressive"]["velocity"]["oa"] < 0.1


def test_broken_file_is_listed_and_the_report_goes_on(same_style):
    report, _ = same_style
    assert report["generated"]["num_pieces"] == PIECES_PER_SET
    [skipped] = report["skipped"]
    assert skipped["set"] == "generated" and skipped["path"].endswith("nested/x.mid")
    assert "MThd" in skipped["reason"]


def test_report_json_and_plots_are_written(same_style):
    report, out = same_style
    on_disk = _no_nan((out / "report.json").read_text())
    assert on_disk["features"].keys() == report["features"].keys()
    assert {"overlap_area.png", "velocity_histogram.png", "microtiming_histogram.png",
            "piano_rolls.png", "density_pitch_class_histogram.png"} <= set(on_disk["plots"])
    for name in on_disk["plots"]:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    for comparison in on_disk["features"].values():
        assert 0.0 <= comparison["oa"] <= 1.0 and comparison["kl"] >= 0.0


def test_pool_reads_the_same_as_one_process(sets):
    paths = corpus.midi_files(sets) * 3  # 109 files: enough for a process pool
    pool = corpus.process_pool(2, len(paths))
    assert pool is not None
    with pool:
        pooled = corpus.gather(paths, corpus.summarise_files(paths, 4, pool))
    serial = corpus.gather(paths, corpus.summarise_files(paths, 4))
    assert pooled.paths == serial.paths and len(pooled.skipped) == 3
    for name, values in serial.features.items():
        np.testing.assert_array_equal(pooled.features[name], values)


def test_cli_half_split_writes_the_report(sets, tmp_path, capsys):
    assert main(["report", "--half-split", "1", "--reference", str(sets / "diatonic_a"),
                 "--out", str(tmp_path), "--workers", "1", "--piano-rolls", "0", "--num-bars", "4"]) == 0
    report = _no_nan((tmp_path / "report.json").read_text())
    # 13 files, one broken: halves of 6 and 7 files.
    assert report["generated"]["num_pieces"] + report["reference"]["num_pieces"] == PIECES_PER_SET
    assert "half, seed 1" in report["generated"]["folder"]
    assert len(list(tmp_path.glob("*.png"))) == len(report["plots"]) > 10
    printed = capsys.readouterr().out
    assert "PCH" in printed and "mean OA" in printed and math.isfinite(report["mean_oa"])


def test_cli_missing_folder_is_one_line_error(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "evaluation", "report", "--generated", str(tmp_path / "nowhere"),
         "--reference", str(tmp_path), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("evaluation: error: ")
    assert "nowhere" in result.stderr and "does not exist" in result.stderr


def test_too_few_readable_files_is_a_clear_error(sets, tmp_path):
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    (lonely / "only.mid").write_bytes((sets / "diatonic_b" / "diatonic_000.mid").read_bytes())
    with pytest.raises(EvaluationError, match="1 readable MIDI file.*at least 2"):
        write_report(lonely, sets / "diatonic_b", tmp_path / "out", workers=1)
    with pytest.raises(EvaluationError, match="half-split"):
        write_report(sets / "chromatic", sets / "diatonic_b", tmp_path / "out", half_split_seed=0)


def test_cli_similarity_prints_json(sets, capsys):
    piece = str(sets / "diatonic_b" / "diatonic_000.mid")
    other = str(sets / "chromatic" / "chromatic_000.mid")
    assert main(["similarity", piece, piece]) == 0
    same = json.loads(capsys.readouterr().out)
    assert same["chroma_similarity"] == pytest.approx(1.0) and same["groove_similarity"] == pytest.approx(1.0)
    assert main(["similarity", piece, other]) == 0
    assert json.loads(capsys.readouterr().out)["chroma_similarity"] < 0.9
    assert main(["similarity", piece, str(sets / "diatonic_a" / "nested" / "x.mid")]) == 1


def _write_drum_set(folder: Path, num_pieces: int) -> None:
    """Drum grooves only: no pitch or note-length feature is defined for them."""
    from tests.evaluation.scores import TPQ, make_score
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(num_pieces):
        hits = [(step * TPQ // 2, 60, 36 + (step + k) % 6, 90) for step in range(8 + 2 * k)]
        make_score([(True, hits)]).dump_midi(str(folder / f"drums_{k}.mid"))


@pytest.mark.parametrize("protocol", ["project", "mgeval"])
def test_drum_only_pieces_are_excluded_per_feature_not_zero_filled(sets, tmp_path, protocol):
    mixed = tmp_path / "mixed"
    _write_drum_set(mixed, 3)
    for path in sorted((sets / "diatonic_b").glob("*.mid"))[:5]:
        (mixed / path.name).write_bytes(path.read_bytes())
    report = write_report(mixed, sets / "diatonic_a", tmp_path / "out", workers=1, num_bars=4,
                          draw_plots=False, protocol=protocol)
    assert report["protocol"] == protocol
    exclusions = report["exclusions"]
    assert exclusions["pitch_class_histogram"] == {"generated": 3, "reference": 0}
    assert exclusions["total_used_note"] == {"generated": 0, "reference": 0}
    pch = report["features"]["pitch_class_histogram"]
    assert pch["num_pieces"] == {"generated": 5, "reference": PIECES_PER_SET}
    # Five diatonic pieces against diatonic ones: the three drum grooves no longer drag OA to 0.
    assert pch["oa"] > 0.5
    _write_drum_set(tmp_path / "drums", 3)
    all_drums = write_report(tmp_path / "drums", sets / "diatonic_a", tmp_path / "out2", workers=1,
                             num_bars=4, draw_plots=False, protocol=protocol)
    pctm = all_drums["features"]["pitch_class_transition_matrix"]
    assert pctm["oa"] is None and "0 generated" in pctm["reason"]
    assert "PCTM" not in all_drums["mean_oa_features"] and "NC" in all_drums["mean_oa_features"]


def test_single_reference_file_is_enough_for_oa(sets, tmp_path):
    single = tmp_path / "single"
    single.mkdir()
    (single / "only.mid").write_bytes((sets / "diatonic_b" / "diatonic_000.mid").read_bytes())
    report = write_report(sets / "diatonic_b", single, tmp_path / "out", workers=1, num_bars=4,
                          draw_plots=False, protocol="mgeval")
    assert report["reference"]["num_pieces"] == 1
    assert all(f["oa"] is not None and f["oa_reference"] is None for f in report["features"].values())


def test_cli_mgeval_protocol_on_tiny_folders(sets, tmp_path, capsys):
    assert main(["report", "--generated", str(sets / "chromatic"), "--reference", str(sets / "diatonic_b"),
                 "--out", str(tmp_path), "--protocol", "mgeval", "--no-plots", "--workers", "1"]) == 0
    report = _no_nan((tmp_path / "report.json").read_text())
    assert report["protocol"] == "mgeval" and report["plots"] == []
    assert len(report["mean_oa_features"]) == 9 and report["mean_oa"] < 0.5
    printed = capsys.readouterr().out
    assert "protocol: mgeval" in printed and "mean OA (9 features)" in printed


def test_cli_one_generated_file_is_one_line_naming_the_count(sets, tmp_path, capsys):
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    (lonely / "only.mid").write_bytes((sets / "diatonic_b" / "diatonic_000.mid").read_bytes())
    assert main(["report", "--generated", str(lonely), "--reference", str(sets / "diatonic_b"),
                 "--out", str(tmp_path / "out"), "--no-plots", "--workers", "1"]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "has 1 readable MIDI file" in error and "at least 2" in error
