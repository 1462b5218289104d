"""The token never lands in a manifest unless the Secret is filled on purpose; ``--size auto``
asks a real (loopback) HF-compatible upstream and adds the documented headroom; the revision
is pinned to the upstream's commit."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from helpers.k8s import COMMIT, by_kind, load_all, parse_cli, run
from helpers.fault_server import Repo, fault_server

from modelcache.k8s.sizing import GIB, parse_quantity, volume_size_for

TOKEN = "hf_SentinelTokenValue0123456789abcdef"
FILES = {"config.json": b'{"model_type": "llama"}', "tokenizer.json": b"{}",
         "model.safetensors": b"\0" * 4096}


def _repo() -> Repo:
    return Repo("org/m", dict(FILES))


def _big_tree(repo: Repo, weights: int) -> list[dict[str, Any]]:
    """The repo's tree with the weights declared ``weights`` bytes: sizes as the Hub lists them."""
    tree = repo.tree()
    for item in tree:
        if item["path"] == "model.safetensors":
            item["size"] = weights
            item["lfs"] = {"oid": hashlib.sha256(b"w").hexdigest(), "size": weights, "pointerSize": 130}
    return tree


def _storage(files: dict[str, str]) -> str:
    (pvc,) = by_kind(load_all(files["pvc.yaml"]), "PersistentVolumeClaim")
    return pvc["spec"]["resources"]["requests"]["storage"]


# -- the headroom rule -------------------------------------------------------------------------
@pytest.mark.parametrize("model, expected_gib", [
    (0, 10),                      # at least +10 GiB
    (1, 11),                      # rounded up to a whole Gi
    (40 * GIB, 50),               # 20% of 40 GiB is 8 GiB < 10 GiB
    (50 * GIB, 60),               # the two rules meet
    (100 * GIB, 120),             # +20%
    (100 * GIB + 1, 121),         # rounded up
    (int(140e9), 157),            # a 140 GB model: 130.4 GiB + 20% = 156.5 → 157
])
def test_headroom_rule(model: int, expected_gib: int) -> None:
    assert volume_size_for(model) == expected_gib * GIB


@pytest.mark.parametrize("text, value", [("100Gi", 100 * GIB), ("100GiB", 100 * GIB), ("1.5Ti", int(1.5 * 1024**4)),
                                         ("200G", 200 * 10**9), ("200GB", 200 * 10**9), (str(2 * GIB), 2 * GIB)])
def test_quantities(text: str, value: int) -> None:
    assert parse_quantity(text) == value


SMALL = sum(len(v) for k, v in FILES.items() if k != "model.safetensors")


@pytest.mark.parametrize("total, expected", [(40 * GIB, "50Gi"), (100 * GIB, "120Gi"), (100 * GIB + 1, "121Gi")])
def test_size_auto_is_the_hub_size_plus_headroom(render_dir: Any, total: int, expected: str) -> None:
    weights = total - SMALL
    repo = _repo()
    with fault_server(repo) as srv:
        srv.tree_override = _big_tree(repo, weights)
        code, files, err = render_dir("org/m", pre=("--endpoint", srv.url))
    assert code == 0, err
    assert _storage(files) == expected == f"{volume_size_for(total) // GIB}Gi"
    assert "max(20%, 10Gi)" in files["pvc.yaml"]  # the rule is written next to the number
    # the revision is pinned to the upstream's commit, whatever was asked
    (job,) = by_kind(load_all(files["download-job.yaml"]), "Job")
    _, _, params = parse_cli(job["spec"]["template"]["spec"]["containers"][0]["command"])
    assert params["revision"] == repo.commit and job["metadata"]["annotations"]["modelcache.io/revision"] == "main"


def test_size_auto_counts_only_what_the_profile_downloads(render_dir: Any) -> None:
    repo = _repo()
    with fault_server(repo) as srv:
        srv.tree_override = _big_tree(repo, 500 * GIB)
        code, files, err = render_dir("org/m", "--profile", "tokenizer", pre=("--endpoint", srv.url))
    assert code == 0, err
    assert _storage(files) == "11Gi"


def test_given_size_with_a_branch_pins_the_commit_over_the_network(render_dir: Any) -> None:
    repo = _repo()
    with fault_server(repo) as srv:
        code, files, err = render_dir("org/m", "--revision", "main", "--size", "77Gi", pre=("--endpoint", srv.url))
        assert [e.path.split("?")[0] for e in srv.log] == ["/api/models/org/m/revision/main"]  # no tree listing
    assert code == 0, err
    assert _storage(files) == "77Gi" and repo.commit in files["download-job.yaml"]


@pytest.mark.parametrize("args, what", [
    (("--revision", COMMIT), "--size auto looks the model up"),
    (("--revision", "main", "--size", "10Gi"), "cannot pin revision 'main'"),
])
def test_offline_refuses_what_needs_the_network(args: tuple[str, ...], what: str) -> None:
    code, _, err = run("--offline", "k8s", "render", "org/m", *args)
    assert code == 2 and what in err and "hint:" in err


def test_upstream_errors_keep_their_exit_codes() -> None:
    with fault_server(_repo()) as srv:
        code, _, err = run("--endpoint", srv.url, "k8s", "render", "org/unknown")
    assert code == 3 and "not found" in err


