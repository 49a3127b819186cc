"""Benchmark sets: several registered benchmarks evaluated in one run and reported as one number.

A set names its members (keys of :data:`tasks.registry.BENCHMARKS`); each member keeps its own env, protocol,
episode plan and scoring, so a member's numbers inside a set are exactly those of a run of that benchmark
alone. The set adds the aggregate: its headline (by default the unweighted mean of the members' headlines, each
computed over that member's own episodes), a table with one row per member, a bar plot and a digest derived
from the members' protocol digests. The harness reads all of this from the declaration and names no set.

A set whose members' headlines are not of one kind (CALVIN's average chain length beside a success rate)
cannot be averaged; such a set subclasses :class:`BenchmarkSet` and overrides :meth:`BenchmarkSet.headline`
(and :meth:`BenchmarkSet.format_headline`). Imports no simulator.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from tasks.protocol import Protocol, digest_of
from tasks.scoring import BarPlot, Section, Table, ci, num, pct, rate


@dataclasses.dataclass(frozen=True)
class BenchmarkSet:
    """Members evaluated one after the other, each with its own protocol; the headline aggregates them."""

    name: str  # key in tasks.registry.BENCHMARK_SETS (and the conf/env/<name>.yaml that runs it)
    title: str
    members: tuple[str, ...]  # benchmark names, in the order they run and are reported
    headline_name: str = "mean_member_headline"
    #: one sentence for reports saying exactly what the headline is
    headline_definition: str = "the unweighted mean of the members' headlines, each over its own episodes"
    member_label: str = "benchmark"  # what a member is called in reports ("suite")

    def __post_init__(self) -> None:
        if not self.members:
            raise ValueError(f"benchmark set {self.name!r} has no members")
        if len(set(self.members)) != len(self.members):
            raise ValueError(f"benchmark set {self.name!r} names a member twice: {list(self.members)}")

    # ---- members
    def benchmarks(self) -> dict[str, Any]:
        """Member name -> its registered benchmark object; an unknown member is a ``KeyError`` naming the set."""
        from tasks.registry import get_benchmark  # here: the registry imports this module's sets by name

        found = {}
        for member in self.members:
            try:
                found[member] = get_benchmark(member)
            except KeyError as exc:
                raise KeyError(
                    f"benchmark set {self.name!r} names {member!r}, which is not a registered benchmark: {exc.args[0]}"
                ) from exc
        return found

    def check_members(self) -> None:
        """Refuse members whose headlines the default :meth:`headline` cannot average (of different kinds)."""
        kinds = {(b.headline_name, b.headline_is_rate) for b in self.benchmarks().values()}
        if len(kinds) > 1 and type(self).headline is BenchmarkSet.headline:
            raise ValueError(
                f"benchmark set {self.name!r} averages its members' headlines, but they are of different kinds "
                f"{sorted(kinds)}; subclass BenchmarkSet and override headline() for this set"
            )

    def member_title(self, member: str) -> str:
        return str(getattr(self.benchmarks()[member], "title", member))

    # ---- numbers
    def digest(self, protocol_digests: Mapping[str, str]) -> str:
        """The set's digest, from its members' protocol digests (in member order) and its headline rule: two
        set runs are comparable iff their set digests match."""
        missing = [m for m in self.members if m not in protocol_digests]
        if missing:
            raise KeyError(f"benchmark set {self.name!r}: no protocol digest for member(s) {missing}")
        return digest_of(
            {"headline": self.headline_name, "members": [[m, protocol_digests[m]] for m in self.members]}
        )

    def summarize(
        self,
        member_metrics: Mapping[str, Mapping[str, Any]],
        protocols: Mapping[str, Protocol],
        protocol_episodes: Mapping[str, int] | None = None,
    ) -> dict[str, Any]:
        """The set's metrics from each member's own metrics (``Benchmark.summarize`` of its records), the
        protocol it ran and, when given, how many episodes that protocol's whole plan has. ``headline`` is
        :meth:`headline`; ``complete`` says whether every member ran its protocol's whole plan (False when a
        subset was asked for, or when the plan sizes are not given and a member ran fewer than it planned)."""
        missing = [m for m in self.members if m not in member_metrics or m not in protocols]
        if missing:
            raise KeyError(f"benchmark set {self.name!r}: no metrics or protocol for member(s) {missing}")
        digests = {m: protocols[m].digest for m in self.members}
        rows = []
        for member in self.members:
            metrics, protocol = member_metrics[member], protocols[member]
            rows.append(
                {
                    "benchmark": member,
                    "title": self.member_title(member),
                    "protocol": protocol.name,
                    "protocol_digest": digests[member],
                    "episodes": metrics["episodes"],
                    "planned": metrics["planned"],
                    "protocol_episodes": (protocol_episodes or {}).get(member, metrics["planned"]),
                    "headline": dict(metrics["headline"]),
                    **metrics["overall"],  # n, successes, rate, ci95, errors over the member's own episodes
                }
            )
        successes = sum(row["successes"] for row in rows)
        n = sum(row["n"] for row in rows)
        out: dict[str, Any] = {
            "benchmark_set": self.name,
            "title": self.title,
            "members": list(self.members),
            "per_member": rows,
            "episodes": sum(row["episodes"] for row in rows),
            "planned": sum(row["planned"] for row in rows),
            "errors": sum(row["errors"] for row in rows),
            "protocol_episodes": sum(row["protocol_episodes"] for row in rows),
            "complete": all(row["episodes"] == row["protocol_episodes"] for row in rows),
            # every episode of every member in one pool: NOT the headline (members of unequal size weigh
            # unequally here); kept for reference
            "pooled": rate(successes, n),
            "protocol_digests": digests,
            "set_digest": self.digest(digests),
        }
        out["headline"] = {"name": self.headline_name, "value": self.headline(rows),
                           "definition": self.headline_definition}  # fmt: skip
        return out

    def headline(self, per_member: Sequence[Mapping[str, Any]]) -> float | None:
        """The unweighted mean of the members' headline values; None while a member has none (no episode)."""
        values = [row["headline"]["value"] for row in per_member]
        if not values or any(v is None for v in values):
            return None
        return sum(values) / len(values)

    def format_headline(self, value: float | None) -> str:
        first = next(iter(self.benchmarks().values()))
        return pct(value) if first.headline_is_rate else num(value)

    # ---- report
    def report_header(self, metrics: Mapping[str, Any]) -> list[str]:
        """Bullet lines under the set report's title."""
        lines = [
            f"- **{metrics['headline']['name']}: {self.format_headline(metrics['headline']['value'])}**: "
            f"{metrics['headline']['definition']}",
            f"- set digest `{metrics['set_digest']}` (from the member protocol digests below)",
            f"- episodes: {metrics['episodes']} of the {metrics['planned']} asked for, errors: {metrics['errors']} "
            f"(counted as failures)",
        ]
        if not metrics["complete"]:
            lines.append(f"- **a subset**: {metrics['episodes']} of the {metrics['protocol_episodes']} episodes the "
                         f"members' protocols define; not comparable with whole-protocol numbers")  # fmt: skip
        return lines

    def report_sections(self, metrics: Mapping[str, Any]) -> list[Section]:
        """One row per member: its protocol, episodes, success rate with its 95% Wilson interval, headline."""
        label = self.member_label
        rows = [
            (
                f"[{row['title']}]({row['benchmark']}/report.md)", f"`{row['protocol']}`",
                f"`{row['protocol_digest']}`", f"{row['episodes']} / {row['protocol_episodes']}", row["successes"],
                pct(row["rate"]), ci(row), row["errors"],
            )
            for row in metrics["per_member"]
        ]  # fmt: skip
        head = metrics["headline"]
        rows.append(
            (f"**{head['name']}**", "", "", "", "", f"**{self.format_headline(head['value'])}**", "", "")
        )
        pooled = metrics["pooled"]
        note = (
            f"Each {label}'s rate is over its own episodes; the headline is their unweighted mean. For reference, "
            f"all {pooled['n']} episodes pooled: {pct(pooled['rate'])} {ci(pooled)} (not the headline). Per-task "
            f"tables: each {label}'s own report."
        )
        header = (label, "protocol", "digest", "episodes / plan", "successes", "rate", "95% CI", "errors")
        return [Section(f"Per {label}", (Table(header, tuple(rows)), note))]

    def plots(self, metrics: Mapping[str, Any]) -> list[BarPlot]:
        rows = metrics["per_member"]
        return [
            BarPlot(
                key="plot",
                filename=f"success_per_{self.member_label}.png",
                entries=tuple(rows),
                positions=tuple(range(len(rows))),
                xlabel=self.member_label,
                ylabel="success rate (95% Wilson interval)",
                subtitle=f"{metrics['headline']['name']} = {self.format_headline(metrics['headline']['value'])}",
                labels=tuple(row["title"] for row in rows),
            )
        ]


# The four LIBERO suites papers report (OpenVLA, openpi, ...), LIBERO-90 not among them.
LIBERO = BenchmarkSet(
    name="libero",
    title="LIBERO (Spatial, Object, Goal, Long)",
    members=("libero_spatial", "libero_object", "libero_goal", "libero_long"),
    headline_name="mean_suite_success_rate",
    headline_definition=(
        "the mean of the 4 suite success rates (Spatial, Object, Goal, Long), each suite's rate over its own "
        "episodes"
    ),
    member_label="suite",
)
