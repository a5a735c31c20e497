"""Graph passes of the quantum target (qonnx Transformations, one per file)."""
