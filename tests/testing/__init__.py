"""Tests of azml_client.testing, the endpoint emulator."""
