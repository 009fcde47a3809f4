"""The Nova-compatible HTTP API: routes, microversions, faults, auth, policy, schemas, handlers."""
