"""DeepAf scanner host: drives a motorised microscope and scans slides with single-shot autofocus."""

from .protocol_tables import DEEPAF_PROTOCOL_VERSION

__version__ = "0.1.0"

#: The version of protocol.md this host speaks (protocol/constants.csv).
PROTOCOL_VERSION = DEEPAF_PROTOCOL_VERSION
