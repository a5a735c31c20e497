"""Constant matrix-vector products as multiplier-free adder graphs.

Each weight is written in canonical signed digits (CSD: digits -1/0/+1, no two adjacent non-zero), so ``w * x``
is a sum of shifted copies of ``x``. Sub-expressions shared between outputs (``x_a + (x_b << d)`` appearing in
several rows) are computed once: the greedy pairwise elimination of Hartley's method, the second stage of da4ml's
CMVM algorithm (da4ml/alkaid ``docs/cmvm.md``), extracting the pattern that occurs most often until none occurs
twice. The rest of each row is summed by a tree that always adds the two terms whose top bits are lowest first,
so partial sums stay narrow. Every node carries the exact interval of its values, so each adder is
exactly as wide as its result needs.

Written here rather than taken from alkaid: alkaid's solver is LGPL C++ reached through its own IR, and qdeploy
needs the graph as data (intervals, depths, pipeline stages) to emit its own Verilog.
"""

from __future__ import annotations

import heapq
import itertools
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

#: Sub-expressions are searched within blocks of this many inputs. Each extraction updates the pattern counts of
#: every term of the rows it touches, so the search costs about (terms removed) x (terms per row): quadratic in a
#: row's length. FINN TFC's first layer (784 inputs x 64, binary) took over 10 minutes in one block; blocks of 128
#: inputs bound the cost per term and leave every layer of up to 128 inputs (the jet and TFC-64 MLPs) as it was.
SHARE_BLOCK = 128


def signed_width(low: int, high: int) -> int:
    """Bits of a two's complement signal holding every integer in [low, high]."""
    return max(int(high).bit_length(), (-int(low) - 1).bit_length() if low < 0 else 0) + 1


def csd_digits(value: int) -> list[tuple[int, int]]:
    """Canonical signed digits of ``value`` as (shift, sign) pairs: ``value == sum(sign << shift)``."""
    digits, shift = [], 0
    while value != 0:
        if value & 1:
            digit = 2 - (value & 3)  # +1 when value % 4 == 1, -1 when value % 4 == 3
            digits.append((shift, digit))
            value -= digit
        value >>= 1
        shift += 1
    return digits


@dataclass
class Node:
    """A signal of the graph. Leaves (``kind`` "input") read an input element; "add" nodes compute
    ``(left << left_shift) + (right << right_shift)`` or, with ``subtract``, the difference."""

    index: int
    kind: str
    low: int
    high: int
    depth: int = 0
    source: int = -1  # input element of a leaf
    left: int = -1
    right: int = -1
    left_shift: int = 0
    right_shift: int = 0
    subtract: bool = False

    @property
    def width(self) -> int:
        return signed_width(self.low, self.high)


@dataclass(frozen=True)
class Term:
    """``sign * (node << shift)``."""

    node: int
    shift: int
    sign: int


@dataclass
class Output:
    """One output of the product: ``sign * (node << shift) + constant`` (``node`` is -1 for a constant row)."""

    node: int
    shift: int
    sign: int
    constant: int
    low: int
    high: int

    @property
    def width(self) -> int:
        return signed_width(self.low, self.high)


@dataclass
class AdderGraph:
    nodes: list[Node] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)

    @property
    def adders(self) -> list[Node]:
        return [node for node in self.nodes if node.kind == "add"]

    @property
    def depth(self) -> int:
        return max((self.nodes[o.node].depth for o in self.outputs if o.node >= 0), default=0)

    def adder_bits(self) -> int:
        """Sum of adder widths (plus one full-width adder per non-zero output constant): the first-order LUT cost
        of the graph on carry-chain FPGAs, used to refuse designs far too large before synthesis."""
        constants = sum(o.width for o in self.outputs if o.constant != 0 and o.node >= 0)
        return sum(node.width for node in self.adders) + constants

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        """The outputs for integer inputs ``x`` [batch, inputs] (object arithmetic: no overflow); for tests."""
        values: list[np.ndarray] = []
        x = np.asarray(x).astype(object)
        for node in self.nodes:
            if node.kind == "input":
                values.append(x[:, node.source])
            else:
                left = values[node.left] * (1 << node.left_shift)
                right = values[node.right] * (1 << node.right_shift)
                values.append(left - right if node.subtract else left + right)
        columns = []
        for out in self.outputs:
            base = values[out.node] * (1 << out.shift) * out.sign if out.node >= 0 else np.zeros(len(x), dtype=object)
            columns.append(base + out.constant)
        return np.stack(columns, axis=1) if columns else np.zeros((len(x), 0), dtype=object)


