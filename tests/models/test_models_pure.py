"""Pure parts of the model manager: the card checksum, registry rules, replica holders, skew."""

from __future__ import annotations

import pytest

from modelcache.cache.leases import LeaseInfo
from modelcache.errors import InvalidInput
from modelcache.models.checksum import card_checksum, card_diff, card_paths, short
from modelcache.models.errors import ModelConflict, UnknownModel
from modelcache.models.registry import Registration, Registry, plan_add, plan_remove
from modelcache.models.replicas import Replica, parse_holder, replica_holder
from modelcache.models.status import assess_replicas

C1, C2 = "a" * 40, "b" * 40
FILES = {"config.json": "1" * 40, "tokenizer.json": "2" * 40, "tokenizer.model": "3" * 64}


def test_card_paths_are_the_tokenizer_profile() -> None:
    paths = ["config.json", "generation_config.json", "tokenizer_config.json", "chat_template.jinja",
             "original/tokenizer.model", "model.safetensors", "README.md", "original/params.json"]
    assert card_paths(paths) == ["chat_template.jinja", "config.json", "generation_config.json",
                                 "original/tokenizer.model", "tokenizer_config.json"]


def test_card_checksum_covers_commit_paths_and_contents() -> None:
    base = card_checksum(C1, FILES)
    assert len(base) == 64 and base == card_checksum(C1, dict(reversed(FILES.items())))
    assert card_checksum(C2, FILES) != base
    assert card_checksum(C1, {**FILES, "tokenizer.json": "9" * 40}) != base
    assert card_checksum(C1, {**FILES, "tokenizer.json": None}) != base
    assert card_checksum(C1, {**FILES, "chat_template.jinja": "4" * 40}) != base
    assert card_checksum(C1, {k: v for k, v in FILES.items() if k != "config.json"}) != base


def test_card_diff_kinds() -> None:
    actual = {"config.json": "1" * 40, "tokenizer.json": "x" * 40, "tokenizer.model": None, "chat_template.jinja": "4"}
    kinds = {d.path: d.kind for d in card_diff(FILES, actual)}
    assert kinds == {"tokenizer.json": "changed", "tokenizer.model": "missing", "chat_template.jinja": "added"}
    assert card_diff(FILES, FILES) == []


def reg(commit: str = C1, checksum: str = "c" * 64, kinds: tuple[str, ...] = ("chat",)) -> Registration:
    return Registration("org/tiny", "main", commit, checksum, kinds, "vllm")


def test_registry_rules() -> None:
    r0 = Registry()
    r1, out = plan_add(r0, "llama", "default", reg(), replace_=False, now=1.0, by="a@h")
    assert out.action == "created" and r1.get("default", "llama").history[0].action == "add"
    r1b, out = plan_add(r1, "llama", "default", reg(), replace_=False, now=2.0, by="a@h")
    assert out.action == "unchanged" and r1b is r1
    r2, out = plan_add(r1, "llama", "default", reg(kinds=("chat", "embeddings")), replace_=False, now=3.0, by="b@h")
    assert out.action == "updated" and r2.get("default", "llama").kinds == ("chat", "embeddings")

    with pytest.raises(ModelConflict) as exc:
        plan_add(r2, "llama", "default", reg(C2, "d" * 64), replace_=False, now=4.0, by="c@h", live_replicas=2)
    assert "--replace" in exc.value.hint and "2 live replica(s)" in exc.value.hint and "--namespace" in exc.value.hint

    r3, out = plan_add(r2, "llama", "canary", reg(C2, "d" * 64), replace_=False, now=4.0, by="c@h")
    assert out.action == "created" and len(r3.models) == 2
    r4, out = plan_add(r3, "llama", "default", reg(C2, "d" * 64), replace_=True, now=5.0, by="c@h", note="why")
    rec = r4.get("default", "llama")
    assert out.action == "replaced" and rec.checksum == "d" * 64 and rec.created == 1.0 and rec.updated == 5.0
    last = rec.history[-1]
    assert (last.action, last.by, last.note, last.old.checksum, last.new.commit) == ("replace", "c@h", "why", "c" * 64, C2)
    assert set(rec.previous_checksums()) == {short("c" * 64)}

    again = Registry.from_bytes(r4.to_bytes())
    assert again.models == r4.models
    r5, removed = plan_remove(r4, "llama", "canary")
    assert removed.namespace == "canary" and r5.get("canary", "llama") is None
    with pytest.raises(UnknownModel) as exc:
        plan_remove(r5, "llama", "canary")
    assert "default" in exc.value.hint


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b'{"format_version": 2}', b'{"format_version": 1, "models": [{}]}'])
def test_registry_refuses_what_it_cannot_read(raw: bytes) -> None:
    with pytest.raises(ValueError):
        Registry.from_bytes(raw)


def test_replica_holder_roundtrip_and_validation() -> None:
    h = replica_holder("prod", "meta-llama/Llama-3-70B", "vllm-0", "e" * 64)
    assert h == f"replica:prod:meta-llama/Llama-3-70B:vllm-0:{'e' * 16}"
    assert parse_holder(h) == ("prod", "meta-llama/Llama-3-70B", "vllm-0", "e" * 16)
    for other in ("cli", "run:host:1", "replica:a:b:c", "replica:a:b:c:nothex", "replica:../x:b:c:" + "e" * 16):
        assert parse_holder(other) is None
    for bad in (("prod", "bad name", "r"), ("pr:od", "x", "r"), ("prod", "x", "r:1"), ("prod", "x", "r" * 129)):
        with pytest.raises(InvalidInput):
            replica_holder(*bad, "e" * 64)
    with pytest.raises(InvalidInput, match="too long"):
        replica_holder("n" * 63, "m" * 96, "r" * 60, "e" * 64)


def replica(name: str, card: str, commit: str = C1) -> Replica:
    return Replica("default", "llama", name, card, LeaseInfo(name * 4, "org/tiny", commit, "h", 1e12, 1.0, "host", 1))


def test_assess_replicas() -> None:
    r1, _ = plan_add(Registry(), "llama", "default", reg(), replace_=False, now=1.0, by="a@h")
    r2, _ = plan_add(r1, "llama", "default", reg(C2, "d" * 64), replace_=True, now=2.0, by="ops@h")
    rec = r2.get("default", "llama")
    assert assess_replicas(rec, [])["agree"] is True
    ok = assess_replicas(rec, [replica("a", "d" * 16, C2), replica("b", "d" * 16, C2)])
    assert ok["agree"] and ok["current"] and ok["skew"] == []
    stale = assess_replicas(rec, [replica("a", "d" * 16, C2), replica("b", "c" * 16)])
    assert not stale["agree"] and not stale["current"]
    assert [g["replicas"] for g in stale["skew"]] == [["a"], ["b"]]
    old = stale["skew"][1]
    assert not old["registered"] and "replaced by ops@h" in old["known_as"] and old["commits"] == [C1]
    all_old = assess_replicas(rec, [replica("b", "c" * 16)])
    assert all_old["agree"] and not all_old["current"] and len(all_old["skew"]) == 1
