"""Tests of the azml command line."""
