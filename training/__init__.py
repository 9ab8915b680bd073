"""The training harness: mesh, train state, step, loop, checkpoints, data and metrics.

It knows no model: a model package implements `training.task.Task`.
"""
from training.checkpoint import CheckpointError
from training.data import Augmentation, MemoryPieces, StepSampler, split_pieces
from training.preemption import EXIT_PREEMPTED, Preempted
from training.task import Pieces, Sampler, Task
from training.trainer import Trainer, TrainingDiverged
from training.validate import ConfigError, validate

__all__ = ["Augmentation", "CheckpointError", "ConfigError", "EXIT_PREEMPTED", "MemoryPieces",
           "Pieces", "Preempted", "Sampler", "StepSampler", "Task", "Trainer", "TrainingDiverged",
           "split_pieces", "validate"]
