"""A tiny Kubernetes API server on loopback, enough for ``modelcache k8s apply`` and ``status``.

It speaks the handful of endpoints the official client calls for us: read / server-side-apply
(PATCH ``application/apply-patch+yaml``) / delete / list for Secrets, PVCs, Services,
PodTemplates, Deployments, Jobs and CronJobs; list pods by label; read a pod's log. Objects
live in memory. A ``Scenario`` plays the cluster: when a Job is created it makes the Job's
pod, and each time the Job is read it moves the story on (running with progress lines in
the log, then complete; or an image pull that never succeeds; an OOM kill; a token rejected;
a gated repo; a full disk).

It is not Kubernetes, but it keeps the semantics our diagnoses depend on:

- server-side apply merges into the existing object (maps by key, lists of named items by
  ``name``, other lists replaced) and records which field manager owns each field; a field
  another manager set to a different value is a 409 ``FieldManagerConflict`` (with
  ``details.causes[].field``) unless the apply says ``force=true``. (Fields a manager drops from
  its config are not removed: no test needs it.)
- ``invalid[resource] = (field, message)`` answers applies with a 422 ``Invalid`` Status naming
  the field, as validation or an admission webhook does.
- Events, listed with ``fieldSelector=involvedObject.kind=…,involvedObject.name=…``; PVCs get a
  phase (Bound unless the scenario says otherwise); pods can be Pending/Unschedulable.
- ``stuck_deletion``: a deleted Job and its pods stay, terminating (a lost node).

No watch, no admission beyond ``invalid``. It checks what we depend on: the paths, verbs,
content types, label and field selectors, the bearer token from the kubeconfig, and answers
shaped as the real API's.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "fake-cluster-bearer-for-tests"
_ROUTE = re.compile(r"^/(api/v1|apis/apps/v1|apis/batch/v1|apis/policy/v1|apis/rbac\.authorization\.k8s\.io/v1)/namespaces/([a-z0-9-]+)/([a-z]+)"
                    r"(?:/([^/]+))?(?:/(log))?$")
_NODE_ROUTE = re.compile(r"^/api/v1/nodes/([^/]+)$")
_SKIP = ("metadata.uid", "metadata.creationTimestamp", "metadata.resourceVersion", "metadata.managedFields",
         "metadata.deletionTimestamp", "status")


def _named(items: Any) -> bool:
    return isinstance(items, list) and bool(items) and all(isinstance(i, dict) and "name" in i for i in items)


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Leaf paths as Kubernetes writes them in conflicts: ``.spec.template.spec.containers[name="x"].image``."""
    out: dict[str, Any] = {}
    if isinstance(obj, dict) and obj:
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}.{k}"))
    elif _named(obj):
        for item in obj:
            out.update(flatten(item, f'{prefix}[name="{item["name"]}"]'))
    else:
        out[prefix] = obj
    return {k: v for k, v in out.items() if not any(k[1:].startswith(s) for s in _SKIP)}


