"""The token rule and the controller seat."""

from __future__ import annotations

import time

from deepaf_host.serve.access import Access


def test_a_silent_controller_loses_the_seat() -> None:
    access = Access(None, stale_s=0.2)
    assert access.claim("a") and not access.claim("b")
    access.seen("a")  # a's page still polls
    assert not access.claim("b") and access.controls("a")
    time.sleep(0.3)  # a's tab was closed
    assert access.controller is None
    assert access.claim("b") and access.controls("b") and not access.controls("a")


def test_release_frees_the_seat_only_for_its_holder() -> None:
    access = Access(None)
    assert access.claim("a")
    access.release("b")
    assert access.controls("a")
    access.release("a")
    assert access.controller is None and access.claim("b")
    assert not access.controls(None)


def test_token() -> None:
    assert Access(None).token_ok(None)
    access = Access("abc")
    assert access.token_ok("abc")
    assert not access.token_ok(None) and not access.token_ok("") and not access.token_ok("abcd") and not access.token_ok("ab")
