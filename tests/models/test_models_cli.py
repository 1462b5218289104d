"""``modelcache models …`` and ``resolve`` as users run them, on a real cache of the tiny model."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from helpers.cli import run_cli
from models_helpers import REPO, Cached

from modelcache import ModelCache, ModelManager, Settings
from modelcache.models import models_status
from modelcache.models.checksum import short
from modelcache.models.store import RegistryStore, registry_path


def run(cache: Path, *args: str) -> tuple[int, str, str]:
    return run_cli("--cache-dir", str(cache), *args)


def add(c: Cached, *args: str) -> tuple[int, str, str]:
    return run(c.dir, "models", "add", *args)


def test_one_checksum_per_name_and_namespace(cached: Cached) -> None:
    code, out, err = add(cached, "llama", "--repo", REPO, "--kind", "chat", "--engine", "vllm", "--json")
    assert code == 0, err
    first = json.loads(out)
    assert first["action"] == "created" and first["commit"] == cached.v1 and first["kinds"] == ["chat"]

    code, out, _ = add(cached, "llama", "--repo", REPO, "--kind", "chat", "--engine", "vllm")
    assert code == 0 and out.startswith("unchanged")

    code, out, err = add(cached, "llama", "--repo", f"{REPO}@v2")
    assert code == 1 and "error:" in err and "--replace" in err and "--namespace" in err
    assert short(first["checksum"]) in err

    code, out, err = add(cached, "llama", "--repo", f"{REPO}@v2", "--namespace", "canary", "--json")
    assert code == 0, err
    canary = json.loads(out)
    assert canary["action"] == "created" and canary["commit"] == cached.v2 and canary["checksum"] != first["checksum"]

    code, out, err = add(cached, "llama", "--repo", f"{REPO}@v2", "--replace", "--note", "new template")
    assert code == 0 and out.startswith("replaced") and "was" in out, err

    code, out, _ = run(cached.dir, "models", "show", "llama", "--json")
    rec = json.loads(out)
    assert rec["commit"] == cached.v2 and rec["checksum"] == canary["checksum"]
    change = rec["history"][-1]
    assert change["action"] == "replace" and change["note"] == "new template" and "@" in change["by"]
    assert change["old"]["checksum"] == first["checksum"] and change["old"]["commit"] == cached.v1
    code, out, _ = run(cached.dir, "models", "show", "llama")
    assert "replace by" in out and "new template" in out

    status = json.loads(run(cached.dir, "models", "ls", "--json")[1])
    assert [(m["namespace"], m["commit"]) for m in status["models"]] == [("canary", cached.v2), ("default", cached.v2)]
    assert status["ok"] and all(m["cache"]["full"] for m in status["models"])


def test_add_refuses_what_is_not_ready_or_invalid(cached: Cached, tmp_path: Path) -> None:
    code, _, err = add(cached, "x", "--repo", "org/absent")
    assert code == 1 and "cannot register" in err and "--profile tokenizer" in err
    code, _, err = add(cached, "bad name", "--repo", REPO)
    assert code == 2 and "invalid served model name" in err
    code, _, err = add(cached, "x", "--repo", REPO, "--namespace", "a:b")
    assert code == 2 and "invalid namespace" in err
    (cached.snapshot(cached.v1) / "tokenizer.json").unlink()
    code, _, err = add(cached, "x", "--repo", REPO)
    assert code == 1 and "tokenizer.json" in err
    assert not registry_path(cached.dir).exists()


def test_changed_tokenizer_file_is_drift(cached: Cached) -> None:
    assert add(cached, "llama", "--repo", REPO)[0] == 0
    code, out, _ = run(cached.dir, "models", "verify")
    assert code == 0 and "all models ok" in out

    tok = cached.snapshot(cached.v1) / "tokenizer.json"
    data = tok.read_bytes()
    tok.unlink()  # an edit in place of the snapshot link, as an editor or a careless `cp` does
    tok.write_bytes(data.replace(b"<unk>", b"<UNK>"))

    code, out, err = run(cached.dir, "models", "verify")
    assert code == 1 and "card drift" in out and "tokenizer.json changed on disk" in out and "problems" in err
    m = json.loads(run(cached.dir, "models", "verify", "--json")[1])["models"][0]
    assert not m["ok"] and m["card"]["matches"] is False
    assert [(d["path"], d["kind"]) for d in m["card"]["drift"]] == [("tokenizer.json", "changed")]
    assert m["card"]["recorded"] == m["checksum"] != m["card"]["disk"]

    code, _, err = run(cached.dir, "resolve", "llama")
    assert code == 6 and "tokenizer.json changed" in err and "verify --repair" in err
    code, _, err = run(cached.dir, "models", "join", "llama", "--replica", "pod-0")
    assert code == 6
    code, lease, _ = run(cached.dir, "models", "join", "llama", "--replica", "pod-0", "--force")
    assert code == 0
    m = json.loads(run(cached.dir, "models", "ls", "--json")[1])["models"][0]
    assert m["replicas"][0]["card"] != short(m["checksum"]) and not m["current"]
    assert any("pod-0" in p for p in m["problems"])


def test_replicas_skew_after_replace_until_drained(cached: Cached) -> None:
    assert add(cached, "llama", "--repo", REPO)[0] == 0
    code, old_lease, err = run(cached.dir, "models", "join", "llama", "--replica", "old-0")
    assert code == 0, err
    code, _, err = add(cached, "llama", "--repo", f"{REPO}@v2")
    assert code == 1 and "1 live replica(s) still serve it: drain them" in err
    assert add(cached, "llama", "--repo", f"{REPO}@v2", "--replace")[0] == 0
    assert run(cached.dir, "models", "join", "llama", "--replica", "new-0")[0] == 0

    code, out, _ = run(cached.dir, "models", "verify", "-v")
    assert code == 1 and "SKEW" in out and "old-0" in out and "registered before" in out
    m = json.loads(run(cached.dir, "models", "ls", "--json")[1])["models"][0]
    assert not m["agree"] and [g["replicas"] for g in m["skew"]] == [["new-0"], ["old-0"]]
    assert m["skew"][1]["commits"] == [cached.v1]

    code, _, err = run(cached.dir, "models", "rm", "llama")
    assert code == 1 and "--force" in err
    assert run(cached.dir, "models", "leave", "llama", old_lease.strip())[1].strip() == "left"
    code, out, _ = run(cached.dir, "models", "verify")
    assert code == 0, out
    assert run(cached.dir, "models", "rm", "llama", "--force")[0] == 0
    assert json.loads(run(cached.dir, "models", "ls", "--json")[1])["unregistered_replicas"][0]["replica"] == "new-0"


def test_resolve_names_and_repos(cached: Cached) -> None:
    assert add(cached, "llama", "--repo", f"{REPO}@v2")[0] == 0
    assert run(cached.dir, "resolve", "llama")[1].strip() == str(cached.snapshot(cached.v2))
    assert run(cached.dir, "resolve", REPO)[1].strip() == str(cached.snapshot(cached.v1))
    assert run(cached.dir, "resolve", f"{REPO}@v2", "--json")[1].count(cached.v2) == 1
    code, _, err = run(cached.dir, "resolve", "llama", "--namespace", "prod")
    assert code == 1 and "no model 'llama' in namespace 'prod'" in err and "default" in err
    code, _, err = run(cached.dir, "resolve", "mistral")
    assert code == 1 and "models ls" in err
    (cached.snapshot(cached.v1) / "model-00002-of-00002.safetensors").unlink()
    code, _, err = run(cached.dir, "resolve", REPO)
    assert code == 1 and "model-00002-of-00002.safetensors" in err
    assert run(cached.dir, "resolve", REPO, "--profile", "tokenizer")[0] == 0


def test_status_is_json_and_registry_survives_concurrent_writers(cached: Cached) -> None:
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            mm = ModelManager(ModelCache(Settings(cache_dir=cached.dir, offline=True)))
            for j in range(4):
                mm.add(f"m{i}-{j}", REPO, "main" if (i + j) % 2 else "v2", namespace=f"ns{i % 2}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    reg = RegistryStore(cached.dir).read()
    assert len(reg.models) == 24 and reg.generation == 24
    status = models_status(cached.dir)
    assert json.loads(json.dumps(status)) == status and status["ok"] and len(status["models"]) == 24
    assert not list(registry_path(cached.dir).parent.glob("*.tmp")) and not list(
        registry_path(cached.dir).parent.glob("*.mc-lock"))


def test_unreadable_registry_is_never_overwritten(cached: Cached) -> None:
    path = registry_path(cached.dir)
    path.parent.mkdir(parents=True)
    path.write_text("{ not json")
    code, _, err = add(cached, "llama", "--repo", REPO)
    assert code == 7 and "unreadable" in err and "hint:" in err
    assert run(cached.dir, "models", "ls")[0] == 7
    status = models_status(cached.dir)
    assert not status["ok"] and status["error"]["error"] == "cache"
    assert path.read_text() == "{ not json"
