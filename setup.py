"""Install the expressive symbolic music codebase (PerTok, Cadenza, PerceiverS)."""
from setuptools import find_packages, setup

setup(
    name="expressive-music",
    version="0.1.0",
    description="PerTok tokenizer, Cadenza (Composer VAE + Performer) and PerceiverS in JAX/Flax",
    python_requires=">=3.11",
    packages=find_packages(include=[
        "pertok*", "layers*", "training*", "baseline*", "composer*", "performer*",
        "perceivers*", "evaluation*", "experiments*", "benchmarks*", "cadenza*",
    ]),
    # Lower bounds checked together on Python 3.11 (jax 0.10.2, flax 0.12.8, optax 0.2.8,
    # orbax-checkpoint 0.12.8, numpy 2.4, symusic 0.6.0, ml_collections 1.1.0, absl-py 2.5).
    install_requires=[
        "jax>=0.8",
        "flax>=0.12",
        "optax>=0.2.6",
        "orbax-checkpoint>=0.12",
        "numpy>=2.0",
        "symusic>=0.6",
        "ml_collections>=1.1",
        "absl-py>=2.1",
        # PNG plots the issues ask for: training curves, evaluation densities, piano rolls.
        "matplotlib>=3.8",
    ],
    extras_require={
        # pytest-xdist: the suite runs a worker per core (pytest.ini), which keeps CI on two cores
        # near ten minutes; it is a test tool only.
        "test": ["pytest>=8", "hypothesis>=6.100", "pytest-xdist>=3.5"],
        # Only for side-by-side benchmarks against MidiTok; never imported by the core.
        "bench": ["miditok==3.1.0"],
    },
)
