"""Signaling's errors: each a `TandemError` with a stable code and the data that explains it."""

from __future__ import annotations

from tandem.common.errors import TandemError
from tandem.v1 import common_pb2

S = common_pb2


class CallNotFoundError(TandemError):
    """No call with this id is running (it never existed, or it is over)."""

    code = S.ERROR_CODE_NOT_FOUND

    def __init__(self, call_id: str) -> None:
        super().__init__(f"no call {call_id}")
        self.call_id = call_id


class NotAPartyError(TandemError):
    code = S.ERROR_CODE_PERMISSION_DENIED

    def __init__(self, user_id: str, call_id: str) -> None:
        super().__init__("you are not a party to this call")
        self.user_id = user_id
        self.call_id = call_id


class NotTheInvitedHostError(TandemError):
    code = S.ERROR_CODE_PERMISSION_DENIED

    def __init__(self, user_id: str, call_id: str, action: str) -> None:
        super().__init__(f"only the invited host may {action}")
        self.user_id = user_id
        self.call_id = call_id


class RoleError(TandemError):
    """The user's role may not do this at all (a host asking for a consultation)."""

    code = S.ERROR_CODE_PERMISSION_DENIED


class AlreadyInCallError(TandemError):
    code = S.ERROR_CODE_INVALID_STATE

    def __init__(self, user_id: str) -> None:
        super().__init__("you are already in a consultation")
        self.user_id = user_id


class TooManyEarlyCandidatesError(TandemError):
    code = S.ERROR_CODE_INVALID_STATE

    def __init__(self, limit: int) -> None:
        super().__init__(f"more than {limit} candidates before the offer")
        self.limit = limit


class CallMovingError(TandemError):
    """The call's owner stopped or died and no instance has adopted the call yet."""

    code = S.ERROR_CODE_UNAVAILABLE

    def __init__(self, call_id: str) -> None:
        super().__init__(f"call {call_id} is moving to another instance; retry")
        self.call_id = call_id


class FrameOverHardLimitError(TandemError):
    """A frame so large that the socket is closed (1009) after this error."""

    code = S.ERROR_CODE_MESSAGE_TOO_LARGE

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(f"a frame over {limit_bytes} bytes closes the connection")
        self.limit_bytes = limit_bytes


class WrongPartyError(TandemError):
    """The party may not do this in a call (a shopper pushing a card, a host buying)."""

    code = S.ERROR_CODE_PERMISSION_DENIED

    def __init__(self, user_id: str, action: str, party: str) -> None:
        super().__init__(f"only the {party} {action}")
        self.user_id = user_id
        self.action = action
        self.party = party


class CallMovedError(TandemError):
    """The call's record changed under its owner: another instance has taken the call over."""

    code = common_pb2.ERROR_CODE_UNAVAILABLE

    def __init__(self, call_id: str) -> None:
        super().__init__(f"call {call_id} moved to another instance; retry")
        self.call_id = call_id


class UnauthenticatedError(TandemError):
    """No token, or one that proves nothing: the socket is closed after saying why."""

    code = common_pb2.ERROR_CODE_UNAUTHENTICATED


class RateLimitedError(TandemError):
    code = S.ERROR_CODE_RATE_LIMITED

    def __init__(self, rate_per_s: float, burst: int) -> None:
        super().__init__(f"too many messages: at most {rate_per_s:g} per second, bursts of {burst}")
        self.rate_per_s = rate_per_s
        self.burst = burst


class AlreadyAuthenticatedError(TandemError):
    """A second hello on a socket."""

    code = S.ERROR_CODE_INVALID_STATE

    def __init__(self) -> None:
        super().__init__("already authenticated")


class NotForClientsError(TandemError):
    """An envelope with no payload, or with one only the server sends."""

    code = S.ERROR_CODE_UNKNOWN_MESSAGE_TYPE

    def __init__(self, kind: str | None) -> None:
        super().__init__(f"{kind} is sent by the server, not by clients" if kind else "the envelope has no payload")
        self.kind = kind


class NotACallMessageError(TandemError):
    code = S.ERROR_CODE_UNKNOWN_MESSAGE_TYPE

    def __init__(self, kind: str | None) -> None:
        super().__init__(f"{kind} is not a call message")
        self.kind = kind


class CallEndedError(TandemError):
    code = S.ERROR_CODE_INVALID_STATE

    def __init__(self, call_id: str) -> None:
        super().__init__("the call has ended")
        self.call_id = call_id
