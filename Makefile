# DeepAf scanner: the two commands of the README, and their parts.
#
#   make demo   scan a slide on the virtual microscope (pip only)
#   make test   everything CI runs: system packages, firmware, simavr harness, all tests
#   make protocol  regenerate the files written from protocol/*.csv (committed)
#   make lint   ruff over the host, tests, simulator scripts and protocol/; mypy over the host package (CI too)
#
# Everything Python goes into .venv, pinned by host/constraints.txt.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
PINS   := -c host/constraints.txt

# System packages the firmware build and the firmware-in-the-loop tests need (Debian 12).
# avrdude flashes the board (deepaf-host flash); arduino-core-avr holds the source of
# the Uno's bootloader (Optiboot), which the flashing tests run in simavr; chromium is the
# headless browser of the live page's tests (tests/serve/, driven by Playwright).
APT_PACKAGES := gcc-avr avr-libc simavr libsimavr-dev libsimavrparts1 libelf-dev pkg-config make \
                avrdude arduino-core-avr chromium
OPTIBOOT_SRC := /usr/share/arduino/hardware/arduino/avr/bootloaders/optiboot/optiboot.c

.PHONY: demo test test-fast lint bench firmware protocol system-deps clean

demo: $(VENV)/.runtime
	rm -rf demo  # the demo's own scratch folder: each run starts afresh
	$(BIN)/deepaf-host scan --port sim:// --camera sim:// --out demo/

test: system-deps $(VENV)/.dev firmware
	cd tests && ../$(BIN)/python -m pytest

# The host tests only (no firmware toolchain needed).
test-fast: $(VENV)/.dev
	cd tests && ../$(BIN)/python -m pytest -m "not firmware"

# Settings in host/pyproject.toml ([tool.ruff], [tool.mypy]).
lint: $(VENV)/.dev
	$(BIN)/ruff check --config host/pyproject.toml host/src tests firmware/sim protocol
	$(BIN)/python -m mypy --config-file host/pyproject.toml

bench: $(VENV)/.dev firmware
	$(BIN)/python firmware/sim/bench.py
	$(BIN)/python -m deepaf_host.optics.bench
	$(BIN)/python -m deepaf_host.scan.bench
	$(BIN)/python -m deepaf_host.refocus.bench

firmware: system-deps
	$(MAKE) -C firmware all sim optiboot

# Rewrites what is generated from the protocol's tables in protocol/*.csv: firmware/codes.h,
# firmware/settings_table.h, config.h's shared constants, deepaf_host/protocol_tables.py and
# protocol.md's tables. The outputs are committed (the firmware build never runs this) and
# tests/test_protocol_tables.py fails when they are out of date. Standard-library Python only.
protocol:
	$(PYTHON) protocol/generate.py

# Installs the firmware toolchain and simavr when they are missing (needs root or sudo).
system-deps:
	@if ! command -v avr-gcc >/dev/null || ! pkg-config --exists simavr 2>/dev/null || \
	    ! command -v avrdude >/dev/null || [ ! -f $(OPTIBOOT_SRC) ] || ! command -v chromium >/dev/null; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  echo "installing $(APT_PACKAGES)"; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(APT_PACKAGES); \
	fi

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# Runtime only: what a scan needs.
$(VENV)/.runtime: $(VENV)/bin/python host/pyproject.toml host/constraints.txt
	$(PIP) install $(PINS) -e host
	touch $@

# Runtime + tests + training tools + the live page's server + Dask for stitching on a cluster (the page's tests drive Debian's
# chromium with Playwright; no browser is downloaded).
$(VENV)/.dev: $(VENV)/.runtime
	$(PIP) install $(PINS) -e 'host[test,train,serve,cluster]'
	touch $@

clean:
	$(MAKE) -C firmware clean
	rm -rf $(VENV) demo
