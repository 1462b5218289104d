"""modelcache.yaml: parsing with line-numbered errors, and the shipped JSON Schema agreeing with it."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

import modelcache
from modelcache.errors import InvalidInput
from modelcache.sync import parse_spec
from modelcache.sync.plan import Observed, SyncState, plan_sync

SCHEMA = json.loads((Path(modelcache.__file__).parent / "sync" / "schema.json").read_text())
C1, C2 = "a" * 40, "b" * 40

GOOD = """\
apiVersion: modelcache.io/v1
endpoint: http://127.0.0.1:9
policy:
  max_size: 500GiB
  max_age: 30d
  keep_last: 1
models:
  - repo: Qwen/Qwen3-0.6B
    profile: tokenizer
  - repo: org/big
    revision: v1.0
    include: ["*.json", "*.safetensors"]
    exclude: ["original/*"]
    name: big
    kinds: [chat]
    engine: vllm
  - repo: org/exact
    commit: """ + C1 + "\n"


def test_a_good_file_parses_and_the_schema_accepts_it() -> None:
    spec = parse_spec(GOOD)
    assert [m.repo for m in spec.models] == ["Qwen/Qwen3-0.6B", "org/big", "org/exact"]
    big = spec.models[1]
    assert (big.revision, big.include, big.exclude, big.name, big.engine) == (
        "v1.0", ("*.json", "*.safetensors"), ("original/*",), "big", "vllm")
    assert spec.models[2].commit == C1
    assert spec.policy.max_size == 500 * 1024**3 and spec.policy.max_age == 30 * 86400 and spec.policy.keep_last == 1
    jsonschema.validate(yaml.safe_load(GOOD), SCHEMA)


@pytest.mark.parametrize(("text", "line", "words"), [
    ("models:\n  - repo: ../etc\n", 2, "repo"),
    ("models:\n  - repo: org/a\n    profile: everything\n", 3, "profile"),
    ("models:\n  - repo: org/a\n    colour: red\n", 3, "unknown key 'colour'"),
    ("models:\n  - repo: org/a\n  - repo: org/a\n", 3, "declared twice"),
    ("models:\n  - repo: org/a\n    commit: xyz\n", 3, "40-hex"),
    ("policy:\n  max_size: lots\nmodels: []\n", 2, "max_size"),
    ("policy:\n  keep_last: -1\nmodels: []\n", 2, "keep_last"),
    ("models:\n  - revision: main\n", 2, "without `repo:`"),
    ("models:\n  - repo: org/a\n    engine: vllm\n", 2, "add `name:`"),
    ("models:\n  - repo: org/a\n    name: ../x\n", 3, "served model name"),
    ("models: [\n", 2, "not valid YAML"),
    ("endpoint: ftp://x\nmodels: []\n", 1, "endpoint"),
    ("models:\n  - repo: org/a\n    revision: main\n    revision: dev\n", 4, "twice"),
])
def test_bad_input_names_the_line(text: str, line: int, words: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        parse_spec(text, source="m.yaml")
    assert exc.value.message.startswith(f"m.yaml:{line}:"), exc.value.message
    assert words in exc.value.message + exc.value.hint


@pytest.mark.parametrize("text", [
    "models:\n  - repo: org/a\n    colour: red\n",
    "models:\n  - repo: org/a\n    commit: xyz\n",
    "models:\n  - revision: main\n",
    "policy:\n  keep_last: -1\nmodels: []\n",
    "endpoint: ftp://x\nmodels: []\n",
])
def test_the_schema_rejects_what_the_parser_rejects(text: str) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(yaml.safe_load(text), SCHEMA)


def _obs(spec, **by_repo):  # type: ignore[no-untyped-def]
    return [Observed(m, **by_repo[m.repo.replace("/", "_")]) for m in spec.models]


def test_a_cache_that_matches_plans_nothing() -> None:
    spec = parse_spec("models:\n  - repo: org/a\n  - repo: org/b\n    name: b\n")
    obs = _obs(spec, org_a=dict(commit=C1, ready=True, pinned=True),
               org_b=dict(commit=C2, ready=True, pinned=True, registered_commit=C2))
    plan = plan_sync(spec, obs, SyncState(frozenset({("model", "org/a", C1)}), frozenset()))
    assert plan.changes == () and "nothing to do" in "\n".join(plan.render())


def test_only_what_an_earlier_sync_pinned_is_unpinned() -> None:
    spec = parse_spec("models:\n  - repo: org/a\n")
    obs = _obs(spec, org_a=dict(commit=C2, ready=True, pinned=False))
    state = SyncState(frozenset({("model", "org/a", C1), ("model", "org/gone", C1)}), frozenset({("default", "old")}))
    plan = plan_sync(spec, obs, state)
    acts = [(s.action, s.target) for s in plan.changes]
    assert ("pin", f"org/a@{C2[:12]}") in acts
    assert ("unpin", f"org/a@{C1[:12]}") in acts and ("unpin", f"org/gone@{C1[:12]}") in acts
    assert ("unregister", "old (default)") in acts
    assert plan.state_after.pins == frozenset({("model", "org/a", C2)})


def test_a_model_that_cannot_be_resolved_keeps_its_old_pins() -> None:
    spec = parse_spec("models:\n  - repo: org/a\n")
    obs = [Observed(spec.models[0], None, error="upstream down", exit_code=5)]
    state = SyncState(frozenset({("model", "org/a", C1)}))
    plan = plan_sync(spec, obs, state)
    assert [s.action for s in plan.steps] == ["error"]
    assert plan.state_after.pins == state.pins
