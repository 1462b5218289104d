"""Our YAML emitter reads back exactly (PyYAML as the reader); ``k8s validate`` catches what
strict schemas catch and says how to get the validator when it is missing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from helpers.k8s import run
from hypothesis import given, settings
from hypothesis import strategies as st

from modelcache.k8s._yaml import dump_all, dump_document, scalar

TRICKY = ["yes", "No", "ON", "off", "y", "n", "true", "False", "null", "~", "", " ", "1", "1.0", "0x1f", "1e3",
          "0o17", "1_000", "12:30", "2001-12-14", ".inf", "-.inf", ".NaN", "-", "- x", "? x", ": x", "a: b", "a:",
          "#c", "a #c", "&a", "*a", "!t", "%x", "@x", "`x", "|", ">", "'q'", '"q"', "[x]", "{x}", "a,b", "=",
          "<<", "line\nbreak", "tab\there", "trailing ", " leading", "uni\u2028code", "\u0085", "é", "😀",
          "\ufeffbom", "ctl\x01", "back\\slash", "http://x:8080/y", "modelcache:0.1.0", "--revision", "0.0.0.0",
          "Qwen/Qwen3-32B", "9216db5781bf21249d130ec9da846c4624c16137", "1234567890123456789012345678901234567890"]


@pytest.mark.parametrize("value", TRICKY)
def test_tricky_strings_read_back_as_strings(value: str) -> None:
    assert yaml.safe_load(f"k: {scalar(value)}\n") == {"k": value}
    assert yaml.safe_load(dump_document({value or "empty": [value, {value or "e": value}]})) == \
        {value or "empty": [value, {value or "e": value}]}


_scalars = st.one_of(st.text(max_size=30), st.integers(-(2**63), 2**63), st.booleans(), st.none())
_keys = st.text(min_size=1, max_size=12)
_trees = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(_keys, inner, max_size=4)), max_leaves=20)


@settings(max_examples=120, deadline=None)
@given(st.dictionaries(_keys, _trees, min_size=1, max_size=5))
def test_any_document_reads_back(doc: dict) -> None:
    assert yaml.safe_load(dump_document(doc)) == doc


def test_streams_and_comments() -> None:
    text = dump_all([{"a": 1}, {"b": []}, {"c": {}}], header=["first line", "second"])
    assert text.startswith("# first line\n# second\n")
    assert list(yaml.safe_load_all(text)) == [{"a": 1}, {"b": []}, {"c": {}}]


def test_validate_catches_unknown_fields_and_bad_types(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: x\nspec:\n  accessModes: [ReadWriteMany]\n"
        "  resources:\n    requests:\n      storage: 10Gi\n  storageClas: typo\n"
        "---\napiVersion: batch/v1\nkind: Job\nmetadata:\n  name: j\nspec:\n  backoffLimit: three\n"
        "  template:\n    spec:\n      containers: []\n"
        "---\napiVersion: example.com/v1\nkind: Unknown\nmetadata:\n  name: u\n")
    code, _, err = run("k8s", "validate", str(bad))
    assert code == 1
    assert "PersistentVolumeClaim/x" in err and "storageClas" in err
    assert "Job/j" in err and "backoffLimit" in err
    assert "Unknown/u" in err and "0/3 objects valid" in err


def test_validate_refuses_garbage_and_unknown_versions(tmp_path: Path) -> None:
    junk = tmp_path / "junk.yaml"
    junk.write_text("a: [unclosed\n")
    code, _, err = run("k8s", "validate", str(junk))
    assert code == 2 and "not valid YAML" in err
    ok = tmp_path / "ok.yaml"
    ok.write_text("apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n")
    code, _, err = run("k8s", "validate", str(ok), "--kubernetes-version", "0.1")
    assert code == 2 and "no bundled schema" in err and "hint:" in err
    code, out, _ = run("k8s", "validate", str(ok), "--kubernetes-version", "1.33")
    assert code == 0 and "Kubernetes 1.33" in out


def test_validate_without_the_validator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "kubernetes_validate", None)
    monkeypatch.setitem(sys.modules, "kubernetes_validate.utils", None)
    ok = tmp_path / "ok.yaml"
    ok.write_text("apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n")
    code, _, err = run("k8s", "validate", str(ok))
    assert code == 1 and "kubernetes-validate" in err and "pip install" in err
