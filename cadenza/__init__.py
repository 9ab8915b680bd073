"""The musician's command line: variations, performances and new ideas from the shipped models.

    python -m cadenza vary song.mid
    python -m cadenza perform song.mid
    python -m cadenza generate --bars 2 --meter 3/4
    python -m cadenza continue song.mid --seconds 30

It runs the `vary`, `perform` and `generate` modes of `experiments.main` with the Composer and
Performer shipped under `pretrained/`, and PerceiverS's `generate` with the shipped PerceiverS
(no training, no config flags); see `cadenza.cli`.
"""
