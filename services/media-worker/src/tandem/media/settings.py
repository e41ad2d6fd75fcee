"""Settings of the media worker (environment variables `TANDEM_MEDIA_*`)."""

import ipaddress

from aiortc import RTCConfiguration, RTCIceServer
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from tandem.common.settings import ServiceSettings
from tandem.media.dsp.pipeline import SAMPLE_RATES, PipelineConfig
from tandem.media.forwarding import ForwardingLimits


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TANDEM_MEDIA_", extra="ignore", frozen=True)

    capacity: int = Field(
        default=8,
        ge=1,
        le=1000,
        description="Concurrent calls this worker takes (default: what one core held with the DSP on both "
        "directions in the capacity benchmark).",
    )
    pool: str = Field(default="default", description="The MediaWorkerPool this worker belongs to.")
    pod: str = Field(default="", description="Pod name, set from the downward API in Kubernetes.")
    ice_servers: list[str] = Field(
        default_factory=list,
        description='STUN/TURN URLs as a JSON list, e.g. ["stun:stun.example.com:3478"]; empty: host only.',
    )
    ice_username: str = Field(default="", description="Username for the turn:/turns: servers (long-term credentials).")
    ice_credential: SecretStr = Field(default=SecretStr(""), description="Password for the turn:/turns: servers.")
    report_interval_s: float = Field(
        default=1.0, gt=0, le=60, description="Load report period (signaling takes 3 silent periods for a lost worker)."
    )
    offer_timeout_s: float = Field(
        default=30.0, gt=0, description="A call whose legs have not both offered this long after it opened is released."
    )
    announced_address: str = Field(
        default="",
        description="The IP address to announce instead of its own (a pod behind its node's IP); empty: its own.",
    )
    overload_lag_ms: float = Field(
        default=500.0,
        ge=0,
        description="A report period whose event loop ran this late makes the worker take no new calls, until "
        "a period runs under half of it (0: never).",
    )
    overload_video_bitrate_bps: int = Field(
        default=250_000,
        ge=30_000,
        le=10_000_000,
        description="While overloaded, every party is asked (REMB) to send at most this much video; audio is "
        "never limited.",
    )
    hold_timeout_s: float = Field(
        default=300.0,
        gt=0,
        description="A pre-connected call still held (its host not accepted) this long is released.",
    )
    frame_queue: int = Field(default=4, ge=1, le=100, description="Frames buffered per relayed track.")
    quality_interval_s: float = Field(
        default=5.0, ge=0.2, le=300, description="Period of the call-quality facts, per leg and direction."
    )
    quality_talk_threshold_dbfs: float = Field(
        default=-50.0, ge=-120, le=0, description="A received audio frame this loud (RMS, dBFS) counts as talk."
    )
    quality_jitter_buffer_ms: float = Field(
        default=40.0, ge=0, le=1000, description="Least jitter-buffer delay the E-model assumes, ms."
    )
    quality_summary_attempts: int = Field(
        default=5, ge=1, le=100, description="Tries to publish a call's quality summary before giving up."
    )
    forward_media: bool = Field(
        default=True,
        description="Forward video (and unprocessed audio) encoded; false: decode and re-encode every frame.",
    )
    repair_window_ms: int = Field(
        default=300, ge=20, le=5000, description="How long a forwarded frame waits for a lost packet's resend."
    )
    keyframe_request_interval_ms: int = Field(
        default=500, ge=50, le=10000, description="Least time between two keyframe requests to one sender."
    )
    nack_interval_ms: int = Field(
        default=50, ge=5, le=1000, description="Least time between two retransmission requests to one sender."
    )
    max_frame_packets: int = Field(
        default=512, ge=16, le=4096, description="Video packets held per forwarded stream while a hole is repaired."
    )
    audio_processing: bool = Field(
        default=True, description="Process each party's voice (echo, noise, gain); false: forward it encoded."
    )
    echo_cancellation: bool = Field(default=True, description="Cancel the echo of the other party's voice.")
    gain_control: bool = Field(default=True, description="Automatic gain control towards -23 dBFS.")
    noise_attenuation_db: float = Field(
        default=25.0, ge=0, le=60.0, description="Noise suppression depth in dB; 0 turns it off."
    )
    audio_sample_rate: int = Field(
        default=48000,
        description="Rate the voice is processed at (Hz): 16000 sends wide band (to 8 kHz) at half the cost of 48000.",
    )
    opus_bitrate_bps: int = Field(default=32000, ge=6000, le=510000, description="Bitrate of processed audio.")
    opus_complexity: int = Field(default=5, ge=0, le=10, description="Opus encoder complexity of processed audio.")

    @field_validator("audio_sample_rate")
    @classmethod
    def _a_pipeline_rate(cls, rate: int) -> int:
        if rate not in SAMPLE_RATES:
            raise ValueError("must be 16000 or 48000")
        return rate

    @field_validator("announced_address")
    @classmethod
    def _an_ip_address(cls, address: str) -> str:
        if address:
            ipaddress.ip_address(address)  # ValueError names what is wrong
        return address

    @model_validator(mode="after")
    def _credentials_go_with_turn(self) -> "Settings":
        has_turn = any(url.startswith(("turn:", "turns:")) for url in self.ice_servers)
        has_credential = bool(self.ice_credential.get_secret_value())
        if bool(self.ice_username) != has_credential:
            raise ValueError("TANDEM_MEDIA_ICE_USERNAME and TANDEM_MEDIA_ICE_CREDENTIAL go together")
        if has_credential and not has_turn:
            raise ValueError("TANDEM_MEDIA_ICE_CREDENTIAL is set but TANDEM_MEDIA_ICE_SERVERS lists no turn: server")
        return self

    def forwarding_limits(self) -> ForwardingLimits:
        return ForwardingLimits(
            repair_window_s=self.repair_window_ms / 1000,
            keyframe_request_interval_s=self.keyframe_request_interval_ms / 1000,
            max_frame_packets=self.max_frame_packets,
            nack_interval_s=self.nack_interval_ms / 1000,
        )

    def pipeline_config(self) -> PipelineConfig | None:
        """The default processing of a party's voice; None: forwarded."""
        if not self.audio_processing:
            return None
        return PipelineConfig(
            sample_rate=self.audio_sample_rate, echo_cancellation=self.echo_cancellation,
            gain_control=self.gain_control, noise_attenuation_db=self.noise_attenuation_db,
        )  # fmt: skip

    def rtc_configuration(self) -> RTCConfiguration:
        """aiortc's configuration: every STUN/TURN server explicitly (never aiortc's public default),
        the credentials on the TURN ones."""
        username = self.ice_username or None
        credential = self.ice_credential.get_secret_value() or None
        return RTCConfiguration(
            iceServers=[
                RTCIceServer(urls=url, username=username, credential=credential)
                if url.startswith(("turn:", "turns:"))
                else RTCIceServer(urls=url)
                for url in self.ice_servers
            ]
        )
