"""Admin passwords the API makes up for a new or evacuated server, as Nova's utils.generate_password."""

from __future__ import annotations

import secrets

# Nova's generate_password: [DEFAULT]password_length characters, at least one of each group.
PASSWORD_LENGTH = 12
PASSWORD_SYMBOLS = ("23456789", "ABCDEFGHJKLMNPQRSTUVWXYZ", "abcdefghijkmnopqrstuvwxyz")


def generate_password(length: int = PASSWORD_LENGTH) -> str:
    rng = secrets.SystemRandom()
    chars = [rng.choice(group) for group in PASSWORD_SYMBOLS]
    rng.shuffle(chars)
    chars = chars[:length]
    everything = "".join(PASSWORD_SYMBOLS)
    chars += [rng.choice(everything) for _ in range(length - len(chars))]
    rng.shuffle(chars)
    return "".join(chars)
