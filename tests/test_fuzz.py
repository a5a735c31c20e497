"""Seeded protobuf mutants of the zoo fixtures and of the digits MLP through ``compile --target onnxruntime`` and
``inspect`` (issue 17): every case ends bit-exact, within its derived bound, or refused with one line and nothing
written; never "unexpected", NOT EXACT, a traceback or a hang. ``benchmarks/fuzz.py`` runs the same cases by the
thousand."""

from __future__ import annotations

import pytest

from benchmarks import fuzz

#: cases in CI: about 1 s each (a compile with 50 samples and an inspect), ~60 s on a shared 2-core machine
CASES = 45
#: per command; a compile of these small models takes about 1 s, so this only trips on a hang
TIME_LIMIT = 60.0


@pytest.fixture(scope="module")
def sources(mlp_w4a8) -> dict[str, bytes]:
    _, graph = mlp_w4a8
    found = fuzz.zoo_fixtures()
    assert found, f"no zoo fixtures in {fuzz.FIXTURES}"
    return {**found, "digits_mlp_w4a8": graph.model.SerializeToString()}


def test_mutants_are_mutated(sources):
    """The mutator changes the model (so the cases below test something) and is reproducible from its seed."""
    for source in sources.values():
        for seed in range(20):
            kind, _, data = fuzz.mutant(source, seed)
            assert fuzz.mutant(source, seed)[2] == data
            assert kind in fuzz.KINDS
        assert sum(fuzz.mutant(source, seed)[2] != source for seed in range(20)) >= 18


def test_classify_flags_contract_breaks(tmp_path):
    """The oracle itself: each way a case can break the contract is a finding, a clean refusal is not."""
    out = tmp_path / "out"
    refusal = "qdeploy: error: node Quant_0: scale must be > 0, got 0; export a positive scale\n"
    assert fuzz.classify("compile", 1, "", refusal, out)[0] == "refused"
    assert fuzz.classify("compile", 1, "", "qdeploy: error: unexpected KeyError: 99 (rerun ...)\n", out)[0] == "internal"
    assert fuzz.classify("compile", 3, "result: NOT EXACT\n", "", out)[0] == "not_exact"
    assert fuzz.classify("compile", None, "", "", out)[0] == "hang"
    assert fuzz.classify("compile", 1, "", "Traceback (most recent call last):\n" + refusal, out)[0] == "traceback"
    assert fuzz.classify("compile", 1, "", refusal + refusal, out)[0] == "not_one_error_line"
    assert fuzz.classify("compile", 0, "bit-exact: 10/10 outputs\nresult: EXACT\n", "", out)[0] == "exact"
    out.mkdir()
    assert fuzz.classify("compile", 1, "", refusal, out)[0] == "output_left"


@pytest.mark.parametrize("index", range(CASES))
def test_mutant_keeps_the_contract(sources, index, tmp_path):
    source, seed = fuzz.case_seeds(sources, CASES, seed=17)[index]
    kind, mutation, data = fuzz.mutant(sources[source], seed)
    path = tmp_path / f"{source}.onnx"
    path.write_bytes(data)
    for record in fuzz.run_case(path, tmp_path, TIME_LIMIT):
        assert record["outcome"] in fuzz.CLEAN_OUTCOMES, (
            f"{source} seed {seed} ({kind}: {mutation}), {record['command']}: {record['outcome']}\n{record['stderr']}"
        )
