"""Protocols are data: every constant that changes a score lives in a frozen dataclass with a digest.

Each field is one of three kinds (``tests/test_protocol_fields.py`` checks every registered benchmark):

- identity: ``benchmark``, ``name`` (and a benchmark's own, e.g. LIBERO's ``suite``): which protocol it is;
- knob: a setting the benchmark's execution reads; every value its check accepts is implemented;
- fact: what the protocol is pinned to (a simulator version, the scene, the control rate). A fact has one
  value, declared with its reason in the class's ``FACTS``; ``replace`` refuses to change it. Facts stay in
  the digest, so runs under another pinned simulator or scene never compare equal to these.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Any, ClassVar


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=_jsonable)


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"cannot serialise {type(value).__name__} into a protocol")


def digest_of(data: Any) -> str:
    """First 16 hex digits of the SHA-256 of the canonical JSON: two runs are comparable iff digests match."""
    return hashlib.sha256(canonical_json(data).encode()).hexdigest()[:16]


def pick_protocol(
    benchmark: str,
    protocols: Mapping[str, Protocol],
    name: str | None,
    default: str,
    overrides: Mapping[str, Any],
    aliases: Mapping[str, str] | None = None,
) -> Protocol:
    """``protocols[name]`` (``default`` when None; ``aliases`` map other names) with field overrides."""
    aliases = aliases or {}
    key = default if name is None else aliases.get(name, name)
    if key not in protocols:
        extra = f" (aliases {sorted(aliases)})" if aliases else ""
        raise KeyError(f"unknown {benchmark} protocol {name!r}; known: {sorted(protocols)}{extra}")
    base = protocols[key]
    return base.replace(**overrides) if overrides else base


@dataclasses.dataclass(frozen=True)
class Protocol:
    """Base for benchmark protocols. Subclasses add fields; ``benchmark`` and ``name`` identify them."""

    benchmark: str
    name: str

    # field -> why it has one value only (see the module docstring)
    FACTS: ClassVar[Mapping[str, str]] = {}
    IDENTITY: ClassVar[tuple[str, ...]] = ("benchmark", "name")

    def __post_init__(self) -> None:
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for field, reason in self.FACTS.items():
            if getattr(self, field) != defaults[field]:
                raise ValueError(_fact_message(self.benchmark, field, defaults[field], getattr(self, field), reason))

    def to_dict(self) -> dict[str, Any]:
        return json.loads(canonical_json(dataclasses.asdict(self)))

    @property
    def digest(self) -> str:
        return digest_of(self.to_dict())

    def replace(self, **changes: Any) -> Protocol:
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise KeyError(f"unknown {self.benchmark} protocol field(s) {unknown}")
        for field, value in changes.items():
            if field in self.FACTS and value != getattr(self, field):
                raise ValueError(_fact_message(self.benchmark, field, getattr(self, field), value, self.FACTS[field]))
        return dataclasses.replace(self, **changes)


def _fact_message(benchmark: str, field: str, fact: Any, given: Any, reason: str) -> str:
    return (
        f"protocol field {field!r} is a fact of the {benchmark} protocols, not a setting: it is {fact!r} "
        f"({reason}); got {given!r}"
    )
