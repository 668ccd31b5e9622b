"""DeepAf scanner host: drives a motorised microscope and scans slides with single-shot autofocus."""

from .protocol_tables import DEEPAF_PROTOCOL_VERSION
from .sim import register_url_handlers

# The emulators' serial URLs (sim://, simavr://) open like any port, wherever a
# connection is made (a plug-in registration; see deepaf_host.sim).
register_url_handlers()

__version__ = "0.1.0"

#: The version of protocol.md this host speaks (protocol/constants.csv).
PROTOCOL_VERSION = DEEPAF_PROTOCOL_VERSION
