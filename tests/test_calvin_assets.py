"""CALVIN data files: folder resolution, checksums, and downloading (against a local HTTP server)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from vla_gym.calvin import assets


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Serve a tiny tree from 127.0.0.1; yields (base URL, served folder)."""
    root = tmp_path / "served"
    (root / "blocks").mkdir(parents=True)
    (root / "blocks" / "a.urdf").write_bytes(b"<robot name='a'/>")
    (root / "b.txt").write_bytes(b"hello" * 1000)
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def _entry(root: Path, name: str) -> tuple[str, int, str]:
    data = (root / name).read_bytes()
    return name, len(data), hashlib.sha256(data).hexdigest()


def test_download_checks_and_places_files(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base, root = server
    monkeypatch.setenv("VLA_GYM_CALVIN_BASE_URL", base)
    manifest = (_entry(root, "blocks/a.urdf"), _entry(root, "b.txt"))
    dest = tmp_path / "cache"
    assets.download(dest, manifest, progress=False)
    assert (dest / "blocks" / "a.urdf").read_bytes() == (root / "blocks" / "a.urdf").read_bytes()
    assets.check_folder(dest, manifest)
    (dest / "b.txt").write_bytes(b"tampered")
    with pytest.raises(assets.AssetError, match=r"b\.txt.*SHA-256"):
        assets.check_folder(dest, manifest)


def test_download_rejects_a_checksum_mismatch(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base, root = server
    monkeypatch.setenv("VLA_GYM_CALVIN_BASE_URL", base)
    name, size, _ = _entry(root, "b.txt")
    dest = tmp_path / "cache"
    with pytest.raises(assets.AssetError, match="not the pinned file"):
        assets.download(dest, ((name, size, "0" * 64),), progress=False)
    assert not (dest / "b.txt").exists()
    assert not [p for p in dest.iterdir() if p.name.startswith(".")]  # no partial file left behind


def test_download_reports_a_missing_remote_file(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base, _ = server
    monkeypatch.setenv("VLA_GYM_CALVIN_BASE_URL", base)
    with pytest.raises(assets.AssetError, match="nope.obj"):
        assets.download(tmp_path / "cache", (("nope.obj", 1, "0" * 64),), progress=False)


def test_urls_are_pinned_to_the_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VLA_GYM_CALVIN_BASE_URL", raising=False)
    monkeypatch.delenv("VLA_GYM_CALVIN_SEQUENCES_URL", raising=False)
    assert assets.file_url("plane/plane.urdf") == (
        "https://raw.githubusercontent.com/mees/calvin_env/1431a46bd36bde5903fb6345e68b5ccc30def666/data/plane/plane.urdf"
    )
    assert assets.file_url(assets.SEQUENCES) is None
    with pytest.raises(assets.AssetError, match="eval_sequences.json"):
        assets.download(Path("/nonexistent-calvin-dir"), ((assets.SEQUENCES, 1, "0" * 64),), progress=False)


def test_shared_data_matches_the_manifest(shared_data: Path) -> None:
    folder = shared_data / "calvin"
    assets.check_folder(folder)
    assert assets.resolve_data_dir(folder) == folder
    listed = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert {name for name, _, _ in assets.MANIFEST} <= listed


def test_user_folder_with_a_missing_file(shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "calvin"
    shutil.copytree(shared_data / "calvin" / "blocks", folder / "blocks")
    with pytest.raises(assets.AssetError, match="franka_panda/panda_longer_finger.urdf") as info:
        assets.resolve_data_dir(folder)
    assert "data_dir" in str(info.value)
    monkeypatch.setenv("VLA_GYM_CALVIN_DIR", str(tmp_path / "missing"))
    with pytest.raises(assets.AssetError, match="does not exist"):
        assets.resolve_data_dir()


def test_env_reports_missing_assets(tmp_path: Path) -> None:
    import gymnasium as gym

    import vla_gym  # noqa: F401

    with pytest.raises(assets.AssetError, match="lacks"):
        gym.make("VLA/Calvin-v0", data_dir=str(tmp_path))
