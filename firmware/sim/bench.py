#!/usr/bin/env python3
"""Firmware benchmarks in simavr: step-rate limit, status round trip, flash and RAM.

    make -C firmware all sim bench
    .venv/bin/python firmware/sim/bench.py

Prints figures; asserts nothing. Method:

* Step rate: the bench build (build/deepaf-bench.elf) is the same firmware with the
  30 kHz setting limit lifted. For each commanded rate a long move runs at that rate
  (one axis, then all three in one straight line); the rising STEP edges deepaf-sim
  counts during the cruise, divided by the simulated time, give the rate the motors
  really get. While the step interrupt and the segment preparation keep up, that is
  the commanded rate; above the limit it falls short. "Sustained" = within 0.5 %.
* Status round trip: '?' to the end of the status report, in simulated time (from the
  byte entering the AVR's UART to the report's last byte leaving it: deepaf-sim's
  ``uart`` command) and in wall-clock time through the pty, idle and at 20 kHz.
* Flash and RAM: avr-size of build/deepaf.elf.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import serial

BUILD = Path(__file__).resolve().parents[1] / "build"
F_CPU = 16_000_000
PULSE_US = 4  # the default $0


class Sim:
    def __init__(self, elf: Path, speed: str = "fast") -> None:
        self.proc = subprocess.Popen(
            [str(BUILD / "deepaf-sim"), "--speed", speed, str(elf)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        assert self.proc.stdout is not None
        self.pty = self.proc.stdout.readline().split()[1]
        self.port = serial.Serial(self.pty, 115200, timeout=5)
        self._buf = b""
        line = b""
        while not line.startswith(b"Grbl "):
            line = self.port.read_until(b"\n")
            if not line:
                raise TimeoutError("no banner")
        self.send("")

    def cmd(self, line: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def pos(self) -> tuple[int, int, int, int]:
        x, y, z, c = (int(v) for v in self.cmd("pos").split()[1:])
        return x, y, z, c

    def readline(self) -> str:
        # Read what is there, not byte by byte: pyserial's read_until() costs ~0.1 ms
        # a byte, which would swamp the round trip being measured.
        while b"\n" not in self._buf:
            chunk = self.port.read(max(1, self.port.in_waiting))
            if not chunk:
                raise TimeoutError("no reply")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode().strip()

    def send(self, line: str) -> list[str]:
        self.port.write(line.encode() + b"\n")
        out = []
        while True:
            out.append(self.readline())
            if out[-1] == "ok" or out[-1].startswith("error"):
                return out

    def ok(self, line: str) -> None:
        reply = self.send(line)
        if reply[-1] != "ok":
            raise RuntimeError(f"{line} -> {reply}")

    def status(self) -> str:
        self.port.write(b"?")
        while True:
            line = self.readline()
            if line.startswith("<"):
                return line

    def close(self) -> None:
        self.port.close()
        self.cmd("quit")
        self.proc.wait()
        for s in (self.proc.stdin, self.proc.stdout):
            if s:
                s.close()


def measured_rate(sim: Sim, rate: float, axes: str) -> float:
    """Steps per simulated second the dominant axis really gets at a commanded rate."""
    spm = 100.0
    axis_feed = rate * 60.0 / spm  # mm/min of each axis
    feed = axis_feed * len(axes) ** 0.5  # along the diagonal
    sim.send("\x18")
    for n in ("0", "1", "2"):
        sim.ok(f"$10{n}={spm}")
        sim.ok(f"$11{n}={axis_feed * 1.01:.4f}")
        sim.ok(f"$12{n}=100000")
    sim.ok(f"$0={PULSE_US}")
    sim.ok("$20=0")
    sim.ok("$X")
    sim.ok("G92 X0 Y0 Z0")
    dist = rate * 0.6 / spm  # 0.6 s of motion
    words = " ".join(f"{a}-{dist:.4f}" for a in axes)
    p0 = sim.pos()
    sim.ok(f"G91 G1 {words} F{feed:.4f}")
    # Sample the cruise: skip the acceleration, stay clear of the end.
    while sim.pos()[3] - p0[3] < 0.1 * F_CPU:
        time.sleep(0.001)
    a = sim.pos()
    while sim.pos()[3] - a[3] < 0.3 * F_CPU:
        time.sleep(0.001)
    b = sim.pos()
    sim.send("\x18")
    axis = "XYZ".index(axes[0])
    return abs(b[axis] - a[axis]) / ((b[3] - a[3]) / F_CPU)


def bench_step_rate() -> None:
    elf = BUILD / "deepaf-bench.elf"
    print(f"Step rate (bench build, $0={PULSE_US} us pulses; measured over 0.3 s of cruise)")
    for axes in ("X", "Y", "Z", "XYZ"):
        sim = Sim(elf)
        sustained = 0
        row = []
        for khz in (10, 20, 25, 30, 35, 40, 42.5, 45, 47.5, 50, 55, 60):
            got = measured_rate(sim, khz * 1000.0, axes)
            row.append(f"{khz:g}k->{got / 1000:.1f}k")
            if abs(got - khz * 1000) > khz * 1000 * 0.005:
                break
            sustained = khz
        sim.close()
        print(f"  {axes:4s} max sustained {sustained:g} kHz   ({', '.join(row)})")


def isr_overhead_cycles() -> int:
    """Cycles of the step interrupt outside its body: response and jump (7),
    register saves and restores (2 per push/pop, from the disassembly), reti (4)."""
    dis = subprocess.run(["avr-objdump", "-d", str(BUILD / "deepaf-bench.elf")], capture_output=True, text=True).stdout
    body = dis.split("<__vector_11>:", 1)[1].split("reti", 1)[0]
    pushes = len(re.findall(r"\tpush\t", body)) + len(re.findall(r"\tpop\t", body))
    return 7 + 2 * pushes + 4


def bench_isr() -> None:
    """Step interrupt length: the bench build holds PB5 high during the body."""
    overhead = isr_overhead_cycles()
    print(f"Step interrupt (bench build, $0=4 us; body timed on a pin + {overhead} cycles entry/exit)")
    for axes in ("X", "XYZ"):
        sim = Sim(BUILD / "deepaf-bench.elf")
        sim.cmd("isr reset")
        measured_rate(sim, 30000.0, axes)
        count, mean, peak = sim.cmd("isr").split()[1:]
        sim.close()
        total = float(mean) + overhead
        print(
            f"  {axes:4s} at 30 kHz: mean {total:.0f} cycles ({total / 16:.1f} us), longest {int(peak) + overhead}"
            f" cycles; {total * 30000 / F_CPU:.0%} of the CPU at 30 kHz"
        )


def round_trips(sim: Sim, n: int = 50) -> tuple[list[float], list[float]]:
    sim_ms, wall_ms = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        sim.status()
        wall_ms.append((time.perf_counter() - t0) * 1000)
        cin, cout = (int(v) for v in sim.cmd("uart").split()[1:])
        sim_ms.append((cout - cin) / F_CPU * 1000)
        time.sleep(0.002)
    return sim_ms, wall_ms


def bench_round_trip() -> None:
    print("Status query round trip ('?' -> end of the report), median of 50")
    for speed in ("fast", "realtime"):
        sim = Sim(BUILD / "deepaf.elf", speed)
        sim.ok("$X")
        idle = round_trips(sim)
        sim.ok("$110=1500")
        sim.ok("$120=1000")
        sim.ok("G1 X-59 F1500")  # 20 kHz
        moving = round_trips(sim)
        sim.close()
        for what, (s, w) in (("idle", idle), ("stepping at 20 kHz", moving)):
            print(
                f"  --speed {speed:8s} {what:18s} simulated {statistics.median(s):.2f} ms, "
                f"wall clock {statistics.median(w):.2f} ms"
            )


def bench_sim_speed() -> None:
    sim = Sim(BUILD / "deepaf.elf")
    a = sim.pos()
    t = time.perf_counter()
    time.sleep(0.5)
    b = sim.pos()
    idle = (b[3] - a[3]) / F_CPU / (time.perf_counter() - t)
    sim.ok("$X")
    sim.ok("$110=1500")
    sim.ok("$120=1000")
    t = time.perf_counter()
    a = sim.pos()
    sim.ok("G1 X-59 F1500")
    sim.ok("G4 P0")
    b = sim.pos()
    moving = (b[3] - a[3]) / F_CPU / (time.perf_counter() - t)
    sim.close()
    print(f"Simulation speed (--speed fast): idle {idle:.0f}x real time, stepping at 20 kHz {moving:.1f}x")


def bench_stack() -> None:
    """Deepest stack after a demanding session in one power cycle (the firmware
    paints its free RAM at boot; deepaf-sim's `stack` reads it back)."""
    sim = Sim(BUILD / "deepaf.elf")
    for n, v in ((24, 200), (25, 600), (26, 5), (27, 0.5), (110, 2000), (120, 1000), (140, 0.01)):
        sim.ok(f"${n}={v}")
    x, y, z, _ = sim.pos()
    for axis, at in (("x", x + 800), ("y", y + 800), ("z", z + 4000)):
        sim.cmd(f"limit {axis} {at} +")
    sim.ok("$H")
    for i in range(200):
        sim.ok(f"G1 X-{1 + i % 7}.{i:02d} Y-{i % 5}.5 Z-0.{i % 9}1 F{600 + 20 * i}")
        if i % 2:
            sim.status()
    sim.ok("G4 P0")
    for line in ("$$", "$#", "$G", "$I", "G0 X1.2.3", "$J=G91 X-1 F100"):
        sim.send(line)
    deepest, free = (int(v) for v in sim.cmd("stack").split()[1:])
    sim.close()
    print(f"Stack: deepest {deepest} bytes after homing, 200 moves with status reports, $$; {free} bytes never touched")


def bench_size() -> None:
    out = subprocess.run(["avr-size", "-A", str(BUILD / "deepaf.elf")], capture_output=True, text=True, check=True)
    sizes = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\.\w+)\s+(\d+)", out.stdout, re.M)}
    flash = sizes.get(".text", 0) + sizes.get(".data", 0)
    ram = sizes.get(".data", 0) + sizes.get(".bss", 0)
    print(f"Flash {flash} bytes of 32768 ({flash / 32768:.0%}); static RAM {ram} bytes of 2048 ({ram / 2048:.0%})")


def main() -> int:
    for f in ("deepaf.elf", "deepaf-bench.elf", "deepaf-sim"):
        if not (BUILD / f).exists():
            print(f"missing build/{f}: run make -C firmware all sim bench", file=sys.stderr)
            return 1
    bench_size()
    bench_stack()
    bench_sim_speed()
    bench_round_trip()
    bench_isr()
    bench_step_rate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
