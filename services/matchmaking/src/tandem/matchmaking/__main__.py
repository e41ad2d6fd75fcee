"""`python -m tandem.matchmaking`: run the matchmaking service."""

from tandem.common.service import run_service
from tandem.matchmaking.app import build_app
from tandem.matchmaking.settings import Settings


def main() -> None:
    run_service("matchmaking", Settings, build_app)


if __name__ == "__main__":
    main()
