"""Backlash-free approach: the legs of a move so that it ends moving towards -.

A lead screw or a focus knob has lost motion: the position a move ends at depends on
the direction it came from. If every move of an axis ends moving the same way, the
lost motion is always taken up the same way and the stage lands where it was sent.
Here that way is towards - (down in Z: the overshoot goes up, away from the specimen,
never below the target). A pure function, so the rule is easy to test.
"""

from __future__ import annotations

Vec3 = tuple[float, float, float]


def plan_legs(
    start_um: Vec3,
    target_um: Vec3,
    overshoot_um: Vec3,
    upper_um: Vec3,
    settled: tuple[bool, bool, bool] = (True, True, True),
) -> list[Vec3]:
    """The positions to go through, the last one being ``target_um``.

    An axis with ``overshoot_um > 0`` whose move would end going up (target above the
    start), or that is not ``settled`` (its last move is not known to have ended going
    down) and moves down by less than the overshoot, first goes to ``target +
    overshoot`` (at most ``upper_um``), together with the other axes, and then down
    to the target alone."""
    first = list(target_um)
    needed = False
    for i in range(3):
        if overshoot_um[i] <= 0.0 or target_um[i] == start_um[i]:
            continue
        rises = target_um[i] > start_um[i]
        short_descent = not settled[i] and start_um[i] - target_um[i] < overshoot_um[i]
        if rises or short_descent:
            above = min(target_um[i] + overshoot_um[i], upper_um[i])
            if above > target_um[i]:
                first[i] = above
                needed = True
    if not needed:
        return [target_um]
    return [(first[0], first[1], first[2]), target_um]
