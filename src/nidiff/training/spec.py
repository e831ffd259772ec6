"""The process description stored in every checkpoint: :class:`nidiff.spec.ProcessSpec` (the one
serialisation of a process, shared with inversion files), re-exported for the training code."""

from ..spec import NOISE_KINDS, SCHEDULE_KINDS, ProcessSpec

__all__ = ["NOISE_KINDS", "SCHEDULE_KINDS", "ProcessSpec"]
