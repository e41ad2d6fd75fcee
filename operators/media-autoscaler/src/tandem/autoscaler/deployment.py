"""The Deployment of a pool's media workers, built from the pool's spec."""

from __future__ import annotations

import copy
from typing import Any

from tandem.autoscaler.spec import PoolSpec

POOL_LABEL = "tandem.dev/pool"
# Time for the kubelet to stop a worker after SIGTERM beyond its drain time, seconds.
TERMINATION_MARGIN_S = 30


def deployment_name(pool: str) -> str:
    return f"{pool}-workers"


def pod_labels(pool: str) -> dict[str, str]:
    """The labels that select a pool's worker pods."""
    return {POOL_LABEL: pool, "app.kubernetes.io/component": "media-worker"}


def worker_deployment(pool: str, namespace: str, spec: PoolSpec, replicas: int) -> dict[str, Any]:
    """The pool's Deployment (without owner references; kopf adds them). Its replicas count is
    used only on creation; afterwards the scaler alone changes it."""
    template = copy.deepcopy(spec.template)
    metadata = template.setdefault("metadata", {})
    metadata.setdefault("labels", {}).update(pod_labels(pool))
    pod_spec = template.setdefault("spec", {})
    pod_spec["terminationGracePeriodSeconds"] = spec.drain.max_drain_seconds + TERMINATION_MARGIN_S
    containers = pod_spec.setdefault("containers", [{"name": "media-worker"}])
    worker = containers[0]
    worker.setdefault("image", spec.image)
    # what the pool's spec decides about each worker, whatever the template says
    ours = {
        "TANDEM_MEDIA_POOL": pool,
        "TANDEM_MEDIA_REGION": spec.region,
        "TANDEM_MEDIA_CAPACITY": str(spec.capacity.calls_per_worker),
        "TANDEM_MEDIA_DRAIN_TIMEOUT_S": str(spec.drain.max_drain_seconds),
    }
    worker["env"] = [
        *(e for e in worker.get("env", []) if e.get("name") not in ours),
        *({"name": name, "value": value} for name, value in ours.items()),
    ]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": deployment_name(pool), "namespace": namespace, "labels": pod_labels(pool)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": pod_labels(pool)},
            # Surge only: a rollout never takes a worker with live calls away before its replacement.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
            "template": template,
        },
    }


def owner_reference(api_version: str, kind: str, name: str, uid: str) -> dict[str, Any]:
    """Makes the Deployment the pool's child: deleted with the pool, shown under it."""
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
