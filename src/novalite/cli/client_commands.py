"""novaclient-style client commands (service-list, service-force-down, …)."""


def register(subparsers) -> None:
    return None
