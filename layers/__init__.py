"""Attention masks and kernels, rotary embeddings, transformer blocks. Knows no music."""
from layers.attention import IMPLEMENTATIONS, attention, choose_implementation
from layers.blocks import (CrossAttentionBlock, FeedForward, MLPBlock, MultiHeadAttention,
                           SelfAttentionBlock, TransformerBlock)
from layers.cache import KVCache
from layers.masks import (attention_mask, bidirectional_mask, causal_mask, left_padding_mask,
                          padding_mask, scale_window_mask, visible)
from layers.platforms import PLATFORMS, PlatformError
from layers.rotary import apply_rotary, rotary_dim
from layers.settings import transformer_config_errors

__all__ = [
    "IMPLEMENTATIONS", "attention", "choose_implementation",
    "CrossAttentionBlock", "FeedForward", "MLPBlock", "MultiHeadAttention",
    "SelfAttentionBlock", "TransformerBlock", "KVCache",
    "attention_mask", "bidirectional_mask", "causal_mask", "left_padding_mask", "padding_mask",
    "scale_window_mask", "visible", "apply_rotary", "rotary_dim", "transformer_config_errors",
    "PLATFORMS", "PlatformError",
]
