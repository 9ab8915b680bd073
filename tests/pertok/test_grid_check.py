"""The grid check: quantized and click-played files follow their beat; gridless performances do not."""
import numpy as np

from pertok import PerTok
from pertok.align import check_grid
from tests.pertok.scores import make_score

TOKENIZER = PerTok()
Q = 480


def notes(onsets):
    return [(int(t), Q // 2, 60 + (k % 12), 80) for k, t in enumerate(onsets)]


def check(onsets):
    return check_grid(TOKENIZER.encode(make_score(Q, [(0, False, notes(onsets))])), TOKENIZER)


def test_quantized_and_consistently_late_files_follow_the_beat():
    sixteenths = np.arange(200) * Q // 4
    assert check(sixteenths).peak_share == 1.0 and check(sixteenths).follows_the_beat
    late = sixteenths + 20  # a drummer laid back by 1/24 beat, every note
    assert check(late).follows_the_beat


def test_onsets_anywhere_follow_no_beat():
    rng = np.random.default_rng(0)
    anywhere = np.sort(rng.integers(0, 200 * Q // 4, 400))  # a performance against no click
    result = check(anywhere)
    assert not result.follows_the_beat and result.peak_share < 0.27


def test_few_notes_say_nothing():
    assert check(np.array([5, 77, 133])).follows_the_beat
