"""One scripted consultation between a bot host and a bot shopper, timed stage by stage.

Used by `make demo` (which prints the timeline) and by the connect-time benchmark.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field

from tandem.devstack.bots import Bot, dev_token
from tandem.v1 import client_pb2, common_pb2

S = common_pb2
STAGES = (
    "requested",
    "host ringing",
    "shopper sees ringing",
    "accepted",
    "connected",
    "first remote video at shopper",
    "first remote video at host",
    "product card shown",
    "order placed",
)


@dataclass
class Timeline:
    marks: dict[str, float] = field(default_factory=dict)
    call_id: str = ""
    order_id: str = ""

    def mark(self, stage: str, at: float | None = None) -> None:
        self.marks[stage] = time.monotonic() if at is None else at

    def ms(self, start: str, end: str) -> float:
        return (self.marks[end] - self.marks[start]) * 1000.0

    def lines(self) -> list[str]:
        origin = self.marks["requested"]
        return [
            f"  {stage:<32} {1000 * (self.marks[stage] - origin):8.1f} ms" for stage in STAGES if stage in self.marks
        ]


async def connect_bots(base_url: str, suffix: str, *, host_url: str | None = None) -> tuple[Bot, Bot]:
    """A host bot that is available for a language and a shopper bot."""
    host_base = host_url or base_url
    host = Bot(host_base, await dev_token(host_base, "host", f"host-{suffix}"), name=f"host-{suffix}")
    shopper = Bot(base_url, await dev_token(base_url, "shopper", f"shopper-{suffix}"), binary=True, name="shopper")
    await host.connect()
    await shopper.connect()
    return host, shopper


async def run_consultation(host: Bot, shopper: Bot, *, language: str, buy: bool = True) -> Timeline:
    """Host announces availability, shopper taps consult, host accepts, media flows, the host
    pushes a card and the shopper buys it. Returns the timeline."""
    timeline = Timeline()
    await host.send(host_availability=client_pb2.HostAvailability(available=True, languages=[language], markets=["US"]))
    await host.send(ping=client_pb2.Ping())
    await host.expect("pong")

    timeline.mark("requested")
    await shopper.send(
        consult_request=client_pb2.ConsultRequest(
            product_id="sku-serum-30ml", category="beauty", language=language, market="US"
        )
    )
    call_id = timeline.call_id = (await shopper.expect("queue_update")).queue_update.call_id
    await host.expect("invite", call_id=call_id)
    timeline.mark("host ringing")
    await shopper.expect("call_update", call_id=call_id, state=S.CALL_STATE_RINGING)
    timeline.mark("shopper sees ringing")

    timeline.mark("accepted")
    await host.send(accept=client_pb2.Accept(call_id=call_id))
    await asyncio.gather(
        shopper.expect("call_update", call_id=call_id, state=S.CALL_STATE_CONNECTING),
        host.expect("call_update", call_id=call_id, state=S.CALL_STATE_CONNECTING),
    )
    await asyncio.gather(
        shopper.start_media(call_id, tone_hz=440, shade=40), host.start_media(call_id, tone_hz=660, shade=200)
    )
    await shopper.expect("call_update", call_id=call_id, state=S.CALL_STATE_CONNECTED, timeout_s=20)
    timeline.mark("connected")
    await asyncio.wait_for(asyncio.gather(shopper.media.first_video.wait(), host.media.first_video.wait()), 20)
    timeline.mark("first remote video at shopper", shopper.media.first_frame_at["video"])
    timeline.mark("first remote video at host", host.media.first_frame_at["video"])

    if buy:
        await host.send(push_product_card=client_pb2.PushProductCard(call_id=call_id, product_id="sku-serum-30ml"))
        await shopper.expect("product_card", call_id=call_id)
        timeline.mark("product card shown")
        await shopper.send(add_to_cart=client_pb2.AddToCart(call_id=call_id, product_id="sku-serum-30ml", quantity=1))
        await shopper.expect("cart_update", call_id=call_id)
        await shopper.send(checkout=client_pb2.Checkout(call_id=call_id, idempotency_key=str(uuid.uuid4())))
        result = (await shopper.expect("checkout_result", call_id=call_id)).checkout_result
        timeline.order_id = result.order_id
        timeline.mark("order placed")

    await shopper.send(hangup=client_pb2.Hangup(call_id=call_id))
    await host.expect("call_update", call_id=call_id, state=S.CALL_STATE_ENDED)
    return timeline
