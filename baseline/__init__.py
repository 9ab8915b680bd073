"""A small decoder-only transformer LM over token ids: the demo task of the harness."""
from baseline.model import CausalTransformer, flops_per_token
from baseline.task import LMTask, WindowSampler

__all__ = ["CausalTransformer", "LMTask", "WindowSampler", "flops_per_token"]
