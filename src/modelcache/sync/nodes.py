"""Node labels for the node-local tier: ``sync --label-node NAME``.

A node that holds a declared model, ready, carries ``modelcache.io/<model-key>=<commit12>``;
engine pods require that label (``k8s render -f … --node-local``), so they are scheduled only
where the model is on local disk. The label goes BEFORE anything can remove the files (an
unpin, GC): ``run.sync`` removes every label this tier owns that is not backed by a declared,
ready model before the first step, and adds a model's label only after its last step.

``model_key``: the repo id lowercased, every run of other characters made ``-``, cut to 54
characters, then ``-`` and 8 hex of the sha256 of ``repo_type/repo_id`` (exact case): a
DNS label (at most 63 characters, ``[a-z0-9-]``), readable, and two repos never share a key
(``Qwen/Qwen3-32B`` → ``qwen-qwen3-32b-<hash8>``). ``modelcache sync --label-node`` and
``k8s render`` use the same function.

Kubernetes RBAC cannot limit ``patch nodes`` to the pod's own node: the DaemonSet passes
``spec.nodeName`` (downward API) as ``NODE_NAME`` and ``--label-node $(NODE_NAME)``, and
``NodeLabeller`` refuses any other name. Only labels of the form above are ever changed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidInput, ModelCacheError

__all__ = ["LABEL_PREFIX", "NodeApi", "NodeLabelError", "NodeLabeller", "check_unique_keys", "is_model_label",
           "label_changes", "label_key", "label_value", "model_key", "validate_node_name"]

LABEL_PREFIX = "modelcache.io/"
SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
_KEY = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?-[0-9a-f]{8}\Z|^[0-9a-f]{8}\Z")
_VALUE = re.compile(r"^[0-9a-f]{12}\Z")
_NODE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")


def model_key(repo_id: str, repo_type: str = "model") -> str:
    """A DNS-label-safe, collision-free short form of a repo id (see the module docstring)."""
    text = re.sub(r"[^a-z0-9]+", "-", repo_id.lower()).strip("-")[:54].strip("-")
    digest = hashlib.sha256(f"{repo_type}/{repo_id}".encode()).hexdigest()[:8]
    return f"{text}-{digest}" if text else digest


def label_key(repo_id: str, repo_type: str = "model") -> str:
    """``modelcache.io/<model-key>``."""
    return LABEL_PREFIX + model_key(repo_id, repo_type)


def label_value(commit: str) -> str:
    """The first 12 hex of the commit (a label value is at most 63 characters)."""
    return commit[:12].lower()


def is_model_label(key: str, value: str | None = None) -> bool:
    """A label this tier owns: ``modelcache.io/<model-key>`` (and, when given, a 12-hex value)."""
    if not key.startswith(LABEL_PREFIX) or not _KEY.match(key[len(LABEL_PREFIX):]):
        return False
    return value is None or bool(_VALUE.match(value))


def check_unique_keys(models: Iterable[Any]) -> None:
    """One label per repo: a repo declared at two revisions cannot be told apart on a node."""
    seen: dict[str, Any] = {}
    for m in models:
        key = label_key(m.repo, m.repo_type)
        if key in seen:
            raise InvalidInput(f"{m.repo} is declared twice (lines {seen[key].line} and {m.line}); node labels name "
                               "one commit per repo", "declare each repo once for the node-local tier")
        seen[key] = m


def label_changes(current: Mapping[str, str], wanted: Mapping[str, str], *, remove_only: bool = False) -> dict[str, str | None]:
    """The merge patch that makes our labels on a node ``wanted`` (key → value): ``None`` removes.

    Labels that are not ours (``is_model_label``) are never touched. ``remove_only``: only the
    removals (labels not in ``wanted`` or with another value), for the step before files can go.
    """
    out: dict[str, str | None] = {}
    for key, value in current.items():
        if is_model_label(key) and wanted.get(key) != value:
            out[key] = None
    if not remove_only:
        for key, value in wanted.items():
            if current.get(key) != value:
                out[key] = value
    return out


def validate_node_name(name: str) -> str:
    """A node name is a DNS subdomain (at most 253 characters)."""
    if not name or len(name) > 253 or not _NODE.match(name):
        raise InvalidInput(f"invalid node name {name!r}", "give the node's name (kubectl get nodes), e.g. $(NODE_NAME)")
    return name


class NodeLabelError(ModelCacheError):
    """The Kubernetes API did not let us read or label the node."""

    code = "k8s"
    exit_code = 1


@dataclass(frozen=True)
class NodeApi:
    """The API server: in-cluster by default (the pod's ServiceAccount token and CA, re-read per
    call: projected tokens rotate), or ``url`` with ``token_file`` (tests, out-of-cluster)."""

    url: str
    token_file: Path = SA_DIR / "token"
    ca_file: Path | None = SA_DIR / "ca.crt"

    @classmethod
    def in_cluster(cls, host: str | None, port: str | None) -> NodeApi:
        """From ``KUBERNETES_SERVICE_HOST``/``_PORT`` (read by the caller at the entry point)."""
        if not host:
            raise InvalidInput("--label-node needs the Kubernetes API: not in a pod (no KUBERNETES_SERVICE_HOST)",
                               "run it in the rendered DaemonSet, or give --kube-api URL")
        host = f"[{host}]" if ":" in host else host
        return cls(f"https://{host}:{port or '443'}")

    def _token(self) -> str:
        try:
            token = self.token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise NodeLabelError(f"cannot read the ServiceAccount token {self.token_file}: "
                                 f"{getattr(exc, 'strerror', None) or exc}",
                                 "the DaemonSet mounts it (automountServiceAccountToken: true)") from None
        if not token or any(ord(c) < 33 or ord(c) > 126 for c in token):
            raise NodeLabelError(f"the ServiceAccount token {self.token_file} is empty or malformed",
                                 "check the pod's ServiceAccount")
        return token

    def request(self, method: str, node: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """GET or merge-PATCH ``/api/v1/nodes/NODE``; the answer as a dict; one-line errors (never the token)."""
        import httpx

        validate_node_name(node)
        verify: Any = str(self.ca_file) if self.ca_file is not None and self.ca_file.exists() else True
        headers = {"Authorization": f"Bearer {self._token()}", "Accept": "application/json"}
        content = None
        if body is not None:
            headers["Content-Type"] = "application/merge-patch+json"
            content = json.dumps(body).encode()
        try:
            with httpx.Client(verify=verify, trust_env=False, timeout=30) as client:
                resp = client.request(method, f"{self.url.rstrip('/')}/api/v1/nodes/{node}", headers=headers,
                                      content=content)
        except httpx.HTTPError as exc:
            raise NodeLabelError(f"cannot reach the Kubernetes API at {self.url}: {type(exc).__name__}",
                                 "check the pod's network policy and the API server") from None
        if resp.status_code in (401, 403):
            raise NodeLabelError(f"the Kubernetes API refused to {method.lower()} node {node} (HTTP {resp.status_code})",
                                 "the DaemonSet's ServiceAccount needs get/patch on nodes (the rendered ClusterRole)")
        if resp.status_code == 404:
            raise NodeLabelError(f"node {node} not found", "--label-node must be the pod's own node: $(NODE_NAME)")
        if resp.status_code >= 300:
            raise NodeLabelError(f"the Kubernetes API answered HTTP {resp.status_code} to {method.lower()} node {node}",
                                 "see the API server's logs")
        try:
            data = resp.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise NodeLabelError(f"the Kubernetes API answered something that is not a Node for {node}",
                                 "is --kube-api the API server?")
        return data


def _labels(node: Mapping[str, Any]) -> dict[str, str]:
    labels = (node.get("metadata") or {}).get("labels") or {}
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


class NodeLabeller:
    """Reads and patches the labels of ONE node: the pod's own (``own_node``, from the downward API)."""

    def __init__(self, api: NodeApi, node: str, own_node: str | None = None) -> None:
        validate_node_name(node)
        if own_node is not None and own_node != node:
            raise InvalidInput(f"--label-node {node} is not this pod's node ({own_node})",
                               "a node-local sync labels only its own node: --label-node $(NODE_NAME)")
        self.api = api
        self.node = node

    def labels(self) -> dict[str, str]:
        """The node's current labels."""
        return _labels(self.api.request("GET", self.node))

    def patch(self, changes: Mapping[str, str | None]) -> dict[str, str]:
        """Apply ``changes`` (``None`` removes); refuse keys that are not ours; check the answer."""
        bad = [k for k, v in changes.items() if not is_model_label(k, v)]
        if bad:
            raise InvalidInput(f"refusing to change node label {bad[0]!r}", "only modelcache.io/<model-key> labels")
        if not changes:
            return {}
        after = _labels(self.api.request("PATCH", self.node, {"metadata": {"labels": dict(changes)}}))
        wrong = [k for k, v in changes.items() if after.get(k) != v]
        if wrong:
            raise NodeLabelError(f"node {self.node}: label {wrong[0]} did not change as asked",
                                 "another controller may manage this node's labels")
        return after
