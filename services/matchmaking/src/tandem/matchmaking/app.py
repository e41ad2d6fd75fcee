"""The Matchmaking service wired to the bus."""

from __future__ import annotations

from tandem.common.service import BaseApp
from tandem.matchmaking.settings import Settings


class MatchmakingApp(BaseApp):
    def __init__(self, settings: Settings, instance: str) -> None:
        self.settings = settings
        self.instance = instance


def build_app(settings: Settings, instance: str) -> MatchmakingApp:
    return MatchmakingApp(settings, instance)
