"""The demo catalog and the currency of each market.

Money is integer minor units with an ISO 4217 code; a currency's exponent is ISO 4217's
(JPY 0, USD 2, KWD 3).
"""

from __future__ import annotations

from dataclasses import dataclass

MARKET_CURRENCY = {
    "US": "USD", "DE": "EUR", "FR": "EUR", "ES": "EUR", "IT": "EUR", "GB": "GBP", "JP": "JPY",
    "KW": "KWD", "BR": "BRL",
}  # fmt: skip
DEFAULT_CURRENCY = "USD"


def currency_for_market(market: str) -> str:
    return MARKET_CURRENCY.get(market.upper(), DEFAULT_CURRENCY)


@dataclass(frozen=True)
class DemoProduct:
    product_id: str
    title: str
    category: str
    image_url: str
    # Minor units per currency.
    prices: dict[str, int]


DEMO_CATALOG = (
    DemoProduct(
        "sku-serum-30ml", "Glow serum 30 ml", "beauty", "/static/products/sku-serum-30ml.svg",
        {"USD": 3900, "EUR": 3600, "GBP": 3100, "JPY": 5800, "KWD": 12_000, "BRL": 19_900},
    ),
    DemoProduct(
        "sku-sneaker-42", "Runner sneaker", "fashion", "/static/products/sku-sneaker-42.svg",
        {"USD": 12_900, "EUR": 11_900, "GBP": 9900, "JPY": 18_900, "KWD": 39_500, "BRL": 64_900},
    ),
    DemoProduct(
        "sku-earbuds", "Wireless earbuds", "electronics", "/static/products/sku-earbuds.svg",
        {"USD": 7900, "EUR": 7500, "GBP": 6500, "JPY": 11_800, "KWD": 24_000, "BRL": 39_900},
    ),
)  # fmt: skip
