"""`python -m tandem.autoscaler`: run the media-autoscaler operator until SIGTERM."""

from __future__ import annotations

import asyncio
import signal

from tandem.autoscaler.app import run_operator
from tandem.autoscaler.settings import Settings
from tandem.common.log import configure_logging
from tandem.common.service import settings_or_exit


async def _main(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await run_operator(settings, stop_flag=stop)


def main() -> None:
    settings = settings_or_exit("media-autoscaler", Settings)
    configure_logging(settings.log_format, settings.log_level)
    asyncio.run(_main(settings))


if __name__ == "__main__":
    main()
