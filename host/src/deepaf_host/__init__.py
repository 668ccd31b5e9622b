"""DeepAf scanner host: drives a motorised microscope and scans slides with single-shot autofocus."""

__version__ = "0.1.0"

#: The version of protocol.md this host speaks.
PROTOCOL_VERSION = 1
