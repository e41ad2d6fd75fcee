"""All Kubernetes I/O of the operator beyond kopf's own: the pool's Deployment, its pods, the
pool's status. Every write is a JSON merge patch (RFC 7386) or a create, so a repeat is harmless."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.rest import ApiException

from tandem.autoscaler.spec import GROUP, PLURAL, VERSION

MERGE_PATCH = "application/merge-patch+json"
HTTP_NOT_FOUND = 404
HTTP_CONFLICT = 409


def _merge_patch(method: Callable[..., Awaitable[Any]], *args: Any) -> Awaitable[Any]:
    # The client's stubs omit `_content_type`, and its default for a dict body on custom
    # resources is JSON Patch; a merge patch is what every write here means.
    return method(*args, _content_type=MERGE_PATCH)


@dataclass(frozen=True)
class Pod:
    name: str
    ready: bool
    annotations: dict[str, str]


class Kube:
    """A Kubernetes API client for the operator's own writes; `await close()` when done."""

    def __init__(self, api: client.ApiClient) -> None:
        self._api = api
        self._apps = client.AppsV1Api(api)
        self._core = client.CoreV1Api(api)
        self._custom = client.CustomObjectsApi(api)

    @classmethod
    def connect(cls, api_url: str) -> Kube:
        """Talk to `api_url` without credentials (tests, `kubectl proxy`), or, when it is empty,
        to the cluster the pod runs in with its service account."""
        configuration = client.Configuration()
        if api_url:
            configuration.host = api_url
        else:
            load: Callable[..., None] = config.load_incluster_config
            load(client_configuration=configuration)
        return cls(client.ApiClient(configuration))

    async def close(self) -> None:
        await self._api.close()

    async def ensure_deployment(self, body: dict[str, Any]) -> bool:
        """Create the Deployment, or bring its template and selector to `body` leaving the replicas
        alone (the scaler owns them). True when it was created."""
        meta = body["metadata"]
        try:
            create: Callable[..., Awaitable[Any]] = self._apps.create_namespaced_deployment
            await create(meta["namespace"], body)
        except ApiException as exc:
            if exc.status != HTTP_CONFLICT:
                raise
            spec = {k: v for k, v in body["spec"].items() if k != "replicas"}
            patch = {"metadata": {"labels": meta.get("labels", {})}, "spec": spec}
            await _merge_patch(self._apps.patch_namespaced_deployment, meta["name"], meta["namespace"], patch)
            return False
        return True

    async def deployment_replicas(self, namespace: str, name: str) -> int | None:
        """The Deployment's desired replicas, or None when it does not exist."""
        try:
            deployment = await self._apps.read_namespaced_deployment(name, namespace)
        except ApiException as exc:
            if exc.status == HTTP_NOT_FOUND:
                return None
            raise
        return int(deployment.spec.replicas or 0)

    async def set_replicas(self, namespace: str, name: str, replicas: int) -> None:
        await _merge_patch(self._apps.patch_namespaced_deployment, name, namespace, {"spec": {"replicas": replicas}})

    async def list_pods(self, namespace: str, labels: dict[str, str]) -> list[Pod]:
        """The live (not terminating) pods carrying all `labels`."""
        selector = ",".join(f"{k}={v}" for k, v in labels.items())
        pods = await self._core.list_namespaced_pod(namespace, label_selector=selector)
        found = []
        for pod in pods.items:
            meta = pod.metadata
            # The selector is checked here too: some API emulators ignore it.
            if meta.deletion_timestamp or any((meta.labels or {}).get(k) != v for k, v in labels.items()):
                continue
            conditions = (pod.status.conditions if pod.status else None) or []
            ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
            found.append(Pod(name=meta.name, ready=ready, annotations=dict(meta.annotations or {})))
        return found

    async def annotate_pod(self, namespace: str, name: str, annotations: dict[str, str | None]) -> None:
        """Set (or, with None, remove) annotations on one pod; a pod already gone is fine."""
        try:
            await _merge_patch(
                self._core.patch_namespaced_pod, name, namespace, {"metadata": {"annotations": annotations}}
            )
        except ApiException as exc:
            if exc.status != HTTP_NOT_FOUND:
                raise

    async def patch_pool_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        await _merge_patch(
            self._custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"status": status},
        )
