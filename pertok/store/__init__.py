"""The token store: a folder of MIDI tokenized once into one flat memory-mapped array.

It sits above the tokenizer and the beat alignment (a build with `beats="auto"` aligns each file
that has `NAME_annotations.txt` beside it) and below training, which slices it for free:

- `token_store`: the store on disk (`TokenStore`: open, verify, read; `write_store`);
- `build`: a folder of MIDI -> a store, in parallel processes (`build_store`, `encode_files`).
"""
from pertok.store.build import MIDI_SUFFIXES, build_store, encode_files, find_midi_files, fingerprint
from pertok.store.token_store import (BEAT_MODES, STORE_FORMAT, StoreCorruptError, StoreError, TokenStore,
                                      remove_stale_partials, store_hash, summary_text, write_store)

__all__ = ["BEAT_MODES", "MIDI_SUFFIXES", "STORE_FORMAT", "StoreCorruptError", "StoreError", "TokenStore",
           "build_store", "encode_files", "find_midi_files", "fingerprint", "remove_stale_partials", "store_hash",
           "summary_text", "write_store"]
