"""A small decoder-only transformer LM over token ids: the demo task of the harness."""
from baseline.model import CausalTransformer, flops_per_token
from baseline.sample import LMDecoder, draw_tokens
from baseline.task import LMTask, WindowSampler

__all__ = ["CausalTransformer", "LMDecoder", "LMTask", "WindowSampler", "draw_tokens",
           "flops_per_token"]
