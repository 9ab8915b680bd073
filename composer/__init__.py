"""The Composer: a VAE over musical ideas (a few bars of composition-only PerTok tokens).

`vae` (KL, free bits, the per-token KL term, reparameterisation, cyclical beta: plain
functions), `model` (the bidirectional encoder and the in-attention decoder with its
conditioning prefix), `ideas` (cutting ideas at bar lines, their conditions), `task` (the
`training.Task`), `grammar` (PerTok's grammar for sampling; import it as a module),
`sample` (prior, variations, interpolation, cached decoding after the conditioning prefix,
greedy at temperature 0).
"""
from composer.ideas import (Conditions, Idea, composition_view, conditions_of, cut_ideas,
                            named_conditions, prefix_ids, select_bars, standalone)
from composer.model import ComposerModel, IdeaDecoder, IdeaEncoder
from composer.sample import (IdeaGenerator, finish_idea, prior_latents, top_p_logits,
                             variation_latents)
from composer.task import ComposerTask, IdeaSampler, idea_example
from composer.vae import (cyclical_beta, dimensions_above, free_bits_kl, interpolate,
                          kl_per_dimension, per_token_kl, reparameterize)

__all__ = [
    "Conditions", "Idea", "composition_view", "conditions_of", "cut_ideas", "named_conditions",
    "prefix_ids", "select_bars", "standalone", "ComposerModel", "IdeaDecoder", "IdeaEncoder",
    "IdeaGenerator", "finish_idea", "prior_latents",
    "top_p_logits", "variation_latents", "ComposerTask", "IdeaSampler", "idea_example",
    "cyclical_beta", "dimensions_above", "free_bits_kl", "interpolate", "kl_per_dimension",
    "per_token_kl", "reparameterize",
]
