"""Nova's error bodies (spec section 2): the fault envelope and the router's bare 404."""

from __future__ import annotations

import json

FAULT_NAMES = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    409: "conflictingRequest",
    413: "overLimit",
    415: "badMediaType",
    429: "overLimit",
    501: "notImplemented",
    503: "serviceUnavailable",
}
FAULT_CONTENT_TYPE = "application/json; charset=UTF-8"
UNEXPECTED_ERROR = "Unexpected API Error. Please contact the administrator\n{}"


def fault_name(code: int) -> str:
    return FAULT_NAMES.get(code, "computeFault")


def fault_body(code: int, message: str) -> bytes:
    return json.dumps({fault_name(code): {"code": code, "message": message}}).encode()


def unexpected_error_message(error: BaseException) -> str:
    """Nova's message for an unexpected error: it names the exception's class only."""
    cls = type(error)
    return UNEXPECTED_ERROR.format(f"<class '{cls.__module__}.{cls.__qualname__}'>")


# webob's HTTPNotFound as Nova's router returns it for unknown paths and methods: not a fault body.
_NOT_FOUND_DETAIL = "The resource could not be found."
_NOT_FOUND_HTML = (
    "<html>\n <head>\n  <title>404 Not Found</title>\n </head>\n <body>\n  <h1>404 Not Found</h1>\n"
    f"  {_NOT_FOUND_DETAIL}<br /><br />\n\n\n\n </body>\n</html>"
)
_NOT_FOUND_JSON = {"message": f"{_NOT_FOUND_DETAIL}<br /><br />\n\n\n", "code": "404 Not Found",
                   "title": "Not Found"}
_NOT_FOUND_TEXT = f"404 Not Found\n\n{_NOT_FOUND_DETAIL}\n\n   "


def bare_not_found(accept: str | None) -> tuple[str, bytes]:
    """(content type, body) of webob's 404, chosen by the Accept header as webob does."""
    accept = (accept or "*/*").lower()
    if "text/html" in accept or "*/*" in accept:
        return "text/html; charset=UTF-8", _NOT_FOUND_HTML.encode()
    if "application/json" in accept:
        return "application/json", json.dumps(_NOT_FOUND_JSON).encode()
    return "text/plain; charset=UTF-8", _NOT_FOUND_TEXT.encode()
