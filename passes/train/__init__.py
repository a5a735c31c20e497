"""Training machinery shared by the torch-module stages that train (QAT, binarisation): the one training loop."""

from qdeploy.passes.train.loop import logits, run_epochs

__all__ = ["logits", "run_epochs"]
