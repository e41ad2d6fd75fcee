"""The worker's ICE configuration: every server explicit, TURN credentials only where they belong,
and credentials that cannot be used refused at start."""

from __future__ import annotations

import pydantic
import pytest

from tandem.media.settings import Settings

pytestmark = pytest.mark.unit

TURN = "turn:turn.example.com:3478?transport=udp"
STUN = "stun:stun.example.com:3478"


def test_turn_servers_carry_the_credentials_and_stun_servers_do_not() -> None:
    settings = Settings(ice_servers=[STUN, TURN], ice_username="worker", ice_credential="s3cret")
    stun, turn = settings.rtc_configuration().iceServers or []
    assert (stun.urls, stun.username, stun.credential) == (STUN, None, None)
    assert (turn.urls, turn.username, turn.credential) == (TURN, "worker", "s3cret")


def test_no_servers_means_host_candidates_only_not_a_public_default() -> None:
    assert Settings().rtc_configuration().iceServers == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"ice_servers": [TURN], "ice_username": "worker"}, "go together"),
        ({"ice_servers": [TURN], "ice_credential": "s3cret"}, "go together"),
        ({"ice_servers": [STUN], "ice_username": "worker", "ice_credential": "s3cret"}, "no turn: server"),
    ],
)
def test_credentials_that_cannot_be_used_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        Settings.model_validate(fields)


def test_the_credential_never_shows_in_the_settings_repr() -> None:
    settings = Settings(ice_servers=[TURN], ice_username="worker", ice_credential="s3cret")
    assert "s3cret" not in repr(settings)


def test_the_voice_is_processed_at_a_rate_the_pipeline_has(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TANDEM_MEDIA_AUDIO_SAMPLE_RATE", "16000")
    assert Settings().audio_sample_rate == 16000
    monkeypatch.setenv("TANDEM_MEDIA_AUDIO_SAMPLE_RATE", "44100")
    with pytest.raises(pydantic.ValidationError, match="16000 or 48000"):
        Settings()
