"""Request schemas, one module per resource, each keyed by microversion range."""
