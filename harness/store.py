"""The result store: one output folder per evaluation, resumable after any crash.

Layout::

    run.json        protocol (+ digest), benchmark, env, policy, seed, package versions
    config.yaml     the resolved Hydra config of the latest invocation
    episodes.jsonl  one EpisodeRecord per line, appended and fsync'ed as each episode finishes

A re-run with the same folder skips the episodes already in ``episodes.jsonl``; a folder made for another
protocol (digest) or another policy/env/seed is refused, so numbers of different set-ups never mix.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.records import EpisodeRecord
from tasks.registry import BENCHMARKS, get_benchmark

RUN_FILE = "run.json"
SET_FILE = "set.json"  # marks a benchmark set's folder (harness.benchmark_set): its members' stores are below
EPISODES_FILE = "episodes.jsonl"
CONFIG_FILE = "config.yaml"

# Packages whose versions can change a score (with every benchmark's ``simulator_packages``); missing ones
# are recorded as null.
GENERAL_PACKAGES = ("vla-gym", "gymnasium", "numpy")
MODEL_PACKAGES = ("torch", "transformers", "hydra-core", "omegaconf", "opencv-python")


def versioned_packages() -> tuple[str, ...]:
    simulators = [p for name in BENCHMARKS for p in getattr(get_benchmark(name), "simulator_packages", ())]
    return tuple(dict.fromkeys((*GENERAL_PACKAGES, *simulators, *MODEL_PACKAGES)))

# Keys of run.json that must match for a folder to be resumed (the protocol digest is checked first).
IDENTITY_KEYS = ("benchmark", "env_id", "env_kwargs", "policy", "checkpoint", "seed")


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in versioned_packages():
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


class StoreMismatchError(ValueError):
    """The output folder holds results of a different set-up."""


class ResultStore:
    """Append-only episode records in ``folder``; see the module docstring."""

    def __init__(self, folder: str | os.PathLike[str], run_info: Mapping[str, Any]) -> None:
        if "protocol_digest" not in run_info or "protocol" not in run_info:
            raise KeyError("run_info needs 'protocol' and 'protocol_digest'")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.run_info = dict(run_info)
        self._check_or_write_run_info()
        self.records: dict[int, EpisodeRecord] = {}
        self.duplicates_ignored = 0
        self._load()
        self._fh = open(self.episodes_path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for appends

    @property
    def episodes_path(self) -> Path:
        return self.folder / EPISODES_FILE

    def _check_or_write_run_info(self) -> None:
        if (self.folder / SET_FILE).exists():
            raise StoreMismatchError(
                f"{self.folder} holds a benchmark set's run (its {SET_FILE}; each member's store is in a subfolder), "
                f"not one benchmark's; use another output_dir"
            )
        path = self.folder / RUN_FILE
        self.versions_changed = False
        if not path.exists():
            info = {**self.run_info, "versions": package_versions()}
            atomic_write(path, json.dumps(info, indent=2, sort_keys=True, default=str))
            return
        old = json.loads(path.read_text())
        if old.get("protocol_digest") != self.run_info["protocol_digest"]:
            raise StoreMismatchError(
                f"{self.folder} holds results of protocol digest {old.get('protocol_digest')} "
                f"({old.get('protocol', {}).get('name')!r}) but this run's protocol has digest "
                f"{self.run_info['protocol_digest']} ({self.run_info['protocol'].get('name')!r}); results of "
                f"different protocols are not comparable. Use another output_dir for this protocol, or "
                f"delete {self.folder} to start over."
            )
        differing = [
            key for key in IDENTITY_KEYS
            if _canonical(old.get(key)) != _canonical(self.run_info.get(key))
        ]  # fmt: skip
        if differing:
            detail = "; ".join(f"{k}: stored {old.get(k)!r} vs now {self.run_info.get(k)!r}" for k in differing)
            raise StoreMismatchError(
                f"{self.folder} holds results of another set-up ({detail}). Use another output_dir, "
                f"or delete {self.folder} to start over."
            )
        # Recorded, not refused: a changed package version is worth a warning, not a lost run.
        self.versions_changed = old.get("versions") != package_versions()

    def _load(self) -> None:
        if not self.episodes_path.exists():
            return
        raw = self.episodes_path.read_bytes()
        good_end = 0
        for line in raw.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break  # a write cut short by a crash: dropped below, the episode will re-run
            try:
                record = EpisodeRecord.from_dict(json.loads(line))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ValueError(
                    f"{self.episodes_path} has a corrupt line at byte {good_end}: {line[:200]!r} ({exc}); "
                    f"remove that line to resume"
                ) from exc
            # The latest record of an episode wins (a re-run of an error episode replaces it).
            if record.episode in self.records:
                self.duplicates_ignored += 1
            self.records[record.episode] = record
            good_end += len(line)
        if good_end != len(raw):
            with open(self.episodes_path, "r+b") as fh:
                fh.truncate(good_end)
                fh.flush()
                os.fsync(fh.fileno())

    def done(self, retry_errors: bool = False) -> set[int]:
        """Episodes that need no re-run."""
        return {k for k, r in self.records.items() if not (retry_errors and r.is_error)}

    def append(self, record: EpisodeRecord) -> None:
        self._fh.write(json.dumps(record.to_dict(), sort_keys=True) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.records[record.episode] = record

    def select(self, episodes: Iterable[int]) -> list[EpisodeRecord]:
        """The stored records of ``episodes`` (in that order), skipping ones not run yet."""
        return [self.records[k] for k in episodes if k in self.records]

    def write_config(self, text: str) -> None:
        atomic_write(self.folder / CONFIG_FILE, text)

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_records(folder: str | os.PathLike[str]) -> list[EpisodeRecord]:
    """Every record of a store folder (latest per episode, in episode order), without opening it for writes."""
    path = Path(folder) / EPISODES_FILE
    records: dict[int, EpisodeRecord] = {}
    if path.exists():
        for line in path.read_text().splitlines(keepends=True):
            if line.endswith("\n"):
                record = EpisodeRecord.from_dict(json.loads(line))
                records[record.episode] = record
    return [records[k] for k in sorted(records)]


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so a crash leaves the old file or the new one, never half of one."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
