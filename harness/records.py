"""The episode record: one JSON line per finished episode, the only input of metrics and reports."""

from __future__ import annotations

import dataclasses
from typing import Any

from tasks.plan import EpisodeKey

STATUS_OK = "ok"
STATUS_ERROR = "error"


@dataclasses.dataclass
class EpisodeRecord:
    """What happened in one planned episode.

    ``status`` is ``"ok"`` when the env ran the episode to its end (terminated or truncated) and ``"error"``
    when the agent raised or returned an invalid action, or the env worker kept dying: an error is never a
    success. ``episode_metrics`` is the env's benchmark-specific final-step dict (see the env notes).
    """

    episode: int
    task_index: int
    task: str
    within_task: int
    status: str
    success: bool
    steps: int = 0
    agent_calls: int = 0
    terminated: bool = False
    truncated: bool = False
    episode_metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: the agent's own notes on the episode (``Agent.episode_info``), e.g. a scripted expert's failed skill
    agent_info: dict[str, Any] = dataclasses.field(default_factory=dict)
    error: str | None = None
    attempts: int = 1
    duration_s: float = 0.0

    @classmethod
    def for_key(cls, key: EpisodeKey, **fields: Any) -> EpisodeRecord:
        return cls(
            episode=key.index, task_index=key.task_index, task=key.task, within_task=key.within_task, **fields
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EpisodeRecord:
        known = {f.name for f in dataclasses.fields(cls)}
        required = [
            f.name for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]  # fmt: skip
        missing = sorted(name for name in required if name not in data)
        if missing:
            raise KeyError(f"episode record is missing field(s) {missing}: {data}")
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def is_error(self) -> bool:
        return self.status == STATUS_ERROR
