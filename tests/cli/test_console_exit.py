"""The console script (``modelcache``, ``python -m modelcache``) leaves without Python's slow
teardown, yet with the same exit status, every byte of output, exit handlers run, and a
still-running non-daemon thread waited for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from modelcache import __version__

MC = [sys.executable, "-m", "modelcache"]
RENDER = ["--offline", "k8s", "render", "org/model", "--revision", "a" * 40, "--size", "20Gi"]


def mc(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MC, *args], capture_output=True, text=True, timeout=60, **kw)  # type: ignore[call-overload]


def test_status_and_output_are_those_of_the_command(tmp_path: Path, demo_model: Path) -> None:
    ok = mc("--version")
    assert ok.returncode == 0 and __version__ in ok.stdout
    usage = mc("--no-such-option")
    assert usage.returncode == 2 and "No such option" in usage.stderr
    missing = mc("--cache-dir", str(tmp_path / "c"), "check", "org/none", "--json")
    assert missing.returncode == 1 and json.loads(missing.stdout)["ready"] is False
    imported = mc("--cache-dir", str(tmp_path / "c"), "import", str(demo_model), "--repo", "org/demo")
    assert imported.returncode == 0, imported.stderr
    ready = mc("--cache-dir", str(tmp_path / "c"), "check", "org/demo")
    assert ready.returncode == 0, ready.stderr


def test_output_to_a_file_is_flushed_whole(tmp_path: Path) -> None:
    out = tmp_path / "manifests.yaml"
    with open(out, "w") as fh:  # a file, not a pipe: block-buffered, written only by the final flush
        res = subprocess.run([*MC, *RENDER], stdout=fh, stderr=subprocess.PIPE, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    docs = [d for d in yaml.safe_load_all(out.read_text()) if d]
    assert len(docs) >= 3 and all("kind" in d for d in docs)


SCRIPT = """
import atexit, sys, threading, time
from pathlib import Path
from modelcache.cli.main import run

mark = Path(sys.argv[1])
atexit.register(lambda: print("exit handler ran", flush=True))
if sys.argv[2] == "thread":
    def late() -> None:
        time.sleep(0.5)
        mark.write_text("written after the command returned")
    threading.Thread(target=late, daemon=False).start()
sys.argv = ["modelcache", "--version"]
run()
"""


def test_exit_handlers_run_and_a_live_non_daemon_thread_is_waited_for(tmp_path: Path) -> None:
    mark = tmp_path / "mark"
    res = subprocess.run([sys.executable, "-c", SCRIPT, str(mark), "thread"], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert mark.read_text() == "written after the command returned"
    assert "exit handler ran" in res.stdout and __version__ in res.stdout
    plain = subprocess.run([sys.executable, "-c", SCRIPT, str(mark), "none"], capture_output=True, text=True,
                           timeout=60)
    assert plain.returncode == 0 and "exit handler ran" in plain.stdout


def test_a_closed_stdout_gives_the_status_main_gives() -> None:
    """Output into a pipe nobody reads any more: no hang, no traceback, the status of ``main()``."""
    statuses = []
    for argv in ([*MC, *RENDER], [sys.executable, "-c", "from modelcache.cli.main import main; main()", *RENDER]):
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None
        proc.stdout.close()
        _, err = proc.communicate(timeout=60)
        assert b"Traceback" not in err
        statuses.append(proc.returncode)
    assert statuses[0] == statuses[1] != 0