class _Builder:
    """Builds the graph. Every node is a linear form of the inputs, kept as its coefficients, so its range is exact
    (the sum over inputs of each term's extreme): interval arithmetic on the two operands would overestimate
    whenever an input reaches a node along two paths (``(x << 3) - x``, shared pairs of pairs) and widen every
    adder above it."""

    def __init__(self, input_ranges: list[tuple[int, int]]):
        self.graph = AdderGraph()
        self.input_ranges = input_ranges
        self.leaves: dict[int, int] = {}
        self.forms: list[dict[int, int]] = []  # per node: input -> coefficient
        self.widths: list[int] = []  # per node: its width (read in the sub-expression search's inner loop)

    def leaf(self, source: int) -> int:
        if source not in self.leaves:
            low, high = self.input_ranges[source]
            self.leaves[source] = self._append(Node(len(self.graph.nodes), "input", low, high, source=source), {source: 1})
        return self.leaves[source]

    def _append(self, node: Node, form: dict[int, int]) -> int:
        self.graph.nodes.append(node)
        self.forms.append(form)
        self.widths.append(node.width)
        return node.index

    def add(self, left: int, left_shift: int, right: int, right_shift: int, subtract: bool) -> int:
        a, b = self.graph.nodes[left], self.graph.nodes[right]
        form = {i: c << left_shift for i, c in self.forms[left].items()}
        for i, c in self.forms[right].items():
            form[i] = form.get(i, 0) + (-(c << right_shift) if subtract else c << right_shift)
        form = {i: c for i, c in form.items() if c}
        low = high = 0
        for i, c in form.items():
            lo, hi = self.input_ranges[i]
            low += min(c * lo, c * hi)
            high += max(c * lo, c * hi)
        node = Node(
            len(self.graph.nodes),
            "add",
            low,
            high,
            max(a.depth, b.depth) + 1,
            -1,
            left,
            right,
            left_shift,
            right_shift,
            subtract,
        )
        return self._append(node, form)

    def combine(self, first: Term, second: Term) -> Term:
        """One adder for ``first + second``; returns the term standing for the sum."""
        base = min(first.shift, second.shift)
        a_shift, b_shift = first.shift - base, second.shift - base
        if first.sign == second.sign:
            node = self.add(first.node, a_shift, second.node, b_shift, False)
            return Term(node, base, first.sign)
        positive, negative = (first, second) if first.sign > 0 else (second, first)
        node = self.add(positive.node, positive.shift - base, negative.node, negative.shift - base, True)
        return Term(node, base, 1)

    def sum_tree(self, terms: list[Term]) -> Term | None:
        """Sum ``terms``, always adding the two whose top bits are lowest first (see ``_order``)."""
        if not terms:
            return None
        heap = [(*_order(self.graph.nodes[t.node], t), i, t) for i, t in enumerate(terms)]
        heapq.heapify(heap)
        counter = itertools.count(len(heap))
        while len(heap) > 1:
            *_, first = heapq.heappop(heap)
            *_, second = heapq.heappop(heap)
            term = self.combine(first, second)
            node = self.graph.nodes[term.node]
            heapq.heappush(heap, (*_order(node, term), next(counter), term))
        return heap[0][-1]

    def output(self, term: Term | None, constant: int) -> None:
        if term is None:
            self.graph.outputs.append(Output(-1, 0, 1, constant, constant, constant))
            return
        node = self.graph.nodes[term.node]
        bounds = [(node.low << term.shift) * term.sign, (node.high << term.shift) * term.sign]
        self.graph.outputs.append(
            Output(term.node, term.shift, term.sign, constant, min(bounds) + constant, max(bounds) + constant)
        )


