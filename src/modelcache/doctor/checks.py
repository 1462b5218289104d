"""The local checks, as pure functions over facts gathered elsewhere (``system.py``).

Each returns one ``Finding``: the cache directory, its filesystem, owner/group/mode against
this process's user, a real write test's outcome, free space against what the model still
needs, and cache hit or miss with the reason.
"""

from __future__ import annotations

import errno
from collections.abc import Mapping, Sequence
from pathlib import Path

from .._format import human_size
from ..cache.readiness import CheckResult
from .findings import Finding
from .mounts import Mount, describe_fs
from .system import Owner, User

__all__ = ["can_access", "check_cache", "check_cache_dir", "check_filesystem", "check_permissions",
           "check_space", "check_writable"]

_MOUNT_HINT = "mount the cache volume there, or point HF_HUB_CACHE / HF_HOME / --cache-dir at it"


def check_cache_dir(path: Path, exists: bool, is_dir: bool, read_only: bool) -> Finding:
    """The ``cache-dir`` finding: ok when it is a directory, a warning when it does not exist yet.

    Fails when the path is not a directory, or is missing on a read-only mount (volume not mounted?).
    """
    if exists and not is_dir:
        return Finding("cache-dir", "fail", f"cache dir {path} exists but is not a directory",
                       "remove or rename it, or point HF_HUB_CACHE / --cache-dir elsewhere", {"path": str(path)})
    if not exists:
        if read_only:
            return Finding("cache-dir", "fail", f"cache dir {path} does not exist (is the volume mounted?)",
                           _MOUNT_HINT, {"path": str(path), "exists": False})
        return Finding("cache-dir", "warn", f"cache dir {path} does not exist yet; the first download creates it",
                       f"if a model should be there already: {_MOUNT_HINT}", {"path": str(path), "exists": False})
    return Finding("cache-dir", "ok", f"cache dir {path} exists", data={"path": str(path), "exists": True})


def check_filesystem(path: Path, mount: Mount | None, read_only_mount: bool) -> Finding:
    """``filesystem``: what the filesystem of the cache is (from its mount) and whether that is fine for a cache."""
    if mount is None:
        info = describe_fs("unknown")
        data: dict[str, object] = {"fstype": None, "shared": None}
    else:
        info = describe_fs(mount.fstype, mount.device)
        data = {"fstype": mount.fstype, "mount_point": mount.point, "device": mount.device, "shared": info.shared,
                "kind": info.kind, "read_only": read_only_mount}
    ro = ", read-only" if read_only_mount else ""
    where = f" [mount {mount.point}{ro}]" if mount is not None else (f" [{ro[2:]}]" if ro else "")
    return Finding("filesystem", info.status, f"{info.message}{where}", info.fix, data)  # type: ignore[arg-type]


def can_access(owner: Owner, user: User) -> tuple[bool, bool]:
    """(read, write) by POSIX mode bits: the first matching class (owner, group, other) decides.
    Folders need ``x`` too. Root (uid 0) passes; a read-only mount is the write test's business."""
    if user.uid == 0:
        return True, True
    if owner.uid == user.uid:
        bits = (owner.mode >> 6) & 7
    elif user.in_group(owner.gid):
        bits = (owner.mode >> 3) & 7
    else:
        bits = owner.mode & 7
    if owner.is_dir:
        return bits & 5 == 5, bits & 3 == 3
    return bool(bits & 4), bool(bits & 2)


def _who(user: User) -> str:
    groups = ",".join(str(g) for g in sorted(user.groups - {user.gid}))
    return f"uid {user.uid} (gid {user.gid}" + (f", groups {groups}" if groups else "") + ")"


def _owned(o: Owner) -> str:
    return f"uid {o.uid}, gid {o.gid}, mode {o.mode:04o}"


def _perm_fix(o: Owner, user: User, write: bool, target: str) -> str:
    need = "rwX" if write else "rX"
    if o.uid == user.uid:
        return f"`chmod -R u+{need} {target}` (this user owns it but its mode denies it)"
    group_bits = (o.mode >> 3) & 7
    group_enough = (group_bits & 3 == 3) if write else (group_bits & 5 == 5)
    if group_enough and not user.in_group(o.gid):
        return (f"give the pod the folder's group: securityContext.fsGroup: {o.gid} (supplementalGroups: [{o.gid}] "
                f"on NFS, where fsGroup does not chown), or `chown -R {user.uid}:{user.gid} {target}`")
    return (f"`chmod -R g+{need} {target}` and `chgrp -R {user.gid} {target}` (or set securityContext.fsGroup: "
            f"{user.gid} and let Kubernetes do it), or `chown -R {user.uid}:{user.gid} {target}`")


