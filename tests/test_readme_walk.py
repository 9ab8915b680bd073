"""Walk the documentation: every command line in the ```bash blocks of README.md and of each
`docs/` page runs from a fresh state, in the order of PAGES, at tiny sizes (few steps, few
tokens, the built-in corpus).

The commands are read from the pages themselves, so a command that is documented and broken
fails here. Placeholders (IN.mid, song.mid, DIR, ...) become small generated files, also as
the value of a `--flag=VALUE`; `[optional]` parts are dropped; real-data folders
(../shared/midi) become a generated folder; a run's size is shrunk with `--config.` overrides
appended to the documented line, and a `small`/`base` run is only checked (`--mode=check`).
Nothing runs twice: a command equal to an earlier one after these rewrites is skipped, so a
page may repeat a README command. Benchmarks are left out: they measure real data (and
MidiTok, an optional extra) and are not part of a user's path.

The pages are walked in one order, README first, because a later page may use what an earlier
one made: the README trains `runs/composer-tiny` and `runs/performer-tiny` before its
`--mode=vary`, and `docs/cadenza.md` varies with them again. Commands that use no earlier
command's runs (the musician's `python -m cadenza` lines over the shipped models, and the
tokenizer, training and evaluation pages) walk beside them, in a folder of their own: two
sequences on two cores.

A fast test checks every relative link of the same pages: the file (and heading) must exist,
except under `docs/results/`, whose pages the benchmarks write; a link there must name one of
RESULTS.
"""
from __future__ import annotations

import concurrent.futures
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# The walk's order: the README's paths first, then each part's page; every docs/*.md is here.
PAGES = ("README.md", "docs/tokenizer.md", "docs/training.md", "docs/perceivers.md",
         "docs/cadenza.md", "docs/evaluation.md", "docs/layers.md", "docs/benchmarks.md")

# The results pages that the benchmarks write under docs/results/ (`--results PATH`); the docs
# may link one before a run has written it.
RESULTS = ("alignment.md", "tokenizer.md", "tokenizer_compactness.md", "attention_cpu.md", "sampling.md",
           "train_step_cpu.md", "evaluation_asap_halves.md", "cadenza_heldout22.md", "cadenza_heldout22_shipped.md",
           "ablation_perceivers_small.md", "composer_variations_heldout22.md", "performer_style_groove.md",
           "grid_check.md", "performer_final18.md", "performer_3k_heldout22.md", "performer_6k_heldout22.md",
           "performer_6k_final18.md", "performer_shipped_final18.md",
           "composer_final18.md", "ablation_perceivers_small.png")

# Appended to every documented `experiments.main` line: sizes a 2-core CI machine runs in seconds.
SHRINK = {
    "train": ["--config.train.steps=4", "--config.train.warmup_steps=1", "--config.train.log_every=2", "--config.eval.every=4",
              "--config.eval.batches=1", "--config.checkpoint.every=4", "--config.data.builtin_pieces=8",
              "--config.data.valid_fraction=0.5"],
    "eval": ["--config.eval.batches=1", "--config.data.builtin_pieces=8", "--config.data.valid_fraction=0.5"],
    "generate:perceivers": ["--config.sample.num_tokens=24"],
    "generate:lm": ["--config.sample.num_tokens=24"],
    "generate:cadenza": ["--config.generate.num_ideas=2"],
    "vary:cadenza": ["--config.vary.num_variations=1"],
}


