"""Node labels of the node-local tier: the pure parts (keys, values, the patch plan, the own-node rule)."""

from __future__ import annotations

import re

import pytest

from modelcache.errors import InvalidInput
from modelcache.sync import parse_spec
from modelcache.sync.nodes import (
    NodeApi,
    NodeLabeller,
    check_unique_keys,
    is_model_label,
    label_changes,
    label_key,
    label_value,
    model_key,
    validate_node_name,
)

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
C1, C2 = "a" * 40, "0123456789abcdef" * 2 + "01234567"


@pytest.mark.parametrize("repo", ["Qwen/Qwen3-32B", "qwen/qwen3-32b", "RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic",
                                  "a" * 96, "org/" + "x" * 96, "___/...", "gpt2", "Org/Name_with.dots--x"])
def test_model_key_is_a_dns_label_and_our_label(repo: str) -> None:
    key = model_key(repo)
    assert DNS_LABEL.match(key) and len(key) <= 63
    assert is_model_label(label_key(repo), label_value(C1))
    assert label_key(repo) == "modelcache.io/" + key


def test_model_key_is_readable_and_collision_free() -> None:
    assert model_key("Qwen/Qwen3-32B").startswith("qwen-qwen3-32b-")
    # same text after lowering / folding punctuation, still different keys
    repos = ["Qwen/Qwen3-32B", "qwen/qwen3-32b", "qwen/qwen3.32b", "qwen-qwen3/32b", "a" * 96 + "1", "a" * 96 + "2"]
    assert len({model_key(r) for r in repos}) == len(repos)
    assert model_key("org/m", "dataset") != model_key("org/m")
    assert model_key("Qwen/Qwen3-32B") == model_key("Qwen/Qwen3-32B")  # stable (render and sync agree)


def test_label_value_is_commit12() -> None:
    assert label_value(C2) == C2[:12]


def test_only_our_labels_are_ours() -> None:
    assert not is_model_label("modelcache.io/model")  # the pods' label, not a model key
    assert not is_model_label("kubernetes.io/hostname")
    assert not is_model_label("modelcache.io/qwen-12345678", "not-a-commit")
    assert is_model_label("modelcache.io/qwen-12345678", "0123456789ab")


def test_label_changes_touch_only_our_labels() -> None:
    k1, k2, k3 = label_key("org/a"), label_key("org/b"), label_key("org/c")
    current = {"kubernetes.io/hostname": "n1", "modelcache.io/model": "x", k1: label_value(C1), k2: label_value(C1)}
    wanted = {k1: label_value(C1), k2: label_value(C2), k3: label_value(C2)}
    assert label_changes(current, wanted) == {k2: label_value(C2), k3: label_value(C2)}
    assert label_changes(current, wanted, remove_only=True) == {k2: None}
    assert label_changes(current, {}) == {k1: None, k2: None}
    assert label_changes(current, {k1: label_value(C1), k2: label_value(C1)}) == {}


def test_a_repo_declared_twice_cannot_be_labelled() -> None:
    spec = parse_spec("models:\n  - repo: org/a\n    revision: main\n  - repo: org/a\n    revision: v2\n")
    with pytest.raises(InvalidInput, match="declared twice.*lines 2 and 4"):
        check_unique_keys(spec.models)
    check_unique_keys(parse_spec("models:\n  - repo: org/a\n  - repo: org/b\n").models)


@pytest.mark.parametrize("name", ["", "Node1", "n/../x", "a" * 254, "n 1", "-n"])
def test_bad_node_names(name: str) -> None:
    with pytest.raises(InvalidInput):
        validate_node_name(name)


def test_labeller_patches_only_its_own_node() -> None:
    api = NodeApi("http://127.0.0.1:9")
    with pytest.raises(InvalidInput, match="not this pod's node"):
        NodeLabeller(api, "gpu-2", own_node="gpu-1")
    labeller = NodeLabeller(api, "gpu-1", own_node="gpu-1")
    with pytest.raises(InvalidInput, match="refusing"):
        labeller.patch({"kubernetes.io/hostname": "evil"})
    with pytest.raises(InvalidInput, match="refusing"):
        labeller.patch({"node-role.kubernetes.io/control-plane": None})


def test_in_cluster_needs_the_service_host() -> None:
    with pytest.raises(InvalidInput, match="KUBERNETES_SERVICE_HOST"):
        NodeApi.in_cluster(None, None)
    assert NodeApi.in_cluster("10.96.0.1", "443").url == "https://10.96.0.1:443"
    assert NodeApi.in_cluster("fd00::1", None).url == "https://[fd00::1]:443"


def test_api_failures_are_one_line_without_the_token(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from modelcache.sync.nodes import NodeLabelError

    missing = NodeApi("http://127.0.0.1:9", token_file=tmp_path / "none", ca_file=None)
    with pytest.raises(NodeLabelError, match="cannot read the ServiceAccount token"):
        NodeLabeller(missing, "gpu-1").labels()
    token = tmp_path / "token"
    token.write_text("secret-sa-token\n")
    down = NodeApi("http://127.0.0.1:9", token_file=token, ca_file=None)
    with pytest.raises(NodeLabelError, match="cannot reach the Kubernetes API") as info:
        NodeLabeller(down, "gpu-1").labels()
    assert "secret-sa-token" not in str(info.value) + info.value.hint
    token.write_text("bad token\n")
    with pytest.raises(NodeLabelError, match="empty or malformed"):
        NodeLabeller(down, "gpu-1").labels()
