"""`python -m tandem.media`: run the media-worker service."""

from tandem.common.service import run_service
from tandem.media.app import build_app
from tandem.media.settings import Settings


def main() -> None:
    run_service("media-worker", Settings, build_app)


if __name__ == "__main__":
    main()
