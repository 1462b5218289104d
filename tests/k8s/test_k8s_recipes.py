"""``deploy/recipes/`` is exactly what ``k8s render`` prints for the commands its README gives.

After a change to the manifests, regenerate with
``MODELCACHE_UPDATE_RECIPES=1 .venv/bin/python -m pytest tests/k8s/test_k8s_recipes.py`` and
review the diff.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest
from helpers.k8s import by_kind, load_all, run

from modelcache.k8s.validate import SUPPORTED, validate_objects

RECIPES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "recipes"
# The brief's recipes (seeds/): Llama-3.3-70B FP8 on a ReadWriteMany volume (storage class
# vast-optimized, /model-store), Qwen3-32B on ReadWriteOnce with a compilation cache beside it.
RECIPES = {
    "llama-3-70b": (
        "modelcache --offline k8s render RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic"
        " --revision ddb4128556dfcff99e0c41aee159ea6c3e655dcd --size 100Gi"
        " --access-mode ReadWriteMany --storage-class vast-optimized --mount-path /model-store"
        " --engine-image nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.3.0"
        " --gc-schedule '30 3 * * *' --gc-max-age 30d --output deploy/recipes/llama-3-70b"
    ),
    "qwen3-32b": (
        "modelcache --offline k8s render Qwen/Qwen3-32B"
        " --revision 9216db5781bf21249d130ec9da846c4624c16137 --size 100Gi"
        " --access-mode ReadWriteOnce --mount-path /home/dynamo/.cache/huggingface"
        " --compile-cache 50Gi --compile-cache-path /home/dynamo/.cache/vllm"
        " --engine-image nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.3.1"
        " --gc-schedule '30 3 * * *' --gc-max-age 30d --output deploy/recipes/qwen3-32b"
    ),
    # An HA read-through mirror on a shared volume, pre-filled with one model by the Job.
    "ha-mirror": (
        "modelcache --offline k8s render Qwen/Qwen3-32B"
        " --revision 9216db5781bf21249d130ec9da846c4624c16137 --size 500Gi"
        " --access-mode ReadWriteMany --storage-class vast-optimized --pvc mirror-cache"
        " --mirror --mirror-replicas 2 --mirror-workers 2"
        " --gc-schedule @daily --gc-max-size 450GiB --output deploy/recipes/ha-mirror"
    ),
}


def _render(command: str, out: Path) -> dict[str, str]:
    args = shlex.split(command)[1:]
    i = args.index("--output")
    args[i + 1] = str(out)
    code, _, err = run(*args)
    assert code == 0, err
    return {p.name: p.read_text() for p in sorted(out.glob("*.yaml"))}


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_is_what_render_prints(name: str, tmp_path: Path) -> None:
    fresh = _render(RECIPES[name], tmp_path / name)
    folder = RECIPES_DIR / name
    if os.environ.get("MODELCACHE_UPDATE_RECIPES") == "1":
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.yaml"):
            old.unlink()
        for fname, text in fresh.items():
            (folder / fname).write_text(text)
    kept = {p.name: p.read_text() for p in sorted(folder.glob("*.yaml"))}
    assert kept == fresh, f"deploy/recipes/{name} differs from render's output; see this module's docstring"


@pytest.mark.parametrize("version", SUPPORTED)
def test_every_file_in_deploy_validates_on_every_supported_version(version: str) -> None:
    files = sorted(p for p in RECIPES_DIR.parent.rglob("*") if p.suffix in (".yaml", ".yml"))
    docs = [(f"{p}#{i}", d) for p in files for i, d in enumerate(load_all(p.read_text()))]
    assert len(docs) > 12
    assert validate_objects(docs, version) == []


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_validates_and_matches_the_brief(name: str) -> None:
    docs = [d for p in sorted((RECIPES_DIR / name).glob("*.yaml")) for d in load_all(p.read_text())]
    if name == "ha-mirror":
        assert {d["kind"] for d in docs} >= {"Deployment", "Service", "PodDisruptionBudget"}
        assert by_kind(docs, "Secret") == []
        return
    (job,) = by_kind(docs, "Job")
    (pvc,) = [d for d in by_kind(docs, "PersistentVolumeClaim") if d["metadata"]["name"] == "model-cache"]
    # no Secret: `kubectl apply -f` would make an empty one and `kubectl create secret` would then fail
    assert by_kind(docs, "Secret") == []
    assert pvc["spec"]["resources"]["requests"]["storage"] == "100Gi"
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    if name == "llama-3-70b":
        assert pvc["spec"]["accessModes"] == ["ReadWriteMany"] and pvc["spec"]["storageClassName"] == "vast-optimized"
        assert env["HF_HOME"] == "/model-store"
        assert "ddb4128556dfcff99e0c41aee159ea6c3e655dcd" in job["spec"]["template"]["spec"]["containers"][0]["command"]
    else:
        assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"] and by_kind(docs, "Deployment")
        assert env["HF_HOME"] == "/home/dynamo/.cache/huggingface"
        names = {d["metadata"]["name"] for d in by_kind(docs, "PersistentVolumeClaim")}
        assert names == {"model-cache"}  # ReadWriteOnce: the compilation cache is an emptyDir per replica


def test_readme_gives_the_same_commands() -> None:
    readme = (RECIPES_DIR / "README.md").read_text()
    for command in RECIPES.values():
        assert command in " ".join(readme.replace("\\\n", " ").split()), command
