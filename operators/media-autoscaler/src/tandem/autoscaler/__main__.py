"""`python -m tandem.autoscaler`: run the media-autoscaler operator until SIGTERM."""

from __future__ import annotations

import asyncio
import signal

from tandem.autoscaler.app import run_operator
from tandem.autoscaler.settings import Settings
from tandem.common.log import configure_logging
from tandem.common.service import instance_name, settings_or_exit
from tandem.common.telemetry import configure_tracing


async def _main(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await run_operator(settings, stop_flag=stop)


def main() -> None:
    settings = settings_or_exit("media-autoscaler", Settings)
    configure_logging(settings.log_format, settings.log_level)
    tracing = configure_tracing(
        "tandem-media-autoscaler", instance_name(settings, "media-autoscaler"), settings.otlp_endpoint
    )
    try:
        asyncio.run(_main(settings))
    finally:
        if tracing is not None:
            tracing.shutdown()  # flush the spans still batched


if __name__ == "__main__":
    main()
