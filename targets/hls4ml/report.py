"""The hls4ml target's per-layer report: every precision a layer was built with, multiplier/comparator counts and a
resource estimate."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from qdeploy.ir import power_of_two_mask
from qdeploy.targets.hls4ml.implementation import LayerImplementation
from qdeploy.targets.hls4ml.options import Hls4mlOptions
from qdeploy.targets.hls4ml.resources import estimate_layer


def per_layer_report(
    hls_model, options: Hls4mlOptions, implementations: dict[str, LayerImplementation]
) -> list[dict[str, Any]]:
    """Per hls4ml layer: class, every precision it was built with, its implementation (strategy, reuse factor, and
    what decided them), multiplier/comparator counts, resource estimate."""
    rows = []
    for layer in hls_model.get_layers():
        precisions, widths = {}, {}
        for key, variable in layer.get_layer_precision().items():
            short = key.replace(f"{layer.name.lower()}_", "").replace(f"{layer.name}_", "")
            if re.fullmatch(r"layer\d+_t|result_t|input_t", short):
                short = "result"  # hls4ml names output types by layer index
            elif short.endswith("_index") or short == "table_t":
                continue  # lookup-table/index types are unused by these layers
            precisions[short.removesuffix("_t")] = str(variable.precision)
            widths[short.removesuffix("_t")] = int(getattr(variable.precision, "width", 0) or 0)
        row: dict[str, Any] = {
            "name": layer.name,
            "op": layer.class_name,
            "weight": precisions.get("weight"),
            "activation": precisions.get("result"),
            "accumulator": precisions.get("accum"),
            "precisions": precisions,
        }
        # hls4ml names the layer it makes of a MatMul or Conv node ``<class>_<node>`` (``Dense_MatMul_0``)
        implementation = implementations.get(layer.name) or implementations.get(
            layer.name.removeprefix(f"{layer.class_name}_")
        )
        strategy, reuse = "Latency", 1
        if implementation is not None:
            row.update(implementation.as_report())
            # what the backend built: Quartus implements every dense layer with its resource kernel, and hls4ml
            # replaces a reuse factor it does not accept; the estimate prices what was built, the report says both
            strategy = str(layer.get_attr("strategy", implementation.strategy.value)).capitalize()
            reuse = int(layer.get_attr("reuse_factor", implementation.reuse_factor))
            if (strategy, reuse) != (implementation.strategy.value, implementation.reuse_factor):
                row["built"] = {"strategy": strategy, "reuse_factor": reuse}
        output = layer.get_output_variable()
        source = layer.get_input_variable() if layer.inputs else None
        counts: dict[str, int] = {}
        thresholds = layer.weights.get("thresholds") if hasattr(layer, "weights") else None
        if thresholds is not None:
            row["thresholds"] = int(np.asarray(thresholds.data).size)
            row["comparisons"] = counts["comparisons"] = int(output.size()) * int(layer.get_attr("n_thresholds"))
            counts["channels_per_cycle"] = int(layer.get_attr("n_chan")) * int(layer.get_attr("n_thresholds"))
        weights = layer.weights.get("weight") if hasattr(layer, "weights") else None
        if weights is not None and layer.class_name in ("Dense", "Conv1D", "Conv2D"):
            data = np.asarray(weights.data)
            # power-of-two or zero weights are shifts, not multipliers
            nonzero = data[data != 0]
            row["multiplications"] = counts["multiplications"] = int(np.sum(~power_of_two_mask(np.abs(nonzero))))
            row["weights"] = counts["weights"] = int(data.size)
            counts["nonzero_weights"] = int(nonzero.size)
        row["estimated_resources"] = estimate_layer(
            layer.class_name,
            strategy=strategy,
            reuse=reuse,
            io_type=options.io_type.value,
            input_bits=int(source.type.precision.width) if source is not None else 0,
            result_bits=widths.get("result", 0),
            n_out=int(output.size()) if options.io_type.value == "io_parallel" else int(output.shape[-1]),
            weight_bits=widths.get("weight", 0),
            accumulator_bits=widths.get("accum", 0),
            **counts,
        )
        rows.append(row)
    return rows
