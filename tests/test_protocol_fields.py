"""Protocol fields are knobs or facts, not both (tasks/protocol.py), for every registered benchmark.

- a fact has one value in every protocol of its benchmark and cannot be overridden (a clear ``ValueError``);
- a knob is read by the benchmark's execution: its env package (``vla_gym/<backend>/``) or the functions of
  its ``tasks`` module (plan, step limits); a field read nowhere would be a setting that changes the digest
  and nothing else;
- facts stay in the digest (a changed pin is a changed protocol) and the published digests are unchanged.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
from pathlib import Path

import pytest

from tasks.protocol import Protocol
from tasks.registry import BENCHMARKS, get_benchmark

# digests published in README / docs before fields were sorted into knobs and facts
PUBLISHED = {
    ("calvin", "vlm4vla"): "160ab4787c60ec59",
    ("libero_long", "vlm4vla"): "fe0890d3878be05a",
    ("simpler_bridge", "vlm4vla_fast"): "bf99087f8add089e",
    ("simpler_bridge", "terminate_on_success"): "d5e96252e26176d7",
}


def _attributes_read(path: Path, skip: tuple[str, ...] = ("__post_init__", "to_dict")) -> set[str]:
    """Attribute names read in the functions of a source file (validation and serialisation left out)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef) and node.name not in skip:
            names |= {sub.attr for sub in ast.walk(node) if isinstance(sub, ast.Attribute)}
    return names


def _read_by_execution(name: str) -> set[str]:
    bench = get_benchmark(name)
    package = Path(importlib.import_module(bench.entry_point.partition(":")[0]).__file__).parent
    read: set[str] = set()
    for path in package.glob("*.py"):
        read |= _attributes_read(path)
    for cls in (type(bench), type(bench.protocol())):
        read |= _attributes_read(Path(inspect.getsourcefile(cls)))
    return read


def _other_value(value: object) -> object:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value + "_other"
    if isinstance(value, tuple):
        return ()
    raise TypeError(f"no alternative value for {value!r}")


def _fields(protocol: Protocol) -> tuple[list[str], list[str]]:
    names = [f.name for f in dataclasses.fields(protocol)]
    facts = [n for n in names if n in protocol.FACTS]
    knobs = [n for n in names if n not in protocol.FACTS and n not in protocol.IDENTITY]
    return facts, knobs


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_every_field_is_identity_knob_or_fact(name: str) -> None:
    bench = get_benchmark(name)
    default = bench.protocol()
    names = {f.name for f in dataclasses.fields(default)}
    assert set(default.FACTS) <= names and set(default.IDENTITY) <= names, "FACTS/IDENTITY name unknown fields"
    assert all(isinstance(reason, str) and len(reason) > 10 for reason in default.FACTS.values())
    facts, knobs = _fields(default)
    assert facts and knobs
    for protocol_name, protocol in bench.protocols.items():
        for fact in facts:  # one value across the benchmark's protocols
            assert getattr(protocol, fact) == getattr(default, fact), (protocol_name, fact)
            assert fact in protocol.to_dict(), f"fact {fact} must stay in the digest"


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_facts_cannot_be_overridden(name: str) -> None:
    bench = get_benchmark(name)
    facts, _ = _fields(bench.protocol())
    for fact in facts:
        other = _other_value(getattr(bench.protocol(), fact))
        with pytest.raises(ValueError, match=f"'{fact}' is a fact of the {name} protocols"):
            bench.protocol(**{fact: other})
        # the same value is not a change: configs that spell the fact out still load
        assert bench.protocol(**{fact: getattr(bench.protocol(), fact)}) == bench.protocol()
        with pytest.raises(ValueError, match="is a fact"):
            type(bench.protocol())(**{**bench.protocol().__dict__, fact: other})


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_every_knob_is_read_by_the_execution(name: str) -> None:
    _, knobs = _fields(get_benchmark(name).protocol())
    unread = sorted(set(knobs) - _read_by_execution(name))
    assert not unread, f"{name}: protocol fields {unread} change the digest but nothing reads them"


def test_the_scan_finds_an_unread_knob() -> None:
    """The scan is not vacuous: a field nothing reads is reported."""
    read = _read_by_execution("calvin")
    assert "max_steps_per_subtask" in read and "no_such_knob_anywhere" not in read


@pytest.mark.parametrize(("name", "protocol"), sorted(PUBLISHED))
def test_published_digests_are_unchanged(name: str, protocol: str) -> None:
    assert get_benchmark(name).protocol(protocol).digest == PUBLISHED[(name, protocol)]


def test_identity_fields_cannot_be_overridden_on_an_env() -> None:
    from vla_gym.base import resolve_protocol

    libero = get_benchmark("libero_goal")
    with pytest.raises(ValueError, match="cannot change \\['suite'\\]"):
        resolve_protocol(libero, "vlm4vla", {"suite": "libero_10"})
    with pytest.raises(ValueError, match="a libero_long protocol cannot run on VLA/LiberoGoal-v0"):
        resolve_protocol(libero, get_benchmark("libero_long").protocol(), None)
    with pytest.raises(TypeError, match="protocol must be a name"):
        resolve_protocol(libero, 3, None)  # type: ignore[arg-type]
    renamed = resolve_protocol(libero, "vlm4vla", {"name": "mine", "max_steps": 10})
    assert (renamed.name, renamed.max_steps, renamed.suite) == ("mine", 10, "libero_goal")