def merge(old: Any, new: Any) -> Any:
    """Server-side apply's merge: maps by key, lists of named items by name, the rest replaced."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = dict(old)
        for k, v in new.items():
            out[k] = merge(old[k], v) if k in old else v
        return out
    if _named(old) and _named(new):
        by_name = {i["name"]: i for i in old}
        merged = [merge(by_name[i["name"]], i) if i["name"] in by_name else i for i in new]
        return merged + [i for i in old if i["name"] not in {n["name"] for n in new}]
    return new


@dataclass
class Request:
    method: str
    path: str
    content_type: str | None
    authorization: str | None
    query: dict[str, list[str]]
    body: Any = None


def _matches(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


class Scenario:
    """Success: the pod runs (progress in its log), then the Job completes."""

    def __init__(self) -> None:
        self.ticks: dict[str, int] = {}

    def job_created(self, srv: FakeApiServer, ns: str, job: dict[str, Any]) -> None:
        srv.add_pod(ns, job, phase="Pending", statuses=[{"name": "download", "ready": False,
                                                         "state": {"waiting": {"reason": "ContainerCreating"}}}])

    def job_read(self, srv: FakeApiServer, ns: str, job: dict[str, Any]) -> None:
        name = job["metadata"]["name"]
        tick = self.ticks[name] = self.ticks.get(name, -1) + 1
        self.step(srv, ns, job, tick)

    def step(self, srv: FakeApiServer, ns: str, job: dict[str, Any], tick: int) -> None:
        pod = srv.pod_of(ns, job)
        running = {"name": "download", "ready": True, "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}
        if tick == 1:
            pod["status"] = {"phase": "Running", "containerStatuses": [running]}
            srv.logs[pod["metadata"]["name"]] = _progress(0, 1000)
        elif tick == 2:
            srv.logs[pod["metadata"]["name"]] += _progress(500, 1000)
        elif tick >= 3:
            srv.logs[pod["metadata"]["name"]] += _progress(1000, 1000, "done")
            pod["status"] = {"phase": "Succeeded", "containerStatuses": [
                {"name": "download", "ready": False, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}
            job["status"] = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}


def _progress(done: int, total: int, event: str = "progress") -> str:
    return json.dumps({"event": event, "repo_id": "org/m", "bytes_done": done, "bytes_total": total,
                       "files_done": done // 500, "files_total": 2, "rate_bps": 100, "eta_s": (total - done) / 100}) + "\n"


class Pending(Scenario):
    """The pod never starts: the scheduler's verdict in its conditions, or a PVC the provisioner
    cannot make (``pvc_event``), or a volume that will not attach (``pod_event``)."""

    def __init__(self, unschedulable: str | None = None, pvc_event: tuple[str, str] | None = None,
                 pod_event: tuple[str, str] | None = None) -> None:
        super().__init__()
        self.unschedulable = unschedulable
        self.pvc_event = pvc_event
        self.pod_event = pod_event

    def pvc_created(self, srv: FakeApiServer, ns: str, pvc: dict[str, Any]) -> None:
        if self.pvc_event:
            pvc["status"] = {"phase": "Pending"}
            srv.add_event(ns, "PersistentVolumeClaim", pvc["metadata"]["name"], *self.pvc_event)

    def step(self, srv: FakeApiServer, ns: str, job: dict[str, Any], tick: int) -> None:
        pod = srv.pod_of(ns, job)
        pod["status"] = {"phase": "Pending", "containerStatuses": [
            {"name": "download", "ready": False, "state": {"waiting": {"reason": "ContainerCreating"}}}]}
        if self.unschedulable:
            pod["status"] = {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": self.unschedulable}]}
        if self.pod_event and tick == 1:
            srv.add_event(ns, "Pod", pod["metadata"]["name"], *self.pod_event)


class NoPod(Scenario):
    """The Job controller cannot create the pod (a quota, Pod Security): only an Event says so."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__()
        self.event = (reason, message)

    def job_created(self, srv: FakeApiServer, ns: str, job: dict[str, Any]) -> None:
        srv.add_event(ns, "Job", job["metadata"]["name"], *self.event)

    def step(self, srv: FakeApiServer, ns: str, job: dict[str, Any], tick: int) -> None:
        pass


class FailingPod(Scenario):
    """The pod ends (or hangs) the way ``status``/``log`` say; ``job_reason`` fails the Job too."""

    def __init__(self, container_status: dict[str, Any], log: str = "", job_reason: str | None = "PodFailurePolicy",
                 phase: str = "Failed") -> None:
        super().__init__()
        self.container_status = container_status
        self.log = log
        self.job_reason = job_reason
        self.phase = phase

    def step(self, srv: FakeApiServer, ns: str, job: dict[str, Any], tick: int) -> None:
        pod = srv.pod_of(ns, job)
        pod["status"] = {"phase": self.phase, "containerStatuses": [{"name": "download", **self.container_status}]}
        srv.logs[pod["metadata"]["name"]] = self.log
        if self.job_reason and tick >= 1:
            job["status"] = {"failed": 1, "conditions": [{"type": "Failed", "status": "True", "reason": self.job_reason}]}


