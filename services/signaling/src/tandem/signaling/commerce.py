"""Commerce in a call: the host pushes product cards, the shopper fills a cart and checks out.
Each request has one shape: the right party, a connected call, a question to orders, and what
orders answers shown to both parties (the asker's copy answering their message)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from google.protobuf.message import Message

from tandem.common import subjects
from tandem.common.bus import Bus
from tandem.common.envelope import new_envelope
from tandem.signaling.auth import Identity
from tandem.signaling.callstate import Call
from tandem.signaling.errors import WrongPartyError
from tandem.v1 import client_pb2, common_pb2, orders_pb2

S = common_pb2
Envelope = client_pb2.Envelope


@dataclass(frozen=True)
class Shown:
    """What both parties are shown: one payload of the envelope."""

    field: str
    message: Message

    def envelope(self, correlation_id: str = "") -> Envelope:
        envelope = new_envelope(correlation_id)
        getattr(envelope, self.field).CopyFrom(self.message)
        return envelope


class InCallCommerce:
    def __init__(self, bus: Bus, *, checkout_timeout_s: float) -> None:
        self.bus = bus
        self.checkout_timeout_s = checkout_timeout_s
        # payload -> (the party who may send it, what it does, the question to orders)
        self._requests: dict[str, tuple[str, str, Callable[[Call, Envelope], Awaitable[Shown]]]] = {
            "push_product_card": ("host", "pushes product cards", self._card),
            "add_to_cart": ("shopper", "changes the cart", self._cart),
            "checkout": ("shopper", "checks out", self._checkout),
        }

    async def handle(self, call: Call, who: Identity, envelope: Envelope) -> Shown:
        kind = envelope.WhichOneof("payload")
        party, action, ask = self._requests[kind or ""]
        if who.user_id != (call.host_id if party == "host" else call.shopper_id):
            raise WrongPartyError(who.user_id, action, party)
        call.expect(S.CALL_STATE_CONNECTED)
        return await ask(call, envelope)

    async def _card(self, call: Call, envelope: Envelope) -> Shown:
        reply = await self.bus.request(
            subjects.ORDERS_PRODUCT_CARD,
            orders_pb2.ProductCardRequest(
                call_id=call.call_id, host_id=call.host_id, product_id=envelope.push_product_card.product_id,
                market=call.request.market,
            ),
            orders_pb2.ProductCardReply,
        )  # fmt: skip
        card = client_pb2.ProductCard(call_id=call.call_id, product=reply.product, card_id=reply.card_id)
        call.last_card = card
        return Shown("product_card", card)

    async def _cart(self, call: Call, envelope: Envelope) -> Shown:
        change = envelope.add_to_cart
        reply = await self.bus.request(
            subjects.ORDERS_CART,
            orders_pb2.CartChange(
                call_id=call.call_id, shopper_id=call.shopper_id, product_id=change.product_id,
                quantity=change.quantity, market=call.request.market,
            ),
            orders_pb2.CartReply,
        )  # fmt: skip
        cart = client_pb2.CartUpdate(call_id=call.call_id, lines=reply.lines, total=reply.total)
        call.last_cart = cart
        return Shown("cart_update", cart)

    async def _checkout(self, call: Call, envelope: Envelope) -> Shown:
        reply = await self.bus.request(
            subjects.ORDERS_CHECKOUT,
            orders_pb2.CheckoutRequest(
                call_id=call.call_id, shopper_id=call.shopper_id, host_id=call.host_id,
                idempotency_key=envelope.checkout.idempotency_key,
            ),
            orders_pb2.CheckoutReply,
            timeout_s=self.checkout_timeout_s,
        )  # fmt: skip
        result = client_pb2.CheckoutResult(call_id=call.call_id, order_id=reply.order_id, total=reply.total)
        if reply.HasField("error"):
            result.error.CopyFrom(reply.error)
        return Shown("checkout_result", result)
