"""Model transformations (imported as ``qdeploy.passes``): graph passes on QONNX, torch-side passes on nn.Module."""
