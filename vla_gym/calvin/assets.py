"""CALVIN scene-D data files: where they come from, their checksums, and the folder the env reads.

The files are those the original environment opens for scene D (URDFs, meshes, textures of calvin_env's
``data/`` folder at commit 1431a46, MIT licensed) plus ``eval_sequences.json``, the 1000 evaluation chains.

Where the env looks, first match wins:

1. the ``data_dir`` argument,
2. the ``VLA_GYM_CALVIN_DIR`` environment variable,
3. the cache folder ``$VLA_GYM_CACHE/calvin/<commit>`` (``VLA_GYM_CACHE`` defaults to ``~/.cache/vla_gym``),
   where missing calvin_env files are downloaded from
   ``https://raw.githubusercontent.com/mees/calvin_env/<commit>/data/<path>`` (the base can be changed with
   ``VLA_GYM_CALVIN_BASE_URL``, e.g. for a mirror).

Every file is checked against its SHA-256. ``eval_sequences.json`` is not part of calvin_env: CALVIN's
evaluation generates it at run time (``get_sequences(1000)``). A folder that holds the file uses it (it must
be the pinned one); otherwise :mod:`vla_gym.calvin.sequences` generates the same chains once and caches them
as ``$VLA_GYM_CACHE/calvin/<commit>/eval_sequences.json`` (the generated text is checked against the same
SHA-256). Setting ``VLA_GYM_CALVIN_SEQUENCES_URL`` downloads the file into the cache folder instead.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

CALVIN_ENV_REPO = "mees/calvin_env"
CALVIN_ENV_COMMIT = "1431a46bd36bde5903fb6345e68b5ccc30def666"
BASE_URL = f"https://raw.githubusercontent.com/{CALVIN_ENV_REPO}/{CALVIN_ENV_COMMIT}/data"
SEQUENCES = "eval_sequences.json"

# (path inside the data folder, size in bytes, sha256)
MANIFEST: tuple[tuple[str, int, str], ...] = (
    ("blocks/block_blue_small.urdf", 735, "932df4c1cd498aa1980534af1b0ee4c437be6d89bae68a6bebadd5566e44e04c"),
    ("blocks/block_pink_big.urdf", 735, "7655ebb6197ac16a6be6e24bbdcf108f9bef5e5c907acf905d0f59d84c71b4b1"),
    ("blocks/block_red_middle.urdf", 733, "0858ed14985658312e0d4385af2a3c0456800b8db6c9a84c05a876d6effc4b31"),
    ("calvin_table_D/meshes/base_link.mtl", 262, "865308a0f735c8f8fe67452d18af34f6e7901800c8fa0d088f023370578d208b"),
    ("calvin_table_D/meshes/base_link.obj", 27413, "0a9c532b0ab8ae0dcfa666aad7d6c6ee702982cfe852a9431e08daddd2c364ac"),
    ("calvin_table_D/meshes/button_link.STL", 7684, "7778c4885fee5bb681d4e2610c66a5ee6dd0367e33ac85d012398b8175c48972"),
    ("calvin_table_D/meshes/drawer_link.mtl", 275, "a27082feb174c82b66e5b640f197f5d1b4b0416860cb2a104ec269f09f499cea"),
    ("calvin_table_D/meshes/drawer_link.obj", 20987, "1edaf9102d40d48798dff1e0a47ababbe6696ff4e3eca8be9d7b1c19a50b29e2"),
    ("calvin_table_D/meshes/drawer_link_vhacd2.obj", 6391,
     "aaec11dec06816960fc043561071278e4f68d8db1146f283172f899adfea88ea"),
    ("calvin_table_D/meshes/led_link.STL", 684, "6ff03784853dadb12660e3d30da04da82e53651599a2ecd3716065db5c3a46c9"),
    ("calvin_table_D/meshes/light_link.STL", 105584, "c12cab6b92dcb487a710c4da6c7d25c6bc30bd168b90937bf4171e4e87471110"),
    ("calvin_table_D/meshes/plank_link.mtl", 262, "865308a0f735c8f8fe67452d18af34f6e7901800c8fa0d088f023370578d208b"),
    ("calvin_table_D/meshes/plank_link.obj", 1260, "82d5c9d3bdb87f29379ace1bcf0b833f91b30775f7466c1cbc6e903be28eb491"),
    ("calvin_table_D/meshes/slide_link.mtl", 275, "a27082feb174c82b66e5b640f197f5d1b4b0416860cb2a104ec269f09f499cea"),
    ("calvin_table_D/meshes/slide_link.obj", 46986, "e036ba214607c5e4ffad378bd9a0cc83bc6c26d34099e86f7224bab2088d29c6"),
    ("calvin_table_D/meshes/slide_link_vhacd2.obj", 6086,
     "75745970dbe00c09cfc94e5020423615823730b674fd0cf6b1e5454f1d74c987"),
    ("calvin_table_D/meshes/switch_link.mtl", 124, "e23b5279777ea3bcbaeb3a0c748f95a51d1dc3bcce1db8c035a9361512e73a66"),
    ("calvin_table_D/meshes/switch_link.obj", 68867, "d361d377602e4107d8adaac7f90fee7ce48d7d3252a65aa9430200029ff8b820"),
    ("calvin_table_D/meshes/switch_link_vhacd2.obj", 14567,
     "3bc65f10738c17c6fbca107c4149c4e2be8fcdc16c7ff2fb1809816489cc7d4e"),
    ("calvin_table_D/textures/dark_wood.png", 330964, "62104be5ca8d262530e5dcab5b44efb900c73a5f79ceba815c166e53af851bd4"),
    ("calvin_table_D/textures/dark_wood__gray_handle.png", 398762,
     "9659e9d3d6dfa66d314ac9f6a28bdecc3616fef20b68cdc81e4ac161c121cdb6"),
    ("calvin_table_D/urdf/calvin_table_D.urdf", 9441, "b1068f81ec0af69cc784e9d42610fb83ea63ec150997d74a8a9b4e2c87d057f3"),
    (SEQUENCES, 467691, "c99e041c255df3408ebf3bbb4feea8b407e17e60e7c07d172a6ea7ba6680e8ca"),
    ("franka_panda/meshes/collision/hand.obj", 15246, "237ca634f5dba029f9c1409ea6ccd8ea7c14a2e91053220fb4e03c534bbf04e4"),
    ("franka_panda/meshes/collision/link0.obj", 14924, "2f5a8174525857c24a1da625bcadc98157866d1fe00cc77c9f5c8ad12e64622d"),
    ("franka_panda/meshes/collision/link1.obj", 22975, "7214b0476670c5a07a1c2afec5302a6a20bcb9a59944a6fc7365fc46af743d52"),
    ("franka_panda/meshes/collision/link2.obj", 22687, "6ca34c6bf523950f16eac351e5f7da39eca1d94a08f2428c63b4181fca445052"),
    ("franka_panda/meshes/collision/link3.obj", 22869, "ced794dade9c65b6a694d409bdef59bb11e61bcc3a289e0468f2b1b01899d95c"),
    ("franka_panda/meshes/collision/link4.obj", 68015, "36574471c9cd500469aeb2b3150eae6417ac7b7a4b227e355f4adf3b552f9186"),
    ("franka_panda/meshes/collision/link5.obj", 67744, "477ef5533d21fac67d63a1d7695b03056f06d6d72d366b6811105d10e5f00cfb"),
    ("franka_panda/meshes/collision/link6.obj", 140218, "e1dc8bbca8690944e6331f5a108d49c363eeec179b56a9f913541a541e6a2cfc"),
    ("franka_panda/meshes/collision/link7.obj", 45131, "27b36f42fa2f6c79783a1e2379f9c12c0ffbedbe925e5d6d626a0b4411f37448"),
    ("franka_panda/meshes/collision/longer_finger_v2.obj", 4459,
     "d3730a31e4800ecfd3195170780a2e6236a266b3642096f49f16de299c35f2fe"),
    ("franka_panda/meshes/visual/colors.png", 33337, "bc8c81d8e9723de374dd718a1ddcd91dfe6dfe1e371b18383f6d084a13fe525b"),
    ("franka_panda/meshes/visual/digit_gel_only.STL", 134684,
     "8a4535356d40c03967aae041b0212888b60ace9d01f45979888d91c15f6b45fc"),
    ("franka_panda/meshes/visual/hand.mtl", 1132, "da2fb08fb2efec231cfd38b710e657b3ef04d3d3cf18082d3d043080dd6c79df"),
    ("franka_panda/meshes/visual/hand.obj", 713204, "3c95c6f99024842a8b9e73629dacc30ac5ee459feb0dbcc16df765fd27620584"),
    ("franka_panda/meshes/visual/link1.mtl", 262, "8c6e1b7fe3a382b872c986cfb3601e79b701afb7b4bfc72dcd6abd4b31f9d0f5"),
    ("franka_panda/meshes/visual/link1.obj", 1070650, "e0ec1bec9432a46f797e912cd8165798e62ebfd85c0807dce142bd6b9a768cd7"),
    ("franka_panda/meshes/visual/link2.mtl", 261, "e7821edf4876534ddeb9cdc789453e6473e2f1b9d33747f036005788b83199da"),
    ("franka_panda/meshes/visual/link2.obj", 1084458, "a1a41ada6d6cb8c51a8d0d19db9cadea101493842a52db75529e7ba0d4592904"),
    ("franka_panda/meshes/visual/link3.mtl", 931, "c2648eae04bf57f48100234ada9400156b1867d0fc2dbda2606bb786d6cfec51"),
    ("franka_panda/meshes/visual/link3.obj", 1237175, "82f81c15c236a41918dade0241ce40e59c4a0ee7fb08985f3a934380a8f7f594"),
    ("franka_panda/meshes/visual/link4.mtl", 925, "aa5e228aca4026e34e69dc9eb80bed96cc7d81dae5595984c16b464de5ba5963"),
    ("franka_panda/meshes/visual/link4.obj", 1272305, "91f36ecba40ecce6c169ede6d152a6c8853ee886e2b145ef6c5865cc9d5516b8"),
    ("franka_panda/meshes/visual/link5.mtl", 676, "1d44e731edacef0b66d7813468107877d05a12893f363ce3a0985c8305f404f3"),
    ("franka_panda/meshes/visual/link5.obj", 1582192, "10d084e6f728af7d291403f0359373c121e87785b177e5c6df8a7e1e88077f11"),
    ("franka_panda/meshes/visual/link6.mtl", 3552, "78299752f3c28e87c19f5456e851423de647fbb065f8d88332c1f72ba5729b4c"),
    ("franka_panda/meshes/visual/link6.obj", 2236857, "7d6c29421e8066761c993a519474eb58f851885387cc2ad5a606f96eb428f059"),
    ("franka_panda/meshes/visual/longer_finger_v2.mtl", 225,
     "c923a69c7099e10f5db139b377ce772ec1ca8978ded44f978ce76d13af82829d"),
    ("franka_panda/meshes/visual/longer_finger_v2.obj", 40129,
     "fbf0617c4aa21fc1da868472eccbf4dd82221e148577037627807779f3b0499b"),
    ("franka_panda/panda_longer_finger.urdf", 14593, "264bbb28f54af13f9392f5a2a3ee8e9be2e9dfc3a9231cf4f9147b6acc8d7ab9"),
    ("plane/checker_blue.png", 7113, "61cc49a6eef34053925947a37f6fa77aeac275f79673e2c0ad014aaa44428fd1"),
    ("plane/plane.mtl", 248, "29d32f98ed8bcd798601bc38c4aae91e7d757e48ab99b4ea2d3beb73b07f77ff"),
    ("plane/plane.obj", 349, "0cc3ec11a128956c6888a3ef8a79edaa279cd70e0df7ab96f7749e24f55067f5"),
    ("plane/plane.urdf", 680, "842946359ab25d861591d9fe27169f910c525501413313a75026eb91d99f3c43"),
)

HOW_TO = (
    "Pass data_dir=<folder> (or set VLA_GYM_CALVIN_DIR) to a folder holding calvin_env's data files for scene D "
    f"(the data/ folder of github.com/{CALVIN_ENV_REPO} at commit {CALVIN_ENV_COMMIT}), optionally with "
    f"{SEQUENCES} (CALVIN's evaluation chains; generated and cached when absent); or leave both unset to "
    "download calvin_env's files into the cache folder."
)
# The scene files alone: what a folder must hold when the chains file is generated rather than supplied.
SCENE_MANIFEST = tuple(entry for entry in MANIFEST if entry[0] != SEQUENCES)
_SEQUENCES_SHA = next(sha for name, _, sha in MANIFEST if name == SEQUENCES)

_verified: set[tuple[str, int]] = set()  # (folder, manifest size) already checked in this process
_verified_sequences: set[str] = set()  # cached chains files already checked in this process


class AssetError(FileNotFoundError):
    """A data file is missing, unreadable or differs from the pinned one."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_dir() -> Path:
    root = Path(os.environ.get("VLA_GYM_CACHE", Path.home() / ".cache" / "vla_gym"))
    return root / "calvin" / CALVIN_ENV_COMMIT


