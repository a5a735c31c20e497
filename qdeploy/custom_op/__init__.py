"""qonnx custom-op domains of qdeploy: the ONNX domain is the module path (``qdeploy.custom_op.quantum``)."""
