"""PerceiverS: multi-scale Perceiver AR with effective segmentation, trained and sampled."""
from perceivers.cache import WindowCache, init_cache
from perceivers.model import (COMBINATIONS, MultiScaleCrossAttention, PerceiverS,
                              context_dropout_mask, flops_per_token)
from perceivers.sample import Decoder, SampleSettings, filter_logits, sample_tokens
from perceivers.segmentation import (SEGMENTATIONS, EffectiveSampler, FixedSampler,
                                     RandomCropSampler, make_sampler, window_example)
from perceivers.task import PerceiverSTask, build_model

__all__ = [
    "COMBINATIONS", "SEGMENTATIONS", "Decoder", "EffectiveSampler", "FixedSampler",
    "MultiScaleCrossAttention", "PerceiverS", "PerceiverSTask", "RandomCropSampler",
    "SampleSettings", "WindowCache", "build_model", "context_dropout_mask", "filter_logits",
    "flops_per_token", "init_cache", "make_sampler", "sample_tokens", "window_example",
]
