"""`python -m cadenza`: Cadenza with the shipped models, for a MIDI file of one's own.

    python -m cadenza vary SONG.mid [--strength 0.5] [--variations 4] [--bars-from 1] [--out DIR]
    python -m cadenza perform SONG.mid [--velocity 0] [--out DIR]
    python -m cadenza generate [--bars 2] [--meter 4/4] [--ideas 4] [--out DIR]
    python -m cadenza continue SONG.mid [--seconds 30] [--samples 1] [--out DIR]

Output goes beside the input (SONG-cadenza/) unless --out says otherwise: the MIDI files, their
piano rolls and a summary (similarity.json, performed.json or ideas.json). Bad input is one
line, `cadenza: error: ...`, and exit status 1.

Compiled models are kept in JAX's persistent compilation cache (`$JAX_COMPILATION_CACHE_DIR`,
else, on Linux, `~/.cache/cadenza/jax-<jaxlib version>-<CPU>`), so a later command loads what an
earlier one compiled instead of compiling it again; delete the folder to drop it.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODELS = {"composer_workdir": REPO / "pretrained" / "composer-small",
          "performer_workdir": REPO / "pretrained" / "performer-small",
          "drum_performer_workdir": REPO / "pretrained" / "performer-groove"}  # drum tracks
CONTINUER = REPO / "pretrained" / "perceivers-small"  # the shipped PerceiverS
TOKENS_PER_SECOND = 48  # the median PerTok rate of ASAP's performances (docs/results/sampling.md)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cadenza", description="Variations, performances and new "
                                     "ideas from the shipped Composer and Performer (no training).")
    commands = parser.add_subparsers(dest="command", required=True)
    vary = commands.add_parser("vary", help="variations of the first bars of a MIDI file")
    vary.add_argument("input", help="a MIDI file (or a folder of them)")
    vary.add_argument("--strength", type=float, default=0.5, help="0 = the idea re-played, 1 = unrelated")
    vary.add_argument("--variations", type=int, default=4)
    vary.add_argument("--bars-from", dest="start_bar", type=int, default=1, help="first bar of the idea")
    perform = commands.add_parser("perform", help="velocity and timing for your notes, every note kept")
    perform.add_argument("input", help="a MIDI file (or a folder of them)")
    perform.add_argument("--velocity", type=int, default=0, help="dynamic level 1-127; 0 = the input's")
    generate = commands.add_parser("generate", help="new ideas from the prior")
    generate.add_argument("--bars", type=int, default=0, help="bars per idea; 0 = the Composer's 2")
    generate.add_argument("--meter", default="4/4", help='e.g. 3/4, 6/8; "" = any')
    generate.add_argument("--ideas", type=int, default=4)
    extend = commands.add_parser("continue", help="a continuation of a MIDI file by the shipped PerceiverS")
    extend.add_argument("input", help="a MIDI file")
    extend.add_argument("--seconds", type=float, default=30.0, help="about this much music after the file")
    extend.add_argument("--samples", type=int, default=1, help="continuations written")
    extend.add_argument("--prompt-tokens", dest="prompt_tokens", type=int, default=1024,
                        help="tokens of the file's opening read as the prompt (cut after a whole note)")
    for command in (vary, perform, generate, extend):
        command.add_argument("--out", default=None, help="output folder (default: beside the input)")
        command.add_argument("--seed", type=int, default=0)
    return parser


def config_for(args: argparse.Namespace):
    """The cadenza.py:small config with the shipped models and the command's settings."""
    from experiments import config_file

    config = config_file.load_config(str(REPO / "experiments" / "configs" / "cadenza.py:small"))
    with config.unlocked():
        for key, path in MODELS.items():
            config[key] = str(path)
        config.seed = args.seed
        if args.command == "vary":
            config.vary.input, config.vary.strength = args.input, args.strength
            config.vary.num_variations, config.vary.start_bar = args.variations, args.start_bar
        elif args.command == "perform":
            config.perform.input, config.perform.velocity = args.input, args.velocity
        else:
            config.generate.num_bars, config.generate.time_signature = args.bars, args.meter
            config.generate.num_ideas = args.ideas
    return config


def output_folder(args: argparse.Namespace) -> Path:
    if args.out:
        return Path(args.out)
    if args.command == "generate":
        return Path("cadenza-ideas")
    source = Path(args.input)
    return source.parent / f"{source.stem}-cadenza"


def continue_file(args: argparse.Namespace, out: Path) -> None:
    """The shipped PerceiverS continues the file: `--seconds` of music at the median rate of real
    performances (the written line gives the seconds it made)."""
    from experiments import config_file
    from experiments.perceivers import generate

    config = config_file.load_config(str(REPO / "experiments" / "configs" / "perceivers.py:small"))
    with config.unlocked():
        config.sample.prompt, config.sample.prompt_tokens = args.input, args.prompt_tokens
        config.sample.num_tokens = max(1, round(args.seconds * TOKENS_PER_SECOND))
        config.sample.num_samples, config.sample.seed = args.samples, args.seed
    generate(config, str(CONTINUER), str(out))


def use_compilation_cache() -> str | None:
    """Point JAX's persistent compilation cache at the user's cache folder, keeping every
    compilation (a musician's commands compile the same few functions each time); the folder
    or None. `$JAX_COMPILATION_CACHE_DIR` wins when set. Otherwise only on Linux, in a folder
    per jaxlib version and CPU (its model and flags), so that no entry compiled by other code
    or for another CPU is ever loaded: loading such entries is where JAX's CPU cache has
    crashed or refused (jax-ml/jax#38445)."""
    import hashlib
    import platform

    import jax
    import jaxlib

    folder = os.environ.get("JAX_COMPILATION_CACHE_DIR")
    if not folder:
        if platform.system() != "Linux" or not os.path.isfile("/proc/cpuinfo"):
            return None
        with open("/proc/cpuinfo") as handle:
            cpu = [line for line in handle if line.startswith(("model name", "flags"))][:2]
        key = hashlib.sha256("".join(cpu).encode()).hexdigest()[:12]
        folder = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "cadenza",
                              f"jax-{jaxlib.__version__}-{platform.machine()}-{key}")
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return folder


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    from absl import logging

    use_compilation_cache()

    from experiments.launch import run, user_errors

    logging.set_verbosity(logging.WARNING)  # the modes print what a musician needs
    needed = [CONTINUER] if args.command == "continue" else list(MODELS.values())
    missing = [str(path) for path in needed if not (path / "manifest.json").is_file()]
    if missing:
        print(f"cadenza: error: the shipped models are missing ({', '.join(missing)}); re-make them with "
              f"python -m experiments.pretrain export NAME --workdir=RUN", file=sys.stderr)
        return 1
    out = output_folder(args)
    try:
        if args.command == "continue":
            continue_file(args, out)
        else:
            run(config_for(args), str(out), args.command)
    except user_errors() as error:
        print(f"cadenza: error: {error}", file=sys.stderr)
        return 1
    print(f"-> {out}")
    return 0
