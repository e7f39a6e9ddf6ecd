"""Reliability and security tests: faults, load, soak, cancellation, hostile servers, bad input, secrets, TLS."""
