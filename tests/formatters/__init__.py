"""Tests of the formatters: pure functions of bytes and values, no server."""
