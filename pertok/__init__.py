"""PerTok: expressive MIDI tokenization (composition and performance kept apart).

    from pertok import PerTok, PerTokConfig
    tok = PerTok(PerTokConfig())
    ids = tok.encode("song.mid")
    score = tok.decode(ids)

The tokenizer's core is this folder's top level, in the order a note travels:

    config, vocab, errors      what the tokens are: grids, bins, ids, token types
    timing                     bars from the meter map; snapping onsets, durations, velocities
    events                     EventTable / TableBatch: the quantized piece as NumPy columns
    quantize                   Scores -> TableBatch (the projection tokens can hold)
    encode                     TableBatch -> ids
    decode, decode_fast,       ids -> TableBatch (the full rule checks; the fast proof for
      decode_tokens, segments    grammatical batches; token tables; per-piece running sums)
    render                     TableBatch -> Scores
    batch, tokenizer           many files at once (load, chunk, collect errors); the PerTok API
    grammar                    the decoding rules as an automaton, for constrained sampling
    cli                        `python -m pertok ...`

Three sub-packages use the core and are not part of it: `pertok.align` (beat alignment of
performances), `pertok.store` (a folder tokenized into one memory-mapped array) and
`pertok.synthetic` (the built-in corpus generator, which imports nothing of the core).
"""
from pertok.config import PerTokConfig
from pertok.decode import DecodeReport
from pertok.errors import (EmptyScoreError, InvalidScoreError, MidiFileNotFoundError, MidiParseError,
                           PerTokConfigError, PerTokDecodeError, PerTokError)
from pertok.tokenizer import PerTok, load_score
from pertok.vocab import TokenType

__all__ = [
    "PerTok", "PerTokConfig", "DecodeReport", "TokenType", "load_score", "PerTokError",
    "PerTokConfigError", "PerTokDecodeError", "MidiFileNotFoundError", "MidiParseError",
    "EmptyScoreError", "InvalidScoreError",
]
