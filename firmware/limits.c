/*
 * limits.c - hard limits and the homing cycle.
 */
#include <avr/interrupt.h>
#include <math.h>

#include "codes.h"
#include "cpu_map.h"
#include "gcode.h"
#include "limits.h"
#include "planner.h"
#include "protocol.h"
#include "settings.h"
#include "stepper.h"
#include "system.h"

void limits_init(void)
{
	LIMIT_DDR &= ~LIMIT_MASK;
	LIMIT_PORT |= LIMIT_MASK; /* normally open switches to ground: pull-ups */
	if (settings.hard_limits) {
		LIMIT_PCMSK |= LIMIT_MASK;
		PCICR |= (1 << LIMIT_PCIE);
	} else {
		LIMIT_PCMSK &= ~LIMIT_MASK;
		PCICR &= ~(1 << LIMIT_PCIE);
	}
}

uint8_t limits_closed(void)
{
	uint8_t pins = LIMIT_PIN;
	uint8_t closed = 0;
	for (uint8_t a = 0; a < N_AXIS; a++) {
		uint8_t high = (pins >> LIMIT_BIT(a)) & 1;
		uint8_t inverted = (settings.limit_invert >> a) & 1;
		if (high == inverted)
			closed |= (uint8_t)(1 << a);
	}
	return closed;
}

/* Hard limit: a switch closing outside homing stops every motor at once. */
ISR(LIMIT_vect)
{
	uint8_t s = sys_state;
	if (s == STATE_HOMING || s == STATE_ALARM || !settings.hard_limits)
		return;
	if (limits_closed()) {
		st_halt();
		if (!sys_rt_alarm)
			sys_rt_alarm = ALARM_HARD_LIMIT;
	}
}

/* Results of one homing move. */
enum { MOVE_DONE = 0, MOVE_TRIGGERED, MOVE_ABORTED };

/* Moves one axis by delta steps at rate mm/min without backlash compensation. With
 * until >= 0 the step interrupt stops at once when the switch reads closed (1) or
 * open (0) and latches the position in st_home_latch. */
static uint8_t home_move(uint8_t axis, int32_t delta, float rate, int8_t until)
{
	int32_t target[N_AXIS];
	uint8_t result = MOVE_DONE;

	plan_sync_position();
	system_get_position(target);
	target[axis] += delta;
	st_home_triggered = 0;
	if (until >= 0)
		st_home_arm(axis, (uint8_t)until);
	plan_buffer_line(target, rate, BLOCK_HOMING);
	st_prep_buffer();
	while (!st_home_triggered && (st_has_work() || !plan_is_empty())) {
		if (protocol_wait_tick()) {
			result = MOVE_ABORTED;
			break;
		}
	}
	if (result != MOVE_ABORTED && st_home_triggered && until >= 0)
		result = MOVE_TRIGGERED;
	st_home_disarm();
	st_reset();
	plan_reset();
	plan_sync_position();
	return result;
}

static int32_t mm_to_steps(uint8_t axis, float mm)
{
	return (int32_t)lroundf(mm * settings.steps_per_mm[axis]);
}

/* Homes one axis; returns 0 or the alarm code. */
static uint8_t home_axis(uint8_t axis)
{
	uint8_t bit = (uint8_t)(1 << axis);
	int8_t dir = (settings.homing_dir & bit) ? -1 : 1; /* towards the switch */
	float max_rate = settings.max_rate[axis];
	float seek = settings.homing_seek < max_rate ? settings.homing_seek : max_rate;
	float locate = settings.homing_locate < max_rate ? settings.homing_locate : max_rate;
	float search_mm = settings.homing_pulloff * HOMING_LOCATE_PULLOFF_FACTOR;
	if (search_mm < HOMING_LOCATE_MIN_MM)
		search_mm = HOMING_LOCATE_MIN_MM;
	int32_t search = mm_to_steps(axis, search_mm);
	uint8_t r;

	/* 1. Seek the switch. */
	r = home_move(axis, dir * mm_to_steps(axis, HOMING_SEEK_TRAVEL_FACTOR * settings.max_travel[axis]),
		      seek, 1);
	if (r == MOVE_ABORTED)
		return ALARM_HOMING_FAIL_RESET;
	if (r != MOVE_TRIGGERED)
		return ALARM_HOMING_FAIL_APPROACH;

	/* 2. Back off until it opens. */
	if (protocol_delay_ms(settings.homing_debounce))
		return ALARM_HOMING_FAIL_RESET;
	r = home_move(axis, -dir * search, locate, 0);
	if (r == MOVE_ABORTED)
		return ALARM_HOMING_FAIL_RESET;
	if (r != MOVE_TRIGGERED)
		return ALARM_HOMING_FAIL_PULLOFF;

	/* 3. Locate: approach slowly; the step interrupt latches the closing step. */
	if (protocol_delay_ms(settings.homing_debounce))
		return ALARM_HOMING_FAIL_RESET;
	r = home_move(axis, dir * search, locate, 1);
	if (r == MOVE_ABORTED)
		return ALARM_HOMING_FAIL_RESET;
	if (r != MOVE_TRIGGERED)
		return ALARM_HOMING_FAIL_APPROACH;
	int32_t latch = st_home_latch;

	/* 4. Pull off, measured from the latched step. */
	int32_t pulloff = mm_to_steps(axis, settings.homing_pulloff);
	int32_t here[N_AXIS];
	system_get_position(here);
	r = home_move(axis, latch - dir * pulloff - here[axis], seek, -1);
	if (r == MOVE_ABORTED)
		return ALARM_HOMING_FAIL_RESET;

	/* 5. The latched step is machine 0 (homing towards +) or -max_travel. */
	int32_t zero = dir > 0 ? 0 : -mm_to_steps(axis, settings.max_travel[axis]);
	system_get_position(here);
	system_set_axis_position(axis, here[axis] - latch + zero);
	plan_sync_position();
	plan_set_last_dir(axis, (int8_t)-dir);
	if (protocol_delay_ms(settings.homing_debounce))
		return ALARM_HOMING_FAIL_RESET;
	if (limits_closed() & bit)
		return ALARM_HOMING_FAIL_PULLOFF;
	return 0;
}

uint8_t limits_home(uint8_t axes)
{
	static const uint8_t order[N_AXIS] = HOMING_ORDER;
	uint8_t before = sys_state;
	uint8_t alarm = 0;

	sys_state = STATE_HOMING;
	for (uint8_t i = 0; i < N_AXIS && !alarm; i++) {
		uint8_t a = order[i];
		if (!(axes & (1 << a)))
			continue;
		alarm = home_axis(a);
		if (!alarm)
			sys.homed |= (uint8_t)(1 << a);
	}
	gc_sync_position();
	if (sys.abort)
		return CODE_OK; /* the reset reports ALARM:6; the line gets no reply */
	if (alarm) {
		system_alarm(alarm);
		return STATUS_HOMING_FAILED;
	}
	/* Unlocked once every axis has been homed since power-up or the last alarm. */
	sys_state = sys.homed == (1 << N_AXIS) - 1 ? STATE_IDLE : before;
	return CODE_OK;
}
