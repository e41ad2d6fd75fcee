"""The orders service's errors, each with its data; `bus.serve` maps them to their wire codes."""

from __future__ import annotations

from tandem.common.errors import InvalidArgumentError, TandemError
from tandem.v1 import common_pb2

MAX_IDEMPOTENCY_KEY_CHARS = 255


class ProductNotPricedError(TandemError):
    """The product does not exist, or has no price in the market's currency."""

    code = common_pb2.ERROR_CODE_NOT_FOUND

    def __init__(self, product_id: str, currency: str) -> None:
        super().__init__(f"no product {product_id!r} priced in {currency}")
        self.product_id = product_id
        self.currency = currency


class QuantityOverLimitError(InvalidArgumentError):
    def __init__(self, quantity: int, max_quantity: int) -> None:
        super().__init__("quantity", f"{quantity} is over the limit of {max_quantity}")
        self.quantity = quantity
        self.max_quantity = max_quantity


class CartFullError(TandemError):
    """Adding a product to a cart that already has `max_lines` lines."""

    code = common_pb2.ERROR_CODE_INVALID_ARGUMENT

    def __init__(self, max_lines: int) -> None:
        super().__init__(f"a cart holds at most {max_lines} lines")
        self.max_lines = max_lines


class IdempotencyKeyLengthError(InvalidArgumentError):
    def __init__(self, length: int) -> None:
        super().__init__("idempotency_key", f"has {length} characters; 1-{MAX_IDEMPOTENCY_KEY_CHARS} are required")
        self.length = length


class RetryableError(TandemError):
    """An error a retry of the same request (the same idempotency key) may cure, after `retry_after_s`."""

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message, retry_after_s=retry_after_s)


class CheckoutInFlightError(RetryableError):
    """A checkout with this shopper's key is still running; its answer will be replayed to a retry."""

    code = common_pb2.ERROR_CODE_IDEMPOTENCY_KEY_IN_FLIGHT

    def __init__(self, shopper_id: str) -> None:
        super().__init__("a checkout with this key is still in progress", retry_after_s=1)
        self.shopper_id = shopper_id


class IdempotencyKeyReusedError(TandemError):
    """The same (shopper, key) for a different checkout: another call, host, or a changed cart."""

    code = common_pb2.ERROR_CODE_IDEMPOTENCY_KEY_REUSED

    def __init__(self, shopper_id: str) -> None:
        super().__init__("this idempotency key was used for a different checkout")
        self.shopper_id = shopper_id


class EmptyCartError(TandemError):
    """Checkout of an empty cart: answered in the reply (and replayed), not raised."""

    code = common_pb2.ERROR_CODE_INVALID_STATE

    def __init__(self, call_id: str) -> None:
        super().__init__("the cart is empty")
        self.call_id = call_id


class DatabaseUnavailableError(RetryableError):
    """PostgreSQL is unreachable, restarting or failed over: nothing was committed, or the commit's
    answer was lost; either way a retry with the same idempotency key is safe."""

    code = common_pb2.ERROR_CODE_UNAVAILABLE

    def __init__(self, cause: str, *, retry_after_s: int) -> None:
        super().__init__(f"the orders database is unavailable ({cause})", retry_after_s=retry_after_s)
        self.cause = cause
