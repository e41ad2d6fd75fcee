"""The media worker's errors: each a `TandemError` with a stable code and the data that explains it."""

from __future__ import annotations

from tandem.common.errors import TandemError
from tandem.v1 import common_pb2

S = common_pb2


class WorkerFullError(TandemError):
    """A call allocated to a worker at its capacity (a request in flight as it filled up)."""

    code = S.ERROR_CODE_MEDIA_UNAVAILABLE

    def __init__(self, capacity: int) -> None:
        super().__init__(f"worker is full ({capacity} calls)")
        self.capacity = capacity


class CallNotOnWorkerError(TandemError):
    code = S.ERROR_CODE_NOT_FOUND

    def __init__(self, call_id: str) -> None:
        super().__init__(f"no call {call_id} on this worker")
        self.call_id = call_id


class UnknownLegError(TandemError):
    code = S.ERROR_CODE_INVALID_ARGUMENT

    def __init__(self, leg: int) -> None:
        super().__init__("leg must be SHOPPER or HOST")
        self.leg = leg


class MediaCallEndedError(TandemError):
    code = S.ERROR_CODE_INVALID_STATE

    def __init__(self, call_id: str) -> None:
        super().__init__("the call has ended")
        self.call_id = call_id


class LegAlreadyNegotiatedError(TandemError):
    code = S.ERROR_CODE_INVALID_STATE

    def __init__(self, leg: int) -> None:
        super().__init__("this leg already negotiated")
        self.leg = leg


class CandidateBeforeOfferError(TandemError):
    code = S.ERROR_CODE_INVALID_STATE

    def __init__(self, leg: int) -> None:
        super().__init__("candidate before offer")
        self.leg = leg


class InvalidCandidateError(TandemError):
    code = S.ERROR_CODE_INVALID_ARGUMENT

    def __init__(self, detail: str = "") -> None:
        super().__init__(f"invalid ICE candidate{': ' + detail if detail else ''}")
        self.detail = detail


class InvalidOfferError(TandemError):
    code = S.ERROR_CODE_INVALID_ARGUMENT

    def __init__(self, problem: str) -> None:
        super().__init__(f"invalid SDP offer: {problem[:200]}")
        self.problem = problem


class InvalidAudioProcessingError(TandemError):
    code = S.ERROR_CODE_INVALID_ARGUMENT

    def __init__(self, field: str, max_noise_attenuation_db: float) -> None:
        super().__init__(f"{field}.noise_attenuation_db must be 0-{max_noise_attenuation_db:g} dB")
        self.field = field
        self.max_noise_attenuation_db = max_noise_attenuation_db
