"""The fault monitor (``novalite monitor``): from a host's failure to its servers running elsewhere.

A separate process. It acts on the control plane only through the public compute API (a keystoneauth
session, so the same monitor works against a real Nova), and has its own channels to the hosts.

    heartbeat_wire.py    the heartbeat datagrams (HMAC-SHA256, incarnations, sequence numbers).
    heartbeat_sender.py  the agents' side: a beat every [monitor] heartbeat_interval, answers to probes.
    detection.py   the Detector: a host is *suspect* after suspect_after missed intervals, then probed
                   actively (the second channel); it has *failed* when both channels agree. Emits
                   HostFailed / HostReturned events.
    fencing.py     pluggable fencers (none, command, redfish via sushy, ipmi via pyghmi): power the host
                   off and confirm it before anything else happens.
    gates.py       the safety gates, each a named rule: quorum, mass failure, per-cycle cap, operator-disabled.
    recovery.py    the recovery of one host through the API: force-down, disable with a reason that records
                   the recovery's state (resume-safe), then its servers' evacuation; and the host's return.
    evacuation.py  one host's servers: which opted in, by priority, spare hosts first, evacuated in parallel
                   with bounded workers, each re-read first (never twice), tracked to its resting state,
                   retried, its power state restored, every move journaled.
    journal.py     the monitor's own record of every decision and move (SQLite), read by
                   ``novalite monitor events``.
    metrics.py     Prometheus metrics, fed from the journal.
    service.py     the process (``novalite monitor run``): detector → gates → fencing → recovery, returns.
"""
