"""`python -m pertok decode --lenient` refuses to write an empty MIDI file when nothing decodes."""
import json

from pertok import PerTok
from pertok.cli import main


def test_lenient_decode_that_keeps_nothing_fails_with_one_line(tmp_path, capsys):
    tokenizer = PerTok()
    names = ["Pitch_60", "Duration_960", "Bar", "Pitch_62"]  # starts mid-piece: no Bar, no Program
    ids = [tokenizer.vocab.ids[name] for name in names]
    source = tmp_path / "cut.json"
    source.write_text(json.dumps({"tokenizer": tokenizer.to_json(), "ids": ids}))
    assert main(["decode", str(source), "-o", str(tmp_path / "out.mid"), "--lenient"]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "kept no notes" in error[0] and "token 0" in error[0]
    assert not (tmp_path / "out.mid").exists()
    good = [tokenizer.vocab.ids[n] for n in ("Bar", "Program_0", "Pitch_60", "MicroTiming_0",
                                             "Velocity_66", "Duration_960")]
    source.write_text(json.dumps({"tokenizer": tokenizer.to_json(), "ids": good}))
    assert main(["decode", str(source), "-o", str(tmp_path / "out.mid"), "--lenient"]) == 0
    assert (tmp_path / "out.mid").exists()
