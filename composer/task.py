"""The Composer as a `training.Task`: idea examples, the VAE loss and its metrics."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from composer import vae
from composer.ideas import NOTE_HEADS, composition_view, cut_ideas, standalone
from composer.model import BOS_ID, PAD_ID, ComposerModel, flops_per_token
from layers import transformer_config_errors

EOS_ID = 2


def idea_example(tokens: np.ndarray, context_length: int) -> dict[str, np.ndarray]:
    """Encoder input [BOS, idea, PAD...], decoder input [BOS, idea, PAD...], targets [idea, EOS, PAD...].

    Args:
      tokens: a standalone idea of at most `context_length - 1` composition tokens.
    """
    if len(tokens) > context_length - 1:
        raise ValueError(f"an idea of {len(tokens)} tokens does not fit context_length={context_length}")
    inputs = np.full(context_length, PAD_ID, np.int32)
    inputs[0], inputs[1:len(tokens) + 1] = BOS_ID, tokens
    targets = np.full(context_length, PAD_ID, np.int32)
    targets[:len(tokens)], targets[len(tokens)] = tokens, EOS_ID
    weights = (np.arange(context_length) <= len(tokens)).astype(np.float32)
    return {"encoder_ids": inputs, "decoder_inputs": inputs.copy(), "targets": targets,
            "weights": weights}


class IdeaSampler:
    """Every idea of every piece (consecutive, cut at bar lines), each once per epoch.

    Ideas without a note (silent bars) are left out.
    """

    token_keys = ("encoder_ids", "decoder_inputs", "targets")

    def __init__(self, pieces, tokenizer, num_bars: int, context_length: int):
        self.pieces, self.tokenizer, self.context_length = pieces, tokenizer, context_length
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

    def example(self, index: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        del rng  # ideas are fixed; augmentation is the harness's
        return idea_example(self.tokens(index), self.context_length)


class ComposerTask:
    """`training.Task` for the Composer VAE.

    Loss = reconstruction cross-entropy (mean per target token) + beta x KL term, where the KL
    term is the mean over latent dimensions of max(batch-mean KL, free bits), as MuseMorphose
    scales it. Beta follows `vae.cyclical_beta` of the training step, so the harness passes
    `step` (see `loss_uses_step`); evaluation uses `kl.beta_max`.

    Args:
      model: config block (context_length, d_model, encoder_layers, decoder_layers, ...).
      kl: config block (beta_max, free_bits, warmup_steps, cycle_steps, ramp_fraction,
        active_threshold).
      num_bars: bars per idea.
    """

    loss_uses_step = True

    def __init__(self, model, kl, num_bars: int, tokenizer):
        self.config, self.kl, self.num_bars, self.tokenizer = model, kl, num_bars, tokenizer
        self.context_length = model.context_length
        self.model = ComposerModel.from_config(model, tokenizer.vocab_size)

    def example_batch(self, batch_size: int = 1) -> dict[str, np.ndarray]:
        """An all-padding batch of the right shapes (for init and restoring)."""
        example = idea_example(np.zeros(0, np.int32), self.context_length)
        return {k: np.repeat(v[None], batch_size, 0) for k, v in example.items()}

    def init(self, rng: jax.Array, batch: dict) -> dict:
        return self.model.init(rng, batch["encoder_ids"])

    def beta(self, step: jax.Array | None) -> jax.Array:
        if step is None:
            return jnp.float32(self.kl.beta_max)
        return vae.cyclical_beta(step, beta_max=self.kl.beta_max, warmup_steps=self.kl.warmup_steps,
                                 cycle_steps=self.kl.cycle_steps, ramp_fraction=self.kl.ramp_fraction)

    def loss(self, params, batch, rng, train: bool, step: jax.Array | None = None):
        if train and step is None:
            raise ValueError("the Composer's KL schedule needs the training step: the harness must "
                             "call loss(..., step=state.step) for tasks with loss_uses_step")
        latent_rng, encoder_rng, decoder_rng = jax.random.split(rng, 3)
        dropout = dict(deterministic=not train)
        mu_BxZ, logvar_BxZ = self.model.encode(params, batch["encoder_ids"], rng=encoder_rng, **dropout)
        z_BxZ = vae.reparameterize(mu_BxZ, logvar_BxZ, jax.random.normal(latent_rng, mu_BxZ.shape))
        logits_BxTxV = self.model.decode(params, batch["decoder_inputs"], z_BxZ, rng=decoder_rng,
                                         **dropout)
        targets_BxT, weights_BxT = batch["targets"], batch["weights"]
        losses_BxT = optax.softmax_cross_entropy_with_integer_labels(logits_BxTxV, targets_BxT)
        count = jnp.maximum(weights_BxT.sum(), 1.0)
        reconstruction = (losses_BxT * weights_BxT).sum() / count
        kl_BxZ = vae.kl_per_dimension(mu_BxZ, logvar_BxZ)
        kl_term = vae.free_bits_kl(kl_BxZ, self.kl.free_bits) / kl_BxZ.shape[-1]
        beta = self.beta(step)
        kl_Z = kl_BxZ.mean(axis=0)
        metrics = {
            "reconstruction": reconstruction,
            "accuracy": ((logits_BxTxV.argmax(-1) == targets_BxT) * weights_BxT).sum() / count,
            "kl": kl_Z.sum(),  # nats per idea, without free bits
            "kl_dim_max": kl_Z.max(),
            "kl_dim_median": jnp.median(kl_Z),
            "kl_dims_above_free_bits": (kl_Z > self.kl.free_bits).sum().astype(jnp.float32),
            "active_units": vae.active_units(mu_BxZ, self.kl.active_threshold),
            "beta": beta,
        }
        return reconstruction + beta * kl_term, metrics

    def sampler(self, pieces) -> IdeaSampler:
        return IdeaSampler(pieces, self.tokenizer, self.num_bars, self.context_length)

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
        if self.num_bars < 1:
            errors.append(f"idea.num_bars={self.num_bars} must be at least 1")
        if kl.free_bits < 0 or kl.beta_max < 0:
            errors.append("kl.free_bits and kl.beta_max must be >= 0")
        if kl.warmup_steps < 0 or kl.cycle_steps < 0 or not 0 <= kl.ramp_fraction <= 1:
            errors.append("kl.warmup_steps, kl.cycle_steps must be >= 0 and kl.ramp_fraction in [0, 1]")
        if errors:
            raise ValueError("\n  ".join(errors))
