"""Test-wide setup: fake CPU devices for the sharding tests, set before jax is imported."""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402

# The files that take the longest (half a minute to three minutes on two cores), in that order,
# run first: with a worker per core (pytest.ini) the long ones start at once and the short ones
# fill in beside them, so the suite does not wait on a long file that started last.
LONGEST_FIRST = ("tests/test_readme_walk.py", "tests/training/test_runs.py", "tests/test_cadenza.py",
                 "tests/test_ablate.py", "tests/training/test_failures.py", "tests/test_lowering.py",
                 "tests/training/test_heldout.py", "tests/perceivers/test_task.py", "tests/test_experiments.py")


def pytest_collection_modifyitems(config, items):
    missing = [path for path in LONGEST_FIRST if not (config.rootpath / path).is_file()]
    if missing:
        raise pytest.UsageError(f"tests/conftest.py LONGEST_FIRST names files that do not exist: {missing}")
    rank = {path: k for k, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable: the rest keep their order

_approx = pytest.approx


def _reject_jax(value, role: str) -> None:
    """pytest >= 9.2's approx reads `.flat`, which JAX arrays lack: refuse them by name instead."""
    values = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else [value]
    for item in values:
        if type(item).__module__.split(".")[0] in ("jax", "jaxlib"):
            raise TypeError(f"pytest.approx got a JAX array as its {role}: compare float(x) or "
                            f"np.asarray(x) (pytest 9.2's approx fails on JAX arrays)")


class _NoJaxApprox:
    """pytest.approx's result, refusing a JAX array on the other side of `==`."""

    __array_ufunc__ = None  # numpy defers to __eq__ here, as it does for approx itself
    __array_priority__ = 100
    __hash__ = None

    def __init__(self, inner):
        self.inner = inner

    def __eq__(self, actual):
        _reject_jax(actual, "compared value")
        return self.inner == actual

    def __ne__(self, actual):
        return not self == actual

    def __repr__(self) -> str:
        return repr(self.inner)


def _no_jax_approx(expected, *args, **kwargs):
    _reject_jax(expected, "expected value")
    return _NoJaxApprox(_approx(expected, *args, **kwargs))


pytest.approx = _no_jax_approx  # every test module calls pytest.approx(...), looked up at call time
