"""The official Kubernetes client (the ``k8s`` extra) behind a small dict-in, dict-out surface.

Objects go to the API server as server-side apply (``application/apply-patch+yaml``, field
manager ``modelcache``), which creates or updates in one call; answers are read raw and
parsed as JSON, so the rest of the package works on the same dicts ``kubectl get -o json``
shows. Every API failure becomes a ``ClusterError`` with a hint; nothing here prints.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import EndpointUnreachable, ModelCacheError
from .validate import MissingDependency

__all__ = ["KINDS", "ClusterError", "KubeApi"]

FIELD_MANAGER = "modelcache"
TIMEOUT = 30
KINDS: dict[str, tuple[str, str]] = {
    "Secret": ("CoreV1Api", "namespaced_secret"),
    "PersistentVolumeClaim": ("CoreV1Api", "namespaced_persistent_volume_claim"),
    "Service": ("CoreV1Api", "namespaced_service"),
    "PodTemplate": ("CoreV1Api", "namespaced_pod_template"),
    "Deployment": ("AppsV1Api", "namespaced_deployment"),
    "Job": ("BatchV1Api", "namespaced_job"),
    "CronJob": ("BatchV1Api", "namespaced_cron_job"),
    "PodDisruptionBudget": ("PolicyV1Api", "namespaced_pod_disruption_budget"),
    "ServiceAccount": ("CoreV1Api", "namespaced_service_account"),
    "Role": ("RbacAuthorizationV1Api", "namespaced_role"),
    "RoleBinding": ("RbacAuthorizationV1Api", "namespaced_role_binding"),
    "ConfigMap": ("CoreV1Api", "namespaced_config_map"),
    "DaemonSet": ("AppsV1Api", "namespaced_daemon_set"),
}


class ClusterError(ModelCacheError):
    """The Kubernetes API said no, or answered something we cannot use."""

    code = "k8s"
    exit_code = 1


def _client() -> Any:
    try:
        import kubernetes
    except ImportError:
        raise MissingDependency("k8s apply and status need the official Kubernetes client",
                                "install it: pip install 'modelcache[k8s]'") from None
    return kubernetes


class KubeApi:
    """Read, apply, delete and list the kinds ``render`` makes, plus pods and their logs."""

    def __init__(self, kubeconfig: str | None = None, context: str | None = None, *, in_cluster: bool = False) -> None:
        """``kubeconfig`` (None: ``KUBECONFIG`` or ``~/.kube/config``); failing that, and when
        ``in_cluster`` (the caller saw ``KUBERNETES_SERVICE_HOST``), the pod's service account."""
        k8s = _client()
        self._k8s = k8s
        try:
            try:
                api_client = k8s.config.new_client_from_config(config_file=kubeconfig, context=context)
            except Exception:  # the loader raises several unrelated types; re-raised below
                if kubeconfig or context or not in_cluster:
                    raise
                k8s.config.load_incluster_config()
                api_client = k8s.client.ApiClient()
        except Exception as exc:  # noqa: BLE001 - idem; one clear line instead of a traceback
            raise ClusterError(f"cannot load the Kubernetes configuration: {str(exc).splitlines()[0][:200]}",
                               "pass --kubeconfig (and --context), or set KUBECONFIG") from None
        self.host = api_client.configuration.host
        # Server-side apply needs Content-Type application/apply-patch+yaml. Client versions
        # before 37 have no per-call switch for it, but every version lets a client's default
        # headers win: so patches go through a second client that always sends it.
        apply_client = k8s.client.ApiClient(configuration=api_client.configuration)
        apply_client.set_default_header("Content-Type", "application/apply-patch+yaml")
        names = ("CoreV1Api", "AppsV1Api", "BatchV1Api", "PolicyV1Api", "RbacAuthorizationV1Api")
        self._apis = {name: getattr(k8s.client, name)(api_client) for name in names}
        self._apply_apis = {name: getattr(k8s.client, name)(apply_client) for name in names}

    # -- plumbing --------------------------------------------------------------------------
    def _call(self, what: str, namespace: str, fn: Any, *args: Any, **kw: Any) -> Any:
        try:
            return fn(*args, _preload_content=False, _request_timeout=TIMEOUT, **kw)
        except self._k8s.client.exceptions.ApiException as exc:
            if exc.status == 404:
                return None
            raise self._api_error(what, namespace, exc) from None
        except Exception as exc:  # urllib3's connection errors
            if type(exc).__module__.startswith("urllib3"):
                raise EndpointUnreachable(f"cannot reach the Kubernetes API at {self.host}",
                                          "check --kubeconfig / --context and that the cluster is up") from None
            raise

    def _api_error(self, what: str, namespace: str, exc: Any) -> ClusterError:
        detail, causes = exc.reason or "", []
        try:
            body = json.loads(exc.body or "{}")
            detail = body.get("message") or detail
            causes = [c for c in (body.get("details") or {}).get("causes") or [] if isinstance(c, dict)]
        except (ValueError, TypeError, AttributeError):
            pass
        fields = ", ".join(dict.fromkeys(str(c.get("field")) for c in causes if c.get("field")))
        if exc.status == 409 and any(c.get("type") == "FieldManagerConflict" for c in causes):
            owners = ", ".join(dict.fromkeys(str(c.get("message", "")).replace("conflict with ", "") for c in causes))
            return ClusterError(f"the Kubernetes API refused to {what} (HTTP 409): fields {fields} are managed by "
                                f"{owners}", "someone changed them after render (kubectl edit, an autoscaler): keep "
                                "their change (drop it from the manifest) or take them over with --force-conflicts")
        if exc.status == 409:
            hint = "the object is being deleted or was changed meanwhile: wait a moment and apply again"
        elif exc.status == 422:
            hint = (("invalid field " + fields + ": " if fields else "") + "render again with valid flags; "
                    "`modelcache k8s validate --kubernetes-version X DIR` checks offline against your cluster's version")
        elif exc.status in (401, 403):
            hint = f"the kubeconfig's user needs RBAC rights for this in namespace {namespace}"
        else:
            hint = "see the message; fix the manifest or the cluster, then apply again"
        where = f" [{fields}]" if fields and fields not in str(detail) else ""
        return ClusterError(f"the Kubernetes API refused to {what} (HTTP {exc.status}): {str(detail)[:300]}{where}", hint)

    def _method(self, kind: str, verb: str) -> Any:
        if kind not in KINDS:
            raise ClusterError(f"modelcache does not apply objects of kind {kind}", "apply it with kubectl")
        api, suffix = KINDS[kind]
        return getattr((self._apply_apis if verb == "patch" else self._apis)[api], f"{verb}_{suffix}")

    @staticmethod
    def _json(resp: Any) -> Any:
        return None if resp is None else json.loads(resp.data or b"null")

    # -- objects ---------------------------------------------------------------------------
    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist. Raises ``ClusterError`` when the API refuses."""
        return self._json(self._call(f"read {kind} {name}", namespace, self._method(kind, "read"), name, namespace))

    def apply(self, obj: dict[str, Any], force: bool = False) -> dict[str, Any]:
        """Server-side apply as field manager ``modelcache``. Without ``force`` a field another
        manager changed (``kubectl edit``, an HPA) is a 409 conflict, reported, not overwritten."""
        kind, meta = obj["kind"], obj["metadata"]
        resp = self._call(f"apply {kind} {meta['name']}", meta["namespace"], self._method(kind, "patch"),
                          meta["name"], meta["namespace"], obj, field_manager=FIELD_MANAGER, force=force)
        if resp is None:
            raise ClusterError(f"the API has no {kind} resource in namespace {meta['namespace']}",
                               "does the namespace exist? kubectl create namespace NAME")
        return self._json(resp)

    def delete(self, kind: str, namespace: str, name: str) -> None:
        """Delete the object (background propagation: its pods go after). A missing object is not an error."""
        self._call(f"delete {kind} {name}", namespace, self._method(kind, "delete"), name, namespace,
                   propagation_policy="Background")

    def list(self, kind: str, namespace: str, selector: str) -> list[dict[str, Any]]:
        """The objects of ``kind`` in ``namespace`` matching the label ``selector``."""
        data = self._json(self._call(f"list {kind}", namespace, self._method(kind, "list"), namespace,
                                     label_selector=selector))
        return list((data or {}).get("items") or [])

    def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """The pods in ``namespace`` matching the label ``selector``."""
        fn = self._apis["CoreV1Api"].list_namespaced_pod
        data = self._json(self._call("list pods", namespace, fn, namespace, label_selector=selector))
        return list((data or {}).get("items") or [])

    def events(self, namespace: str, kind: str, name: str) -> list[dict[str, Any]]:
        """Events about one object (what ``kubectl describe`` shows at the bottom)."""
        fn = self._apis["CoreV1Api"].list_namespaced_event
        try:
            data = self._json(self._call(f"list events of {kind} {name}", namespace, fn, namespace,
                                         field_selector=f"involvedObject.kind={kind},involvedObject.name={name}"))
        except ClusterError:
            return []  # no right to read events: diagnose without them
        return list((data or {}).get("items") or [])

    def log(self, namespace: str, pod: str, container: str, tail: int = 50) -> str:
        """The last ``tail`` lines of a container's log; empty when there is none yet."""
        fn = self._apis["CoreV1Api"].read_namespaced_pod_log
        try:
            resp = self._call(f"read the log of {pod}", namespace, fn, pod, namespace, container=container,
                              tail_lines=tail)
        except ClusterError:
            return ""  # no log yet (container creating): not a failure
        return "" if resp is None else resp.data.decode("utf-8", "replace")
