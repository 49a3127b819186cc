"""Find a Vulkan driver for SAPIEN before it starts its renderer.

SAPIEN 3 renders through Vulkan only. On a machine without a GPU that means Mesa's lavapipe (a CPU Vulkan
driver); Mesa 22 (Debian bookworm) lavapipe is too old for SAPIEN, Mesa >= 25 works. The Vulkan loader reads
``VK_ICD_FILENAMES`` / ``VK_DRIVER_FILES`` when the renderer is created, so pointing them at lavapipe's ICD
file here (when the user has not set them and no GPU driver is installed) is enough; nobody has to export
anything by hand.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path

ICD_ENV_VARS = ("VK_DRIVER_FILES", "VK_ICD_FILENAMES")

# Where Vulkan ICD manifests live (the loader's own search order, system-wide part).
_ICD_DIRS = (
    "/etc/vulkan/icd.d",
    "/usr/local/etc/vulkan/icd.d",
    "/usr/local/share/vulkan/icd.d",
    "/usr/share/vulkan/icd.d",
)

INSTALL_HINT = (
    "SAPIEN (ManiSkill3) needs a Vulkan driver to render. Without a GPU, install Mesa >= 25's lavapipe "
    "(Debian bookworm: add the bookworm-backports suite, then "
    "`apt-get install -t bookworm-backports mesa-vulkan-drivers libvulkan1`; Ubuntu >= 24.04: "
    "`apt-get install mesa-vulkan-drivers libvulkan1`). With an NVIDIA GPU, install its driver's Vulkan "
    "ICD. Or point VK_ICD_FILENAMES at a driver's *_icd.json yourself."
)


class VulkanDriverError(RuntimeError):
    """No usable Vulkan driver (or loader) was found; the message says how to install one."""


def _icd_dirs() -> list[Path]:
    dirs = [Path(d) for d in _ICD_DIRS]
    for base in os.environ.get("XDG_DATA_DIRS", "").split(os.pathsep):
        if base:
            dirs.append(Path(base) / "vulkan" / "icd.d")
    home = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    dirs.append(Path(home) / "vulkan" / "icd.d")
    seen: list[Path] = []
    for d in dirs:
        if d not in seen:
            seen.append(d)
    return seen


def installed_icds() -> list[Path]:
    """Every Vulkan ICD manifest on this machine, in the loader's search order."""
    found: list[Path] = []
    for d in _icd_dirs():
        if d.is_dir():
            found.extend(sorted(d.glob("*.json")))
    return found


def has_vulkan_loader() -> bool:
    name = ctypes.util.find_library("vulkan") or "libvulkan.so.1"
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


def ensure_vulkan_driver() -> str:
    """Make sure the Vulkan loader will find a driver; returns a short description of the choice.

    Leaves user-set ``VK_ICD_FILENAMES`` / ``VK_DRIVER_FILES`` alone (but checks the files exist). Otherwise
    prefers an NVIDIA driver if one is installed (left to the loader) and else pins lavapipe. Raises
    :class:`VulkanDriverError` saying how to install a driver when there is none.
    """
    if not has_vulkan_loader():
        raise VulkanDriverError(f"the Vulkan loader (libvulkan.so.1) is not installed. {INSTALL_HINT}")
    for var in ICD_ENV_VARS:
        value = os.environ.get(var)
        if value:
            missing = [p for p in value.split(os.pathsep) if p and not Path(p).is_file()]
            if missing:
                raise VulkanDriverError(
                    f"{var} names Vulkan driver file(s) that do not exist: {missing}. {INSTALL_HINT}"
                )
            return f"{var}={value} (set by the user)"
    icds = installed_icds()
    if any("nvidia" in icd.name for icd in icds):
        return "nvidia (found by the Vulkan loader)"
    lavapipe = [icd for icd in icds if icd.name.startswith("lvp_icd")]
    if not lavapipe:
        names = [icd.name for icd in icds] or "none"
        raise VulkanDriverError(
            f"no usable Vulkan driver found (ICD manifests installed: {names}). {INSTALL_HINT}"
        )
    chosen = str(lavapipe[0])
    # Pin lavapipe so the loader does not probe GPU drivers that cannot work on this machine.
    for var in ICD_ENV_VARS:
        os.environ[var] = chosen
    return f"lavapipe ({chosen})"


def explain_render_failure(exc: BaseException) -> VulkanDriverError | None:
    """A :class:`VulkanDriverError` for a SAPIEN renderer start-up failure, or None if ``exc`` is something else."""
    text = str(exc)
    markers = ("vulkan", "Vulkan", "physical device", "rendering device", "ErrorIncompatibleDriver", "vk::")
    if any(marker in text for marker in markers):
        return VulkanDriverError(
            f"SAPIEN could not start its Vulkan renderer ({text.strip()}). {INSTALL_HINT}"
        )
    return None
