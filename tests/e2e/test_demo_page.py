"""The demo page in headless Chromium: a shopper tab and a host tab, real browser WebRTC with the
fake camera, through /demo to an order confirmation."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright

from .conftest import Tandem

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]
# True once the remote <video> has decoded and presented frames (not merely received a track).
PLAYING = """() => {
  const v = document.querySelector('#remote-video');
  return v && v.srcObject && v.getVideoPlaybackQuality().totalVideoFrames > 10 && v.videoWidth > 0;
}"""


@pytest_asyncio.fixture(loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


async def open_page(browser: Browser, url: str) -> Page:
    context = await browser.new_context(permissions=["camera", "microphone"])
    page = await context.new_page()
    await page.goto(url)
    return page


async def test_two_browser_tabs_hold_a_consultation_and_place_an_order(tandem: Tandem, browser: Browser) -> None:
    base = tandem.signaling_urls[0]
    host = await open_page(browser, f"{base}/demo?role=host&user=host-web")
    await host.wait_for_selector("#state:has-text('connected to Tandem')")
    await host.fill("#host-language", "ko")
    await host.click("#available")

    shopper = await open_page(browser, f"{base}/demo?role=shopper&user=shopper-web")
    await shopper.wait_for_selector("#state:has-text('connected to Tandem')")
    await shopper.fill("#shopper-language", "ko")
    await shopper.fill("#shopper-market", "JP")
    await shopper.click("#consult")

    await host.click("#accept", timeout=10_000)
    await shopper.wait_for_selector("#state:text-is('connected')", timeout=20_000)
    await host.wait_for_selector("#state:text-is('connected')", timeout=20_000)
    await shopper.wait_for_function(PLAYING, timeout=20_000)
    await host.wait_for_function(PLAYING, timeout=20_000)

    await host.click("[data-product='sku-earbuds']")
    await shopper.wait_for_selector("#product-card:not(.hidden)")
    assert await shopper.text_content("#card-price") == "11800 JPY"
    await shopper.click("#buy")
    await shopper.wait_for_selector("#order-confirmation:not(.hidden)", timeout=10_000)
    confirmation = await shopper.text_content("#order-confirmation") or ""
    assert "Order placed" in confirmation
    assert "11800 JPY" in confirmation

    await shopper.click("#hangup")
    await host.wait_for_selector("#state:has-text('ended')")