def file_url(path: str) -> str | None:
    """Where ``path`` is downloaded from (None: no official download; the user provides it)."""
    if path == SEQUENCES:
        return os.environ.get("VLA_GYM_CALVIN_SEQUENCES_URL") or None
    base = os.environ.get("VLA_GYM_CALVIN_BASE_URL", BASE_URL).rstrip("/")
    return f"{base}/{path}"


def check_folder(folder: Path, manifest: tuple[tuple[str, int, str], ...] = MANIFEST) -> None:
    """Raise :class:`AssetError` naming every missing or altered file."""
    missing = [name for name, _, _ in manifest if not (folder / name).is_file()]
    if missing:
        raise AssetError(f"CALVIN data folder {folder} lacks {len(missing)} file(s): {missing}. {HOW_TO}")
    altered = [name for name, _, sha in manifest if sha256_of(folder / name) != sha]
    if altered:
        raise AssetError(
            f"CALVIN data folder {folder}: {altered} differ from the pinned files (SHA-256 mismatch); "
            f"they must be the files of calvin_env commit {CALVIN_ENV_COMMIT}. {HOW_TO}"
        )


def download(folder: Path, manifest: tuple[tuple[str, int, str], ...] = MANIFEST, progress: bool = True) -> None:
    """Fetch the files of ``manifest`` missing from ``folder``, checking each one's SHA-256."""
    todo = [(n, s, h) for n, s, h in manifest if not (folder / n).is_file()]
    if not todo:
        return
    no_source = [n for n, _, _ in todo if file_url(n) is None]
    if no_source:
        raise AssetError(f"CALVIN data folder {folder} lacks {no_source}, which has no official download. {HOW_TO}")
    from tqdm import tqdm

    bar = tqdm(total=sum(s for _, s, _ in todo), unit="B", unit_scale=True, desc="CALVIN data", disable=not progress)
    try:
        for name, _, sha in todo:
            _fetch(file_url(name) or "", folder / name, sha, bar)
    finally:
        bar.close()


