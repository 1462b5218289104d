"""The filesystem a path lives on, from the mount table, and what that means for a model cache.

Pure: ``parse_mounts`` takes the text of ``/proc/mounts``; ``mount_for`` takes a resolved path.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["FsInfo", "Mount", "describe_fs", "mount_for", "parse_mounts"]


@dataclass(frozen=True)
class Mount:
    """One line of the mount table: device, mount point, filesystem type, options."""

    device: str
    point: str
    fstype: str
    options: tuple[str, ...]

    @property
    def read_only(self) -> bool:
        """True when mounted with ``ro``."""
        return "ro" in self.options


def _unescape(field: str) -> str:
    """``/proc/mounts`` writes space, tab, newline and backslash as ``\\040`` etc."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mounts(text: str) -> list[Mount]:
    """The mounts of ``/proc/mounts`` text, in order (octal escapes like ``\\040`` decoded; bad lines skipped)."""
    mounts = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        mounts.append(Mount(_unescape(parts[0]), _unescape(parts[1]), parts[2], tuple(parts[3].split(","))))
    return mounts


def mount_for(path: str, mounts: Sequence[Mount]) -> Mount | None:
    """The mount holding ``path`` (absolute, symlinks resolved): the longest matching mount
    point; of equal ones the last (a later mount hides an earlier one at the same point)."""
    best: Mount | None = None
    for m in mounts:
        point = m.point.rstrip("/") or "/"
        contains = path == point or point == "/" or path.startswith(point + "/")
        if contains and (best is None or len(point) >= len(best.point.rstrip("/") or "/")):
            best = m
    return best


@dataclass(frozen=True)
class FsInfo:
    """What kind of filesystem a cache is on, and whether that is fine (a doctor status, message and fix)."""

    kind: str
    """``shared``, ``local``, ``memory``, ``container`` or ``unknown``."""
    status: str
    message: str
    fix: str = ""

    @property
    def shared(self) -> bool:
        """True on a shared (network) filesystem."""
        return self.kind == "shared"


_NFS_NOTE = ("flock may not lock across hosts; modelcache uses lock files with heartbeats, fine; "
             "huggingface_hub's own downloads may race on it")
_OBJECT_FUSE = ("s3fs", "gcsfuse", "goofys", "mountpoint-s3", "blobfuse", "blobfuse2", "rclone", "geesefs")
_LOCAL = ("ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "f2fs", "bcachefs", "apfs", "hfs", "ntfs", "ntfs3")


def describe_fs(fstype: str, device: str = "") -> FsInfo:
    """What a filesystem type means for a shared model cache, in one line."""
    t = fstype.lower()
    if t in ("nfs", "nfs4"):
        return FsInfo("shared", "ok", f"shared volume: NFS ({t}) — {_NFS_NOTE}")
    if t in ("lustre", "gpfs", "beegfs", "wekafs", "ceph", "cephfs", "glusterfs", "ocfs2", "gfs2", "pvfs2"):
        return FsInfo("shared", "ok", f"shared volume: {t} — {_NFS_NOTE}")
    if t.startswith("fuse."):
        driver = t[len("fuse."):]
        if driver in _OBJECT_FUSE:
            return FsInfo("shared", "warn",
                          f"shared volume: object-store FUSE ({driver}) — symlinks and atomic renames, which the "
                          "Hugging Face cache layout needs, may not work",
                          "put the cache on a POSIX volume (NFS, CephFS, a block volume); copy from the bucket with "
                          "`modelcache download` against a mirror instead")
        return FsInfo("shared", "ok", f"shared volume: FUSE ({driver}) — it must support symlinks and atomic "
                      f"rename; {_NFS_NOTE}")
    if t in ("cifs", "smb3", "smbfs"):
        return FsInfo("shared", "warn", f"shared volume: SMB ({t}) — symlinks need the `mfsymlinks` mount option",
                      "mount with -o mfsymlinks, or set HF_HUB_DISABLE_SYMLINKS=1 for readers")
    if t in ("virtiofs", "9p"):
        return FsInfo("shared", "ok", f"host-shared folder ({t}) — shared with the host; symlinks must be allowed")
    if t == "overlay":
        return FsInfo("container", "warn",
                      "the container's own writable layer (overlay), not a volume: lost when the pod restarts, "
                      "not shared with other pods, and slow for big files",
                      "mount a volume at the cache dir (a PersistentVolumeClaim, hostPath or emptyDir)")
    if t in ("tmpfs", "ramfs"):
        return FsInfo("memory", "ok", f"in memory ({t}): fast, not shared, lost on restart, and counted against "
                      "the pod's memory limit")
    if t in _LOCAL:
        return FsInfo("local", "ok", f"local disk ({t}): not shared with other nodes; each node keeps its own copy")
    if t in ("", "unknown"):
        return FsInfo("unknown", "ok", "filesystem type unknown (no mount table on this system)")
    return FsInfo("unknown", "ok", f"filesystem {t}" + (f" on {device}" if device else ""))
