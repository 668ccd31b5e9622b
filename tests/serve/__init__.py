"""Tests of deepaf-host serve (a package: its conftest is serve.conftest, not one more module
named conftest, which the e2e tests import by that name)."""
