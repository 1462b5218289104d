from modelcache.protocol import FileEntry
from modelcache.hub.download.plan import LocalState, plan_transfer


def entry(path: str, size: int, etag: str) -> FileEntry:
    return FileEntry(path, size, "1" * 40, etag * 64)


def test_plan_actions() -> None:
    a, b, c, d = entry("a", 10, "a"), entry("b", 10, "b"), entry("c", 10, "c"), entry("d", 10, "c")
    plan = plan_transfer(
        [a, b, c, d],
        {"a": LocalState(snapshot_ok=True), "b": LocalState(blob_size=10), "c": LocalState(blob_size=3)},
    )
    actions = {f.entry.path: f.action for f in plan.files}
    assert actions == {"a": "present", "b": "link", "c": "fetch", "d": "link"}
    assert plan.bytes_to_fetch == 10
