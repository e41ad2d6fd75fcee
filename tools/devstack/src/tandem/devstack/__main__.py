"""`python -m tandem.devstack up|demo`: the local stack behind `make up` and `make demo`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from tandem.devstack.demo import demo
from tandem.devstack.ports import PortTakenError
from tandem.devstack.stack import StackConfig, run_stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tandem.devstack")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start nats, PostgreSQL and every service; Ctrl-C stops all")
    up.add_argument("--run-dir", type=Path, default=Path(".run"), help="data and logs (default .run/)")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--nats-port", type=int, default=4222)
    up.add_argument("--postgres-port", type=int, default=5432)
    up.add_argument("--http-base-port", type=int, default=8080, help="signaling here, the others next")
    demo_cmd = commands.add_parser("demo", help="run one bot consultation and print its timeline")
    demo_cmd.add_argument("--url", default="http://127.0.0.1:8080", help="signaling of a running stack")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return asyncio.run(demo(args.url))

    config = StackConfig(
        run_dir=args.run_dir.resolve(),
        host=args.host,
        nats_port=args.nats_port,
        postgres_port=args.postgres_port,
        http_base_port=args.http_base_port,
    )
    try:
        return asyncio.run(run_stack(config))
    except PortTakenError as exc:
        print(f"make up: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
