"""`python -m tandem.orders`: run the orders service."""

from tandem.common.service import run_service
from tandem.orders.app import build_app
from tandem.orders.settings import Settings


def main() -> None:
    run_service("orders", Settings, build_app)


if __name__ == "__main__":
    main()