def _order(node: Node, term: Term) -> tuple[int, int]:
    """Which terms a row's sum adds first: the two whose top bit (width plus shift) is lowest, then the shallowest.
    On carry-chain FPGAs an adder costs about a LUT per bit above the lower operand's shift, so small values summed
    first keep the partial sums narrow, as Huffman's merge keeps code lengths short (4-6% fewer LUTs than adding the
    shallowest first on the jet MLP, yosys synth_xilinx); the depth is still log2 of the term count within a rank."""
    return node.width + term.shift, node.depth


def _pattern(first: Term, second: Term) -> tuple[tuple[int, int, int, int], Term]:
    """The shift-invariant pattern of two terms of one row, and the term that anchors it (the one with the smaller
    shift): ``anchor.node + relative_sign * (other.node << distance)``."""
    if (second.shift, second.node) < (first.shift, first.node):
        first, second = second, first
    return (first.node, second.node, second.shift - first.shift, first.sign * second.sign), first


_MAX_COUNT, _MAX_WIDTH, _TICK_MASK = 1 << 40, 255, (1 << 64) - 1


class _Rows:
    """The rows of the product as sets of terms, with the count of every two-term pattern across rows, updated
    incrementally as patterns are replaced (a full recount per extraction would be quadratic in the terms).

    Every row update bumps one count per other term of the row, so the bump loops below run tens of millions of
    times on a wide layer (784 inputs): they work on plain tuples, read node widths from a list and keep per row
    how many terms each node has, instead of Term objects and a scan of the row (5x faster on FINN TFC's first
    layer, same graph)."""

    def __init__(self, rows: list[dict[tuple[int, int], int]], widths: list[int]):
        self.rows = rows
        self.widths = widths  # per node, its width: grows as the builder appends nodes
        self.counts: dict[tuple[int, int, int, int], int] = defaultdict(int)
        self.rows_with: dict[int, set[int]] = defaultdict(set)
        self.nodes_in: list[dict[int, int]] = []  # per row: node -> how many of the row's terms read it
        # candidates as one integer each, ordered as (-count, -overlap, tick): most frequent first, then the widest
        # overlap, then the earliest pushed (plain integers: most entries are popped stale, and comparing integers
        # instead of tuples halves the search's time); the pattern of an entry is found by its tick
        self.heap: list[int] = []
        self.pattern_of: dict[int, tuple[int, int, int, int]] = {}
        counts = self.counts
        for r, row in enumerate(rows):
            nodes: dict[int, int] = defaultdict(int)
            for node, _ in row:
                nodes[node] += 1
                self.rows_with[node].add(r)
            self.nodes_in.append(nodes)
            for key in _row_patterns(row):
                counts[key] += 1
        # the first candidates all have tick 0 and are ordered by pattern: their ticks are their ranks in that order
        first = sorted(key for key, count in counts.items() if count > 1)
        for tick, key in enumerate(first):
            self._push(counts[key], self._overlap(key), tick, key)
        heapq.heapify(self.heap)
        self.tick = itertools.count(len(first))

    def _overlap(self, key: tuple[int, int, int, int]) -> int:
        """Among patterns as frequent, the one whose narrower operand is widest first: a pattern's adder is paid
        once instead of in every row, and the LUTs each row saves are the bits where both operands overlap
        (da4ml's weighted most-common score uses the same overlap; as a tie-break it saves 0.3-1% LUTs on the jet
        MLP at 2-8 bits; weighting the count by it, as da4ml does, was worse at 2 bits)."""
        return min(self.widths[key[0]], self.widths[key[1]])

    def _bump_row(self, row: dict[tuple[int, int], int], node: int, shift: int, sign: int, delta: int) -> None:
        """Add ``delta`` to the count of the pattern of ``sign * (node << shift)`` with every term of ``row``.
        A count that drops stays a candidate while it is above one: its old entry no longer validates, so it is
        pushed again with the count it has now (entries are lazy: most_frequent skips stale ones)."""
        counts, heap, widths, tick, pattern_of = self.counts, self.heap, self.widths, self.tick, self.pattern_of
        for (n, s), g in row.items():
            # _pattern: anchored on the term with the smaller (shift, node)
            key = (n, node, shift - s, g * sign) if (s, n) < (shift, node) else (node, n, s - shift, sign * g)
            count = counts[key] + delta
            if count:
                counts[key] = count
            else:
                del counts[key]
            if count > 1:
                t = next(tick)
                pattern_of[t] = key
                heapq.heappush(
                    heap, ((_MAX_COUNT - count) << 72) | ((_MAX_WIDTH - min(widths[key[0]], widths[key[1]])) << 64) | t
                )

    def remove(self, r: int, term: Term) -> None:
        row = self.rows[r]
        del row[(term.node, term.shift)]
        self._bump_row(row, term.node, term.shift, term.sign, -1)
        nodes = self.nodes_in[r]
        nodes[term.node] -= 1
        if not nodes[term.node]:
            del nodes[term.node]
            self.rows_with[term.node].discard(r)

    def insert(self, r: int, term: Term) -> None:
        row = self.rows[r]
        existing = row.get((term.node, term.shift))
        if existing is not None:  # x<<s + x<<s = x<<(s+1); x<<s - x<<s = 0
            self.remove(r, Term(term.node, term.shift, existing))
            if existing == term.sign:
                self.insert(r, Term(term.node, term.shift + 1, term.sign))
            return
        self._bump_row(row, term.node, term.shift, term.sign, +1)
        row[(term.node, term.shift)] = term.sign
        self.nodes_in[r][term.node] += 1
        self.rows_with[term.node].add(r)

    def _push(self, count: int, overlap: int, tick: int, key: tuple[int, int, int, int]) -> None:
        self.pattern_of[tick] = key
        self.heap.append(((_MAX_COUNT - count) << 72) | ((_MAX_WIDTH - overlap) << 64) | tick)

    def most_frequent(self) -> tuple[int, int, int, int] | None:
        heap, counts, pattern_of = self.heap, self.counts, self.pattern_of
        while heap:
            entry = heap[0]
            count, tick = _MAX_COUNT - (entry >> 72), entry & _TICK_MASK
            key = pattern_of[tick]
            if counts.get(key, 0) == count and count > 1:
                return key
            heapq.heappop(heap)
            del pattern_of[tick]
        return None


