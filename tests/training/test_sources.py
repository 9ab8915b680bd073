"""Several MIDI sources in `data.midi_dir` read as one store, and the split by folder."""
import hashlib
import os

import ml_collections
import numpy as np
import pytest

from pertok.store import StoreError, TokenStore
from pertok.synthetic import write_corpus
from training import ConfigError
from training import corpus
from training.data import MemoryPieces, content_hash, is_validation, split_pieces

PIECES = ("Bach/bwv_846", "Bach/bwv_847", "Chopin/op_10_1")  # relative folders of both sources


def _data(tmp_path, midi_dir: str, **overrides) -> ml_collections.ConfigDict:
    values = {"midi_dir": midi_dir, "beats": "none", "builtin_pieces": 2,
              "cache_dir": str(tmp_path / "cache"), "store_dir": "", "store_workers": 1,
              "valid_fraction": 0.5, "split": "file"}
    values.update(overrides)
    return ml_collections.ConfigDict(values)


@pytest.fixture
def sources(tmp_path):
    """ASAP's layout in miniature: performances (two per piece) and scores, same folders."""
    performances, scores = tmp_path / "performances", tmp_path / "scores"
    for index, folder in enumerate(PIECES):
        write_corpus(performances / folder, 2, seed=1 + index)
        write_corpus(scores / folder, 1, seed=10 + index)
    write_corpus(performances, 1, seed=20)  # a loose file at the top of a source
    return str(performances), str(scores)


def test_sources_concatenate_the_separate_stores_in_order(tmp_path, sources):
    performances, scores = sources
    single = [corpus.open_store(_data(tmp_path, name)) for name in (performances, scores, "builtin")]
    joined = corpus.open_store(_data(tmp_path, f"{performances}, {scores} ,builtin"))
    assert [str(store.path) for store in joined.stores] == [str(store.path) for store in single]
    assert len(joined) == sum(len(store) for store in single) == 7 + 3 + 2
    assert joined.files == [f for store in single for f in store.files]
    assert joined.files[0].startswith("Bach/bwv_846/piece_0000_")  # relative to its own folder
    builtin_dir = os.path.join(tmp_path, "cache", "builtin-2")
    index = 0
    for store, folder in zip(single, (performances, scores, builtin_dir)):
        for local in range(len(store)):
            np.testing.assert_array_equal(joined.piece(index), store.piece(local))
            assert joined.source_of(index) == folder
            assert corpus.piece_source(joined, index, _data(tmp_path, "")) == folder
            assert os.path.isfile(os.path.join(folder, joined.files[index]))
            index += 1
    np.testing.assert_array_equal(joined.lengths(), np.concatenate([s.lengths() for s in single]))
    assert joined.tokenizer.vocab_size == single[0].tokenizer.vocab_size
    assert joined.meta["counts"]["pieces"] == 12 and "sources      3" in joined.summary()
    train, valid = split_pieces(joined, 0.5)
    np.testing.assert_array_equal(train.lengths(), joined.lengths()[train.indices])
    again = corpus.open_store(_data(tmp_path, f"{performances},{scores},builtin"))
    assert content_hash(joined) == content_hash(again)
    assert content_hash(joined) not in {content_hash(store) for store in single}
    reordered = corpus.open_store(_data(tmp_path, f"{scores},{performances},builtin"))
    assert content_hash(reordered) != content_hash(joined)


def test_one_source_is_todays_store(tmp_path, sources):
    performances, _ = sources
    store = corpus.open_store(_data(tmp_path, performances))
    tag = hashlib.sha256(os.path.abspath(performances).encode()).hexdigest()[:10]  # beats=none
    assert isinstance(store, TokenStore)
    assert str(store.path) == os.path.join(tmp_path, "cache", "stores", f"performances-{tag}")
    builtin = os.path.join(tmp_path, "cache", "builtin-2")
    key = f"{os.path.abspath(builtin)}|beats=auto"  # the default beat mode names the entry
    expected = os.path.join(tmp_path, "cache", "stores",
                            f"builtin-2-{hashlib.sha256(key.encode()).hexdigest()[:10]}")
    for name in ("", "builtin", " builtin "):
        data = _data(tmp_path, name, beats="auto")
        assert str(corpus.open_store(data).path) == expected
        assert corpus.resolve_midi_dir(data) == builtin


def test_top_split_keeps_each_performer_on_one_side():
    files = [f"drummer{d}/session{s}/{k}_beat.mid" for d in range(12) for s in range(3) for k in range(4)]
    store = MemoryPieces([np.zeros(1, np.uint16)] * len(files), files)
    train, valid = split_pieces(store, 0.3, "top")
    held = {file.split("/")[0] for file in valid.files}
    assert held and held.isdisjoint(file.split("/")[0] for file in train.files)
    assert held == {f"drummer{d}" for d in range(12) if is_validation(f"drummer{d}", 0.3)}
    assert len(train) + len(valid) == len(files)

