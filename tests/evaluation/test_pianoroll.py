"""Piano rolls for musicians: shared axes, a drum lane, a legend, a title."""
import numpy as np

from evaluation.notes import piece_notes
from evaluation.pianoroll import RollRow, piano_roll_figure, write_piano_roll_figure
from tests.evaluation.scores import TPQ, make_score, scale_score


def _rows():
    low_tune = scale_score((40, 43, 45), beats_per_note=2.0)  # 6 beats, low register
    high_band = make_score([(False, [(0, TPQ, 84, 90), (TPQ, TPQ, 88, 60)]),
                            (True, [(0, 60, 36, 100), (TPQ, 60, 38, 50), (2 * TPQ, 60, 42, 70)])],
                           ((0, 3, 4),))
    return [RollRow("input", piece_notes(low_tune, 2)),
            RollRow("variation", piece_notes(high_band, 2), split_beat=1.0)]


def test_rows_share_one_beat_axis_and_one_pitch_range():
    figure = piano_roll_figure(_rows(), num_bars=2, title="tune.mid")
    rolls = [axes for axes in figure.axes if axes.get_title(loc="left")]
    assert [axes.get_title(loc="left") for axes in rolls] == ["input", "variation"]
    assert rolls[0].get_xlim() == rolls[1].get_xlim() == (0.0, 8.0)  # 2 bars of 4/4 is the longer
    assert rolls[0].get_ylim() == rolls[1].get_ylim()
    low, high = rolls[0].get_ylim()
    assert low < 40 and high > 88  # both rows' pitches fit the shared range
    assert figure._suptitle.get_text() == "tune.mid"


def test_drums_get_their_own_lane_under_the_pitched_notes():
    figure = piano_roll_figure(_rows(), num_bars=2, title="t")
    variation = [a for a in figure.axes if a.get_title(loc="left") == "variation"][0]
    ys = np.concatenate([np.asarray(c.get_segments())[:, 0, 1] for c in variation.collections])
    drum_ys = ys[ys < 40]
    assert len(drum_ys) == 3 and len(set(drum_ys)) == 3  # three sounds, three lane rows
    assert "drums" in [label.get_text() for label in variation.get_yticklabels()]
    assert set(ys[ys >= 40]) == {84.0, 88.0}  # pitched notes keep their pitch


def test_legend_names_the_prompt_and_the_file_is_written(tmp_path):
    figure = piano_roll_figure(_rows(), num_bars=2, title="t")
    texts = [t.get_text() for legend in figure.legends for t in legend.get_texts()]
    assert "bar line" in texts and "prompt (given)" in texts
    assert write_piano_roll_figure(tmp_path / "v.png", _rows(), 2) == "v.png"
    assert (tmp_path / "v.png").stat().st_size > 10_000