def _fetch(url: str, dest: Path, sha: str, bar: object) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=60) as response:
                    for block in iter(lambda: response.read(1 << 16), b""):
                        digest.update(block)
                        out.write(block)
                        bar.update(len(block))  # type: ignore[attr-defined]
            except OSError as exc:
                raise AssetError(f"downloading {url} failed: {exc}. {HOW_TO}") from exc
        if digest.hexdigest() != sha:
            raise AssetError(
                f"downloaded {url} has SHA-256 {digest.hexdigest()}, expected {sha}: not the pinned file. {HOW_TO}"
            )
        shutil.move(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None, *, download_missing: bool = True,
                     progress: bool = True) -> Path:
    """The checked data folder: ``data_dir``, else ``VLA_GYM_CALVIN_DIR``, else the (filled) cache folder."""
    named = data_dir if data_dir is not None else os.environ.get("VLA_GYM_CALVIN_DIR")
    folder = Path(named).expanduser() if named else cache_dir()
    key = (str(folder.resolve()), len(MANIFEST))
    if key in _verified:
        return folder
    if named and not folder.is_dir():
        raise AssetError(f"CALVIN data folder {folder} does not exist. {HOW_TO}")
    # A chains file in the folder, or one the user asked to download, is used (and checked); else generated.
    supplied = (folder / SEQUENCES).is_file() or (not named and download_missing and file_url(SEQUENCES))
    manifest = MANIFEST if supplied else SCENE_MANIFEST
    if not named and download_missing:
        download(folder, manifest, progress=progress)
    check_folder(folder, manifest)
    sequences_file(folder, progress=progress)
    _verified.add(key)
    return folder


