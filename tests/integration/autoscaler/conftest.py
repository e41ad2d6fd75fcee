"""Shared fixtures of the autoscaler's integration tests: kmock's Kubernetes emulator with the
resources the operator uses, and a real nats-server on a random port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import kmock
import pytest

from tandem.devstack.nats import NatsServer


@pytest.fixture
def nats_url(tmp_path: Path) -> Iterator[str]:
    server = NatsServer(tmp_path / "nats")
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def k8s(kmock: kmock.KubernetesEmulator) -> kmock.KubernetesEmulator:
    kmock.resources["tandem.dev/v1/mediaworkerpools"] = kmock.ResourceInfo(
        kind="MediaWorkerPool",
        namespaced=True,
        verbs={"get", "list", "watch", "patch", "create", "delete"},
        subresources={"status", "scale"},
    )
    kmock.resources["apps/v1/deployments"] = kmock.ResourceInfo(
        kind="Deployment", namespaced=True, subresources={"scale"}
    )
    kmock.resources["v1/namespaces"] = kmock.ResourceInfo(kind="Namespace", namespaced=False)
    kmock.resources["v1/pods"] = kmock.ResourceInfo(kind="Pod", namespaced=True)
    kmock.resources["v1/events"] = kmock.ResourceInfo(kind="Event", namespaced=True, verbs={"create"})
    return kmock
