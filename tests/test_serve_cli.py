"""`python -m harness.serve policy=...` as a process: binds loopback, serves openpi's client, logs counters."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from openpi_client.websocket_client_policy import WebsocketClientPolicy

from tests.conftest import REPO_ROOT

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager:DeprecationWarning"),
]


def _lines(stream, out: queue.Queue) -> None:
    for line in iter(stream.readline, ""):
        out.put(line)
    out.put(None)


def _wait_for(lines: queue.Queue, pattern: str, log: list[str], timeout: float) -> re.Match:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        log.append(line)
        if match := re.search(pattern, line):
            return match
    raise AssertionError(f"no line matching {pattern!r} within {timeout} s; output so far:\n{''.join(log)}")


def _start(overrides: list[str], tmp_path: Path) -> tuple[subprocess.Popen, queue.Queue]:
    cmd = [
        sys.executable, "-m", "harness.serve", "--config-dir", str(REPO_ROOT / "tests" / "harness_conf"),
        "port=0", "log_every_s=0", f"hydra.run.dir={tmp_path}", *overrides,
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stdout, lines), daemon=True).start()
    return proc, lines


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_serve_cli_random_policy(tmp_path: Path) -> None:
    from policies.openpi_client import OpenPIClientAgent
    from policies.random_agent import RandomAgent

    proc, lines = _start(["policy=random", "policy.chunk_size=4", "policy.execute_steps=2"], tmp_path)
    log: list[str] = []
    try:
        port = int(_wait_for(lines, r"on ws://127\.0\.0\.1:(\d+)", log, 60).group(1))
        client = OpenPIClientAgent(port=port, request_timeout_s=20)
        client.configure("simpler_bridge", {})  # image + prompt only
        assert (client.chunk_size, client.execute_steps) == (4, 2)
        rng = np.random.default_rng(1)
        obs = {"image": rng.integers(0, 256, (3, 224, 224, 3), dtype=np.uint8), "language": ["a", "b", "c"]}
        got = client.act(obs, [0, 1, 2])
        client.close()
    finally:
        _stop(proc)
    np.testing.assert_array_equal(got, RandomAgent(seed=0, chunk_size=4, execute_steps=2).act(obs, [0, 1, 2]))
    assert proc.returncode == 0


def test_serve_cli_end_to_end(tmp_path: Path) -> None:
    cmd = [
        sys.executable, "-m", "harness.serve", "--config-dir", str(REPO_ROOT / "tests" / "harness_conf"),
        "policy=wire_echo", "port=0", "log_every_s=0", "max_message_mb=1", f"hydra.run.dir={tmp_path}",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stdout, lines), daemon=True).start()
    log: list[str] = []
    try:
        port = int(_wait_for(lines, r"on ws://127\.0\.0\.1:(\d+)", log, 60).group(1))
        policy = WebsocketClientPolicy(host="127.0.0.1", port=port)
        assert policy.get_server_metadata()["agent"] == "EchoAgent"
        image = np.full((224, 224, 3), 51, dtype=np.uint8)
        actions = policy.infer({"observation/image": image, "prompt": "open the drawer"})["actions"]
        assert actions.shape == (4, 7)
        np.testing.assert_allclose(actions[:, 0], 0.2)  # 51 / 255: the image went through untouched
        assert actions[0, 2] == len("open the drawer")
        with pytest.raises(RuntimeError, match="exceeds the limit"):
            policy.infer({"observation/image": np.zeros((8, 224, 224, 3), np.uint8), "prompt": "too big"})
        policy.infer({"observation/image": image, "prompt": "still serving"})
        policy._ws.close()
        _wait_for(lines, r"closed; counters", log, 10)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
    while (line := lines.get(timeout=5)) is not None:
        log.append(line)
    output = "".join(log)
    assert proc.returncode == 0, output
    final = re.findall(r"counters (\{.*\})", output)[-1]
    assert "'requests': 2" in final and "'errors_oversized': 1" in final and "'connections': 1" in final, final
    assert (tmp_path / "serve.log").is_file()