def check_permissions(cache_dir: Path, dirs: Sequence[Owner], files: Sequence[Owner], user: User,
                      read_only: bool, exists: bool = True) -> Finding:
    """``dirs[0]`` is the cache dir (or, when it does not exist, the parent it would be made in);
    then the repo's folders; ``files`` are the snapshot files an engine would open."""
    data: dict[str, object] = {"uid": user.uid, "gid": user.gid, "groups": sorted(user.groups)}
    if not dirs:
        return Finding("permissions", "skip", f"cannot stat {cache_dir} or any parent", data=data)
    top = dirs[0]
    data.update(owner_uid=top.uid, owner_gid=top.gid, mode=f"{top.mode:04o}")
    for o in dirs:
        read, write = can_access(o, user)
        if not read:
            return Finding("permissions", "fail", f"{o.path} ({_owned(o)}) is not readable by {_who(user)}",
                           _perm_fix(o, user, False, o.path), data)
        if not write and not read_only:
            what = "write it" if exists or o is not top else f"create {cache_dir} in it"
            return Finding("permissions", "fail", f"{o.path} ({_owned(o)}): {_who(user)} cannot {what}",
                           _perm_fix(o, user, True, o.path if exists else str(top.path))
                           + "; a pod that only reads the cache: `modelcache doctor --read-only`", data)
    unreadable = [f for f in files if not can_access(f, user)[0]]
    if unreadable:
        f = unreadable[0]
        return Finding("permissions", "fail",
                       f"{len(unreadable)} of {len(files)} snapshot files are not readable by {_who(user)}, "
                       f"e.g. {f.path} ({_owned(f)})",
                       "the download ran as another user with a strict umask: `chmod -R a+rX` the repo folder, or "
                       "run the download with the engine's runAsUser / fsGroup", {**data, "unreadable": len(unreadable)})
    if user.uid == 0:
        return Finding("permissions", "ok", f"running as root: mode bits do not stop it ({top.path}: {_owned(top)}; "
                       "NFS root_squash still can)", data=data)
    read, write = can_access(top, user)
    via_group = top.uid != user.uid and user.in_group(top.gid)
    if write and via_group and not top.mode & 0o2000 and not read_only:
        return Finding("permissions", "warn",
                       f"{top.path} ({_owned(top)}) is writable through group {top.gid}, but without the setgid bit "
                       "new folders get each writer's own group, and other pods may not write them",
                       f"`chmod g+s {top.path}` (Kubernetes' fsGroup sets it)", data)
    can = "read and write" if write else "read (not write: fine with --read-only)"
    return Finding("permissions", "ok", f"{top.path} ({_owned(top)}): {_who(user)} can {can}", data=data)


def check_writable(path: Path, exists: bool, read_only: bool, ro_mount: bool,
                   probes: Sequence[tuple[Path, OSError | None]], predicted_write: bool) -> Finding:
    """``probes``: the write tests done (folder, error or None); none when read-only or absent."""
    if read_only:
        how = ("mounted read-only" if ro_mount else "not writable by this user" if not predicted_write
               else "writable, though --read-only says nothing will be written")
        return Finding("writable", "ok", f"read-only on purpose (--read-only): {how}; no write test",
                       data={"read_only": True, "ro_mount": ro_mount})
    ro_fix = ("mount it read-write where models are downloaded (readOnly: false); an engine pod that only reads "
              "the cache should run `modelcache doctor --read-only`")
    if ro_mount:
        return Finding("writable", "fail", f"{path} is on a read-only mount: downloads cannot write here", ro_fix,
                       {"ro_mount": True})
    if not exists:
        if predicted_write:
            return Finding("writable", "ok", f"{path} can be created (its parent is writable)")
        return Finding("writable", "fail", f"{path} does not exist and cannot be created here",
                       f"create it as a user who can (`mkdir -p {path}`), then fix its owner (see permissions)")
    for folder, err in probes:
        if err is None:
            continue
        data = {"path": str(folder), "errno": errno.errorcode.get(err.errno or 0, str(err.errno))}
        if err.errno == errno.EROFS:
            return Finding("writable", "fail", f"{folder} is on a read-only filesystem: downloads cannot write here",
                           ro_fix, data)
        if err.errno in (errno.EACCES, errno.EPERM):
            if not predicted_write:
                return Finding("writable", "fail", f"cannot write to {folder}: permission denied",
                               "fix the owner or mode as the permissions line says", data)
            return Finding("writable", "fail",
                           f"cannot write to {folder}: permission denied although the mode bits allow it "
                           "(NFS root_squash, an ACL, SELinux, or a read-only bind)",
                           "on NFS run as the export's owner (runAsUser) or export it with no_root_squash; "
                           "check `getfacl` and SELinux labels", data)
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            return Finding("writable", "fail", f"cannot write to {folder}: the disk or the user's quota is full",
                           "free space (`modelcache gc`, `modelcache rm`) or use a bigger volume", data)
        return Finding("writable", "fail", f"cannot write to {folder}: {err.strerror or err}",
                       "check the volume and its mount", data)
    where = ", ".join(str(p) for p, _ in probes) or str(path)
    return Finding("writable", "ok", f"writable: a test file was written and removed in {where}")


