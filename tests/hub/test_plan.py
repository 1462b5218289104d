from modelcache.cache.records import FileEntry
from modelcache.hub.plan import LocalState, plan_transfer


def entry(path: str, size: int, etag: str) -> FileEntry:
    return FileEntry(path, size, "1" * 40, etag * 64)


def test_plan_actions() -> None:
    a, b, c, d = entry("a", 10, "a"), entry("b", 10, "b"), entry("c", 10, "c"), entry("d", 10, "c")
    plan = plan_transfer(
        [a, b, c, d],
        {"a": LocalState(snapshot_ok=True), "b": LocalState(blob_size=10), "c": LocalState(partial_size=4)},
    )
    actions = {f.entry.path: (f.action, f.resume_from) for f in plan.files}
    assert actions == {"a": ("present", 0), "b": ("link", 0), "c": ("fetch", 4), "d": ("link", 0)}
    assert plan.bytes_to_fetch == 6 and plan.bytes_resumed == 4


def test_oversized_partial_restarts() -> None:
    plan = plan_transfer([entry("x", 5, "e")], {"x": LocalState(partial_size=9)})
    assert plan.files[0].resume_from == 0
