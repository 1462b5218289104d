"""The readiness rule, exactly: what an engine loads, judged by what was asked (issue #12, section 1)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from modelcache import ModelCache, Settings
from modelcache.cache.requests import read_requests, record_request

REPO = "org/model"
CONFIG = b'{"model_type": "llama"}'
TOKENIZER = b'{"version": "1.0", "model": {"type": "BPE"}}'


def build(tmp_path: Path, files: dict[str, bytes], name: str = "src") -> tuple[ModelCache, str]:
    src = tmp_path / name
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    mc = ModelCache(Settings(cache_dir=tmp_path / "cache", offline=True))
    return mc, mc.import_folder(src, REPO).commit


def base(**extra: bytes) -> dict[str, bytes]:
    return {"config.json": CONFIG, "tokenizer.json": TOKENIZER, **extra}


def sharded(n: int = 2) -> dict[str, bytes]:
    names = [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]
    index = {"metadata": {}, "weight_map": {f"layer.{i}": name for i, name in enumerate(names)}}
    return {**{name: b"w" * 8 for name in names}, "model.safetensors.index.json": json.dumps(index).encode()}


@pytest.mark.parametrize("stray", ["training_args.bin", "adapter_model.safetensors", "model-00001-of-00002.safetensors",
                                   "model.gguf", "consolidated.00.pth", "optimizer.pt"])
def test_only_standard_names_are_weights(tmp_path: Path, stray: str) -> None:
    mc, _ = build(tmp_path, base(**{stray: b"x" * 16}))
    assert mc.check(REPO, profile="tokenizer")
    r = mc.check(REPO)
    assert not r.ready and not r
    assert any(m.startswith("weights") for m in r.missing), r.reason


@pytest.mark.parametrize("weights", ["model.safetensors", "pytorch_model.bin"])
def test_single_file_weights(tmp_path: Path, weights: str) -> None:
    mc, _ = build(tmp_path, base(**{weights: b"w" * 16}))
    r = mc.check(REPO)
    assert r.ready and r, r.reason


def test_sharded_weights_and_a_shard_gone(tmp_path: Path) -> None:
    mc, commit = build(tmp_path, {**base(), **sharded(3)})
    assert mc.check(REPO)
    (mc.layout(REPO).snapshot(commit) / "model-00002-of-00003.safetensors").unlink()
    r = mc.check(REPO)
    assert not r.ready and r.missing == ("model-00002-of-00003.safetensors",)


def test_stray_shard_next_to_a_corrupt_index(tmp_path: Path) -> None:
    files = {**base(), **sharded(1)}
    files["model.safetensors.index.json"] = b'{"weight_map": '
    mc, _ = build(tmp_path, files)
    r = mc.check(REPO)
    assert not r.ready
    assert any("model.safetensors.index.json" in p and "JSON" in p for p in r.problems), r.reason


def test_index_without_weight_map_or_with_escaping_shard(tmp_path: Path) -> None:
    mc, _ = build(tmp_path, {**base(), "model.safetensors.index.json": b'{"metadata": {}}'})
    assert not mc.check(REPO) and "weight_map" in mc.check(REPO).reason
    bad = json.dumps({"weight_map": {"a": "../../../etc/passwd"}}).encode()
    mc2, _ = build(tmp_path / "2", {**base(), "model.safetensors.index.json": bad})
    r = mc2.check(REPO)
    assert not r.ready and "invalid shard path" in r.reason


def test_index_names_a_shard_the_commit_lacks(tmp_path: Path) -> None:
    files = {**base(), **sharded(2)}
    del files["model-00002-of-00002.safetensors"]
    mc, _ = build(tmp_path, files)
    r = mc.check(REPO)
    assert not r.ready
    assert any("model-00002-of-00002.safetensors" in p and "not a file of the commit" in p for p in r.problems)


@pytest.mark.parametrize("name", ["config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"])
def test_profile_json_files_must_parse(tmp_path: Path, name: str) -> None:
    mc, _ = build(tmp_path, base(**{"model.safetensors": b"w", name: b"{not json"}))
    for profile in ("tokenizer", "full"):
        r = mc.check(REPO, profile=profile)
        assert not r.ready and any(p.startswith(f"{name}: not valid JSON") for p in r.problems), r.reason


def test_tiktoken_line_format(tmp_path: Path) -> None:
    good = b"IQ== 0\nIg== 1\nIw== 2\n"
    mc, _ = build(tmp_path, {"config.json": CONFIG, "tiktoken.model": good, "model.safetensors": b"w"})
    assert mc.check(REPO).ready
    mc2, _ = build(tmp_path / "2", {"config.json": CONFIG, "cl100k.tiktoken": b"<html>not found</html>\n",
                                    "model.safetensors": b"w"})
    r = mc2.check(REPO, profile="tokenizer")
    assert not r.ready and "tiktoken" in r.reason


def test_sentencepiece_only_when_accepted(tmp_path: Path) -> None:
    mc, _ = build(tmp_path, {"config.json": CONFIG, "tokenizer.model": b"\x0a\x05hello", "model.safetensors": b"w"})
    r = mc.check(REPO)
    assert not r.ready and any(m.startswith("a tokenizer") for m in r.missing)
    assert "tokenizer.model counts only with --accept sentencepiece" in r.reason
    assert mc.check(REPO, accept=["sentencepiece"]).ready


def test_accepted_formats(tmp_path: Path) -> None:
    mc, _ = build(tmp_path, {"adapter_config.json": b"{}", "adapter_model.safetensors": b"a" * 4})
    assert not mc.check(REPO)
    assert mc.check(REPO, accept=["adapter"]).ready
    mc2, _ = build(tmp_path / "g", {"model-Q4_K_M.gguf": b"GGUF" * 4, "README.md": b"hi"})
    assert not mc2.check(REPO)
    assert mc2.check(REPO, accept=["gguf"]).ready
    mc3, _ = build(tmp_path / "m", {"params.json": b"{}", "tekken.json": b"{}", "consolidated.safetensors": b"c"})
    assert not mc3.check(REPO)
    assert mc3.check(REPO, accept=["consolidated"]).ready
    from modelcache.errors import InvalidInput

    with pytest.raises(InvalidInput):
        mc3.check(REPO, accept=["everything"])


def filtered_model() -> dict[str, bytes]:
    return {**base(), **sharded(2), "README.md": b"# card", "original/consolidated.00.pth": b"o" * 32,
            "original/params.json": b"{}"}


def drop(mc: ModelCache, commit: str, *names: str) -> None:
    for name in names:
        (mc.layout(REPO).snapshot(commit) / name).unlink()


def test_filtered_download_is_full_ready_by_what_was_asked(tmp_path: Path) -> None:
    mc, commit = build(tmp_path, filtered_model())
    drop(mc, commit, "README.md", "original/consolidated.00.pth", "original/params.json")
    r = mc.check(REPO)
    assert not r.ready and "README.md" in r.missing  # nothing recorded: the whole commit was asked
    assert record_request(mc.layout(REPO), commit, "full", (), ("original/*", "README.md"))
    r = mc.check(REPO)
    assert r.ready, r.reason
    assert r.not_asked == 3 and any("not asked" in n for n in r.notes)
    # the same ask given to check, with nothing recorded
    mc.layout(REPO).state.joinpath("requests", f"{commit}.json").unlink()
    assert mc.check(REPO, exclude=["original/*", "README.md"]).ready
    assert not mc.check(REPO)


def test_filter_that_drops_a_shard_is_not_ready_by_name(tmp_path: Path) -> None:
    mc, commit = build(tmp_path, filtered_model())
    drop(mc, commit, "model-00002-of-00002.safetensors")
    record_request(mc.layout(REPO), commit, "full", (), ("*-00002-of-00002.safetensors",))
    r = mc.check(REPO)
    assert not r.ready and r.missing == ("model-00002-of-00002.safetensors",)


def test_asked_file_missing_is_not_ready(tmp_path: Path) -> None:
    mc, commit = build(tmp_path, filtered_model())
    record_request(mc.layout(REPO), commit, "full", ("*.json", "*.safetensors", "README.md"))
    assert mc.check(REPO)
    drop(mc, commit, "README.md")
    r = mc.check(REPO)
    assert not r.ready and r.missing == ("README.md",)


def test_requests_are_a_union_and_junk_reads_as_nothing(tmp_path: Path) -> None:
    mc, commit = build(tmp_path, filtered_model())
    lay = mc.layout(REPO)
    record_request(lay, commit, "tokenizer")
    record_request(lay, commit, "full", ("*.json",))
    record_request(lay, commit, "full", ("*.json",))
    assert len(read_requests(lay, commit)) == 2
    record_request(lay, commit, "full")  # an unfiltered ask covers the filtered ones of its profile
    assert [r.profile for r in read_requests(lay, commit)] == ["tokenizer", "full"]
    path = lay.state / "requests" / f"{commit}.json"
    for junk in (b"[", b'{"requests": [{"profile": "evil"}]}', b'{"requests": 7}', b"\xff" * 10):
        path.write_bytes(junk)
        assert read_requests(lay, commit) == ()
    drop(mc, commit, "README.md")
    assert not mc.check(REPO)  # conservative, never laxer


def test_links_out_of_the_cache_and_fifos_are_problems(tmp_path: Path) -> None:
    mc, commit = build(tmp_path, base(**{"model.safetensors": b"w"}))
    snap = mc.layout(REPO).snapshot(commit)
    outside = tmp_path / "outside.json"
    outside.write_bytes(CONFIG)
    (snap / "config.json").unlink()
    (snap / "config.json").symlink_to(outside)
    r = mc.check(REPO)
    assert not r.ready and any("config.json: links outside" in p for p in r.problems)
    blob = Path(os.path.realpath(snap / "tokenizer.json"))
    blob.unlink()
    os.mkfifo(blob)
    done: list[object] = []
    t = threading.Thread(target=lambda: done.append(mc.check(REPO, profile="tokenizer")), daemon=True)
    t.start()
    t.join(10)
    assert done, "check blocked on a FIFO"
    assert any("tokenizer.json: not a regular file" in p for p in done[0].problems)  # type: ignore[attr-defined]


def test_parsed_once_per_blob(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from modelcache.cache import loadable

    mc, _ = build(tmp_path, base(**{"model.safetensors": b"w"}))
    reads: list[str] = []
    real = loadable._read
    monkeypatch.setattr(loadable, "_read", lambda path, size: reads.append(path) or real(path, size))
    assert mc.check(REPO)
    first = len(reads)
    assert first >= 2
    assert mc.check(REPO)
    assert len(reads) == first


def test_check_is_o_files_on_a_1000_shard_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    n = 1000
    mc, _ = build(tmp_path, {**base(), **sharded(n)})
    assert mc.check(REPO)  # warm the parse cache
    from modelcache.cache import loadable

    calls = {"lstat": 0, "readlink": 0, "read": 0}
    real_lstat, real_readlink, real_read = os.lstat, os.readlink, loadable._read

    def lstat(p, *a, **k):  # type: ignore[no-untyped-def]
        calls["lstat"] += 1
        return real_lstat(p, *a, **k)

    def readlink(p, *a, **k):  # type: ignore[no-untyped-def]
        calls["readlink"] += 1
        return real_readlink(p, *a, **k)

    monkeypatch.setattr(loadable.os, "lstat", lstat)
    monkeypatch.setattr(loadable.os, "readlink", readlink)
    monkeypatch.setattr(loadable, "_read", lambda p, s: calls.__setitem__("read", calls["read"] + 1) or real_read(p, s))
    r = mc.check(REPO)
    assert r.ready
    files = n + 3
    assert calls["lstat"] <= 2 * files + 5 and calls["readlink"] <= files  # each file once: link + blob
    assert calls["read"] <= 1  # only the index, for its shard names (verdicts cached)


def test_ok_verdicts_outlive_the_process_and_not_a_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from modelcache.cache import loadable, readiness

    mc, commit = build(tmp_path, base(**{"model.safetensors": b"w"}))
    assert mc.check(REPO)
    verdicts = mc.layout(REPO).state / "parsed"
    assert len(list(verdicts.iterdir())) == 2  # config.json and tokenizer.json blobs
    reads: list[str] = []
    real = loadable._read
    monkeypatch.setattr(loadable, "_read", lambda path, size: reads.append(path) or real(path, size))
    loadable._PARSED.clear()
    readiness._RECORDS.clear()  # a new process
    assert mc.check(REPO) and reads == []
    blob = Path(os.path.realpath(mc.layout(REPO).snapshot(commit) / "tokenizer.json"))
    blob.write_bytes(b"{broken" + b" " * (len(TOKENIZER) - 7))  # same size, new mtime: judged again
    loadable._PARSED.clear()
    r = mc.check(REPO)
    assert not r.ready and any("tokenizer.json: not valid JSON" in p for p in r.problems)


@pytest.mark.parametrize("junk", [b"{", b'{"format_version": 1, "files": {"../../x": {"size": 1}}}',
                                  b'{"format_version": 1, "files": {"a": {"size": -1}}}', b"fifo"])
def test_a_corrupt_record_is_not_ready(tmp_path: Path, junk: bytes) -> None:
    mc, commit = build(tmp_path, base(**{"model.safetensors": b"w"}))
    record = mc.layout(REPO).tree_record(commit)
    record.unlink()
    if junk == b"fifo":
        os.mkfifo(record)
    else:
        record.write_bytes(junk)
    r = mc.check(REPO)
    assert not r.ready and "completeness record" in r.reason
    record.unlink()  # none at all (a cache written by an older client): judged by the listing, with a note
    r = mc.check(REPO)
    assert r.ready and any("no completeness record" in n for n in r.notes)


def test_not_ready_says_which_accept_would_count_it(tmp_path: Path) -> None:
    mc, _ = build(tmp_path, {"model-Q4_K_M.gguf": b"GGUF"})
    r = mc.check(REPO)
    assert not r.ready and "model-Q4_K_M.gguf counts only with --accept gguf" in r.reason
    mc2, _ = build(tmp_path / "a", base(**{"adapter_model.safetensors": b"a"}))
    assert "--accept adapter" in mc2.check(REPO).reason
