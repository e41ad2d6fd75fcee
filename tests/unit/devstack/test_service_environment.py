"""`make up` passes a user's settings for a service through to it; the stack's own wiring wins."""

from __future__ import annotations

import pytest

from tandem.devstack.stack import service_environment

pytestmark = pytest.mark.unit


def test_a_users_settings_for_the_service_pass_through_and_the_wiring_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TANDEM_MEDIA_CAPACITY", "3")
    monkeypatch.setenv("TANDEM_MEDIA_NATS_URL", "nats://elsewhere")
    monkeypatch.setenv("TANDEM_SIGNALING_DEV_MODE", "false")
    env = service_environment("MEDIA", "nats://127.0.0.1:4999", 8123, 5.0, {"TANDEM_MEDIA_INSTANCE_ID": "media-worker"})
    assert env["TANDEM_MEDIA_CAPACITY"] == "3"
    assert env["TANDEM_MEDIA_NATS_URL"] == "nats://127.0.0.1:4999"
    assert env["TANDEM_MEDIA_HTTP_PORT"] == "8123"
    assert env["TANDEM_MEDIA_INSTANCE_ID"] == "media-worker"
    assert "TANDEM_SIGNALING_DEV_MODE" not in env
