"""A live progress bar with the running success rate and ETA (tqdm, on stderr)."""

from __future__ import annotations

import sys

from tqdm import tqdm

from harness.records import EpisodeRecord


class Progress:
    def __init__(self, total: int, desc: str, enabled: bool | str = "auto") -> None:
        if enabled == "auto":
            enabled = sys.stderr.isatty()
        self.successes = self.errors = self.done = 0
        self._bar = tqdm(total=total, desc=desc, unit="ep", disable=not enabled, dynamic_ncols=True)

    def update(self, record: EpisodeRecord) -> None:
        self.done += 1
        self.successes += int(record.success and not record.is_error)
        self.errors += int(record.is_error)
        postfix = f"success {self.successes}/{self.done} ({100 * self.successes / self.done:.1f}%)"
        if self.errors:
            postfix += f", errors {self.errors}"
        self._bar.set_postfix_str(postfix, refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()