def _row_patterns(row: dict[tuple[int, int], int]) -> list[tuple[int, int, int, int]]:
    """The pattern of every pair of terms of a row (as ``_pattern``): sorted by (shift, node), each pair is
    anchored on its earlier term."""
    terms = sorted((s, n, g) for (n, s), g in row.items())
    return [(n1, n2, s2 - s1, g1 * g2) for i, (s1, n1, g1) in enumerate(terms) for s2, n2, g2 in terms[i + 1 :]]


def constant_matrix_product(
    matrix: np.ndarray,
    input_ranges: list[tuple[int, int]],
    constants: np.ndarray | None = None,
    share: bool = True,
) -> AdderGraph:
    """Adder graph computing ``y = matrix @ x + constants`` for integer ``matrix`` [outputs, inputs] and inputs in
    ``input_ranges``; ``share`` extracts common sub-expressions across rows (off: plain CSD per row), and tries a
    shared common row (see ``_common_row``), keeping whichever graph has fewer adder bits."""
    matrix = np.asarray(matrix, dtype=np.int64)
    n_out, n_in = matrix.shape
    constants = np.zeros(n_out, dtype=np.int64) if constants is None else np.asarray(constants, dtype=np.int64)
    none = (np.zeros(n_in, np.int64), np.zeros(n_out, bool))
    graph = _product(matrix, input_ranges, constants, share, *none)
    common, uses = _common_row(matrix) if share else none
    if uses.any():
        # a digit count does not foresee what sub-expression sharing makes of either form: build both
        alternative = _product(matrix, input_ranges, constants, share, common, uses)
        if alternative.adder_bits() < graph.adder_bits():
            return alternative
    return graph


