"""Contracts every implementation of an interface must pass, run by the unit and the integration tests."""
