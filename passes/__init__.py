"""Model transformations, imported as ``qdeploy.passes``. Two kinds, kept apart:

QONNX graph transformations -- ``ModelWrapper`` in, ``ModelWrapper`` out; ``qonnx.transformation.base.Transformation``
subclasses (so they compose with qonnx's and FINN's own), one per file, registered under the ``qdeploy.passes``
entry point:

    graph/      lowering and clean-up passes the targets run (thresholds, layout moves, Gemm bias, quantum angles)

Torch-module stages -- ``nn.Module`` in, ``nn.Module`` out (brevitas underneath); the API verbs are their entries
(``qdeploy.quantize``, ``qdeploy.qat``, ``qdeploy.mixed``, ``qdeploy.binarize``):

    ptq/        post-training quantization: its composer (compose.py -> pipeline.py or auto.py) and the stages it
                composes: range calibration, bias correction, GPTQ/GPFQ, AdaRound, GPFQ alphabets, graph fixes
    qat/        quantization-aware training of a PTQ-initialized module (held-out selection, resumable checkpoints)
    mixed/      Hessian-aware (HAWQ) bit allocation and its composer
    binarize/   BiPer and sign-STE binarisation: binary layers, conversion, training, freezing

Training machinery the stages share (not passes themselves):

    train/      the one training loop (QAT and binarisation)
    optim/      AdamW with 4-bit states

Passes import the core and each other, never a target; the core imports passes only inside the functions that
call them.
"""
