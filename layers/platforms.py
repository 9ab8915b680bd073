"""Choosing code by the platform a program is lowered for, never by the host.

`jax.default_backend()` names the machine that traces, which is wrong for cross-lowering and
AOT export (a CPU host lowering for "cuda" or "tpu"). `by_platform` stages out one branch per
platform with `jax.lax.platform_dependent`; lowering keeps only the branch of the platform it
lowers for. A branch that cannot run on its platform is `unavailable`: it traces (so the other
branches can), and lowering it for that platform raises one clear error.
"""
from __future__ import annotations

from collections.abc import Callable

import jax
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

PLATFORMS = ("cpu", "cuda", "tpu")  # the lowering platforms `layers` has a branch for
_ALIASES = {"gpu": "cuda", "cuda": "cuda", "rocm": "rocm", "cpu": "cpu", "tpu": "tpu"}


class PlatformError(ValueError):
    """An attention implementation was asked for on a platform it does not run on."""


def platform_name(platform: str) -> str:
    """"cpu", "cuda", "rocm" or "tpu" from a backend or platform name ("gpu" means cuda)."""
    if platform not in _ALIASES:
        raise ValueError(f"platform={platform!r}; expected one of {sorted(_ALIASES)}")
    return _ALIASES[platform]


_unavailable_p = Primitive("layers_unavailable_on_platform")
_unavailable_p.def_abstract_eval(lambda x, *, message: x)
batching.defvectorized(_unavailable_p)
ad.deflinear2(_unavailable_p, lambda ct, x, *, message: [_unavailable_p.bind(ct, message=message)])


def _refuse(ctx, x, *, message):
    platforms = ", ".join(getattr(ctx.module_context, "platforms", ()) or ("?",))
    raise PlatformError(f"{message} (lowering for {platforms})")


mlir.register_lowering(_unavailable_p, _refuse)
_unavailable_p.def_impl(lambda x, *, message: jax.jit(
    lambda y: _unavailable_p.bind(y, message=message))(x))


def unavailable(like: jax.Array, message: str) -> jax.Array:
    """An array shaped like `like` whose lowering raises `PlatformError(message)`.

    Bound to `like` itself (as a linear map), so that it stays in the program under `grad`,
    whose backward pass would otherwise drop a branch that no input flows through.
    """
    return _unavailable_p.bind(like, message=message)


def by_platform(*args, cpu: Callable, cuda: Callable, tpu: Callable,
                default: Callable | None = None):
    """`branch(*args)` for the platform being lowered for (rocm and others: `default`, else
    `cpu`). Identical branches are staged out once, and a single branch needs no switch."""
    default = cpu if default is None else default
    if cpu is cuda is tpu is default:
        return cpu(*args)
    return jax.lax.platform_dependent(*args, cpu=cpu, cuda=cuda, tpu=tpu, default=default)
