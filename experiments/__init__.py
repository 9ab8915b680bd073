"""Entry points: `experiments.main` (train/eval), `experiments.sweep`, `experiments.plot`."""
