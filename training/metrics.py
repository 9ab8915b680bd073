"""Metrics: one JSON object per line in WORKDIR/metrics.jsonl, a progress line, and MFU."""
from __future__ import annotations

import json
import math
import os

import jax

# Dense bfloat16 peak FLOP/s per device, by a substring of `device.device_kind` (lower case).
PEAK_FLOPS = {
    "h200": 989e12,
    "h100": 989e12,
    "a100": 312e12,
    "tpu v4": 275e12,
    "tpu v5 lite": 197e12,
    "tpu v5e": 197e12,
    "tpu v5p": 459e12,
    "tpu v5": 459e12,
}


def peak_flops_per_device(device: jax.Device | None = None) -> float | None:
    """Peak FLOP/s of `device` (default: the first), or None when unknown (e.g. CPU)."""
    kind = (device or jax.devices()[0]).device_kind.lower()
    for name, flops in PEAK_FLOPS.items():
        if name in kind:
            return flops
    return None


def mfu(flops_per_token: float | None, tokens_per_s: float, num_devices: int,
        peak_per_device: float | None) -> float | None:
    """Model FLOPs utilisation: achieved FLOP/s over the peak of all devices."""
    if not flops_per_token or not peak_per_device:
        return None
    return flops_per_token * tokens_per_s / (peak_per_device * num_devices)


class MetricsWriter:
    """Appends JSON lines; on resume, drops lines of steps that will be trained again."""

    def __init__(self, workdir: str, resume_step: int | None = 0, enabled: bool = True):
        """Args: resume_step: drop lines after this step (None keeps every line)."""
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.enabled = enabled
        if enabled and resume_step is not None and os.path.exists(self.path):
            kept = [line for line in read_metrics(self.path) if line.get("step", 0) <= resume_step]
            # A new file renamed over the old one: a kill at any moment leaves one or the other.
            partial = f"{self.path}.tmp-{os.getpid()}"
            with open(partial, "w") as f:
                f.writelines(json.dumps(line) + "\n" for line in kept)
                f.flush()
                os.fsync(f.fileno())
            os.replace(partial, self.path)

    def write(self, step: int, values: dict) -> None:
        if not self.enabled:
            return
        line = {"step": step, **{k: _plain(v) for k, v in values.items() if v is not None}}
        with open(self.path, "a") as f:
            f.write(json.dumps(line) + "\n")

    def write_event(self, step: int, name: str, detail) -> None:
        """A line that is not a measurement, e.g. the config changes accepted on resume."""
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps({"step": step, name: detail}) + "\n")


def read_metrics(path: str) -> list[dict]:
    """All lines of a metrics.jsonl file (a torn last line is skipped)."""
    lines = []
    with open(path) as f:
        for text in f:
            try:
                lines.append(json.loads(text))
            except json.JSONDecodeError:
                continue
    return lines


def progress_line(step: int, total: int, loss: float, tokens_per_s: float,
                  seconds_per_step: float) -> str:
    eta = format_duration(seconds_per_step * (total - step))
    speed = f"{tokens_per_s:,.0f} tokens/s" if math.isfinite(tokens_per_s) else "? tokens/s"
    per_step = f"{seconds_per_step * 1e3:.1f} ms/step" if math.isfinite(seconds_per_step) else "? ms/step"
    return f"step {step}/{total} | loss {loss:.4f} | {speed} | {per_step} | ETA {eta}"


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _plain(value):
    """JSON-able scalar: NaN and Inf written as strings so the file stays strict JSON."""
    value = float(value) if not isinstance(value, (int, str)) else value
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