@dataclass
class FakeApiServer:
    scenario: Scenario = field(default_factory=Scenario)
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    """(resource, namespace, name) → object; pods included."""
    logs: dict[str, str] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    owners: dict[tuple[str, str, str], dict[str, str]] = field(default_factory=dict)
    """(resource, namespace, name) → {field path: field manager}."""
    invalid: dict[str, tuple[str, str]] = field(default_factory=dict)
    """resource → (field, message): applies of that resource get a 422."""
    stuck_deletion: bool = False
    forbidden: set[str] = field(default_factory=set)
    """Resources the kubeconfig's user may not read (RBAC): 403 on GET."""
    on_node_patch: Any = None
    """Called as ``on_node_patch(node, patch)`` while a PATCH of a node is handled, before it applies
    (a test checks what was on disk at that very moment)."""
    url: str = ""
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def add_pod(self, ns: str, job: dict[str, Any], phase: str, statuses: list[dict[str, Any]]) -> dict[str, Any]:
        name = f"{job['metadata']['name']}-x7k2p"
        spec = job["spec"]["template"]["spec"]
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": ns, "creationTimestamp": "2026-01-01T00:00:00Z",
                            "labels": {**job["spec"]["template"]["metadata"].get("labels", {}),
                                       "job-name": job["metadata"]["name"]}},
               "spec": spec, "status": {"phase": phase, "containerStatuses": statuses}}
        self.objects[("pods", ns, name)] = pod
        return pod

    def add_event(self, ns: str, kind: str, name: str, reason: str, message: str, type_: str = "Warning") -> None:
        n = len([k for k in self.objects if k[0] == "events"])
        self.objects[("events", ns, f"{name}.{n:04d}")] = {
            "apiVersion": "v1", "kind": "Event", "metadata": {"name": f"{name}.{n:04d}", "namespace": ns, "labels": {}},
            "involvedObject": {"kind": kind, "name": name, "namespace": ns}, "reason": reason, "message": message,
            "type": type_, "lastTimestamp": f"2026-01-01T00:{n // 60:02d}:{n % 60:02d}Z"}

    def edit(self, resource: str, ns: str, name: str, manager: str, patch: dict[str, Any]) -> None:
        """Another field manager changes an object (``kubectl edit``, an autoscaler)."""
        key = (resource, ns, name)
        self.objects[key] = merge(self.objects[key], patch)
        self.owners.setdefault(key, {}).update({path: manager for path in flatten(patch)})

    def pod_of(self, ns: str, job: dict[str, Any]) -> dict[str, Any]:
        return self.objects[("pods", ns, f"{job['metadata']['name']}-x7k2p")]

    def get(self, resource: str, ns: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((resource, ns, name))

    def seen(self, method: str, fragment: str = "") -> list[Request]:
        return [r for r in self.requests if r.method == method and fragment in r.path]

    # -- HTTP --------------------------------------------------------------------------------
    def handle(self, req: Request) -> tuple[int, Any]:
        if req.authorization != f"Bearer {TOKEN}":
            return 401, _status(401, "Unauthorized", "Unauthorized")
        node = _NODE_ROUTE.match(req.path)
        if node:
            return self.handle_node(req, node.group(1))
        match = _ROUTE.match(req.path)
        if not match:
            return 404, _status(404, "NotFound", f"no route {req.path}")
        _group, ns, resource, name, sub = match.groups()
        if req.method == "GET" and resource in self.forbidden:
            return 403, _status(403, "Forbidden", f'{resource} is forbidden: User "fake" cannot get resource '
                                                  f'"{resource}" in API group "" in the namespace "{ns}"')
        with self._lock:
            key = (resource, ns, name or "")
            if sub == "log" and req.method == "GET":
                if key not in self.objects:
                    return 404, _status(404, "NotFound", f'pods "{name}" not found')
                return 200, self.logs.get(name or "", "")
            if name is None and req.method == "GET":
                selector = (req.query.get("labelSelector") or [""])[0]
                fields = dict(t.partition("=")[::2] for t in (req.query.get("fieldSelector") or [""])[0].split(",") if t)
                items = [o for (r, n, _), o in sorted(self.objects.items())
                         if r == resource and n == ns and _matches(o["metadata"].get("labels", {}), selector)
                         and all(o.get("involvedObject", {}).get(k.split(".")[-1]) == v for k, v in fields.items())]
                return 200, {"kind": "List", "apiVersion": "v1", "items": items}
            if name is None:
                return 405, _status(405, "MethodNotAllowed", "only GET on collections")
            if req.method == "GET":
                obj = self.objects.get(key)
                if obj is None:
                    return 404, _status(404, "NotFound", f'{resource} "{name}" not found')
                if resource == "jobs":
                    self.scenario.job_read(self, ns, obj)
                return 200, obj
            if req.method == "PATCH":
                if req.content_type != "application/apply-patch+yaml" or "fieldManager" not in req.query:
                    return 415, _status(415, "UnsupportedMediaType", "this fake only does server-side apply")
                if resource in self.invalid:
                    where, why = self.invalid[resource]
                    kind = req.body.get("kind", "?")
                    return 422, {**_status(422, "Invalid", f'{kind} "{name}" is invalid: {where}: {why}'),
                                 "details": {"name": name, "kind": resource, "causes": [
                                     {"reason": "FieldValueInvalid", "message": why, "field": where}]}}
                manager = req.query["fieldManager"][0]
                force = (req.query.get("force") or ["false"])[0].lower() == "true"
                existing = self.objects.get(key)
                if existing is not None and existing["metadata"].get("deletionTimestamp"):
                    return 409, _status(409, "AlreadyExists", f'object is being deleted: {resource} "{name}" already exists')
                owners = self.owners.setdefault(key, {})
                have = flatten(existing) if existing is not None else {}
                mine = flatten(req.body)
                conflicts = [p for p, v in mine.items() if owners.get(p, manager) != manager and have.get(p) != v]
                if conflicts and not force:
                    causes = [{"type": "FieldManagerConflict", "message": f'conflict with "{owners[p]}"', "field": p}
                              for p in conflicts]
                    return 409, {**_status(409, "Conflict", f"Apply failed with {len(conflicts)} conflict(s): "
                                           + "; ".join(f'conflict with "{owners[p]}": {p}' for p in conflicts)),
                                 "details": {"name": name, "kind": resource, "causes": causes}}
                body = merge(existing, req.body) if existing is not None else dict(req.body)
                body["metadata"] = {**body["metadata"], "uid": (existing or {}).get("metadata", {}).get(
                    "uid", f"uid-{len(self.requests)}"), "creationTimestamp": "2026-01-01T00:00:00Z"}
                owners.update({p: manager for p in mine})
                created = existing is None
                self.objects[key] = body
                if resource == "jobs" and created:
                    self.scenario.job_created(self, ns, body)
                if resource == "persistentvolumeclaims" and created:
                    body.setdefault("status", {"phase": "Bound"})
                    getattr(self.scenario, "pvc_created", lambda *a: None)(self, ns, body)
                return (201 if created else 200), body
            if req.method == "DELETE":
                if key not in self.objects:
                    return 404, _status(404, "NotFound", f'{resource} "{name}" not found')
                if self.stuck_deletion and resource == "jobs":  # a lost node: the pods never finish terminating
                    self.objects[key]["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
                    for k, o in self.objects.items():
                        if k[0] == "pods" and o["metadata"]["labels"].get("job-name") == name:
                            o["metadata"].update(deletionTimestamp="2026-01-01T00:00:00Z", deletionGracePeriodSeconds=30)
                    return 200, _status(200, "Success", "deleting")
                self.objects.pop(key)
                self.owners.pop(key, None)
                if resource == "jobs":
                    for k in [k for k, o in self.objects.items() if k[0] == "pods"
                              and o["metadata"]["labels"].get("job-name") == name]:
                        del self.objects[k]
                    self.scenario.ticks.pop(name, None)
                return 200, _status(200, "Success", "deleted")
        return 405, _status(405, "MethodNotAllowed", req.method)

    def add_node(self, name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": dict(labels or {})}}
        self.objects[("nodes", "", name)] = node
        return node

    def handle_node(self, req: Request, name: str) -> tuple[int, Any]:
        """Nodes (cluster-scoped): GET, and PATCH as a JSON merge patch or strategic merge patch."""
        with self._lock:
            node = self.objects.get(("nodes", "", name))
            if node is None:
                return 404, _status(404, "NotFound", f'nodes "{name}" not found')
            if req.method == "GET":
                return 200, node
            if req.method != "PATCH":
                return 405, _status(405, "MethodNotAllowed", req.method)
            if req.content_type not in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
                return 415, _status(415, "UnsupportedMediaType", f"unsupported patch type {req.content_type}")
            if set(req.body) != {"metadata"} or set(req.body["metadata"]) != {"labels"}:
                return 403, _status(403, "Forbidden", "this fake lets node patches change labels only")
            if self.on_node_patch is not None:
                self.on_node_patch(name, req.body)
            labels = node["metadata"].setdefault("labels", {})
            for k, v in req.body["metadata"]["labels"].items():
                if v is None:
                    labels.pop(k, None)
                else:
                    labels[k] = v
            return 200, node

    def handler(self) -> type[BaseHTTPRequestHandler]:
        srv = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out at once (no 40 ms delayed-ACK stalls)

            def log_message(self, *a: object) -> None:
                pass

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                req = Request(self.command, parts.path, self.headers.get("Content-Type"),
                              self.headers.get("Authorization"), parse_qs(parts.query),
                              json.loads(raw) if raw else None)
                with srv._lock:
                    srv.requests.append(req)
                status, payload = srv.handle(req)
                data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain" if isinstance(payload, str) else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PATCH = do_DELETE = do_POST = do_PUT = _serve

        return H


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure" if code >= 400 else "Success",
            "message": message, "reason": reason, "code": code}


@contextmanager
def fake_apiserver(scenario: Scenario | None = None) -> Iterator[FakeApiServer]:
    srv = FakeApiServer(scenario or Scenario())
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), srv.handler())
    httpd.daemon_threads = True
    srv.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        httpd.shutdown()
        httpd.server_close()


def write_kubeconfig(path: Path, server: str) -> Path:
    """A kubeconfig pointing at the fake server (JSON is valid YAML)."""
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": server}}],
        "users": [{"name": "fake", "user": {"token": TOKEN}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": "default"}}],
    }))
    return path
