"""Who may do what: the token (off loopback) and the one controlling browser.

- Bound to a loopback address, the page needs no token (only this computer's users
  reach it). Bound to any other address, every API call, the stream and the slide files
  need the token printed in the URL at start (``?token=`` or the ``X-DeepAf-Token``
  header); it is compared in constant time.
- One browser controls at a time; the others see everything but change nothing. A
  browser names itself with a random id (``X-DeepAf-Client``); it takes control when
  nobody holds it, or when the holder has not been heard of for :data:`STALE_S`
  seconds (a closed tab), and keeps it while its page polls.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import threading
import time

#: A controller silent this long (its page polls every half second) loses control.
STALE_S = 10.0


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` reaches this computer only (``""`` binds every address)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    return secrets.token_urlsafe(24)


class Access:
    """The token rule and the controller seat."""

    def __init__(self, token: str | None, *, stale_s: float = STALE_S) -> None:
        self.token = token
        self.stale_s = stale_s
        self._lock = threading.Lock()
        self._controller: str | None = None
        self._seen: dict[str, float] = {}

    def token_ok(self, given: str | None) -> bool:
        if self.token is None:
            return True
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def seen(self, client: str) -> None:
        with self._lock:
            self._seen[client] = time.monotonic()

    def _stale(self, client: str) -> bool:
        return time.monotonic() - self._seen.get(client, 0.0) > self.stale_s

    @property
    def controller(self) -> str | None:
        with self._lock:
            if self._controller is not None and self._stale(self._controller):
                self._controller = None
            return self._controller

    def claim(self, client: str) -> bool:
        """Take control if it is free (or its holder is gone); True when ``client`` holds it."""
        with self._lock:
            self._seen[client] = time.monotonic()
            if self._controller is None or self._controller == client or self._stale(self._controller):
                self._controller = client
            return self._controller == client

    def release(self, client: str) -> None:
        with self._lock:
            if self._controller == client:
                self._controller = None

    def controls(self, client: str | None) -> bool:
        return client is not None and self.controller == client
