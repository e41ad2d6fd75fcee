"""The Orders service wired to the bus."""

from __future__ import annotations

from tandem.common.service import BaseApp
from tandem.orders.settings import Settings


class OrdersApp(BaseApp):
    def __init__(self, settings: Settings, instance: str) -> None:
        self.settings = settings
        self.instance = instance


def build_app(settings: Settings, instance: str) -> OrdersApp:
    return OrdersApp(settings, instance)
