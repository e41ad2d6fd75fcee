"""The demo page in headless Chromium: a host page and a shopper page, real browser WebRTC with the
fake camera and microphone, through /demo from availability to an order and a hang-up, at desktop and
phone sizes. Every step is screenshotted (under the test's tmp_path) and checked for horizontal
overflow."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright, expect

from tandem.devstack.nats import NatsServer

from .conftest import FAST, Tandem, running_tandem

# Two browsers encoding video load this machine's two cores: browser tests take turns on one xdist worker.
pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module"), pytest.mark.xdist_group("browsers")]

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]
TIMES = "\N{MULTIPLICATION SIGN}"
# A ring long enough for a browser to start its camera and pre-connect while it rings, short enough
# to watch an invite run out; the queue gives up soon after.
RING_S = 5
STACK = {**FAST, "signaling": {**FAST["signaling"], "TANDEM_SIGNALING_RING_TIMEOUT_S": str(RING_S),
                               "TANDEM_SIGNALING_QUEUE_TIMEOUT_S": str(RING_S + 3)}}  # fmt: skip
SIZES = {"desktop": (1280, 800), "phone": (390, 844)}
# True once the other party can be seen and heard: the remote <video> has presented frames, is not
# muted, and the call's inbound audio carried sound (the fake microphone's beeps reach 0.2 within
# seconds; a party sending silence stays near 1e-8).
SEEN_AND_HEARD = """async () => {
  const v = document.querySelector('#remote-video');
  if (!v || !v.srcObject || v.muted || v.volume === 0 || v.paused || v.videoWidth === 0) return false;
  if (v.getVideoPlaybackQuality().totalVideoFrames <= 10) return false;
  if (!v.srcObject.getAudioTracks().some((t) => t.readyState === 'live' && t.enabled)) return false;
  const stats = [...(await pc.getStats()).values()];
  return stats.some((s) => s.type === 'inbound-rtp' && s.kind === 'audio' && s.totalAudioEnergy > 0.01);
}"""
COUNTDOWN_RUNNING = "() => { const bar = document.querySelector('#countdown-bar'); return bar.value < bar.max; }"
IMAGE_LOADED = "(selector) => [...document.querySelectorAll(selector)].every((i) => i.complete && i.naturalWidth > 0)"
# Visible text below WCAG AA contrast against its nearest opaque background (4.5:1, large text 3:1).
LOW_CONTRAST = """() => {
  const rgba = (c) => {
    const v = c.match(/[\\d.]+/g).map(Number);
    return { r: v[0], g: v[1], b: v[2], a: v.length > 3 ? v[3] : 1 };
  };
  const channel = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  const luminance = (c) => 0.2126 * channel(c.r) + 0.7152 * channel(c.g) + 0.0722 * channel(c.b);
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c.a > 0.5) return c;
    }
    return { r: 255, g: 255, b: 255, a: 1 };
  };
  const failures = [];
  for (const el of document.querySelectorAll('body *')) {
    if (!el.checkVisibility() || ![...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
    const style = getComputedStyle(el);
    const [high, low] = [luminance(rgba(style.color)), luminance(background(el))].sort((a, b) => b - a);
    const ratio = (high + 0.05) / (low + 0.05);
    const size = parseFloat(style.fontSize), large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
    if (ratio < (large ? 3 : 4.5)) failures.push(`"${el.textContent.trim().slice(0, 30)}" ${ratio.toFixed(2)}`);
  }
  return failures;
}"""
# Form controls a screen reader could not name.
UNLABELLED = """() => [...document.querySelectorAll('input, select, button')]
  .filter((e) => e.checkVisibility() && !(e.labels && e.labels.length))
  .filter((e) => !e.getAttribute('aria-label') && !e.textContent.trim())
  .map((e) => e.outerHTML.slice(0, 80))"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def tandem(
    module_nats: NatsServer, module_database: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Tandem]:
    async with running_tandem(module_nats, module_database, tmp_path_factory.mktemp("logs"), STACK) as stack:
        yield stack


