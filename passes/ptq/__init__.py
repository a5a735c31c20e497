"""Post-training quantization (range setting / calibration). The full PTQ suite builds on this."""

from qdeploy.passes.ptq.calibrate import calibrate

__all__ = ["calibrate"]
