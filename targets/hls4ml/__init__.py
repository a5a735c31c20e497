"""hls4ml target: FPGA/ASIC firmware whose C simulation is bit-exact with the QONNX graph."""

from qdeploy.targets.hls4ml.target import Hls4mlTarget

__all__ = ["Hls4mlTarget"]
