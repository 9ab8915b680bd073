"""The Composer: a VAE over musical ideas (a few bars of composition-only PerTok tokens).

`vae` (KL, free bits, reparameterisation, cyclical beta: plain functions), `model` (the
bidirectional encoder and the in-attention decoder), `ideas` (cutting ideas at bar lines),
`task` (the `training.Task`), `grammar` (PerTok's grammar for sampling), `sample` (prior,
variations, interpolation, cached decoding).
"""
from composer.ideas import Idea, composition_view, cut_ideas, select_bars, standalone
from composer.model import ComposerModel, IdeaDecoder, IdeaEncoder
from composer.grammar import GrammarState, GrammarTables
from composer.sample import (IdeaGenerator, finish_idea, prior_latents, top_p_logits,
                             variation_latents)
from composer.task import ComposerTask, IdeaSampler, idea_example
from composer.vae import (active_units, cyclical_beta, free_bits_kl, interpolate, kl_per_dimension,
                          reparameterize)

__all__ = [
    "Idea", "composition_view", "cut_ideas", "select_bars", "standalone", "ComposerModel",
    "IdeaDecoder", "IdeaEncoder", "IdeaGenerator", "GrammarState", "GrammarTables", "finish_idea",
    "prior_latents", "top_p_logits", "variation_latents", "ComposerTask", "IdeaSampler",
    "idea_example", "active_units", "cyclical_beta", "free_bits_kl", "interpolate",
    "kl_per_dimension", "reparameterize",
]