def test_folder_split_keeps_a_folder_on_one_side_and_file_split_is_unchanged():
    folders = [f"composer_{i}/piece_{j}" for i in range(5) for j in range(8)]
    files = [f"{folder}/{name}.mid" for folder in folders for name in ("score", "perf_a", "perf_b")]
    files += [f"loose_{k}.mid" for k in range(40)]
    store = MemoryPieces([np.zeros(1, np.uint16)] * len(files), files)
    train, valid = split_pieces(store, 0.3, "folder")
    side = {}
    for view, held_out in ((train, False), (valid, True)):
        for file in view.files:
            side.setdefault(os.path.dirname(file) or file, set()).add(held_out)
    assert all(len(sides) == 1 for sides in side.values())
    assert sum(held_out for (held_out,) in side.values()) not in (0, len(side))  # both sides used
    loose = [f for f in files if "/" not in f]  # a loose file is split on its own
    assert [f for f in valid.files if "/" not in f] == [f for f in loose if is_validation(f, 0.3)]
    old = np.flatnonzero([is_validation(f, 0.3) for f in files])
    for view in (split_pieces(store, 0.3)[1], split_pieces(store, 0.3, "file")[1]):
        np.testing.assert_array_equal(view.indices, old)
    assert list(split_pieces(store, 0.3, "file")[1].indices) != list(valid.indices)
    with pytest.raises(ValueError, match="'piece'.*file, folder"):
        split_pieces(store, 0.3, "piece")


def test_folder_split_puts_a_score_beside_its_performances(tmp_path, sources):
    performances, scores = sources
    joined = corpus.open_store(_data(tmp_path, f"{performances},{scores}", split="folder"))
    train, valid = split_pieces(joined, 0.5, corpus.split_mode(_data(tmp_path, "", split="folder")))
    _, by_file = split_pieces(joined, 0.5, "file")

    def sides(view, piece):
        return {index in view.indices for index, f in enumerate(joined.files) if f.startswith(piece)}

    assert all(len(sides(valid, piece)) == 1 for piece in PIECES)  # performances and score together
    assert any(len(sides(by_file, piece)) == 2 for piece in PIECES)  # the leak "folder" closes


def test_split_mode_defaults_to_file_and_refuses_others(tmp_path):
    assert corpus.split_mode(ml_collections.ConfigDict({"midi_dir": ""})) == "file"
    with pytest.raises(ConfigError, match="data.split='pieces'"):
        corpus.open_store(_data(tmp_path, "", split="pieces"))
    assert not os.path.exists(tmp_path / "cache")  # refused before anything was built


def test_bad_sources_are_one_clear_error(tmp_path, sources):
    performances, scores = sources
    missing = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=f"'{missing}' is not a directory"):
        corpus.open_store(_data(tmp_path, f"{performances},{missing}"))
    with pytest.raises(FileNotFoundError, match=f"data.midi_dir='{missing}' is not a directory"):
        corpus.open_store(_data(tmp_path, missing))
    assert not os.path.exists(tmp_path / "cache")  # refused before any store was built
    for twice in (f"{performances},{scores},{performances}/", "builtin,builtin"):
        with pytest.raises(ConfigError, match="twice"):
            corpus.open_store(_data(tmp_path, twice))
    with pytest.raises(ConfigError, match="data.store_dir"):
        corpus.open_store(_data(tmp_path, f"{performances},{scores}", store_dir=str(tmp_path / "s")))
    stores = [corpus.open_store(_data(tmp_path, name)) for name in (performances, scores)]
    stores[1].meta["config_hash"] = "another"
    with pytest.raises(StoreError, match=f"{scores} \\(config another\\)"):
        corpus.SourceStores(stores, [performances, scores])


def test_the_trainer_reads_two_folders_split_by_folder(tmp_path, sources):
    """The trainer's data path on two sources (a real 2-step run compiles for ~15 s: see the
    report; the step itself does not depend on where the pieces came from)."""
    from baseline import LMTask
    from tests.training.tiny import make_trainer, tiny_config

    performances, scores = sources
    config = tiny_config(**{"data.split": "folder", "data.midi_dir": f"{performances},{scores}",
                            "data.beats": "none", "data.cache_dir": str(tmp_path / "cache"),
                            "data.store_workers": 1, "data.valid_fraction": 0.3})
    store = corpus.open_store(config.data)
    task = LMTask(config.model, store.tokenizer.vocab_size, config.model.context_length)
    trainer = make_trainer(config, str(tmp_path / "run"), pieces=store, task=task)
    try:
        train, valid = split_pieces(store, 0.3, "folder")
        assert trainer.train_data.sampler.pieces.files == train.files
        assert trainer.valid_data.sampler.pieces.files == valid.files and len(valid) > 0
        assert trainer.data_hash == content_hash(store)
        batch = trainer.host_batch(0)
        assert batch["inputs"].shape == (1, 8, 16)
        assert batch["inputs"].max() < store.tokenizer.vocab_size
    finally:
        trainer.close()


def test_the_sample_report_links_each_held_out_piece_from_its_own_source(tmp_path, sources):
    from experiments.sample_report import report_samples

    performances, scores = sources
    config = ml_collections.ConfigDict({"data": _data(tmp_path, f"{performances},{scores},builtin",
                                                      split="folder")})
    store = corpus.open_store(config.data)
    write_corpus(tmp_path / "run" / "samples", 3, seed=9)
    report_samples(config, str(tmp_path / "run"), store)
    _, valid = split_pieces(store, 0.5, "folder")
    links = {int(p.name[:6]): p for p in (tmp_path / "run" / "eval" / "reference").iterdir()}
    assert sorted(links) == sorted(valid.indices) and {store.source_of(i) for i in links} != {performances}
    for index, link in links.items():
        assert os.readlink(link) == os.path.realpath(os.path.join(store.source_of(index), store.files[index]))
        assert os.path.isfile(link)
