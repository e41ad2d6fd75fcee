"""Tandem's shared runtime: settings, the NATS bus, telemetry, logging, health server, contracts."""

import logging

logging.getLogger("tandem").addHandler(logging.NullHandler())
