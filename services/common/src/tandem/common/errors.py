"""Typed errors that carry a stable wire code, mapped to a client error at each edge."""

from __future__ import annotations

from tandem.v1 import common_pb2


class TandemError(Exception):
    """An error with a stable code from `tandem.v1.ErrorCode` and a message safe to show a client."""

    code: common_pb2.ErrorCode.ValueType = common_pb2.ERROR_CODE_INTERNAL

    def __init__(
        self, message: str, *, code: common_pb2.ErrorCode.ValueType | None = None, retry_after_s: int = 0
    ) -> None:
        super().__init__(message)
        self.message = message
        # Seconds after which the same request may succeed; 0 when retrying will not help.
        self.retry_after_s = retry_after_s
        if code is not None:
            self.code = code

    @property
    def code_name(self) -> str:
        return common_pb2.ErrorCode.Name(self.code)

    def to_proto(self) -> common_pb2.Error:
        return common_pb2.Error(code=self.code, message=self.message, retry_after_s=self.retry_after_s)

    @classmethod
    def from_proto(cls, error: common_pb2.Error) -> TandemError:
        return cls(error.message, code=error.code, retry_after_s=error.retry_after_s)

    def __str__(self) -> str:
        return f"{self.code_name}: {self.message}"


class ConfigError(TandemError):
    """A setting is missing or invalid; the process cannot start."""

    code = common_pb2.ERROR_CODE_INVALID_ARGUMENT


class BusTimeoutError(TandemError):
    """A request over NATS got no reply within its deadline."""

    code = common_pb2.ERROR_CODE_TIMEOUT

    def __init__(self, subject: str, timeout_s: float) -> None:
        super().__init__(f"no reply on {subject} within {timeout_s:g} s")
        self.subject = subject
        self.timeout_s = timeout_s


class NoRespondersError(TandemError):
    """Nobody subscribes to the subject: the service is down or not deployed."""

    code = common_pb2.ERROR_CODE_UNAVAILABLE

    def __init__(self, subject: str) -> None:
        super().__init__(f"no service answers on {subject}")
        self.subject = subject


class BusUnavailableError(TandemError):
    """The NATS connection is down."""

    code = common_pb2.ERROR_CODE_UNAVAILABLE


class MessageTooLargeError(TandemError):
    """A payload exceeds the configured maximum."""

    code = common_pb2.ERROR_CODE_MESSAGE_TOO_LARGE

    def __init__(self, size: int, max_size: int) -> None:
        super().__init__(f"message of {size} bytes exceeds the maximum of {max_size} bytes")
        self.size = size
        self.max_size = max_size


class MalformedMessageError(TandemError):
    """A payload could not be decoded."""

    code = common_pb2.ERROR_CODE_MALFORMED_MESSAGE


class InvalidArgumentError(TandemError):
    """A client-supplied field is missing, malformed or over its limit."""

    code = common_pb2.ERROR_CODE_INVALID_ARGUMENT

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field} {problem}")
        self.field = field
        self.problem = problem


class InvalidIdentifierError(InvalidArgumentError):
    """An id that would become a NATS subject token, a KV key or a log field is not a safe identifier."""
