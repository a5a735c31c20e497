"""Verilog from a ``Design``: one module per layer (adder graph, pipeline registers, activation) and a core
module chaining them, rendered from the Jinja2 templates in ``templates/``. Python computes what each line holds
(names, exact widths, stages); the templates hold the Verilog."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from qdeploy.targets.rtl.adder_graph import Node, signed_width
from qdeploy.targets.rtl.design import Design, Layer, MaxPool, Requantize, Thresholds, Vector


@cache
def environment():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("qdeploy.targets.rtl", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


def constant(value: int, width: int) -> str:
    """A ``width``-bit two's complement literal of ``value`` (hex, so the most negative value needs no sign)."""
    return f"{width}'sh{value & ((1 << width) - 1):x}"


def fit(name: str, width: int, shift: int, target: int) -> str:
    """``name`` (``width``-bit signed) shifted left by ``shift`` as exactly ``target`` bits: sign-extended when
    narrower, its low bits when wider (sums are exact modulo 2**target, and the result fits)."""
    if shift >= target:
        return f"{target}'d0"
    zeros = f", {shift}'b0" if shift else ""
    available = target - shift
    if width >= available:
        body = name if width == available else f"{name}[{available - 1}:0]"
    else:
        extension = available - width
        sign = f"{name}[{width - 1}]"
        body = f"{{{extension}{{{sign}}}}}, {name}" if extension > 1 else f"{sign}, {name}"
        return f"{{{body}{zeros}}}"
    return f"{{{body}{zeros}}}" if zeros else body


def balanced(terms: list[str], op: str) -> str:
    """``terms`` joined by the associative ``op`` as a balanced tree of parentheses: a flat chain parses as one
    left-deep expression whose depth is the term count, which yosys's frontend walks recursively."""
    if len(terms) == 1:
        return terms[0]
    middle = len(terms) // 2
    halves = [balanced(part, op) for part in (terms[:middle], terms[middle:])]
    left, right = (f"({half})" if " " in half else half for half in halves)
    return f"{left} {op} {right}"


def element_slices(vector: Vector) -> list[tuple[int, int]]:
    """(offset, width) of each element in a flat port."""
    widths = vector.widths
    offsets = np.concatenate([[0], np.cumsum(widths)[:-1]])
    return [(int(o), int(w)) for o, w in zip(offsets, widths, strict=True)]


def describe_elements(vector: Vector) -> list[str]:
    lines = []
    for i, (offset, width) in enumerate(element_slices(vector)):
        kind = "signed" if vector.low[i] < 0 else "unsigned"
        meaning = _meaning(int(vector.scale[i]), int(vector.offset[i]), vector.lsb)
        lines.append(f"[{offset + width - 1}:{offset}] {kind} u{i} in [{vector.low[i]}, {vector.high[i]}], value {meaning}")
        if len(lines) == 8 and len(vector) > 9:
            lines.append(f"... ({len(vector) - 8} more, same layout)")
            break
    return lines


def _meaning(scale: int, offset: int, lsb: int) -> str:
    k = "u" if scale == 1 else f"{scale}*u"
    if offset:
        k = f"({k} {'+' if offset > 0 else '-'} {abs(offset)})"
    return f"{k} * 2^{lsb}" if lsb else k