def readme_commands(readme: str) -> list[str]:
    """The shell commands of a page's bash blocks, continuations joined, `&&` split."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", readme, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("#"):  # a line of example output
                continue
            commands += [part.strip() for part in line.split("&&") if part.strip()]
    return commands


def page_commands() -> list[tuple[str, str]]:
    """(page, command) of every page in PAGES, in walking order."""
    return [(page, command) for page in PAGES
            for command in readme_commands((REPO / page).read_text())]


class Walk:
    """Rewrites the pages' lines for a temporary folder and runs them in order."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self.midi = tmp / "midi"  # a few built-in pieces stand in for every MIDI placeholder
        self.seen: set[str] = set()
        subprocess.run([sys.executable, "-m", "pertok.synthetic", "--out", str(self.midi),
                        "--num_pieces", "4"], check=True, cwd=REPO, capture_output=True)
        first = sorted(self.midi.glob("*.mid"))[0]
        annotations = tmp / "beats_annotations.txt"  # ASAP format: a beat each 0.5 s, 4/4
        annotations.write_text("".join(
            f"{0.5 * k:.6f}\t{0.5 * k:.6f}\t{('db,4/4,0' if k == 0 else 'db') if k % 4 == 0 else 'b'}\n"
            for k in range(400)))
        self.placeholders = {
            "IN.mid": str(first), "INPUT.mid": str(first), "VARIATION.mid": str(first),
            "song.mid": str(first),
            "OUT.json": str(tmp / "tokens.json"), "IN.json": str(tmp / "tokens.json"),
            "OUT.mid": str(tmp / "out.mid"), "DIR": str(self.midi), "STORE": str(tmp / "store"),
            "ALIGNED_STORE": str(tmp / "aligned_store"),
            "GEN_DIR": str(self.midi), "REF_DIR": str(self.midi), "OUTDIR": str(tmp / "report"),
            "CFG.json": str(tmp / "store" / "tokenizer.json"), "IN_annotations.txt": str(annotations), "N": "4", "S": "1",
        }

    def rewrite(self, command: str) -> list[str] | None:
        """The argv to run for a documented line, or None when there is nothing (new) to run."""
        command = re.sub(r"\s\[[^\]]*\]", "", command)  # optional parts
        command = re.sub(r"(?<![\w/.-])(runs/|/tmp/)",
                         lambda m: f"{self.tmp}/{'runs/' if m.group(1) == 'runs/' else ''}", command)
        command = re.sub(r"\.\./shared/midi/\S*", str(self.midi), command)
        command = command.replace("builtin-64", "builtin-8")
        argv = [self._placeholder(word) for word in shlex.split(command)]
        if argv[:1] in (["pip"], ["pytest"]):
            return None  # the install is CI's own first step; the tests are this run
        if any(word.startswith(("benchmarks/", "benchmarks.")) for word in argv):
            return None  # measurements on real data (and MidiTok, an optional extra)
        if argv[1:4] == ["-m", "experiments.pretrain", "export"]:
            return None  # it needs a trained `small` run and rewrites pretrained/; `check` runs
        if argv[:1] == ["python"]:
            argv[0] = sys.executable
        if argv[1:3] == ["-m", "experiments.main"]:
            spec = next(arg for arg in argv if arg.startswith("--config="))
            if not spec.endswith(":tiny"):
                # Larger variants (small, base) run the same code as tiny at other sizes: a
                # user's command line of theirs is checked, not trained.
                argv = [*(a for a in argv if not a.startswith("--mode=")), "--mode=check"]
            else:
                argv += self._shrink(argv)
        if argv[1:3] == ["-m", "experiments.ablate"]:
            # Hours of training: the walk checks that it plans its runs (tests/test_ablate.py
            # runs a tiny table end to end).
            argv = [*(a for a in argv if not a.startswith("--results")), "--list"]
        key = " ".join(argv)
        if key in self.seen:
            return None
        self.seen.add(key)
        return argv

    def _placeholder(self, word: str) -> str:
        """A placeholder word, or the placeholder value of a `--flag=VALUE`, made real. A bundled
        example (examples/NAME) is copied into the temporary folder first, so that output written
        beside it stays out of the repository."""
        if word.startswith("examples/") and (REPO / word).is_file():
            copy = self.tmp / word
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes((REPO / word).read_bytes())
            return str(copy)
        if word in self.placeholders:
            return self.placeholders[word]
        flag, equals, value = word.partition("=")
        if equals and flag.startswith("--") and value in self.placeholders:
            return f"{flag}={self.placeholders[value]}"
        return word

    def _shrink(self, argv: list[str]) -> list[str]:
        flags = dict(arg[2:].split("=", 1) for arg in argv if arg.startswith("--") and "=" in arg)
        mode = flags.get("mode", "train")
        task = Path(flags["config"].split(":")[0]).stem
        extra = [f"--config.data.cache_dir={self.tmp}/runs/cache"] if task != "cadenza" else [
            f"--config.composer_workdir={self.tmp}/runs/composer-tiny",
            f"--config.performer_workdir={self.tmp}/runs/performer-tiny"]
        return extra + SHRINK.get(f"{mode}:{task}", SHRINK.get(mode, []))

    def run(self, argv: list[str]) -> subprocess.CompletedProcess:
        # One compilation cache for the walk: a command that compiles what an earlier one did
        # (the same model at the same shapes) loads it, as a user's second command does.
        env = dict(os.environ, PYTHONPATH=str(REPO), JAX_COMPILATION_CACHE_DIR=str(self.tmp / "jax-cache"),
                   JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
        return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


# Pages whose commands use no run that another page's command made.
STANDALONE_PAGES = ("docs/tokenizer.md", "docs/training.md", "docs/evaluation.md", "docs/layers.md",
                    "docs/benchmarks.md")


def walk_sequences(commands: list[tuple[str, str]]) -> tuple[list, list]:
    """(the commands that build on each other, in page order; those that stand alone)."""
    alone = [(page, command) for page, command in commands
             if page in STANDALONE_PAGES or command.startswith("python -m cadenza ")]
    return [pair for pair in commands if pair not in alone], alone


def walk_in_order(walk: Walk, commands: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """(the commands run, a message per failure)."""
    ran, failures = [], []
    for page, command in commands:
        argv = walk.rewrite(command)
        if argv is None:
            continue
        result = walk.run(argv)
        ran.append(command)
        if result.returncode != 0 or "Traceback" in result.stderr:
            failures.append(f"{page} command failed ({result.returncode}): {command}\n"
                            f"ran: {shlex.join(argv)}\n{result.stdout[-1500:]}\n{result.stderr[-2500:]}")
    return ran, failures


@pytest.mark.slow
def test_every_documented_command_runs_in_order(tmp_path):
    commands = page_commands()
    readme = [command for page, command in commands if page == "README.md"]
    assert len(readme) >= 10 and len(commands) >= 40, "the pages' command blocks were not found"
    sequences = walk_sequences(commands)
    assert all(len(sequence) >= 10 for sequence in sequences)
    with concurrent.futures.ThreadPoolExecutor(len(sequences)) as pool:  # subprocesses: no GIL held
        walked = list(pool.map(lambda n: walk_in_order(Walk(tmp_path / f"walk{n}"), sequences[n]),
                               range(len(sequences))))
    ran = [command for commands_run, _ in walked for command in commands_run]
    failures = [failure for _, group_failures in walked for failure in group_failures]
    assert not failures, "\n\n".join(failures)
    for mode in ("--mode=eval", "--mode=generate", "--mode=vary", "--mode=check"):
        assert any(mode in c for c in ran), f"no documented command with {mode} ran"


def test_every_docs_page_is_walked():
    pages = {f"docs/{path.name}" for path in (REPO / "docs").glob("*.md")}
    assert pages == set(PAGES) - {"README.md"}, "PAGES must list every docs/*.md page"


def heading_anchors(text: str) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces to -."""
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in re.findall(r"^#+ (.*)$", re.sub(r"```.*?```", "", text, flags=re.S), re.M)}


@pytest.mark.parametrize("page", PAGES)
def test_relative_links_resolve(page):
    text = (REPO / page).read_text()
    links = re.findall(r"\[[^\]]*\]\(([^)\s]+)\)", re.sub(r"```.*?```", "", text, flags=re.S))
    bad = []
    for link in links:
        if re.match(r"[a-z]+:", link):
            continue  # http(s), mailto: not this test's to check
        path, _, anchor = link.partition("#")
        target = ((REPO / page).parent / path if path else REPO / page).resolve()
        if not target.is_relative_to(REPO):
            bad.append(f"{link}: outside the repository")
            continue
        relative = target.relative_to(REPO).as_posix()
        if relative.startswith("docs/results/"):
            if relative.removeprefix("docs/results/") not in RESULTS or anchor:
                bad.append(f"{link}: not one of the results pages {RESULTS}")
        elif not target.exists():
            bad.append(f"{link}: {relative} does not exist")
        elif anchor and anchor not in heading_anchors(target.read_text()):
            bad.append(f"{link}: {relative} has no heading #{anchor}")
    assert not bad, f"{page}: " + "; ".join(bad)


def test_the_benchmarks_page_links_every_results_page():
    """docs/benchmarks.md lists every results page (the README links it and its headlines)."""
    written = {path.name for path in (REPO / "docs" / "results").glob("*.md")}
    assert written <= set(RESULTS), f"add {sorted(written - set(RESULTS))} to RESULTS"
    listing = (REPO / "docs" / "benchmarks.md").read_text()
    missing = [name for name in sorted(written) if f"(results/{name})" not in listing]
    assert not missing, f"docs/benchmarks.md's table lacks {missing}"
    assert "(docs/benchmarks.md)" in (REPO / "README.md").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("config", ["lm", "perceivers", "composer", "performer", "cadenza"])
def test_check_mode_of_every_config(config):
    result = subprocess.run([sys.executable, "-m", "experiments.main",
                             f"--config=experiments/configs/{config}.py:tiny", "--workdir=unused",
                             "--mode=check"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "valid" in result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--config.train.steps=abc"], "invalid literal for int"),
    (["--config.train.stepz=3"], "nearest valid keys: train.steps"),
    (["--mode=vary"], "its modes: train, eval, check, generate"),
    (["--config.eval.heldout_stride=100"], "eval.heldout_stride=100 must lie in 0..64"),
    (["--config.eval.heldout_buckets=9,3"], "eval.heldout_buckets='9,3': expected increasing positive integers"),
])
def test_user_errors_are_one_line(args, message):
    result = subprocess.run([sys.executable, "-m", "experiments.main",
                             "--config=experiments/configs/lm.py:tiny", "--workdir=unused", *args],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
