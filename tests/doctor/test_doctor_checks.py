"""doctor's pure check logic: mount table, filesystem meaning, permissions and their fixes,
unreachable-endpoint causes, cache hit/miss reasons, free space, and the token checks' reading."""

from __future__ import annotations

import errno
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelcache.cache.readiness import CheckResult
from modelcache.doctor.checks import (
    can_access,
    check_cache,
    check_cache_dir,
    check_permissions,
    check_space,
    check_writable,
)
from modelcache.doctor.findings import Finding, Report
from modelcache.doctor.mounts import describe_fs, mount_for, parse_mounts
from modelcache.doctor.netchecks import classify_unreachable, token_findings
from modelcache.doctor.system import Owner, User
from modelcache.tokens import TokenReport

MOUNTS = """\
/dev/vda / ext4 rw,relatime 0 0
tmpfs /tmp tmpfs rw,nosuid 0 0
10.0.0.5:/export/models /models nfs4 rw,relatime,vers=4.1 0 0
/dev/vdb /models/local xfs ro,relatime 0 0
overlay /var/lib/x overlay rw 0 0
10.0.0.6:/b /mnt/with\\040space nfs rw 0 0
tmpfs /tmp tmpfs ro 0 0
"""


def test_mount_table_longest_prefix_and_escapes() -> None:
    mounts = parse_mounts(MOUNTS)
    assert mount_for("/models/hub/models--a--b", mounts).fstype == "nfs4"  # type: ignore[union-attr]
    assert mount_for("/models/local/x", mounts).fstype == "xfs"  # type: ignore[union-attr]
    assert mount_for("/modelsX", mounts).fstype == "ext4"  # type: ignore[union-attr]
    assert mount_for("/mnt/with space/hub", mounts).fstype == "nfs"  # type: ignore[union-attr]
    later = mount_for("/tmp/a", mounts)
    assert later is not None and later.read_only  # the later mount at /tmp hides the earlier one
    assert mount_for("/x", []) is None


@pytest.mark.parametrize(("fstype", "kind", "status", "words"), [
    ("nfs4", "shared", "ok", "flock"),
    ("lustre", "shared", "ok", "lock files"),
    ("gpfs", "shared", "ok", "shared volume"),
    ("cephfs", "shared", "ok", "shared volume"),
    ("fuse.s3fs", "shared", "warn", "symlinks"),
    ("fuse.juicefs", "shared", "ok", "FUSE"),
    ("overlay", "container", "warn", "lost when the pod restarts"),
    ("tmpfs", "memory", "ok", "memory limit"),
    ("ext4", "local", "ok", "not shared"),
    ("xfs", "local", "ok", "not shared"),
    ("weirdfs", "unknown", "ok", "weirdfs"),
])
def test_filesystem_meaning(fstype: str, kind: str, status: str, words: str) -> None:
    info = describe_fs(fstype)
    assert (info.kind, info.status) == (kind, status) and words in info.message
    assert (info.status == "warn") == bool(info.fix)


USER = User(1000, 1000, frozenset({1000}))


def test_can_access_uses_the_first_matching_class() -> None:
    assert can_access(Owner("/c", 1000, 1000, 0o755), USER) == (True, True)
    assert can_access(Owner("/c", 1000, 1000, 0o500), USER) == (True, False)
    assert can_access(Owner("/c", 1000, 2000, 0o077), USER) == (False, False)  # owner class wins, even if worse
    assert can_access(Owner("/c", 0, 1000, 0o2770), USER) == (True, True)  # through the group
    assert can_access(Owner("/c", 0, 0, 0o755), USER) == (True, False)
    assert can_access(Owner("/c", 0, 0, 0o700), User(0, 0, frozenset())) == (True, True)
    assert can_access(Owner("/f", 0, 0, 0o640, is_dir=False), USER) == (False, False)


def test_permissions_fix_names_fsgroup_chmod_chown() -> None:
    # another user's folder, group-writable: the pod lacks the group → fsGroup
    f = check_permissions(Path("/c"), [Owner("/c", 0, 2000, 0o2775)], [], USER, read_only=False)
    assert f.status == "fail" and "cannot write" in f.message and "fsGroup: 2000" in f.fix and "chown" in f.fix
    # our group, but the group may not write → chmod g+rwX
    f = check_permissions(Path("/c"), [Owner("/c", 0, 1000, 0o755)], [], USER, read_only=False)
    assert f.status == "fail" and "chmod -R g+rwX /c" in f.fix and "fsGroup" in f.fix
    # our own folder, chmod 0500
    f = check_permissions(Path("/c"), [Owner("/c", 1000, 1000, 0o500)], [], USER, read_only=False)
    assert f.status == "fail" and "mode 0500" in f.message and "chmod -R u+rwX /c" in f.fix
    # same folder, read-only on purpose: fine
    f = check_permissions(Path("/c"), [Owner("/c", 1000, 1000, 0o500)], [], USER, read_only=True)
    assert f.status == "ok" and "--read-only" in f.message
    # not even readable → fail, read-only or not
    f = check_permissions(Path("/c"), [Owner("/c", 0, 0, 0o700)], [], USER, read_only=True)
    assert f.status == "fail" and "not readable" in f.message and "g+rX" in f.fix
    # a blob the engine cannot open
    f = check_permissions(Path("/c"), [Owner("/c", 0, 1000, 0o2775)],
                          [Owner("/c/x/blob", 0, 0, 0o600, is_dir=False)], USER, read_only=True)
    assert f.status == "fail" and "1 of 1 snapshot files" in f.message
    # group-writable without setgid: a warning
    f = check_permissions(Path("/c"), [Owner("/c", 0, 1000, 0o775)], [], USER, read_only=False)
    assert f.status == "warn" and "chmod g+s" in f.fix