# -- the token ---------------------------------------------------------------------------------
def test_no_token_value_in_any_file_unless_filled(render_dir: Any, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    repo = _repo()
    with fault_server(repo) as srv:
        # the token is used to size the model (sent to the upstream) ...
        code, files, err = render_dir("org/m", pre=("--endpoint", srv.url, "--token-file", str(token_file)),
                                      env={"HF_TOKEN": TOKEN, "HUGGING_FACE_HUB_TOKEN": TOKEN})
        assert code == 0, err
        assert any(e.authorization == f"Bearer {TOKEN}" for e in srv.log)
        code, stdout, err2 = run("--endpoint", srv.url, "--token-file", str(token_file), "k8s", "render", "org/m",
                                 env={"HF_TOKEN": TOKEN})
        assert code == 0
    # ... and appears nowhere in what was rendered or printed
    for text in [*files.values(), err, stdout, err2]:
        assert TOKEN not in text
    # no Secret at all: an empty one applied with kubectl would make `kubectl create secret` fail
    assert "secret.yaml" not in files and not any(d["kind"] == "Secret" for t in files.values() for d in load_all(t))
    assert "kubectl -n default create secret generic hf-token-secret --from-file=HF_TOKEN=" in files["download-job.yaml"]


@pytest.mark.parametrize("source", ["file", "stdin"])
def test_secret_filled_on_purpose(render_dir: Any, tmp_path: Path, source: str) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    arg, stdin = (str(token_file), None) if source == "file" else ("-", TOKEN + "\n")
    code, files, err = render_dir("org/m", "--revision", COMMIT, "--size", "20Gi", "--token-file", arg,
                                  input=stdin, pre=("--offline",))
    assert code == 0, err
    (secret,) = load_all(files["secret.yaml"])
    assert secret["stringData"] == {"HF_TOKEN": TOKEN} and "FILLED" in files["secret.yaml"]
    assert [name for name, text in files.items() if TOKEN in text] == ["secret.yaml"]
    assert TOKEN not in err
    out = next(p for p in tmp_path.glob("out*/secret.yaml"))
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert stat.S_IMODE(out.with_name("download-job.yaml").stat().st_mode) == 0o644


def test_a_token_is_never_an_argument() -> None:
    code, _, err = run("--offline", "k8s", "render", "org/m", "--revision", COMMIT, "--size", "20Gi", "--token", TOKEN)
    assert code == 2 and "No such option" in err and TOKEN not in err


@pytest.mark.parametrize("content", ["", "  \n", "hf_a b\n"])
def test_a_bad_token_file_is_refused(tmp_path: Path, content: str) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(content)
    code, out, err = run("--offline", "k8s", "render", "org/m", "--revision", COMMIT, "--size", "20Gi",
                         "--token-file", str(token_file))
    assert code == 2 and "hint:" in err and out == ""


def test_a_filled_secret_never_goes_through_a_planted_file(tmp_path: Path) -> None:
    """#11.11: no fixed temp name: a co-tenant's symlink (or FIFO) at the old name is never written through."""
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    for name in ("secret.yaml", "pvc.yaml", "download-job.yaml", "engine-template.yaml"):
        (out / f".{name}.tmp").symlink_to(victim)
    os.mkfifo(out / ".secret.yaml.tmp.fifo")
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    code, _, err = run("--offline", "k8s", "render", "org/m", "--revision", COMMIT, "--size", "20Gi",
                       "--token-file", str(token_file), "-o", str(out))
    assert code == 0, err
    assert victim.read_text() == "untouched"
    secret = out / "secret.yaml"
    assert not secret.is_symlink() and stat.S_IMODE(secret.stat().st_mode) == 0o600 and TOKEN in secret.read_text()
    # nothing else left behind: no temp file holding the token
    leftovers = {p.name for p in out.iterdir()} - {"secret.yaml", "pvc.yaml", "download-job.yaml", "engine-template.yaml"}
    assert all(name.startswith(".") and (out / name).is_symlink() or name.endswith(".fifo") for name in leftovers)


def test_rendering_again_without_a_token_drops_the_filled_secret(tmp_path: Path) -> None:
    out = tmp_path / "out"
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    base = ("--offline", "k8s", "render", "org/m", "--revision", COMMIT, "--size", "20Gi", "-o", str(out))
    assert run(*base, "--token-file", str(token_file))[0] == 0 and (out / "secret.yaml").exists()
    assert run(*base)[0] == 0 and not (out / "secret.yaml").exists()


def test_pod_failure_policy_comes_from_the_exit_code_table(render_dir: Any) -> None:
    from modelcache.errors import EXIT_CODES, PERMANENT_EXIT_CODES

    assert PERMANENT_EXIT_CODES == (2, 3, 4, 7) and all(code in EXIT_CODES for code in range(8))
    code, files, err = render_dir("org/m", "--revision", COMMIT, "--size", "20Gi", pre=("--offline",))
    (job,) = load_all(files["download-job.yaml"])
    fail, ignore = job["spec"]["podFailurePolicy"]["rules"]
    assert fail["onExitCodes"]["values"] == list(PERMANENT_EXIT_CODES)
    assert ignore["onPodConditions"] == [{"type": "DisruptionTarget", "status": "True"}]
