"""The Composer as a `training.Task`: idea examples, the per-token ELBO and its health metrics."""
from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from composer import vae
from composer.ideas import (NOTE_HEADS, Conditions, composition_view, conditions_of, cut_ideas,
                            drop_conditions, standalone)
from composer.model import BOS_ID, PAD_ID, ComposerModel, flops_per_token
from layers import transformer_config_errors

EOS_ID = 2


def idea_example(tokens: np.ndarray, context_length: int,
                 prefix: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Encoder input [BOS, idea, EOS, PAD...], decoder input [BOS, idea, PAD...], targets
    [idea, EOS, PAD...], and with `prefix` the decoder's conditioning prefix
    (`ComposerModel.prefix_ids`).

    The encoder sees where the idea ends (its EOS, pooled into the latent the decoder predicts
    EOS from), unless the idea fills the context, which then says as much.

    Args:
      tokens: a standalone idea of at most `context_length - 1` composition tokens.
    """
    if len(tokens) > context_length - 1:
        raise ValueError(f"an idea of {len(tokens)} tokens does not fit context_length={context_length}")
    inputs = np.full(context_length, PAD_ID, np.int32)
    inputs[0], inputs[1:len(tokens) + 1] = BOS_ID, tokens
    encoder_ids = inputs.copy()
    if len(tokens) + 1 < context_length:
        encoder_ids[len(tokens) + 1] = EOS_ID
    targets = np.full(context_length, PAD_ID, np.int32)
    targets[:len(tokens)], targets[len(tokens)] = tokens, EOS_ID
    weights = (np.arange(context_length) <= len(tokens)).astype(np.float32)
    example = {"encoder_ids": encoder_ids, "decoder_inputs": inputs, "targets": targets,
               "weights": weights}
    if prefix is not None:
        example["decoder_prefix"] = np.asarray(prefix, np.int32)
    return example


class IdeaSampler:
    """Every idea of every piece (consecutive, cut at bar lines), each once per epoch.

    Ideas without a note (silent bars) are left out. With `prefix_of`, each example carries
    the decoder's prefix of the idea's conditions, each field left open with probability
    `condition_dropout` (drawn from the example's rng; none without one).
    """

    token_keys = ("encoder_ids", "decoder_inputs", "targets")

    def __init__(self, pieces, tokenizer, num_bars: int, context_length: int,
                 prefix_of: Callable[[Conditions], np.ndarray] | None = None,
                 condition_dropout: float = 0.0):
        self.pieces, self.tokenizer, self.context_length = pieces, tokenizer, context_length
        self.prefix_of, self.condition_dropout = prefix_of, condition_dropout
        self.ideas = []
        for index in range(len(pieces)):
            ids = composition_view(pieces.piece(index), tokenizer)
            types = tokenizer.token_types(ids)
            is_note = np.isin(types, NOTE_HEADS)
            self.ideas += [(index, idea) for idea in cut_ideas(ids, types, num_bars, context_length - 1)
                           if is_note[idea.start:idea.end].any()]

    def __len__(self) -> int:
        return len(self.ideas)

    def tokens(self, index: int) -> np.ndarray:
        """The standalone composition tokens of idea `index`."""
        piece, idea = self.ideas[index]
        ids = composition_view(self.pieces.piece(piece), self.tokenizer)
        return standalone(ids, self.tokenizer.token_types(ids), idea)

    def example(self, index: int, rng: np.random.Generator | None) -> dict[str, np.ndarray]:
        tokens = self.tokens(index)
        prefix = None
        if self.prefix_of is not None:
            conditions = conditions_of(tokens, self.tokenizer)
            if rng is not None and self.condition_dropout > 0:
                conditions = drop_conditions(conditions, rng, self.condition_dropout)
            prefix = self.prefix_of(conditions)
        return idea_example(tokens, self.context_length, prefix)


class ComposerTask:
    """`training.Task` for the Composer VAE.

    Loss = the per-token ELBO: reconstruction cross-entropy (mean per target token) + beta x
    (KL in nats per idea, summed over dimensions, each dimension's batch mean at least
    `kl.free_bits`) / (target tokens per idea); see `vae.per_token_kl`. Beta follows
    `vae.cyclical_beta` with `kl.cycles` cycles over the run after the warm-up, so the harness
    passes `step` (see `loss_uses_step`); evaluation uses `kl.beta_max` and also reports how
    much the latent matters: the teacher-forced cross-entropy of each held-out idea decoded
    from its own mu and from another idea's mu.

    Args:
      model: config block (context_length, d_model, encoder_layers, decoder_layers,
        max_programs, ...).
      kl: config block (beta_max, free_bits, warmup_steps, cycles, ramp_fraction).
      idea: config block (num_bars, condition_dropout).
      train_steps: length of the run, which the beta cycles divide.
    """

    loss_uses_step = True

    def __init__(self, model, kl, idea, tokenizer, train_steps: int):
        self.config, self.kl, self.idea, self.tokenizer = model, kl, idea, tokenizer
        self.num_bars, self.train_steps = idea.num_bars, train_steps
        self.context_length = model.context_length
        self.model = ComposerModel.from_config(model, tokenizer, idea.num_bars)
        self.cycle_steps = vae.cycle_steps_for(train_steps, kl.warmup_steps, kl.cycles)

    def example_batch(self, batch_size: int = 1) -> dict[str, np.ndarray]:
        """An all-padding batch of the right shapes (for init and restoring)."""
        example = idea_example(np.zeros(0, np.int32), self.context_length,
                               np.asarray(self.model.open_prefix(1))[0])
        return {k: np.repeat(v[None], batch_size, 0) for k, v in example.items()}

    def init(self, rng: jax.Array, batch: dict) -> dict:
        return self.model.init(rng, batch["encoder_ids"])

    def beta(self, step: jax.Array | None) -> jax.Array:
        if step is None:
            return jnp.float32(self.kl.beta_max)
        return vae.cyclical_beta(step, beta_max=self.kl.beta_max, warmup_steps=self.kl.warmup_steps,
                                 cycle_steps=self.cycle_steps, ramp_fraction=self.kl.ramp_fraction)

    def _token_losses(self, params, batch, z_BxKxZ, rng=None,
                      train: bool = False) -> tuple[jax.Array, jax.Array]:
        """Teacher-forced cross-entropy [B, T] of the targets decoded from z, and the logits."""
        logits_BxTxV = self.model.decode(params, batch["decoder_inputs"], z_BxKxZ, batch["decoder_prefix"],
                                         rng=rng, deterministic=not train)
        losses = optax.softmax_cross_entropy_with_integer_labels(logits_BxTxV, batch["targets"])
        return losses, logits_BxTxV

    def loss(self, params, batch, rng, train: bool, step: jax.Array | None = None):
        if train and step is None:
            raise ValueError("the Composer's KL schedule needs the training step: the harness must "
                             "call loss(..., step=state.step) for tasks with loss_uses_step")
        latent_rng, encoder_rng, decoder_rng = jax.random.split(rng, 3)
        mu_BxKxZ, logvar_BxKxZ = self.model.encode(params, batch["encoder_ids"], rng=encoder_rng,
                                                   deterministic=not train)
        z_BxKxZ = vae.reparameterize(mu_BxKxZ, logvar_BxKxZ,
                                     jax.random.normal(latent_rng, mu_BxKxZ.shape))
        losses_BxT, logits_BxTxV = self._token_losses(params, batch, z_BxKxZ, decoder_rng, train)
        weights_BxT = batch["weights"]
        tokens_B = weights_BxT.sum(axis=1)
        count = jnp.maximum(tokens_B.sum(), 1.0)
        reconstruction = (losses_BxT * weights_BxT).sum() / count
        used_BxK = self.model.latent_mask(batch["encoder_ids"])  # the latents each idea reads
        kl_BxKxZ = vae.kl_per_dimension(mu_BxKxZ, logvar_BxKxZ)
        kl_term = vae.per_token_kl(kl_BxKxZ, self.kl.free_bits, tokens_B, used_BxK)
        beta = self.beta(step)
        kl_idea = vae.idea_kl(kl_BxKxZ, used_BxK)  # nats per idea, without free bits
        kl_KxZ = vae.batch_mean_kl(kl_BxKxZ, used_BxK)
        metrics = {
            "reconstruction": reconstruction,
            "accuracy": ((logits_BxTxV.argmax(-1) == batch["targets"]) * weights_BxT).sum() / count,
            "kl": kl_idea,
            "kl_per_token": kl_idea / jnp.maximum(tokens_B.mean(), 1.0),
            "kl_dim_max": kl_KxZ.max(),
            "kl_dim_median": jnp.median(kl_KxZ[0]),  # the first latent's: every idea reads it
            "kl_dims_above_free_bits": vae.dimensions_above(kl_BxKxZ, self.kl.free_bits, used_BxK),
            "beta": beta,
        }
        if not train:
            metrics.update(self.latent_use(params, batch, mu_BxKxZ))
        return reconstruction + beta * kl_term, metrics

    def latent_use(self, params, batch, mu_BxKxZ: jax.Array) -> dict[str, jax.Array]:
        """Cross-entropy per target token decoded from each idea's own mu and from the next
        idea's mu in the batch; their gap is what the latent tells the decoder (0 = ignored)."""
        weights_BxT = batch["weights"]
        count = jnp.maximum(weights_BxT.sum(), 1.0)
        own = (self._token_losses(params, batch, mu_BxKxZ)[0] * weights_BxT).sum() / count
        other_mu_BxKxZ = jnp.roll(mu_BxKxZ, 1, axis=0)
        other = (self._token_losses(params, batch, other_mu_BxKxZ)[0] * weights_BxT).sum() / count
        return {"reconstruction_own_mu": own, "reconstruction_other_mu": other, "latent_gap": other - own}

    def sampler(self, pieces) -> IdeaSampler:
        return IdeaSampler(pieces, self.tokenizer, self.num_bars, self.context_length,
                           self.model.prefix_ids, self.idea.condition_dropout)

    def flops_per_token(self) -> float:
        return flops_per_token(self.config, self.tokenizer.vocab_size, self.context_length)

    def tokens_per_example(self) -> int:
        return self.context_length

    def validate(self) -> None:
        c, kl, errors = self.config, self.kl, transformer_config_errors(self.config)
        if c.latent_dim < 1 or c.encoder_layers < 1 or c.decoder_layers < 1:
            errors.append("model.latent_dim, model.encoder_layers and model.decoder_layers must be >= 1")
        if c.context_length < 16:
            errors.append(f"model.context_length={c.context_length} must be at least 16 (a bar or two)")
        if c.get("latents_per_bar", 0) < 0:
            errors.append(f"model.latents_per_bar={c.latents_per_bar} must be >= 0 (0 = one latent "
                          "per idea, S = one per S-th of each bar)")
        if c.max_programs < 1:
            errors.append(f"model.max_programs={c.max_programs} must be at least 1")
        if self.num_bars < 1:
            errors.append(f"idea.num_bars={self.num_bars} must be at least 1")
        if not 0 <= self.idea.condition_dropout <= 1:
            errors.append(f"idea.condition_dropout={self.idea.condition_dropout} must be in [0, 1]")
        if kl.free_bits < 0 or not 0 <= kl.beta_max <= 1:
            errors.append(f"kl.free_bits={kl.free_bits} must be >= 0 and kl.beta_max={kl.beta_max} "
                          "in [0, 1] (the per-token ELBO: 1 is the true bound)")
        if kl.warmup_steps < 0 or kl.cycles < 0 or not 0 <= kl.ramp_fraction <= 1:
            errors.append("kl.warmup_steps, kl.cycles must be >= 0 and kl.ramp_fraction in [0, 1]")
        if errors:
            raise ValueError("\n  ".join(errors))
