"""The benchmark harness behind ``make bench`` (``benchmarks/run.py``).

Modules, by concern:

- :mod:`.common` — paths, units, modelcache's defaults (read from ``Settings``)
- :mod:`.sourcerepo` — the generated source repos (random files, hashes, HF metadata)
- :mod:`.hubserver`, :mod:`.throttle` — the throttled HF-compatible upstream (run by ``upstream.py``)
- :mod:`.scenarios` — what each download scenario is (files, caps, latency, tools)
- :mod:`.peers` — how each tool (modelcache, huggingface_hub, hf_transfer, aria2c, curl) is
  invoked, and how its output is verified
- :mod:`.measure` — running one tool under ``/usr/bin/time``: wall, CPU, RSS, interference
- :mod:`.serving` — ``modelcache serve`` vs nginx under ``wrk``
- :mod:`.mirror` — a cold read-through mirror asked by many clients at once
- :mod:`.machine` — tool installation, machine facts, source fingerprint
- :mod:`.targets` — issue #16's targets judged on measured figures (pure)
- :mod:`.report` — ``RESULTS.md`` and the console summary (pure)
"""
