"""Secrets kept in files (mode 0600): the admin token, the agents' token, the monitor's heartbeat key.

Standard library only: every process reads one at start, the compute agent included.
"""

from __future__ import annotations

import secrets
from pathlib import Path


def read_secret(path: str) -> str:
    secret = Path(path).read_text().strip()
    if not secret:
        raise ValueError(f"secret file {path} is empty")
    return secret


def ensure_secret(path: Path) -> str:
    """The secret in ``path``, generating one (mode 0600) on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = path.open("x")
        path.chmod(0o600)
        with fd:
            fd.write(secrets.token_urlsafe(32) + "\n")
    return read_secret(str(path))
