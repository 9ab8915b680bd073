"""The built-in corpus: seeded, expressive multi-track MIDI, so every run works with no data.

A generator of music, not part of the tokenizer: it imports nothing else of `pertok` (only
numpy and symusic), and `training.corpus` is its one user besides the tests and the CLI.

- `timeline`: meters, bars, tempo map, swing and the performed time of each beat;
- `parts`: harmony and the pitched parts (piano, melody), phrase dynamics;
- `band`: the rhythm section (drum grooves, bass lines) and string pads;
- `pieces`: a seed -> a whole Score (`generate_score`), and a folder of them (`write_corpus`);
- `cli`: `python -m pertok.synthetic --out DIR --num_pieces N [--seed S]`.
"""
from pertok.synthetic.pieces import KINDS, PIECE_SEED_STRIDE, TPQ_CHOICES, generate_score, write_corpus

__all__ = ["KINDS", "PIECE_SEED_STRIDE", "TPQ_CHOICES", "generate_score", "write_corpus"]
