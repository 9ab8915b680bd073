"""Draw a run's curves from WORKDIR/metrics.jsonl into WORKDIR/curves.png.

    python -m experiments.plot WORKDIR
"""
from __future__ import annotations

import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from training.metrics import read_metrics  # noqa: E402

PANELS = (("loss", ("loss", "valid/loss")), ("learning rate", ("learning_rate",)),
          ("gradient norm", ("grad_norm",)), ("tokens/s", ("tokens_per_s",)))


def plot(workdir: str) -> str:
    """Write WORKDIR/curves.png and return its path."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: has this run logged any steps?")
    lines = read_metrics(path)
    figure, axes = plt.subplots(1, len(PANELS), figsize=(4 * len(PANELS), 3.2))
    for ax, (title, keys) in zip(axes, PANELS):
        for key in keys:
            points = [(line["step"], line[key]) for line in lines
                      if isinstance(line.get(key), (int, float))]
            if points:
                steps, values = zip(*points)
                ax.plot(steps, values, marker="o" if key.startswith("valid/") else None,
                        markersize=3, label=key)
        ax.set_title(title)
        ax.set_xlabel("step")
        if title == "loss":
            ax.legend()
    figure.tight_layout()
    out = os.path.join(workdir, "curves.png")
    figure.savefig(out, dpi=100)
    plt.close(figure)
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m experiments.plot WORKDIR", file=sys.stderr)
        return 1
    try:
        print(plot(argv[1]))
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
