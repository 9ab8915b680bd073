"""A user's tracks: the per-track report, and drums performed apart from the rest (experiments/parts.py)."""
import numpy as np

from composer import composition_view
from experiments.parts import fill_by_part, has_drums, split_drums, track_report
from performer import MICROTIMING_SLOT, VELOCITY_SLOT, performance_slot_kinds, piece_velocities
from pertok import PerTok, TokenType
from performer.slots import MASK_ID
from tests.pertok.scores import make_score

TOKENIZER = PerTok()
Q = TOKENIZER.config.ticks_per_quarter


def _band() -> "symusic.Score":  # noqa: F821
    piano = [(k * Q, Q, 60 + k % 5, 70) for k in range(16)]
    more_piano = [(k * Q + Q // 2, Q // 2, 48, 60) for k in range(8)]
    drums = [(k * Q // 2, Q // 4, 36 if k % 4 == 0 else 42, 90) for k in range(32)]
    return make_score(Q, tracks=[(0, False, piano), (33, False, []), (0, False, more_piano), (0, True, drums)],
                      pedals={0: [(0, 4 * Q)]})


def test_the_report_says_which_tracks_are_kept_merged_or_dropped():
    uses = track_report(_band(), drum_performer=True)
    assert [use.kept for use in uses] == [True, False, True, True]
    assert uses[1].why == "no notes" and uses[1].instrument == "bass (program 33)"
    assert uses[2].why.startswith("merged with track 0")
    assert uses[0].why == "performed by the piano Performer" and uses[3].why == "performed by the drum Performer"
    assert "track 3" in uses[3].line() and "drums, 32 notes: kept" in uses[3].line()


def test_the_report_of_an_idea_counts_the_notes_its_bars_hold():
    score = _band()
    ids = TOKENIZER.encode(score)
    whole = TOKENIZER.decode(ids)
    cut = TOKENIZER.decode(ids[:len(ids) // 3], strict=False)
    uses = track_report(score, idea=cut, whole=whole, bars="bars 1-2")
    piano, drums = uses[0], uses[3]
    assert "(the idea's token limit cut the rest)" in piano.why or "(the idea's token limit cut the rest)" in drums.why
    assert all("bars 1-2" in use.why for use in (piano, drums))


def _nearest(kind: TokenType, value: float) -> int:
    return int(TOKENIZER.vocab.first_id(kind) + np.abs(TOKENIZER.vocab.values(kind) - value).argmin())


VELOCITY = {drums: int(TOKENIZER.vocab.value_of[_nearest(TokenType.VELOCITY, 100 if drums else 50)])
            for drums in (False, True)}


def _fake_fill(drums: bool, compositions: list, levels: list) -> list:
    """Slots filled with a value that names the part: velocity near 100 for drums, 50 for the rest."""
    out = []
    for ids in compositions:
        assert has_drums(ids, TOKENIZER) == ((not drums), drums)  # each part alone
        slotted = TOKENIZER.add_performance_slots(ids)
        kinds = performance_slot_kinds(slotted, TOKENIZER)
        velocity = _nearest(TokenType.VELOCITY, 100 if drums else 50)
        timing = _nearest(TokenType.MICROTIMING, 2 if drums else -1)
        slotted[kinds == VELOCITY_SLOT] = velocity
        slotted[kinds == MICROTIMING_SLOT] = timing
        out.append(slotted)
    return out


def test_drums_are_performed_apart_and_every_composition_token_stays():
    composition = composition_view(TOKENIZER.encode(_band()), TOKENIZER)
    pitched, drums = split_drums(composition, TOKENIZER, "composition")
    assert has_drums(pitched, TOKENIZER) == (True, False) and has_drums(drums, TOKENIZER) == (False, True)
    only_piano = composition_view(TOKENIZER.encode(make_score(Q, tracks=[(0, False, [(0, Q, 60, 80)])])), TOKENIZER)
    performed = fill_by_part(_fake_fill, [composition, only_piano], TOKENIZER, [50, 50], [100, 100])
    for ids, source in zip(performed, (composition, only_piano)):
        np.testing.assert_array_equal(composition_view(ids, TOKENIZER), source)
        assert TOKENIZER.decode(ids).note_num() == TOKENIZER.decode(source, view="composition").note_num()
    score = TOKENIZER.decode(performed[0])
    for track in score.tracks:
        velocities = track.notes.numpy()["velocity"].astype(int)
        assert set(velocities) == {VELOCITY[bool(track.is_drum)]}
    types = TOKENIZER.token_types(performed[0])
    assert not (performed[0] == MASK_ID).any()  # every slot filled, pedals' too
    assert (types == TokenType.MICROTIMING).sum() == (np.isin(types, (TokenType.PITCH, TokenType.DRUM_PITCH,
                                                                     TokenType.PEDAL))).sum()
    assert len(piece_velocities(performed[1], TOKENIZER)) == 1
