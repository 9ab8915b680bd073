"""AdamW with linear warmup, cosine decay and gradient clipping."""
from __future__ import annotations

import jax
import optax


def learning_rate_schedule(train) -> optax.Schedule:
    """Linear warmup to `learning_rate`, then cosine decay to `learning_rate * end_lr_fraction`."""
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=train.learning_rate,
        warmup_steps=train.warmup_steps,
        decay_steps=max(train.steps, train.warmup_steps + 1),
        end_value=train.learning_rate * train.end_lr_fraction,
    )


def make_optimizer(train) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """(optimizer, schedule) from the `train` config block."""
    schedule = learning_rate_schedule(train)
    transforms = []
    if train.grad_clip > 0:
        transforms.append(optax.clip_by_global_norm(train.grad_clip))
    transforms.append(optax.adamw(schedule, b1=train.b1, b2=train.b2,
                                  weight_decay=train.weight_decay, mask=_matrices))
    return optax.chain(*transforms), schedule


def _matrices(params):
    """Decay weight matrices only, never biases, scales or other vectors."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)