@dataclass
class _Stages:
    """Pipeline stage of every node of one layer's adder graph: ``stages`` registers, the last at the output."""

    stages: int
    depth: int

    def of(self, node: Node) -> int:
        if self.stages <= 1:
            return 0
        return min(self.stages - 1, node.depth * self.stages // (self.depth + 1))

    @property
    def activation(self) -> int:
        return max(self.stages - 1, 0)


def layer_view(layer: Layer, module: str, stages: int) -> dict[str, Any]:
    graph = layer.graph
    staging = _Stages(stages, graph.depth)
    names = {node.index: f"x{node.source}" if node.kind == "input" else f"t{node.index}" for node in graph.nodes}
    stage_of = {node.index: staging.of(node) for node in graph.nodes}
    needed: dict[int, int] = {}  # node -> latest stage it is read in

    def reference(index: int, stage: int) -> str:
        needed[index] = max(needed.get(index, stage_of[index]), stage)
        delay = stage - stage_of[index]
        return names[index] if delay == 0 else f"{names[index]}_s{stage}"

    # per output, the constant its accumulator adds: the graph's (bias) and a requantizer's rounding offset (see
    # _rounding), added in one adder
    act = layer.activation
    biases = [0] * len(graph.outputs)
    if isinstance(act, Requantize):
        for j in range(len(graph.outputs)):
            rounding = _rounding(act, int(act.shift[j]))
            biases[j] = rounding[0] if rounding is not None else 0
    slices = element_slices(layer.input)
    leaves, adders = [], []
    for node in graph.nodes:
        if node.kind == "input":
            offset, width = slices[node.source]
            bits = f"x[{offset}]" if width == 1 else f"x[{offset + width - 1}:{offset}]"
            if layer.input.low[node.source] < 0:
                expr = bits
            elif node.width > width:  # zero-extended: one more bit than the port's unsigned element
                expr = f"{{1'b0, {bits}}}"
            else:  # an element that is always 0 (range [0, 0]) keeps its single bit
                expr = bits
            leaves.append({"name": names[node.index], "width": node.width, "expr": expr})
            continue
        stage = stage_of[node.index]
        left, right = graph.nodes[node.left], graph.nodes[node.right]
        operands = (reference(node.left, stage), left.width), (reference(node.right, stage), right.width)
        adders.append({"lines": _adder_lines(names[node.index], node, *operands)})

    accumulators = []
    for j, out in enumerate(graph.outputs):
        bias = biases[j]
        value = out.constant + bias
        low, high = out.low + bias, out.high + bias
        width = signed_width(low, high)
        if out.node < 0:
            expr = constant(value, width)
        else:
            node = graph.nodes[out.node]
            term = fit(reference(out.node, staging.activation), node.width, out.shift, width)
            if value == 0:
                expr = term if out.sign > 0 else f"-{term}"
            elif out.sign > 0:
                expr = f"{term} + {constant(value, width)}"
            else:
                expr = f"{constant(value, width)} - {term}"
        accumulators.append({"name": f"acc{j}", "width": width, "expr": expr, "low": low, "high": high})

    registers = []
    for index, last in sorted(needed.items()):
        for stage in range(stage_of[index] + 1, last + 1):
            source = names[index] if stage == stage_of[index] + 1 else f"{names[index]}_s{stage - 1}"
            registers.append({"name": f"{names[index]}_s{stage}", "width": graph.nodes[index].width, "source": source})

    computed = len(layer.output) - len(layer.carry)
    out_widths = layer.output.widths[:computed]
    outputs = [{"name": f"y{j}", "width": int(w)} for j, w in enumerate(out_widths)]
    # input elements passed through (highest first, as in a concatenation), delayed as long as the layer takes
    carried = []
    for i in layer.carry[::-1]:
        offset, width = slices[int(i)]
        carried.append(f"x[{offset}]" if width == 1 else f"x[{offset + width - 1}:{offset}]")
    carry_bits = int(layer.output.widths[computed:].sum())
    title, lines = _activation(layer, accumulators, outputs)
    return {
        "module": module,
        "title": f"{layer.kind} layer, {len(layer.input)} -> {len(layer.output)}",
        "nodes": ", ".join(layer.nodes) or "(element-wise)",
        "summary": (
            f"{layer.multiplications} constant multiplications as {len(graph.adders)} adders "
            f"(canonical signed digits, shared sub-expressions); {stages} pipeline stage(s)"
            if layer.kind not in ("xnor_popcount", "maxpool")
            else f"max pooling: {len(layer.output)} windows of {len(layer.input)} inputs; {stages} pipeline stage(s)"
            if layer.kind == "maxpool"
            else f"binary weights and inputs: XNOR-popcount arithmetic (2 * sum of +-bits - n) as {len(graph.adders)} "
            f"adders sharing bit pairs across outputs; {stages} pipeline stage(s)"
        ),
        "in_bits": layer.input.bits,
        "out_bits": layer.output.bits,
        "leaves": leaves,
        "adders": adders,
        "depth": graph.depth,
        "registers": registers,
        "stages": stages,
        "accumulators": accumulators,
        "activation_title": title,
        "activation_lines": lines,
        "outputs": outputs,
        "output_registered": stages > 0,
        "carried": carried,
        "carry_bits": carry_bits,
    }


def _adder_lines(name: str, node: Node, left: tuple[str, int], right: tuple[str, int]) -> list[str]:
    """``name = (left << left_shift) +- (right << right_shift)`` as Verilog, each adder ``(* keep *)``: yosys then
    maps it to its own carry chain, a LUT per bit where both operands have bits, instead of merging adders read once
    into multi-operand sums (alumacc) whose compressor trees take more LUTs, a constant there costing a LUT per bit
    (jet MLP W4A4, first layer, synth_xilinx: 4,078 LUTs / 1,507 CARRY4 kept, 5,168 / 740 merged). The low bits
    below a shift are the unshifted operand's, wired around the kept adder: a kept wire that is another kept wire's
    bit made yosys drive that net from two LUTs (synth_ice40, and synth_xilinx under a registered top)."""
    op = "-" if node.subtract else "+"
    width, shift = node.width, max(node.left_shift, node.right_shift)
    # the operand that is not shifted supplies the low bits (not when it is subtracted: they are then negated)
    low, high = (left, right) if node.left_shift == 0 else (right, left)
    if shift == 0 or shift >= width or (node.subtract and low is right):
        expr = f"{fit(left[0], left[1], node.left_shift, width)} {op} {fit(right[0], right[1], node.right_shift, width)}"
        return [f"(* keep *) wire signed [{width - 1}:0] {name} = {expr};"]
    (low_name, low_width), (high_name, high_width) = low, high
    upper = width - shift
    # low >>> shift (floor: exact, the bits it drops carry nothing into the sum) and the bits it drops
    if low_width > shift:
        floor_width, floor_bits = low_width - shift, f"{low_name}[{low_width - 1}:{shift}]"
        bits = f"{low_name}[{shift - 1}:0]"
    else:
        floor_width, floor_bits = 1, f"{low_name}[{low_width - 1}]"
        sign = f"{low_name}[{low_width - 1}]"
        bits = low_name if low_width == shift else f"{{{{{shift - low_width}{{{sign}}}}}, {low_name}}}"
    a = fit(f"{name}_f", floor_width, 0, upper)
    b = fit(high_name, high_width, 0, upper)
    expr = f"{a} {op} {b}" if low is left else f"{b} {op} {a}"
    lines = [f"wire signed [{floor_width - 1}:0] {name}_f = {floor_bits};"]
    lines.append(f"(* keep *) wire signed [{upper - 1}:0] {name}_h = {expr};")
    lines.append(f"wire signed [{width - 1}:0] {name} = {{{name}_h, {bits}}};")
    return lines


_ROUNDING_INCREMENT = {
    # round(v / 2**s) = floor + increment; h: the half bit v[s-1], rest: any lower bit set, neg: v < 0
    "FLOOR": None,
    "CEIL": "{any}",
    "ROUND": "{h} & ({rest} | {odd})",  # half to even
    "HALF_EVEN": "{h} & ({rest} | {odd})",
    "HALF_UP": "{h} & ({rest} | ~{neg})",  # half away from zero
    "HALF_DOWN": "{h} & ({rest} | {neg})",  # half toward zero
    "UP": "~{neg} & {any}",  # away from zero
    "DOWN": "{neg} & {any}",  # toward zero
}

#: modes whose result on v >= 0 is floor((v + offset) / 2**s) with offset = 2**s - 1 (ceil), 2**(s-1) (half up),
#: 2**(s-1) - 1 (half down), 0 (floor)
_NON_NEGATIVE_AS = {"UP": "CEIL", "DOWN": "FLOOR", "HALF_UP": "HALF_UP", "HALF_DOWN": "HALF_DOWN"}


def _rounding(act: Requantize, shift: int) -> tuple[int, bool] | None:
    """How round(v / 2**shift) is computed without an adder of its own: ``(offset, even)`` with
    round(v / 2**s) = floor((v + offset) / 2**s), the offset folded into the accumulator's constant (yosys maps a
    constant addition onto the carry chain with no LUT: eight 12-bit ones took 0 LUTs and 20 CARRY4, where an
    incrementer behind the shift costs a LUT per bit);
    with ``even`` (half to even) the floor's lowest bit is cleared when the bits below the shift are all zero (an
    exact tie of v: floor((v + half) / 2**s) is then the upper neighbour, one too many exactly when it is odd, and
    clearing the bit of an odd number subtracts one without a carry). ReLU commutes with any monotone rounding
    that keeps 0 (round(max(v, 0)) = max(round(v), 0)), so it becomes the output's low clamp and, behind it,
    modes that round by the sign (UP, DOWN, HALF_UP, HALF_DOWN) act on v >= 0 only, where they are offsets:
    their result for v < 0 is <= 0 either way. ``None``: the mode needs the sign of v (no ReLU), or the shift
    multiplies, or a ReLU meets a negative upper bound (clamp order matters there): the incrementer."""
    mode = act.rounding
    if shift <= 0 or (act.relu and act.high < 0):
        return None
    half = 1 << (shift - 1)
    if mode in ("ROUND", "HALF_EVEN"):
        return half, True
    if mode in _NON_NEGATIVE_AS:  # UP, DOWN, HALF_UP, HALF_DOWN round by the sign: offsets only on v >= 0
        if not act.relu:
            return None
        mode = _NON_NEGATIVE_AS[mode]
    offsets = {"FLOOR": 0, "CEIL": (1 << shift) - 1, "HALF_UP": half, "HALF_DOWN": half - 1}
    return (offsets[mode], False) if mode in offsets else None


def _activation(layer: Layer, accumulators: list[dict], outputs: list[dict]) -> tuple[str, list[str]]:
    act = layer.activation
    lines: list[str] = []
    if act is None:
        for acc, out in zip(accumulators, outputs, strict=True):
            lines.append(f"wire [{out['width'] - 1}:0] {out['name']} = {fit(acc['name'], acc['width'], 0, out['width'])};")
        return "none (the accumulators are the outputs)", lines
    if isinstance(act, MaxPool):
        for j, (window, out) in enumerate(zip(act.windows, outputs, strict=True)):
            lines.extend(_max_lines(j, [accumulators[i] for i in window], out))
        return "max pooling (a comparator tree per window)", lines
    if isinstance(act, Thresholds):
        for j, (acc, out) in enumerate(zip(accumulators, outputs, strict=True)):
            lines.extend(_threshold_lines(j, acc, out, act.thresholds[j]))
        return "thresholds (comparators; the count of thresholds crossed, as a thermometer code to binary)", lines
    for j, (acc, out) in enumerate(zip(accumulators, outputs, strict=True)):
        lines.extend(_requantize_lines(j, acc, out, act, int(act.shift[j]), layer))
    relu = "ReLU, then " if act.relu else ""
    return f"{relu}requantization: shift, round {act.rounding}, saturate to [{act.low}, {act.high}]", lines


def _max_lines(j: int, window: list[dict], out: dict) -> list[str]:
    """``out`` = the largest of ``window``'s accumulators, as a balanced tree of signed comparisons on one width."""
    width = signed_width(min(int(a["low"]) for a in window), max(int(a["high"]) for a in window))
    level = [fit(a["name"], a["width"], 0, width) for a in window]
    lines, count = [], 0
    while len(level) > 1:
        pairs = []
        for a, b in zip(level[::2], level[1::2], strict=False):
            name = f"m{j}_{count}"
            count += 1
            lines.append(f"wire signed [{width - 1}:0] {name} = ($signed({a}) > $signed({b})) ? {a} : {b};")
            pairs.append(name)
        level = pairs + (level[-1:] if len(level) % 2 else [])
    top = level[0]
    if count == 0:
        lines.append(f"wire signed [{width - 1}:0] m{j} = {top};")
        top = f"m{j}"
    lines.append(f"wire [{out['width'] - 1}:0] {out['name']} = {fit(top, width, 0, out['width'])};")
    return lines


def _threshold_lines(j: int, acc: dict, out: dict, thresholds: np.ndarray) -> list[str]:
    count = len(thresholds)
    name, width = acc["name"], acc["width"]
    if count == 0:
        return [f"wire [{out['width'] - 1}:0] {out['name']} = {out['width']}'d0;  // no threshold is ever crossed both ways"]
    compares = ", ".join(f"{name} >= {constant(int(t), width)}" for t in thresholds[::-1])
    lines = [f"wire [{count - 1}:0] c{j} = {{{compares}}};"]
    bits = []
    for b in range(out["width"]):
        taps = [f"c{j}[{k}]" for k in range((1 << b) - 1, count, 1 << b)]
        bits.append(balanced(taps, "^") if taps else "1'b0")
    lines.append(f"wire [{out['width'] - 1}:0] {out['name']} = {{{', '.join(reversed(bits))}}};")
    return lines


def _requantize_lines(j: int, acc: dict, out: dict, act: Requantize, shift: int, layer: Layer) -> list[str]:
    name, width = acc["name"], acc["width"]
    lo, hi = int(acc["low"]), int(acc["high"])
    rounding = _rounding(act, shift)
    if rounding is None:
        return _requantize_lines_increment(j, acc, out, act, shift)
    offset, even = rounding
    low = max(act.low, 0) if act.relu else act.low  # ReLU as the low clamp (see _rounding)
    # v = acc + offset in [lo, hi]: floor(v / 2^s) is in [lo >> s, hi >> s] (and the result, at most one lower on a
    # tie, too), so the floor's low bits are all the result needs
    n_low, n_high = lo >> shift, hi >> shift
    n_width = signed_width(n_low, n_high)
    wide = max(width, shift + n_width)
    lines = [f"wire signed [{wide - 1}:0] v{j} = {fit(name, width, 0, wide)};  // accumulator + {offset}"]
    top = shift + n_width - 1
    if even:
        lines.append(f"wire tie{j} = ~|v{j}[{shift - 1}:0];  // halfway: floor(v / 2^{shift}) is one too many if odd")
        upper = f"v{j}[{top}:{shift + 1}], " if n_width > 1 else ""
        lines.append(f"wire signed [{n_width - 1}:0] n{j} = {{{upper}v{j}[{shift}] & ~tie{j}}};  // rounded")
    else:
        lines.append(f"wire signed [{n_width - 1}:0] n{j} = v{j}[{top}:{shift}];  // rounded")
    return lines + _saturate_lines(j, out, act, f"n{j}", n_width, n_low, n_high, low)


def _saturate_lines(j: int, out: dict, act: Requantize, n_name: str, n_width: int, n_low: int, n_high: int, low: int):
    ow = out["width"]
    result = fit(n_name, n_width, 0, ow)
    if n_high > act.high:
        result = f"({n_name} > {constant(act.high, n_width)}) ? {ow}'d{act.high & ((1 << ow) - 1)} : {result}"
    if n_low < low:
        low_bits = low & ((1 << ow) - 1)
        test = f"{n_name}[{n_width - 1}]" if low == 0 else f"({n_name} < {constant(low, n_width)})"
        result = f"{test} ? {ow}'d{low_bits} : {result}"
    return [f"wire [{ow - 1}:0] {out['name']} = {result};"]


def _requantize_lines_increment(j: int, acc: dict, out: dict, act: Requantize, shift: int) -> list[str]:
    """Requantization by an incrementer behind the shift: modes that round by the sign of v, without ReLU, and
    shifts <= 0 (a multiplication)."""
    name, width = acc["name"], acc["width"]
    lo, hi = int(acc["low"]), int(acc["high"])
    if act.relu:
        lo, hi = max(lo, 0), max(hi, 0)
    lines = []
    wide = max(width, shift + 1)
    value = fit(name, width, 0, wide)
    if act.relu:
        value = f"{name}[{width - 1}] ? {wide}'d0 : {value}"
    lines.append(f"wire signed [{wide - 1}:0] v{j} = {value};")
    if shift > 0:
        floor_width = wide - shift
        lines.append(f"wire signed [{floor_width - 1}:0] q{j} = v{j}[{wide - 1}:{shift}];  // floor(v / 2^{shift})")
        template = _ROUNDING_INCREMENT.get(act.rounding)
        if template is None and act.rounding != "FLOOR":
            raise ValueError(f"rounding mode {act.rounding}")
        q_low, q_high = lo >> shift, hi >> shift
        if template is None:
            n_name, n_low, n_high, n_width = f"q{j}", q_low, q_high, floor_width
        else:
            rest = f"(|v{j}[{shift - 2}:0])" if shift >= 2 else "1'b0"
            increment = template.format(
                h=f"v{j}[{shift - 1}]",
                rest=rest,
                odd=f"v{j}[{shift}]",
                neg=f"v{j}[{wide - 1}]",
                any=f"(|v{j}[{shift - 1}:0])",
            )
            n_width = signed_width(q_low, q_high + 1)
            lines.append(f"wire round{j} = {increment};")
            lines.append(
                f"wire signed [{n_width - 1}:0] n{j} = {fit(f'q{j}', floor_width, 0, n_width)} + "
                f"{{{n_width - 1}'d0, round{j}}};"
            )
            n_name, n_low, n_high = f"n{j}", q_low, q_high + 1
    else:
        n_width = wide - shift
        lines.append(f"wire signed [{n_width - 1}:0] n{j} = {fit(f'v{j}', wide, -shift, n_width)};")
        n_name, n_low, n_high = f"n{j}", lo << -shift, hi << -shift
    return lines + _saturate_lines(j, out, act, n_name, n_width, n_low, n_high, act.low)


def render_design(design: Design, top: str, stages: int, source: str) -> dict[str, str]:
    """File name -> Verilog text: one file per layer module and the core module ``top``."""
    files: dict[str, str] = {}
    core_layers = []
    signal = "in_data"
    for index, layer in enumerate(design.layers):
        module = f"{top}_layer{index}"
        files[f"{module}.v"] = render("layer.v.j2", layer=layer_view(layer, module, stages))
        layer.stages = stages
        output = f"layer{index}_out"
        core_layers.append(
            {"module": module, "instance": f"layer{index}", "input": signal, "output": output, "out_bits": layer.output.bits}
        )
        signal = output
    core = {
        "module": top,
        "source": source,
        "latency": stages * len(design.layers),
        "in_bits": design.input.bits,
        "out_bits": design.output.bits,
        "inputs": list(range(len(design.input))),
        "outputs": list(range(len(design.output))),
        "inputs_summary": describe_elements(design.input),
        "outputs_summary": describe_elements(design.output),
        "layers": core_layers,
    }
    files[f"{top}.v"] = render("core.v.j2", core=core)
    return files


def pack(values: np.ndarray, vector: Vector) -> np.ndarray:
    """Integers [samples, elements] -> the flat port as little-endian 32-bit words [samples, words]."""
    slices = element_slices(vector)
    words = -(-vector.bits // 32)
    out = np.zeros((len(values), words), dtype=np.uint32)
    for row, sample in enumerate(np.asarray(values, dtype=np.int64)):
        flat = 0
        for (offset, width), value in zip(slices, sample, strict=True):
            flat |= (int(value) & ((1 << width) - 1)) << offset
        for w in range(words):
            out[row, w] = (flat >> (32 * w)) & 0xFFFFFFFF
    return out


def unpack(words: np.ndarray, vector: Vector) -> np.ndarray:
    """The inverse of ``pack``: words [samples, words] -> integers [samples, elements] (signed where negative)."""
    slices = element_slices(vector)
    out = np.zeros((len(words), len(vector)), dtype=np.int64)
    for row, sample in enumerate(np.asarray(words, dtype=np.uint64)):
        flat = 0
        for w, word in enumerate(sample):
            flat |= int(word) << (32 * w)
        for i, (offset, width) in enumerate(slices):
            value = (flat >> offset) & ((1 << width) - 1)
            if vector.low[i] < 0 and value >> (width - 1):
                value -= 1 << width
            out[row, i] = value
    return out


#: clocks per UART bit in the simulation testbench (short; the board's follows from its clock and the baud rate)
SIM_CLKS_PER_BIT = 8
UART_LIBRARY = ("qdeploy_uart_rx.v", "qdeploy_uart_tx.v")


def io_context(design: Design, core: str, clock_mhz: float, baud: int) -> dict[str, Any]:
    """Facts the UART top level, the simulation top and the testbench share."""
    in_bits, out_bits = design.input.bits, design.output.bits
    in_bytes, out_bytes = -(-in_bits // 8), -(-out_bits // 8)
    return {
        "core": core,
        "uart": f"{core}_uart",
        "module": f"{core}_sim",
        "in_bits": in_bits,
        "out_bits": out_bits,
        "in_bytes": in_bytes,
        "out_bytes": out_bytes,
        "count_bits": max(in_bytes, out_bytes + 1).bit_length(),
        "latency": core_latency(design),
        "clock_mhz": clock_mhz,
        "baud": baud,
        "board_clks_per_bit": round(clock_mhz * 1e6 / baud),
        "clks_per_bit": SIM_CLKS_PER_BIT,
    }


def core_latency(design: Design) -> int:
    return sum(layer.stages for layer in design.layers)


def render_uart_top(io: dict[str, Any]) -> dict[str, str]:
    top = {**io, "module": io["uart"], "clks_per_bit": io["board_clks_per_bit"]}
    return {f"{io['uart']}.v": render("uart_top.v.j2", top=top), **{name: render(name) for name in UART_LIBRARY}}


def render_sim_top(io: dict[str, Any]) -> str:
    return render("sim_top.v.j2", sim=io)
