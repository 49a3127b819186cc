"""Per-benchmark settings of the external agents (OpenVLA, pi0, the openpi client): one copy, in the policy YAML.

Each such agent takes its table as the constructor argument ``benchmarks`` (benchmark name -> settings).
Built by Hydra (``policy=pi0``) it gets the composed config's table, with the user's
``policy.benchmarks.<benchmark>.<field>=<value>`` overrides. Built in Python, it reads the same file through
:func:`policy_table`, and any entries it is given are merged over that table field by field. There is no
Python copy of the values, so the YAML a user reads is what runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from typing import Any

from omegaconf import OmegaConf

Table = dict[str, dict[str, Any]]


def policy_table(config: str) -> Table:
    """The ``benchmarks`` table of ``conf/policy/<config>.yaml`` (``config`` e.g. ``"pi0"`` or ``"base/openvla"``)."""
    path = resources.files("conf").joinpath("policy", *f"{config}.yaml".split("/"))
    if not path.is_file():
        raise FileNotFoundError(f"no policy config conf/policy/{config}.yaml (the agent's per-benchmark table)")
    # OmegaConf parses it as Hydra does (anchors, interpolations), so both routes see the same values
    loaded = OmegaConf.to_container(OmegaConf.create(path.read_text()), resolve=True)
    table = loaded.get("benchmarks") if isinstance(loaded, dict) else None
    if not isinstance(table, dict):
        raise ValueError(f"conf/policy/{config}.yaml has no 'benchmarks' table (benchmark name -> settings)")
    return {str(name): dict(entry or {}) for name, entry in table.items()}


def merged_table(config: str, overrides: Mapping[str, Mapping[str, Any] | None] | None) -> Table:
    """``config``'s table with ``overrides`` merged over it per entry, field by field (new entries are added)."""
    table = policy_table(config)
    for name, entry in (overrides or {}).items():
        table[str(name)] = {**table.get(str(name), {}), **dict(entry or {})}
    return table


def table_entry(table: Mapping[str, Mapping[str, Any]], benchmark: str, agent: str, config: str) -> dict[str, Any]:
    """``table[benchmark]``, or a ``KeyError`` that says where to add the missing entry."""
    if benchmark not in table:
        raise KeyError(
            f"{agent} has no settings for benchmark {benchmark!r} (its table has {sorted(table)}): add "
            f"benchmarks.{benchmark} to conf/policy/{config}.yaml, or give it on the command line, e.g. "
            f"+policy.benchmarks.{benchmark}.<field>=<value>"
        )
    return dict(table[benchmark])
