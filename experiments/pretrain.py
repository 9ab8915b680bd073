"""Make and check the shipped weights (`experiments.pretrained`).

    python -m experiments.pretrain export NAME --workdir=RUN [--trained_at=COMMIT] [--seconds=S] [--note=TEXT]
    python -m experiments.pretrain check [NAME ...]

`export` writes pretrained/NAME/ from the latest checkpoint of a run trained by the recipe that
`experiments.pretrained.RECIPES` names; `check` loads every shipped folder (or those named) and
says whether its hash and parameter tree match.
"""
from __future__ import annotations

import json
import sys

from experiments import pretrained
from experiments.restore import restore_latest
from pertok import PerTok


def export(name: str, workdir: str, trained_at: str = "", seconds: float | None = None, note: str = ""):
    with open(f"{workdir}/config.json") as handle:
        task_name = json.load(handle)["task"]
    _, params, config, step = restore_latest(workdir, PerTok(), task_name)
    return pretrained.write(name, params, config, step, trained_at, seconds, note)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("export", "check"):
        print("usage: python -m experiments.pretrain export NAME --workdir=RUN [--trained_at=C] [--seconds=S] "
              "| check [NAME ...]", file=sys.stderr)
        return 1
    if argv[0] == "export":
        if len(argv) < 2:
            print("pretrain: error: export needs a NAME and --workdir=RUN", file=sys.stderr)
            return 1
        flags = dict(arg[2:].split("=", 1) for arg in argv[2:] if arg.startswith("--") and "=" in arg)
        if "workdir" not in flags:
            print("pretrain: error: export needs --workdir=RUN (a trained run)", file=sys.stderr)
            return 1
        out = export(argv[1], flags["workdir"], flags.get("trained_at", ""),
                     float(flags["seconds"]) if "seconds" in flags else None, flags.get("note", ""))
        print(f"wrote {out}")
        return 0
    folders = pretrained.PRETRAINED.iterdir() if pretrained.PRETRAINED.is_dir() else []
    names = argv[1:] or sorted(path.name for path in folders if pretrained.is_pretrained(path))
    for name in names:
        manifest = json.loads((pretrained.PRETRAINED / name / "manifest.json").read_text())
        pretrained.load(pretrained.PRETRAINED / name, PerTok(), manifest["task"])
        print(f"{name}: loads; hash and parameter tree match ({manifest['parameters']:,} parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
