"""The Performer: fills the masked MicroTiming and Velocity slots of a PerTok sequence.

`slots` (where the slots are, random masks, the dynamic level, windows), `model` (the
bidirectional transformer and the per-type logit restriction), `task` (the `training.Task`),
`perform` (iterative, window-by-window inference).
"""
from performer.model import Performer, restrict_logits
from performer.perform import (GREEDY, PerformanceFiller, hold_level, performance_slot_kinds,
                               reveal_schedule)
from performer.slots import (LEVEL_SLOT, MICROTIMING_SLOT, NO_SLOT, VELOCITY_SLOT, level_id,
                             mask_slots, masked_slot_kinds, piece_velocities, random_mask,
                             slot_kinds, windows)
from performer.task import PerformanceSampler, PerformerTask, window_example

__all__ = ["Performer", "restrict_logits", "GREEDY", "PerformanceFiller", "hold_level",
           "performance_slot_kinds", "reveal_schedule", "LEVEL_SLOT", "MICROTIMING_SLOT", "NO_SLOT", "VELOCITY_SLOT",
           "level_id", "mask_slots", "masked_slot_kinds", "piece_velocities", "random_mask",
           "slot_kinds", "windows", "PerformanceSampler", "PerformerTask", "window_example"]
