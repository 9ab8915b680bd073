"""Cadenza: variations of a user's idea (or new ideas), composed by the Composer and
performed by the Performer, each trained beforehand in its own workdir.

    python -m experiments.main --mode=vary --config=experiments/configs/cadenza.py:tiny \
        --workdir=runs/cadenza --config.vary.input=IN.mid --config.vary.num_variations=4 \
        --config.vary.strength=0.5
    python -m experiments.main --mode=generate --config=experiments/configs/cadenza.py:tiny \
        --workdir=runs/cadenza --config.generate.num_ideas=4 --config.generate.time_signature=3/4

No sweep: this config trains nothing (sweep composer.py and performer.py instead).
"""
import ml_collections

from experiments.configs.harness import check_variant

VARIANTS = ("tiny", "small", "base")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Variants: `tiny`, `small` and `base` (default) point at the workdirs of the same variants."""
    variant = check_variant("cadenza.py", arg, VARIANTS)
    c = ml_collections.ConfigDict()
    c.task = "cadenza"  # experiments/tasks.py routes the vary and generate modes by it
    c.seed = 0  # latents and sampling derive from it: the same seed gives the same output
    c.composer_workdir = f"runs/composer-{variant}"  # a trained composer.py run (latest checkpoint)
    c.performer_workdir = f"runs/performer-{variant}"  # a trained performer.py run; "" = unperformed
    c.drum_performer_workdir = ""  # a performer.py run on drums (Groove) for drum tracks; "" = performer_workdir's

    c.vary = ml_collections.ConfigDict()
    c.vary.input = ""  # the MIDI file whose idea is varied (required by --mode=vary)
    c.vary.start_bar = 1  # first bar of the idea in the input, counting from 1
    c.vary.num_variations = 4  # variations written
    c.vary.strength = 0.5  # z = sqrt(1 - s^2) mu + s eps: 0 = the encoded idea, 1 = an unrelated one
    c.vary.temperature = 1.0  # softmax temperature of the Composer's tokens; 0 = greedy
    c.vary.top_p = 0.9  # nucleus sampling mass; 1 = off

    c.generate = ml_collections.ConfigDict()
    c.generate.num_ideas = 4  # ideas from the prior written by --mode=generate
    c.generate.temperature = 1.0  # softmax temperature of the Composer's tokens; 0 = greedy
    c.generate.top_p = 0.9  # nucleus sampling mass; 1 = off
    # The conditions the decoder is given before BOS, and the sampler's grammar keeps to:
    c.generate.time_signature = "4/4"  # the ideas' meter, e.g. "3/4", "6/8"; "" = any
    c.generate.programs = "0"  # comma-separated General MIDI programs or "drums", e.g. "0,33,drums"; "" = any
    c.generate.num_bars = 0  # bars per idea; 0 = the Composer's idea.num_bars

    c.perform = ml_collections.ConfigDict()
    c.perform.input = ""  # --mode=perform: the MIDI file (or folder) whose notes the Performer plays
    c.perform.temperature = 0.7  # Performer sampling temperature; 0 = most likely timing/velocity
    c.perform.rounds = 8  # rounds of iterative decoding: the most confident slots are kept first
    c.perform.velocity = 0  # dynamic level, a MIDI velocity 1-127; 0 = the input's (vary) or none
    c.perform.greedy = "median"  # temperature 0 takes each slot's "median" value or its "mode"
    c.perform.hold_level = True  # a given level sets the mean velocity (the model shapes around it)

    c.lock()
    return c