def _product(
    matrix: np.ndarray,
    input_ranges: list[tuple[int, int]],
    constants: np.ndarray,
    share: bool,
    common: np.ndarray,
    uses_common: np.ndarray,
) -> AdderGraph:
    builder = _Builder(input_ranges)
    # rows that use the common row compute (row - common) . x and add the shared common . x at the end
    expressed = matrix - np.where(uses_common[:, None], common[None, :], 0)
    if uses_common.any():
        expressed = np.vstack([expressed, common[None, :]])
    # sub-expressions are searched within blocks of SHARE_BLOCK inputs, each row split into one sub-row per block
    blocks = -(-expressed.shape[1] // SHARE_BLOCK) if expressed.shape[1] else 1
    rows: list[dict[tuple[int, int], int]] = [{} for _ in range(len(expressed) * blocks)]
    for j in range(len(expressed)):
        for i in np.flatnonzero(expressed[j]):
            leaf = builder.leaf(int(i))
            row = rows[j * blocks + int(i) // SHARE_BLOCK]
            for shift, sign in csd_digits(int(expressed[j, i])):
                row[(leaf, shift)] = sign
    if share:
        state = _Rows(rows, builder.widths)
        while (key := state.most_frequent()) is not None:
            a, b, distance, relative = key
            shared = builder.add(a, 0, b, distance, relative < 0)
            for r in sorted(state.rows_with[a] & state.rows_with[b]):
                row = state.rows[r]
                for s, sign in sorted((s, sign) for (n, s), sign in row.items() if n == a):
                    if row.get((a, s)) != sign:
                        continue
                    partner = (b, s + distance)
                    if partner == (a, s) or row.get(partner) != sign * relative:
                        continue
                    state.remove(r, Term(a, s, sign))
                    state.remove(r, Term(b, s + distance, sign * relative))
                    state.insert(r, Term(shared, s, sign))
    # the blocks of a row hold different nodes (leaves of other inputs, sub-expressions of them): merge them back
    rows = [
        {key: sign for part in rows[j * blocks : (j + 1) * blocks] for key, sign in part.items()}
        for j in range(len(expressed))
    ]
    shared_sum = None
    if uses_common.any():
        shared_sum = builder.sum_tree([Term(n, s, sign) for (n, s), sign in sorted(rows.pop().items())])
    for j, row in enumerate(rows):
        terms = [Term(n, s, sign) for (n, s), sign in sorted(row.items())]
        if uses_common[j] and shared_sum is not None:
            terms.append(shared_sum)
        builder.output(builder.sum_tree(terms), int(constants[j]))
    return builder.graph


def _digits(values: np.ndarray) -> int:
    return sum(len(csd_digits(int(v))) for v in values)


def _common_row(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A row ``common`` whose product ``common . x``, computed once and added to the rows that use it, saves
    digits: per column the value that minimizes the digits of the column minus it (for a +-1 matrix on bits, the
    column's majority sign: every row then holds only the other half of its inputs, at twice the weight, plus the
    one shared sum). A row uses it when that saves more digits than the one adder it costs. Returns (common,
    uses) with ``uses`` per row; a common row of zeros when nothing is saved."""
    n_out, n_in = matrix.shape
    nothing = (np.zeros(n_in, np.int64), np.zeros(n_out, bool))
    if n_out < 3:
        return nothing
    common = np.zeros(n_in, np.int64)
    for i in range(n_in):
        column = matrix[:, i]
        candidates = sorted(set(column.tolist()), key=abs)
        costs = [(_digits(column - c), abs(c), c) for c in candidates if c != 0]
        best = min(costs, default=None)
        if best is not None and best[0] < _digits(column):
            common[i] = best[2]
    if not common.any():
        return nothing
    uses = np.array([_digits(row - common) + 1 < _digits(row) for row in matrix])
    # the shared product costs its own digits once: worth it only if the rows together save more
    saved = sum(_digits(row) - _digits(row - common) - 1 for row in matrix[uses])
    if uses.sum() < 2 or saved <= _digits(common):
        return nothing
    return common, uses
