"""Anchor tools run the way their users run them, shared by the benchmark scripts."""

from __future__ import annotations

import contextlib
import io
import time
from pathlib import Path

import numpy as np

import qdeploy
from qdeploy.verify import compare


def plain_hls4ml(graph, x: np.ndarray, folder: Path) -> dict:
    """hls4ml 1.3's documented QONNX recipe with its default configuration, compared with the golden executor.

    Returns ``result`` ("equal/compared", or "fails: <error>"), ``seconds`` (convert + C-sim build + predict), and
    when it ran: ``argmax`` agreement and ``exact_fraction``.
    """
    import hls4ml
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul
    from qonnx.util.cleanup import cleanup_model

    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            model = cleanup_model(graph)
            model = model.transform(ConvertToChannelsLastAndClean())
            model = cleanup_model(model.transform(GemmToMatMul()))
            config = hls4ml.utils.config.config_from_onnx_model(model, granularity="name", backend="Vitis")
            hls_model = hls4ml.converters.convert_from_onnx_model(
                model, output_dir=str(folder), backend="Vitis", hls_config=config
            )
            hls_model.compile()
            y = hls_model.predict(np.ascontiguousarray(x))
    except Exception as exc:
        return {
            "result": f"fails: {type(exc).__name__}: {str(exc).splitlines()[0][:90]}",
            "seconds": time.perf_counter() - start,
        }
    seconds = time.perf_counter() - start
    result = compare(np.asarray(y).reshape(len(x), -1), qdeploy.run_golden(graph, x).reshape(len(x), -1))
    return {
        "result": f"{result['outputs_equal']}/{result['outputs_compared']}",
        "argmax": result["argmax_agreement"],
        "seconds": seconds,
        "exact_fraction": result["outputs_equal"] / result["outputs_compared"],
    }


def brevitas_ptq(model, calib: np.ndarray, weight_bits: int, act_bits: int, example_flow: bool = False):
    """brevitas's own PTQ flow with its default quantizers, bit widths set the way its users set them (``.let``):
    ``preprocess_for_quantize`` (BatchNorm folding), ``brevitas.graph.quantize`` with its default layer, activation
    and identity maps (per-tensor float weight scales, Int32 bias, 99.999th-percentile activation ranges, a signed
    input quantizer), then ``calibration_mode`` over ``calib``. ``example_flow`` adds what brevitas's reference PTQ
    script (``brevitas_examples/imagenet_classification/ptq``) does by default on top: graph equalization
    (20 iterations, biases merged) before quantizing and bias correction after calibrating. Returns the quantized
    module (export it with ``qdeploy.export``)."""
    import copy

    import torch
    from brevitas.graph.calibrate import bias_correction_mode, calibration_mode
    from brevitas.graph.quantize import (
        COMPUTE_LAYER_MAP,
        QUANT_ACT_MAP,
        QUANT_IDENTITY_MAP,
        preprocess_for_quantize,
        quantize,
    )

    def with_bits(layer_map: dict, key: str, bits: int) -> dict:
        changed = {}
        for source, entry in layer_map.items():  # entries may be None (a layer type brevitas leaves alone)
            if entry is not None and entry[1].get(key) is not None:
                entry = (entry[0], {**entry[1], key: entry[1][key].let(bit_width=bits)})
            changed[source] = entry
        return changed

    equalize = {"equalize_iters": 20, "equalize_merge_bias": True} if example_flow else {}
    graph = preprocess_for_quantize(copy.deepcopy(model).eval(), **equalize)
    qmodel = quantize(
        graph,
        quant_identity_map=with_bits(QUANT_IDENTITY_MAP, "act_quant", act_bits),
        compute_layer_map=with_bits(COMPUTE_LAYER_MAP, "weight_quant", weight_bits),
        quant_act_map=with_bits(QUANT_ACT_MAP, "act_quant", act_bits),
    )
    qmodel.eval()
    batches = [torch.from_numpy(calib[start : start + 256]) for start in range(0, len(calib), 256)]
    with torch.no_grad(), calibration_mode(qmodel):
        for batch in batches:
            qmodel(batch)
    if example_flow:
        with torch.no_grad(), bias_correction_mode(qmodel):
            for batch in batches:
                qmodel(batch)
    return qmodel


def ort_quantize_static(
    float_path: Path, out_path: Path, calib: np.ndarray, method: str = "MinMax", weight_bits: int = 8
) -> bool:
    """onnxruntime's ``quantize_static`` as its users run it: QDQ, per-channel, uint8 activations, int8 (or int4)
    weights, calibrated sample by sample. Returns False when ORT offers no such weight type."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    weight_type = {8: QuantType.QInt8, 4: QuantType.QInt4}.get(weight_bits)
    if weight_type is None:
        return False

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"x": calib[i : i + 1]} for i in range(len(calib))])

        def get_next(self):
            return next(self.batches, None)

    quantize_static(
        str(float_path),
        str(out_path),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=weight_type,
        calibrate_method=getattr(CalibrationMethod, method),
    )
    return True
