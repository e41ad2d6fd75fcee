"""`python -m tandem.signaling`: run the signaling service."""

from tandem.common.service import run_service
from tandem.signaling.app import build_app
from tandem.signaling.settings import Settings


def main() -> None:
    run_service("signaling", Settings, build_app)


if __name__ == "__main__":
    main()
