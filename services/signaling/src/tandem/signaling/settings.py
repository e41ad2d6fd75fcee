"""Settings of the signaling service (environment variables `TANDEM_SIGNALING_*`)."""

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from tandem.common.settings import ServiceSettings
from tandem.signaling.turn import TurnConfig
from tandem.signaling.validation import ClientLimits


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TANDEM_SIGNALING_", extra="ignore", frozen=True)

    jwt_key: SecretStr = Field(default=SecretStr(""), description="HS256 key that signs client tokens.")
    jwt_audience: str = Field(default="tandem", description="Required `aud` claim.")
    dev_mode: bool = Field(default=False, description="Serve /dev/token, which mints tokens for anyone.")

    max_message_bytes: int = Field(
        default=64 * 1024, ge=1024, le=1024 * 1024, description="A larger client frame gets MESSAGE_TOO_LARGE."
    )
    max_frame_bytes: int = Field(
        default=256 * 1024,
        ge=1024,
        le=16 * 1024 * 1024,
        description="A client frame over this gets an error frame, then the socket is closed (1009).",
    )
    max_sdp_bytes: int = Field(default=32 * 1024, ge=1024, description="Largest SDP offer.")
    max_candidate_chars: int = Field(default=512, ge=64, description="Largest trickled ICE candidate line.")
    max_early_candidates: int = Field(
        default=32, ge=0, le=1024, description="ICE candidates kept per leg until its offer arrives."
    )
    max_availability_items: int = Field(
        default=32, ge=1, le=1024, description="Languages, categories or markets in one hostAvailability."
    )
    max_text_chars: int = Field(default=200, ge=1, le=4096, description="Free text such as a decline reason.")
    rate_per_s: float = Field(default=20.0, gt=0, description="Sustained client frames per second.")
    rate_burst: int = Field(default=60, ge=1, description="Client frames allowed in a burst.")
    hello_timeout_s: float = Field(default=10.0, gt=0, description="Time to authenticate after connecting.")
    heartbeat_interval_s: float = Field(default=20.0, gt=0, description="WebSocket ping period.")
    reconnect_grace_s: float = Field(
        default=10.0, ge=0, description="A party whose socket drops mid-call may reconnect within this."
    )

    queue_timeout_s: float = Field(default=60.0, gt=0, description="Waiting for a host before NO_HOST.")
    match_retry_s: float = Field(
        default=1.0, gt=0, description="How long one match request waits for a host or a new queue standing."
    )
    host_release_attempts: int = Field(
        default=8, ge=1, le=50, description="Tries to tell matchmaking a host is free (backing off to 5 s)."
    )
    ring_timeout_s: float = Field(default=20.0, gt=0, description="Ringing before the next host is tried.")
    connect_timeout_s: float = Field(default=20.0, gt=0, description="Accept to both media legs connected.")
    max_hosts_tried: int = Field(default=5, ge=1, description="Declines / ring timeouts before NO_HOST.")
    media_allocate_attempts: int = Field(default=3, ge=1, le=20)

    lease_ttl_s: float = Field(
        default=1.2, gt=0, le=60, description="An instance silent this long loses its calls to another."
    )
    lease_renew_s: float = Field(default=0.3, gt=0, le=20, description="How often an instance renews its lease.")
    takeover_check_s: float = Field(default=0.2, gt=0, le=10, description="How often instances look for lapsed leases.")
    orphan_scan_s: float = Field(default=10.0, gt=0, description="Every so often, look for unowned calls anyway.")
    worker_silence_s: float = Field(
        default=3.0,
        gt=0,
        le=120,
        description="A worker silent this long is lost and its calls move (2.5 times its report period or more).",
    )
    takeover_wait_s: float = Field(
        default=3.0, gt=0, le=60, description="A message for a call being taken over waits this long for its owner."
    )

    turn_urls: list[str] = Field(
        default_factory=list,
        description='TURN (and STUN) URLs handed to clients, as a JSON list, e.g. ["turn:turn.example.com:3478"].',
    )
    turn_secret: SecretStr = Field(
        default=SecretStr(""), description="The TURN server's shared secret (coturn's static-auth-secret)."
    )
    turn_ttl_s: int = Field(
        default=3600, ge=10, le=7 * 86400, description="How long a client's TURN credentials last; renewed at 3/4."
    )

    @model_validator(mode="after")
    def _key_required(self) -> "Settings":
        if len(self.jwt_key.get_secret_value()) < 32:
            raise ValueError("TANDEM_SIGNALING_JWT_KEY must be set to at least 32 characters")
        if self.lease_renew_s * 2 > self.lease_ttl_s:
            raise ValueError("TANDEM_SIGNALING_LEASE_RENEW_S must be at most half of TANDEM_SIGNALING_LEASE_TTL_S")
        if self.max_frame_bytes < self.max_message_bytes:
            raise ValueError("TANDEM_SIGNALING_MAX_FRAME_BYTES must be at least TANDEM_SIGNALING_MAX_MESSAGE_BYTES")
        if any(not url.startswith(("turn:", "turns:", "stun:", "stuns:")) for url in self.turn_urls):
            raise ValueError("TANDEM_SIGNALING_TURN_URLS must be turn:, turns:, stun: or stuns: URLs")
        if any(url.startswith("turn") for url in self.turn_urls) and not self.turn_secret.get_secret_value():
            raise ValueError(
                "TANDEM_SIGNALING_TURN_SECRET must be set when TANDEM_SIGNALING_TURN_URLS has TURN servers"
            )
        return self

    @property
    def turn_config(self) -> TurnConfig:
        return TurnConfig(tuple(self.turn_urls), self.turn_secret.get_secret_value(), self.turn_ttl_s)

    @property
    def client_limits(self) -> ClientLimits:
        return ClientLimits(
            max_sdp_bytes=self.max_sdp_bytes,
            max_candidate_chars=self.max_candidate_chars,
            max_availability_items=self.max_availability_items,
            max_text_chars=self.max_text_chars,
        )