def test_writable_reasons() -> None:
    p = Path("/c")
    ro = check_writable(p, True, False, True, [], True)
    assert ro.status == "fail" and "read-only mount" in ro.message and "--read-only" in ro.fix
    on_purpose = check_writable(p, True, True, True, [], False)
    assert on_purpose.status == "ok" and "on purpose" in on_purpose.message
    denied = check_writable(p, True, False, False, [(p, OSError(errno.EACCES, "Permission denied"))], True)
    assert denied.status == "fail" and "root_squash" in denied.message
    full = check_writable(p, True, False, False, [(p, OSError(errno.ENOSPC, "No space"))], True)
    assert full.status == "fail" and "full" in full.message
    assert check_writable(p, True, False, False, [(p, None)], True).status == "ok"


def test_cache_dir_missing() -> None:
    assert check_cache_dir(Path("/c"), False, False, read_only=True).status == "fail"
    assert check_cache_dir(Path("/c"), False, False, read_only=False).status == "warn"
    assert check_cache_dir(Path("/c"), True, False, read_only=False).status == "fail"


def test_unreachable_causes() -> None:
    ep = "https://hub.example:8443"
    cases = {
        "cannot connect to https://hub.example:8443: [Errno -2] Name or service not known": ("dns", "DNS"),
        "[Errno 111] Connection refused": ("refused", "refused"),
        "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate": ("tls", "TLS"),
        "revision main of a/b: timed out": ("timeout", "within 5s"),
        "[Errno 101] Network is unreachable": ("route", "no route"),
    }
    for detail, (cause, words) in cases.items():
        f = classify_unreachable(ep, detail, 5.0)
        assert f.status == "fail" and f.data["cause"] == cause and words in f.message and f.fix, detail


def _result(ready: bool, commit: str | None, **kw: object) -> CheckResult:
    return CheckResult("org/m", "main", "full", ready, "reason text", commit=commit, **kw)  # type: ignore[arg-type]


def test_cache_hit_miss_reasons() -> None:
    a, b = "a" * 40, "b" * 40
    moved = check_cache(_result(True, a), b, {"main": a}, read_only=False)
    assert moved.status == "warn" and f"main moved upstream: cached {a[:12]}, upstream {b[:12]}" in moved.message
    assert "download again" in moved.fix and "pin the revision" in moved.fix
    assert check_cache(_result(True, a), a, {"main": a}, False).status == "ok"
    shard = check_cache(_result(False, a, missing=("model-00002-of-00002.safetensors",)), None, {}, False)
    assert shard.status == "fail" and "model-00002-of-00002.safetensors" in shard.message
    assert "modelcache download org/m" in shard.fix
    wrong = check_cache(_result(False, a, wrong_size=(("model.safetensors", 100, 50),)), None, {}, False)
    assert "wrong size: model.safetensors (50 bytes, expected 100)" in wrong.message
    other = check_cache(_result(False, None), None, {"v1": b}, read_only=False)
    assert other.status == "warn" and "cached instead: v1" in other.message
    assert check_cache(_result(False, None), None, {}, read_only=True).status == "fail"


def test_space() -> None:
    mib = 1024 * 1024
    f = check_space("org/m", 3 * mib, "from the endpoint's file list", 1 * mib, 0, None, False)
    assert f.status == "fail" and "3.0 MiB" in f.message and "1.0 MiB free" in f.message and "bigger volume" in f.fix
    f = check_space("org/m", 3 * mib, "x", 100 * mib, 8 * mib, 10 * mib, False)
    assert f.status == "fail" and "budget" in f.message and "quota set" in f.fix
    assert check_space("org/m", 0, "x", mib, 0, None, False).status == "ok"
    assert check_space("org/m", 3 * mib, "x", mib, 0, None, True).status == "skip"


@dataclass
class C:
    name: str
    ok: bool
    message: str
    fix: str = ""


def test_token_findings_reading() -> None:
    none = TokenReport(False, "HF_HOME/token", None, ())
    present = TokenReport(True, "HF_TOKEN", None, ())
    gated = C("repo", False, "org/g is gated and this token has not been granted access", "accept")
    f = token_findings([C("token", True, "no token"), gated], none, True, "org/g")
    assert f[0].status == "fail" and "cannot be read without one" in f[0].message and "HF_TOKEN" in f[0].fix
    assert [x.name for x in f] == ["token", "token-valid", "repo-access"] and "set a token" in f[2].fix
    f = token_findings([C("token", True, "no token"), C("repo", True, "can read org/p")], none, True, "org/p")
    assert f[0].status == "ok"
    f = token_findings([C("token", True, "found"), C("valid", False, "rejected", "new token"), gated],
                       present, True, "org/g")
    assert f[1].status == "fail" and "fix the token first" in f[2].fix
    f = token_findings([C("token", False, "no token")], none, False, None)
    assert f[0].status == "warn"
    world = TokenReport(True, "--token-file", Path("/t"), ("/t is readable by every user: chmod 600 it",))
    f = token_findings([C("token", True, "found")], world, True, None)
    assert any(x.name == "token-file" and x.status == "warn" and "defaultMode" in x.fix for x in f)


def test_report_exit_and_lines() -> None:
    r = Report([Finding("a", "ok", "fine"), Finding("b", "warn", "hmm", "do x"), Finding("c", "fail", "bad", "do y")])
    assert r.exit_code == 1 and r.summary() == "1 failure, 1 warning"
    assert r.findings[2].lines() == ["FAIL  bad", "      fix: do y"]
    assert Report([Finding("a", "skip", "s")]).exit_code == 0
    with pytest.raises(ValueError):
        Finding("x", "bad", "m")  # type: ignore[arg-type]
