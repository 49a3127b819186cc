"""Where the Bridge assets come from, and what exactly they are (a digest; stand-in files flagged).

ManiSkill3 reads its assets from ``${MS_ASSET_DIR:-~/.maniskill}/data``: the WidowX robot under
``robots/widowx`` and the Bridge scenes under ``tasks/bridge_v2_real2sim_dataset``. Resolution order:

1. ``assets_dir`` given by the user (a folder holding ``data/`` or the ``data`` folder itself): used as is,
   never written to;
2. ``MS_ASSET_DIR``, then ``~/.maniskill``: used when complete, otherwise (``download=True``) the missing
   parts are fetched with ManiSkill's own downloader, which checksums the archive and shows its progress.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

# ManiSkill data-source ids -> folder they populate (relative to the data root)
DATA_SOURCES: dict[str, str] = {
    "widowx250s": "robots/widowx",
    "bridge_v2_real2sim": "tasks/bridge_v2_real2sim_dataset",
}
# A file some asset trees carry that lists stand-in (not benchmark) files.
STANDIN_LIST = "PROXY_FILES_PRESENT.txt"

DOWNLOAD_HINT = (
    "get them with ManiSkill's downloader on a machine with internet "
    "(`python -m mani_skill.utils.download_asset widowx250s` and "
    "`python -m mani_skill.utils.download_asset bridge_v2_real2sim`, which fill ${MS_ASSET_DIR:-~/.maniskill}/data), "
    "or pass assets_dir= a folder laid out the same way"
)


@dataclasses.dataclass(frozen=True)
class BridgeAssets:
    """A resolved asset tree: ``data_root`` is what ManiSkill calls ASSET_DIR."""

    data_root: Path
    digest: str  # sha256 over every file of the two trees (relative path + content), first 16 hex digits
    standin_files: tuple[str, ...]  # files named as stand-ins by the tree itself; empty for real assets
    source: str  # "assets_dir", "MS_ASSET_DIR", "~/.maniskill" or "downloaded"

    @property
    def are_standins(self) -> bool:
        return bool(self.standin_files)

    @property
    def bridge_root(self) -> Path:
        return self.data_root / DATA_SOURCES["bridge_v2_real2sim"]

    @property
    def robot_urdf(self) -> Path:
        return self.data_root / DATA_SOURCES["widowx250s"] / "wx250s.urdf"


def _data_root_of(folder: Path) -> Path:
    """Accept both the MS_ASSET_DIR-style folder (holding ``data/``) and the ``data`` folder itself."""
    if (folder / "data" / DATA_SOURCES["bridge_v2_real2sim"]).is_dir() or not (
        folder / DATA_SOURCES["bridge_v2_real2sim"]
    ).is_dir():
        return folder / "data"
    return folder


def missing_parts(data_root: Path) -> list[str]:
    """Data-source ids whose folders are absent or incomplete under ``data_root``."""
    missing = []
    if not (data_root / DATA_SOURCES["widowx250s"] / "wx250s.urdf").is_file():
        missing.append("widowx250s")
    bridge = data_root / DATA_SOURCES["bridge_v2_real2sim"]
    if not (bridge / "custom" / "info_bridge_custom_v0.json").is_file() or not (bridge / "stages").is_dir():
        missing.append("bridge_v2_real2sim")
    return missing


_DIGEST_CACHE: dict[tuple, str] = {}


def asset_digest(data_root: Path) -> str:
    """SHA-256 (16 hex digits) over every file under the robot and Bridge trees, in sorted path order."""
    files: list[Path] = []
    for rel in DATA_SOURCES.values():
        files.extend(p for p in (data_root / rel).rglob("*") if p.is_file())
    files.sort(key=lambda p: p.relative_to(data_root).as_posix())
    # Cheap key so one process hashes a tree once (envs are built per task).
    key = (str(data_root), tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files))
    if key in _DIGEST_CACHE:
        return _DIGEST_CACHE[key]
    h = hashlib.sha256()
    for path in files:
        h.update(path.relative_to(data_root).as_posix().encode())
        h.update(b"\0")
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\0")
    digest = h.hexdigest()[:16]
    _DIGEST_CACHE[key] = digest
    return digest


def standin_files(data_root: Path) -> tuple[str, ...]:
    """Files the tree declares as stand-ins (``PROXY_FILES_PRESENT.txt`` next to or inside ``data/``)."""
    for candidate in (data_root.parent / STANDIN_LIST, data_root / STANDIN_LIST):
        if candidate.is_file():
            text = candidate.read_text()
            # "a.glb b.glb c.obj are PROXIES (...)": the listed paths come before "are".
            words = text.split()
            listed = words[: words.index("are")] if "are" in words else words
            names = tuple(w for w in listed if "/" in w or "." in w)
            return names or ("(unnamed: see " + candidate.name + ")",)
    return ()


def _download(data_root: Path, ids: list[str]) -> None:
    from mani_skill.utils import assets as ms_assets
    from mani_skill.utils import download_asset

    data_root.mkdir(parents=True, exist_ok=True)
    for source_id in ids:
        source = dataclasses.replace(ms_assets.DATA_SOURCES[source_id], output_dir=data_root)
        print(f"[vla_gym.bridge] downloading ManiSkill asset {source_id!r} into {data_root} ...", flush=True)
        download_asset.download(source, verbose=True, non_interactive=True)


def resolve_assets(assets_dir: str | os.PathLike | None = None, *, download: bool = True) -> BridgeAssets:
    """Find (or fetch) the asset tree; raises ``FileNotFoundError`` saying how to get it."""
    if assets_dir is not None:
        folder = Path(assets_dir).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"assets_dir {folder} does not exist; {DOWNLOAD_HINT}")
        data_root = _data_root_of(folder)
        missing = missing_parts(data_root)
        if missing:
            raise FileNotFoundError(
                f"assets_dir {folder} lacks the Bridge asset(s) {missing} "
                f"(expected {[str(data_root / DATA_SOURCES[m]) for m in missing]}); {DOWNLOAD_HINT}"
            )
        source = "assets_dir"
    else:
        env_dir = os.environ.get("MS_ASSET_DIR")
        source = "MS_ASSET_DIR" if env_dir else "~/.maniskill"
        data_root = Path(env_dir or Path.home() / ".maniskill").expanduser() / "data"
        missing = missing_parts(data_root)
        if missing:
            if not download:
                raise FileNotFoundError(f"Bridge assets {missing} are not under {data_root}; {DOWNLOAD_HINT}")
            _download(data_root, missing)
            still = missing_parts(data_root)
            if still:
                raise FileNotFoundError(
                    f"downloading {still} into {data_root} did not complete; {DOWNLOAD_HINT}"
                )
            source = "downloaded"
    data_root = data_root.resolve()
    return BridgeAssets(
        data_root=data_root,
        digest=asset_digest(data_root),
        standin_files=standin_files(data_root),
        source=source,
    )
