"""Post-training quantization (range setting / calibration). The full PTQ suite builds on this."""

from qdeploy.passes.ptq.calibrate import calibrate, correct_bias
from qdeploy.passes.ptq.gpxq import apply_gpxq

__all__ = ["apply_gpxq", "calibrate", "correct_bias"]
