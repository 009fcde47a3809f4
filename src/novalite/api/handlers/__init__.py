"""Handlers: small functions, one module per resource, each taking an ApiRequest and returning a Reply."""
