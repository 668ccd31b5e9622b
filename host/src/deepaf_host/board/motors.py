"""The motors of the virtual board: planner queue, block execution, switches.

The state is exact: motor step counters (every step counted, backlash steps
included), the offset between motor steps and the reported position (the backlash
steps), and the mechanical stage behind the motors (which lags a motor by its
mechanical play when the motor reverses). Time is passed in by the caller: the
motors answer "where at time t" and "when is the next thing to happen", so the same
code runs under a real-time and an event-driven clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .motion import Block, Profile, junction_speed, plan_entries, vec3

Vec = tuple[int, int, int]


def _sign(n: float) -> int:
    return (n > 0) - (n < 0)


@dataclass
class _Exec:
    block: Block
    t0: float  # time the current profile starts
    s0: float  # distance along the block at t0
    profile: Profile
    start_motor: Vec
    start_stage: Vec
    start_offset: Vec
    #: (time, "stop" | "limit", axis, distance along the block of the switch's step)
    trigger: tuple[float, str, int, float] | None = None


@dataclass
class Event:
    """What happened at a motion event: ``end`` (block done), ``held`` (a hold
    completed inside a block), ``stop`` (a homing block's switch condition, the block
    is ended there) or ``limit`` (a switch closed: the machine raises a hard limit)."""

    kind: str
    axis: int = -1


class Motors:
    def __init__(self, play_steps: Vec = (0, 0, 0)) -> None:
        self.motor: list[int] = [0, 0, 0]
        self.offset: list[int] = [0, 0, 0]
        self.stage: list[int] = [0, 0, 0]
        self.play = list(play_steps)
        #: Per axis (step, side): the switch reads closed at or beyond ``step``
        #: towards ``side``.
        self.switches: list[tuple[int, str]] = [(10**9, "+")] * 3
        self.invert_mask = 0
        self.hard_limits = False
        self.deviation_mm = 0.01
        self.queue: deque[Block] = deque()
        self.exec: _Exec | None = None
        self.paused = False
        self.holding = False
        self.carry = 0.0
        self.planned: list[int] = [0, 0, 0]
        #: Last direction queued per axis (-1, +1, 0 unknown): decides backlash take-up.
        self.planned_dir: list[int] = [0, 0, 0]
        self.last_event: Event | None = None
        #: Moves completed per axis (blocks that stepped it): the virtual board draws a
        #: new repeatability error for an axis each time this count changes.
        self.moves: list[int] = [0, 0, 0]

    # --- where things are --------------------------------------------------------

    def _distance(self, t: float) -> float:
        assert self.exec is not None
        return self.exec.s0 + self.exec.profile.distance(t - self.exec.t0)

    def live(self, t: float) -> tuple[Vec, Vec, Vec]:
        """(motor steps, mechanical stage steps, offset) at time ``t``."""
        if self.exec is None:
            return vec3(self.motor), vec3(self.stage), vec3(self.offset)
        ex = self.exec
        steps = ex.block.steps_at(self._distance(t))
        motor = vec3(m + n for m, n in zip(ex.start_motor, steps))
        stage = vec3(self._drag(ex.start_stage[i], motor[i], _sign(ex.block.steps[i]), self.play[i]) for i in range(3))
        offset = ex.start_offset if ex.block.reported else vec3(o + n for o, n in zip(ex.start_offset, steps))
        return motor, stage, offset

    @staticmethod
    def _drag(stage: int, motor: int, direction: int, play: int) -> int:
        """The mechanical stage follows the motor with ``play`` steps of lost motion:
        motor - stage stays within [0, play]."""
        if direction > 0:
            return max(stage, motor - play)
        if direction < 0:
            return min(stage, motor)
        return stage

    def position(self, t: float) -> Vec:
        motor, _, offset = self.live(t)
        return vec3(m - o for m, o in zip(motor, offset))

    def speed(self, t: float) -> float:
        """Speed along the path in mm/s."""
        if self.exec is None or self.paused:
            return 0.0
        return self.exec.profile.speed(t - self.exec.t0)

    @property
    def busy(self) -> bool:
        return self.exec is not None or bool(self.queue)

    @property
    def stopped_in_hold(self) -> bool:
        return self.holding and (self.paused or self.exec is None)

    def free_blocks(self, capacity: int) -> int:
        """Free planner slots (every block counts, backlash take-ups included)."""
        return capacity - len(self.queue) - (self.exec is not None)

    def running_kind(self) -> str | None:
        if self.exec is not None:
            return self.exec.block.kind
        return self.queue[0].kind if self.queue else None

    # --- switches ------------------------------------------------------------------

    def closed(self, axis: int, motor: int) -> bool:
        step, side = self.switches[axis]
        physical = motor >= step if side == "+" else motor <= step
        return physical != bool(self.invert_mask >> axis & 1)

    def closed_axes(self, t: float) -> list[int]:
        motor, _, _ = self.live(t)
        return [i for i in range(3) if self.closed(i, motor[i])]

    def _flip(self, axis: int, motor: int, direction: int) -> int | None:
        """Steps in ``direction`` after which the switch's physical state changes."""
        step, side = self.switches[axis]
        if side == "+":
            if direction > 0 and motor < step:
                return step - motor
            if direction < 0 and motor >= step:
                return motor - step + 1
        else:
            if direction < 0 and motor > step:
                return motor - step
            if direction > 0 and motor <= step:
                return step - motor + 1
        return None

    def _compute_trigger(self, t: float) -> None:
        ex = self.exec
        if ex is None:
            return
        ex.trigger = None
        if self.paused:
            return
        s_now = self._distance(t)
        taken = ex.block.steps_at(s_now)
        best: tuple[float, str, int, float] | None = None
        for axis in range(3):
            n = ex.block.steps[axis]
            if n == 0:
                continue
            motor = ex.start_motor[axis] + taken[axis]
            is_closed = self.closed(axis, motor)
            k: int | None = None
            kind = ""
            if ex.block.stop_on is not None and ex.block.stop_on[1] == axis:
                want_closed = ex.block.stop_on[0] == "close"
                kind = "stop"
                if is_closed == want_closed:
                    k = 1  # the step interrupt looks at the switch after each step
                else:
                    k = self._flip(axis, motor, _sign(n))
            elif self.hard_limits and ex.block.kind != "homing" and not is_closed:
                flip = self._flip(axis, motor, _sign(n))
                # A flip closes the switch only when it was open.
                k, kind = flip, "limit"
            if k is None or abs(taken[axis]) + k > abs(n):
                continue
            s = ex.block.distance_for_steps(axis, abs(taken[axis]) + k) if k else s_now
            dt = ex.profile.time_at(s - ex.s0)
            if dt is None:
                continue
            when = max(t, ex.t0 + dt)
            if best is None or when < best[0]:
                best = (when, kind, axis, s)
        ex.trigger = best

    def switches_changed(self, t: float) -> None:
        self._compute_trigger(t)

    # --- planning ------------------------------------------------------------------

    def queue_block(self, block: Block, t: float | None = None) -> None:
        """Queue ``block``; the look-ahead re-plans the queue, and the block running
        at time ``t`` may now leave faster (towards the new block)."""
        last = self.queue[-1] if self.queue else (self.exec.block if self.exec is not None else None)
        block.max_entry = 0.0
        if last is not None and "homing" not in (last.kind, block.kind):
            block.max_entry = junction_speed(last, block, self.deviation_mm)
        self.queue.append(block)
        plan_entries(list(self.queue))
        if t is not None:
            self._replan(t)
        for i in range(3):
            if block.steps[i]:
                if block.kind != "homing":
                    self.planned_dir[i] = _sign(block.steps[i])
                if block.reported:
                    self.planned[i] += block.steps[i]

    # --- execution -----------------------------------------------------------------

    def next_event(self) -> float | None:
        ex = self.exec
        if ex is None or self.paused:
            return None
        end = ex.t0 + ex.profile.duration
        if ex.trigger is not None and ex.trigger[0] <= end:
            return ex.trigger[0]
        return end

    def start_next(self, t: float) -> None:
        """Start the next queued block if nothing runs (and no hold stops us)."""
        if self.exec is not None or not self.queue:
            return
        if self.holding and self.carry <= 0.0:
            return
        block = self.queue.popleft()
        entry = self.carry
        if self.holding:
            profile = Profile.stop(entry, block.accel, block.length)
        else:
            profile = Profile.trapezoid(block.length, entry, block.v_nominal, self._exit_speed(), block.accel)
        self.exec = _Exec(
            block, t, 0.0, profile, vec3(self.motor), vec3(self.stage), vec3(self.offset)
        )
        self.carry = 0.0
        self._compute_trigger(t)

    def _exit_speed(self) -> float:
        """The speed the running block may leave at: the planned entry of the next."""
        return self.queue[0].entry if self.queue else 0.0

    def _replan(self, t: float) -> None:
        """Re-plan the rest of the running block from where it is now (the firmware's
        segment preparation always brakes towards the latest planned exit speed)."""
        ex = self.exec
        if ex is None or self.holding or self.paused:
            return
        s = self._distance(t)
        v = ex.profile.speed(t - ex.t0)
        rest = ex.block.length - s
        if rest <= 1e-12:
            return
        ex.t0, ex.s0 = t, s
        ex.profile = Profile.trapezoid(rest, v, ex.block.v_nominal, self._exit_speed(), ex.block.accel)
        self._compute_trigger(t)

    def on_event(self, t: float) -> Event:
        """Handle the event due at ``t`` (``next_event()``)."""
        ex = self.exec
        assert ex is not None
        if ex.trigger is not None and ex.trigger[0] <= t + 1e-12:
            _, kind, axis, s = ex.trigger
            self._commit(s)
            self.carry = 0.0
            self.last_event = Event(kind, axis)
            return self.last_event
        s_end = ex.s0 + ex.profile.end_distance
        if s_end < ex.block.length - 1e-9:
            # A hold ran out of speed inside the block: keep the rest for the resume.
            ex.s0, ex.t0, ex.profile = s_end, t, Profile([], 0.0)
            self.paused = True
            ex.trigger = None
            self.last_event = Event("held")
            return self.last_event
        self.carry = ex.profile.end_speed
        self._commit(ex.block.length)
        self.last_event = Event("end")
        return self.last_event

    def _commit(self, s: float) -> None:
        ex = self.exec
        assert ex is not None
        steps = ex.block.steps_at(s)
        for i in range(3):
            self.motor[i] = ex.start_motor[i] + steps[i]
            direction = _sign(ex.block.steps[i])
            self.stage[i] = self._drag(ex.start_stage[i], self.motor[i], direction, self.play[i])
            self.offset[i] = ex.start_offset[i] + (0 if ex.block.reported else steps[i])
            if steps[i]:
                self.moves[i] += 1
        self.exec = None
        self.paused = False

    def hold(self, t: float) -> None:
        """Decelerate to a stop along the path (feed hold / jog cancel)."""
        self.holding = True
        ex = self.exec
        if ex is None or self.paused:
            self.carry = 0.0
            return
        s = self._distance(t)
        v = ex.profile.speed(t - ex.t0)
        ex.t0, ex.s0 = t, s
        ex.profile = Profile.stop(v, ex.block.accel, ex.block.length - s) if v > 0 else Profile([], 0.0)
        self._compute_trigger(t)

    def resume(self, t: float) -> None:
        self.holding = False
        ex = self.exec
        if ex is not None and self.paused:
            self.paused = False
            rest = ex.block.length - ex.s0
            ex.t0 = t
            ex.profile = Profile.trapezoid(rest, 0.0, ex.block.v_nominal, self._exit_speed(), ex.block.accel)
            self._compute_trigger(t)
        self.start_next(t)

    def stop_now(self, t: float, keep_dirs: bool = True) -> bool:
        """Stop every motor at once and forget all queued motion. Returns whether a
        motor was moving."""
        moving = self.exec is not None and not self.paused
        if self.exec is not None:
            self._commit(self._distance(t))
        self.flush(keep_dirs)
        return moving

    def flush(self, keep_dirs: bool = True) -> None:
        """Forget queued motion (the motors are at rest). The last directions are kept
        unless ``keep_dirs`` is False (after a reset they are unknown)."""
        if self.exec is not None:
            self._commit(self.exec.s0)
        self.queue.clear()
        self.carry = 0.0
        self.holding = self.paused = False
        for i in range(3):
            self.planned[i] = self.motor[i] - self.offset[i]
            if not keep_dirs:
                self.planned_dir[i] = 0

    def set_position(self, axis: int, position: int) -> None:
        """Declare the current motor step of ``axis`` to be reported as ``position``."""
        self.offset[axis] = self.motor[axis] - position
        self.planned[axis] = position