def check_space(repo: str | None, needed: int | None, source: str, free: int | None, used: int,
                budget: int | None, read_only: bool) -> Finding:
    """``needed``: bytes the repo still needs (None: unknown); ``source``: where that came from."""
    data = {"needed": needed, "free": free, "used": used, "budget": budget, "source": source}
    if read_only:
        return Finding("free-space", "skip", "read-only cache: nothing will be written here"
                       + (f" ({human_size(free)} free)" if free is not None else ""), data=data)
    if free is None:
        return Finding("free-space", "skip", "cannot tell the free space (statvfs failed)", data=data)
    budget_text = f"; budget {human_size(budget)}, {human_size(used)} used" if budget is not None else ""
    if needed is None:
        over = budget is not None and used > budget
        return Finding("free-space", "warn" if over else "ok",
                       f"{human_size(free)} free on disk{budget_text}"
                       + (f"; the size of {repo} is unknown ({source})" if repo else ""),
                       "`modelcache gc` trims the cache to its budget" if over else "", data)
    if needed > free:
        return Finding("free-space", "fail",
                       f"{repo} needs {human_size(needed)} more ({source}) but the disk has {human_size(free)} free"
                       + budget_text,
                       f"free at least {human_size(needed - free)} (`modelcache gc`, `modelcache rm REPO[@REV]`), "
                       "or use a bigger volume", data)
    if budget is not None and used + needed > budget:
        left = max(0, budget - used)
        return Finding("free-space", "fail",
                       f"{repo} needs {human_size(needed)} more ({source}) but the cache budget has "
                       f"{human_size(left)} left ({human_size(used)} used of {human_size(budget)})",
                       f"`modelcache gc --max-size {human_size(max(0, budget - needed)).replace(' ', '')}` to make "
                       "room, or raise the budget with `modelcache quota set SIZE`", data)
    if needed == 0:
        return Finding("free-space", "ok", f"{repo}: nothing more to download ({source}); "
                       f"{human_size(free)} free{budget_text}", data=data)
    return Finding("free-space", "ok", f"{repo} needs {human_size(needed)} more ({source}); "
                   f"{human_size(free)} free{budget_text}", data=data)


def check_cache(result: CheckResult, upstream_commit: str | None, refs: Mapping[str, str], read_only: bool,
                upstream_note: str = "") -> Finding:
    """Hit or miss, and why. ``refs``: the repo's cached refs; ``upstream_commit``: what the
    endpoint says the revision is now (None offline or when unknown)."""
    repo, rev = result.repo_id, result.revision
    cmd = f"modelcache download {repo}" + (f" --revision {rev}" if rev != "main" else "")
    if result.profile != "full":
        cmd += f" --profile {result.profile}"
    data: dict[str, object] = {"ready": result.ready, "commit": result.commit, "upstream": upstream_commit,
                               "missing": list(result.missing),
                               "wrong_size": [{"path": p, "expected": e, "actual": a} for p, e, a in result.wrong_size]}
    moved = (upstream_commit is not None and result.commit is not None and upstream_commit != result.commit
             and rev != result.commit)
    moved_text = f"{rev} moved upstream: cached {result.commit[:12] if result.commit else '-'}, " \
                 f"upstream {upstream_commit[:12] if upstream_commit else '-'}"
    by_job = " (from a pod that can write the cache)" if read_only else ""
    if result.ready:
        if moved:
            return Finding("cache", "warn", f"hit, but {moved_text}",
                           f"download again (`{cmd}`){by_job} or pin the revision (`--revision {result.commit}`)", data)
        same = ", same as upstream" if upstream_commit is not None else (f"; {upstream_note}" if upstream_note else "")
        return Finding("cache", "ok", f"hit: {repo}@{rev} → {result.commit[:12] if result.commit else '?'} ready for "
                       f"profile {result.profile}{same}", data=data)
    if result.commit is None:
        others = {r: c for r, c in refs.items() if r != rev}
        other_text = ("; cached instead: " + ", ".join(f"{r} → {c[:12]}" for r, c in sorted(others.items())[:4])
                      if others else "")
        return Finding("cache", "fail" if read_only else "warn", f"miss: {result.reason}{other_text}",
                       f"`{cmd}`{by_job}", data)
    parts = []
    if result.missing:
        parts.append(f"{len(result.missing)} missing: " + ", ".join(result.missing[:5])
                     + (" …" if len(result.missing) > 5 else ""))
    if result.wrong_size:
        parts.append("wrong size: " + ", ".join(f"{p} ({a} bytes, expected {e})" for p, e, a in result.wrong_size[:5]))
    text = "; ".join(parts) or result.reason
    extra = f" (and {moved_text})" if moved else ""
    return Finding("cache", "fail", f"miss: {repo}@{rev} ({result.commit[:12]}) is incomplete for profile "
                   f"{result.profile} — {text}{extra}",
                   f"`{cmd}`{by_job} fetches only what is missing or wrong", data)