def sequences_file(folder: Path, progress: bool = True) -> Path:
    """The chains file for ``folder``: its own ``eval_sequences.json``, else the generated one in the cache."""
    own = folder / SEQUENCES
    if own.is_file():
        return own
    cached = cache_dir() / SEQUENCES
    if not cached.is_file():
        _write_generated(cached, progress)
    elif str(cached) not in _verified_sequences:
        if sha256_of(cached) != _SEQUENCES_SHA:
            raise AssetError(f"cached chains file {cached} differs from CALVIN's chains (SHA-256 mismatch); "
                             "delete it to have it generated again")
    _verified_sequences.add(str(cached))
    return cached


def _write_generated(dest: Path, progress: bool) -> None:
    from vla_gym.calvin.sequences import dumps, generate_eval_sequences

    text = dumps(generate_eval_sequences(progress=progress)).encode()
    if hashlib.sha256(text).hexdigest() != _SEQUENCES_SHA:
        # Only a change in numpy's frozen legacy RandomState streams could cause this.
        raise AssetError(f"the generated evaluation chains differ from CALVIN's (SHA-256 mismatch); "
                         f"supply {SEQUENCES} in the data folder instead. {HOW_TO}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(text)
        os.replace(tmp, dest)  # atomic: concurrent writers all write the same bytes
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