@pytest_asyncio.fixture(loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


class Screens:
    """Screenshots of every step, numbered in order, each after checking that the page fits its width."""

    def __init__(self, folder: Path, width: int) -> None:
        self.folder = folder
        self.width = width
        self.count = 0
        folder.mkdir(parents=True, exist_ok=True)

    async def shoot(self, page: Page, name: str) -> None:
        widths = await page.evaluate("() => [document.documentElement.scrollWidth, document.body.scrollWidth]")
        assert max(widths) <= self.width, f"{name}: the page is {max(widths)} px wide in a {self.width} px viewport"
        assert await page.evaluate(LOW_CONTRAST) == [], f"{name}: text with too little contrast"
        assert await page.evaluate(UNLABELLED) == [], f"{name}: controls without a label"
        self.count += 1
        await page.screenshot(path=self.folder / f"{self.count:02d}-{name}.png", full_page=True)


async def eventually(page: Page, script: str, timeout_s: float = 20.0) -> None:
    """Poll an async page function until it returns true (wait_for_function takes a promise for true)."""
    deadline = time.monotonic() + timeout_s
    while not await page.evaluate(script):
        assert time.monotonic() < deadline, f"still false after {timeout_s} s"
        await asyncio.sleep(0.25)


async def open_page(browser: Browser, url: str, size: str) -> Page:
    width, height = SIZES[size]
    phone = size == "phone"
    context = await browser.new_context(
        permissions=["camera", "microphone"], locale="en-US", viewport={"width": width, "height": height},
        is_mobile=phone, has_touch=phone,
    )  # fmt: skip
    page = await context.new_page()
    await page.goto(url)
    return page


@pytest.mark.parametrize("size", list(SIZES))
async def test_a_consultation_from_availability_to_order_in_two_browser_pages(
    tandem: Tandem, browser: Browser, size: str, tmp_path: Path
) -> None:
    base = tandem.signaling_urls[0]
    screens = Screens(tmp_path / "screens", SIZES[size][0])
    decoded_before = await tandem.worker_metric("tandem_media_frames_decoded_total", kind="video")
    host = await open_page(browser, f"{base}/demo?role=host&user=host-{size}", size)
    shopper = await open_page(browser, f"{base}/demo?role=shopper&user=shopper-{size}", size)
    try:
        await expect(host.locator("#status")).to_have_text("away")
        await screens.shoot(host, "host-away")
        await host.get_by_role("checkbox", name="ko", exact=True).check()
        await host.get_by_role("button", name="Go available").click()
        await expect(host.locator("#status")).to_have_text("available")
        await expect(host.locator("#availability-text")).to_contain_text("en, ko")
        await screens.shoot(host, "host-available")

        await expect(shopper.locator("#status")).to_have_text("online")
        await shopper.get_by_role("radio", name=re.compile("Wireless earbuds")).check()
        await shopper.get_by_label("Your language").select_option("ko")
        await shopper.get_by_label("Ship to").select_option("JP")
        await shopper.wait_for_function(IMAGE_LOADED, arg="#product-choices img")
        await expect(shopper.get_by_role("button", name="Buy now")).to_be_hidden()
        await screens.shoot(shopper, "shopper-start")
        await shopper.get_by_role("button", name="Video consult").click()
        await expect(shopper.locator("#queue")).to_be_visible()
        await screens.shoot(shopper, "shopper-waiting")

        # The invite: what the shopper wants, in which language and market, whether they bought
        # here before, and a countdown that runs.
        invite = host.locator("#invite")
        await expect(invite).to_be_visible()
        await expect(invite).to_contain_text("Wireless earbuds")
        await expect(invite).to_contain_text("Korean")
        await expect(invite).to_contain_text("Japan")
        await expect(invite.locator("#invite-customer")).to_have_text("New customer")
        await expect(host.locator("#countdown-text")).to_have_text(re.compile(rf"^[1-{RING_S}] s$"))
        await host.wait_for_function(COUNTDOWN_RUNNING)
        # Answerable without scrolling, on a phone too.
        await expect(host.get_by_role("button", name="Accept")).to_be_in_viewport()
        await screens.shoot(host, "host-invite")
        await host.get_by_role("button", name="Accept").click()

        for page, role in ((shopper, "shopper"), (host, "host")):
            await expect(page.locator("#status")).to_have_text("in a call", timeout=20_000)
            await eventually(page, SEEN_AND_HEARD)
            assert await page.locator("#local-video").evaluate("v => v.muted"), "the self-view must not echo"
            await screens.shoot(page, f"{role}-call")
        # Both browsers see each other's video, forwarded: the worker decoded none of it.
        assert await tandem.worker_metric("tandem_media_frames_decoded_total", kind="video") == decoded_before
        await expect(host.locator("#connect-time")).to_contain_text("ms after you accepted")
        await expect(host.locator("#peer-label")).to_have_text("Shopper shopper-" + size)
        await expect(host.locator("#customer")).to_contain_text("Wireless earbuds")
        await expect(host.locator("#customer-customer")).to_have_text("New customer")
        await expect(shopper.locator("#asked")).to_contain_text("Wireless earbuds")
        await expect(shopper.get_by_role("button", name="Buy now")).to_be_hidden()

        await host.get_by_role("button", name="Show Wireless earbuds").click()
        card = shopper.locator("#product-card")
        await expect(card).to_be_visible()
        await expect(card.locator("#card-title")).to_have_text("Wireless earbuds")
        await expect(card.locator("#card-price")).to_have_text("¥11,800")
        await shopper.wait_for_function(IMAGE_LOADED, arg="#card-image")
        await expect(host.locator("#product-card")).to_contain_text("On the shopper's screen")
        await expect(host.get_by_role("button", name="Add to cart")).to_be_hidden()
        await screens.shoot(shopper, "shopper-card")
        await screens.shoot(host, "host-card")

        await expect(shopper.get_by_role("button", name="Add to cart")).to_be_in_viewport()
        await shopper.get_by_role("button", name="Add to cart").click()
        await expect(shopper.get_by_label("Wireless earbuds quantity")).to_have_text("1")
        await expect(shopper.locator("#cart-total")).to_have_text("¥11,800")
        await expect(host.locator("#cart")).to_contain_text(f"{TIMES} 1")
        await expect(host.get_by_role("button", name="Buy now")).to_be_hidden()
        await screens.shoot(shopper, "shopper-cart")
        await screens.shoot(host, "host-cart")

        await expect(shopper.get_by_role("button", name="Buy now")).to_be_in_viewport()
        await shopper.get_by_role("button", name="Buy now").click()
        for page, role, title in ((shopper, "shopper", "Order placed"), (host, "host", "The shopper placed an order")):
            order = page.locator("#order")
            await expect(order).to_be_visible(timeout=10_000)
            await expect(order.locator("h2")).to_have_text(title)
            await expect(order).to_contain_text("¥11,800")
            await expect(order).to_contain_text(f"1 {TIMES} Wireless earbuds")
            await expect(page.locator("#cart")).to_be_hidden()
            await screens.shoot(page, f"{role}-order")
        order_id = await shopper.locator("#order-id").text_content()
        await expect(host.locator("#order-id")).to_have_text(order_id or "no order id")

        await shopper.get_by_role("button", name="Hang up").click()
        await expect(shopper.locator("#ended")).to_have_text("Your consultation ended: hung up.")
        await expect(host.locator("#ended")).to_have_text("The consultation ended: hung up.")
        for page, role in ((shopper, "shopper"), (host, "host")):
            await expect(page.locator("#call")).to_be_hidden()
            await screens.shoot(page, f"{role}-ended")
        await expect(host.locator("#status")).to_have_text("available")

        await host.get_by_text("Protocol log").click()
        log = host.locator("#log")
        await expect(log).to_contain_text("← invite")
        # Candidates trickled as the browser gives them: `RTCIceCandidate.toJSON()` as it is.
        trickled = (
            r'→ iceCandidate \{"callId":"[^"]+","candidate":"candidate:[^"]+","sdpMid":"0","sdpMLineIndex":0,'
            r'"usernameFragment":"[^"]+"\}'
        )
        await expect(log).to_contain_text(re.compile(trickled))
        await screens.shoot(host, "host-log")
        for page in (host, shopper):
            await expect(page.locator("#log")).not_to_contain_text("← error")

        # The same shopper again: the host sees a returning customer.
        await shopper.get_by_role("button", name="Video consult").click()
        await expect(invite).to_be_visible()
        await expect(invite.locator("#invite-customer")).to_have_text("Returning customer")
        await screens.shoot(host, "host-invite-returning")
        await shopper.get_by_role("button", name="Cancel").click()
        await expect(shopper.locator("#ended")).to_have_text("Your consultation ended: cancelled.")
        await expect(invite).to_be_hidden()
        await screens.shoot(shopper, "shopper-cancelled")
    finally:
        await host.context.close()
        await shopper.context.close()


async def test_an_unanswered_invite_counts_down_and_the_shopper_hears_why(
    tandem: Tandem, browser: Browser, tmp_path: Path
) -> None:
    base = tandem.signaling_urls[0]
    screens = Screens(tmp_path / "screens", SIZES["phone"][0])
    host = await open_page(browser, f"{base}/demo?languages=de&markets=DE", "phone")
    shopper = await open_page(browser, f"{base}/demo?role=shopper&user=shopper-waiting&language=de&market=DE", "phone")
    try:
        await screens.shoot(host, "pick-role")
        await host.get_by_label("Your name").fill("host-asleep")
        await host.get_by_role("button", name="I'm a host").click()
        await expect(host.locator("#who")).to_have_text("Host · host-asleep")
        await host.get_by_role("button", name="Go available").click()
        await expect(host.locator("#status")).to_have_text("available")
        # The socket drops: the page reconnects and announces the host again (the invite below
        # reaches it on the new socket).
        await host.evaluate("() => ws.close()")
        reannounced = re.compile(rf"→ hostAvailability.*\n.*← welcome.*\n.*→ hello.*\n.*{TIMES} close")
        await expect(host.locator("#log")).to_contain_text(reannounced, use_inner_text=False)
        await expect(host.locator("#status")).to_have_text("available")
        await expect(shopper.locator("#status")).to_have_text("online")
        await shopper.get_by_role("button", name="Video consult").click()

        # The countdown runs down from the ring's length, then the invite is gone.
        await expect(host.locator("#invite")).to_be_visible()
        await expect(host.locator("#countdown-text")).to_have_text(f"{RING_S} s")
        await expect(host.locator("#countdown-text")).to_have_text(f"{RING_S - 1} s")
        await screens.shoot(host, "host-countdown")
        await expect(host.locator("#ended")).to_have_text(
            "You missed a consultation: it was not answered in time.", timeout=(RING_S + 5) * 1000
        )
        await expect(host.locator("#invite")).to_be_hidden()
        await screens.shoot(host, "host-missed")

        # The only host did not answer: the shopper waits for another, then hears none was free in time.
        await expect(shopper.locator("#queue-text")).to_contain_text("The host did not answer; trying another host.")
        await screens.shoot(shopper, "shopper-requeued")
        await expect(shopper.locator("#ended")).to_have_text(
            "Your consultation ended: no host was free in time.", timeout=10_000
        )
        await expect(shopper.get_by_role("button", name="Video consult")).to_be_enabled()
        await screens.shoot(shopper, "shopper-no-host")
    finally:
        await host.context.close()
        await shopper.context.close()
