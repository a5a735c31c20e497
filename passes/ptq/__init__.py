"""Post-training quantization (range setting / calibration). The full PTQ suite builds on this."""

from qdeploy.passes.ptq.calibrate import calibrate, correct_bias

__all__ = ["calibrate", "correct_bias"]
