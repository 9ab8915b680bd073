"""The Performer: fills every MicroTiming and Velocity slot of a PerTok sequence.

`slots` (where the slots are, windows), `model` (the bidirectional transformer and the
per-type logit restriction), `task` (the `training.Task`), `perform` (inference).
"""
from performer.model import Performer, restrict_logits
from performer.perform import PerformanceFiller
from performer.slots import (MICROTIMING_SLOT, NO_SLOT, VELOCITY_SLOT, mask_slots, masked_slot_kinds,
                             slot_kinds, windows)
from performer.task import PerformanceSampler, PerformerTask, window_example

__all__ = ["Performer", "restrict_logits", "PerformanceFiller", "MICROTIMING_SLOT", "NO_SLOT",
           "VELOCITY_SLOT", "mask_slots", "masked_slot_kinds", "slot_kinds", "windows",
           "PerformanceSampler", "PerformerTask", "window_example"]
