"""`python -m tandem.autoscaler`: run the media-autoscaler operator until SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys

from tandem.autoscaler.app import run_operator
from tandem.autoscaler.settings import Settings
from tandem.common.errors import ConfigError
from tandem.common.log import configure_logging
from tandem.common.service import EXIT_CONFIG
from tandem.common.settings import load_settings


async def _main(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await run_operator(settings, stop_flag=stop)


def main() -> None:
    try:
        settings = load_settings(Settings)
    except ConfigError as exc:
        print(f"media-autoscaler: {exc.message}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    configure_logging(settings.log_format, settings.log_level)
    asyncio.run(_main(settings))


if __name__ == "__main__":
    main()
