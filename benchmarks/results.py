"""Results pages: what a benchmark printed, written under `docs/results/` with its provenance.

A number goes into the docs only through a page a command wrote. Every benchmark takes
`--results PATH`; `recorded(PATH, title)` then keeps everything the benchmark prints and, when it
finishes without an error, writes PATH: a header with the exact command line, the commit (and
whether the tree had uncommitted changes), the machine, the date and the run time, then the
printed text (markdown tables as tables, other lines as text blocks, the last JSON line last).
A run that fails writes nothing, so a page is never half a measurement.
"""
from __future__ import annotations

import contextlib
import io
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[1]
HEADER_FIELDS = ("command", "commit", "machine", "date")


class _Tee(io.TextIOBase):
    """Writes through to the real stdout and keeps a copy."""

    def __init__(self, stream):
        self.stream, self.kept = stream, io.StringIO()

    def write(self, text: str) -> int:
        self.kept.write(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def commit() -> str:
    """The checked-out commit, and whether tracked files differ from it."""
    head = _git("rev-parse", "--short=12", "HEAD") or "unknown (not a git checkout)"
    # Results pages themselves are what benchmarks write: a run after another is still clean.
    dirty = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)docs/results")
    return f"{head} (with uncommitted changes)" if dirty else head


def machine() -> str:
    """OS, CPU model, cores and the load average: shared machines are noisy, so say how busy."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", load average {:.2f}".format(os.getloadavg()[0]) if hasattr(os, "getloadavg") else ""
    return f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} cores{load}"


def command_line(argv: list[str] | None = None) -> str:
    """The command as a user would type it from the repository root."""
    argv = list(sys.argv if argv is None else argv)
    script = Path(argv[0])
    if script.suffix == ".py" and script.exists():
        try:
            argv[0] = str(script.resolve().relative_to(REPO))
        except ValueError:
            pass
        return "python " + shlex.join(argv)
    return shlex.join(argv)


def header(title: str, argv: list[str] | None, seconds: float) -> str:
    return "\n".join([
        f"# {title}", "",
        "Written by the command below; do not edit by hand, run it again.", "",
        f"- command: `{command_line(argv)}`",
        f"- commit: {commit()}",
        f"- machine: {machine()}",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} (the run took {seconds:.0f} s)",
        f"- versions: Python {platform.python_version()}" + "".join(
            f", {name} {sys.modules[name].__version__}" for name in ("numpy", "symusic", "jax", "flax")
            if name in sys.modules and hasattr(sys.modules[name], "__version__")),
        ""])


def body(printed: str) -> str:
    """Printed text as markdown: tables kept, runs of other lines in text blocks, progress lines
    (carriage returns) dropped, the final JSON line in a block of its own."""
    lines = [line.rsplit("\r", 1)[-1].rstrip() for line in printed.split("\n")]  # (splitlines splits at \r)
    blocks, text = [], []

    def flush_text() -> None:
        while text and not text[-1]:
            text.pop()
        if any(text):
            blocks.append("```text\n" + "\n".join(text) + "\n```")
        text.clear()

    table: list[str] = []
    for line in lines:
        if line.startswith("|"):
            flush_text()
            table.append(line)
            continue
        if table:
            blocks.append("\n".join(table))
            table = []
        if line.startswith("{") and line.endswith("}"):
            flush_text()
            blocks.append("Machine-readable (the last line the command printed):\n\n```json\n" + line + "\n```")
        elif line or text:
            text.append(line)
    if table:
        blocks.append("\n".join(table))
    flush_text()
    return "\n\n".join(blocks) + "\n"


@contextlib.contextmanager
def recorded(path: str | os.PathLike | None, title: str, argv: list[str] | None = None) -> Iterator[None]:
    """Keep what the block prints; on success write it to `path` as a results page (None: only print)."""
    if path is None:
        yield
        return
    start, tee = time.perf_counter(), _Tee(sys.stdout)
    with contextlib.redirect_stdout(tee):
        yield
    page = header(title, argv, time.perf_counter() - start) + "\n" + body(tee.kept.getvalue())
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(page)
    print(f"results page: {path}", file=sys.stderr)


def add_argument(parser) -> None:
    """The `--results PATH` flag every benchmark takes."""
    parser.add_argument("--results", default=None, metavar="PATH",
                        help="also write what this run prints, with its command, commit, machine and date, "
                             "as a markdown page (e.g. docs/results/NAME.md)")
