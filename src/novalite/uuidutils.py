"""UUID text as OpenStack reads it."""

from __future__ import annotations

import uuid as uuidlib


def is_uuid_like(value: str) -> bool:
    """oslo.utils' rule: any form uuid.UUID accepts (dashes, braces, a urn:uuid: prefix optional, any
    case) whose hex matches the text's."""
    text = value.lower()
    if text.startswith("urn:uuid:"):
        text = text[len("urn:uuid:"):]
    text = text.strip("{}").replace("-", "")
    try:
        return uuidlib.UUID(value).hex == text
    except (TypeError, ValueError, AttributeError):
        return False
