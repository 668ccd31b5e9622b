/*
 * system.c - shared state, the millisecond tick, driver enable, alarms and the
 * $ commands (protocol.md section 7).
 */
#include <avr/interrupt.h>
#include <avr/io.h>
#include <avr/pgmspace.h>
#include <string.h>

#include "codes.h"
#include "cpu_map.h"
#include "gcode.h"
#include "limits.h"
#include "nuts.h"
#include "planner.h"
#include "report.h"
#include "settings.h"
#include "stepper.h"
#include "system.h"

volatile uint8_t sys_state;
volatile uint8_t sys_rt;
volatile uint8_t sys_rt_alarm;
volatile int32_t sys_position[N_AXIS];
volatile uint32_t sys_ms;
system_t sys;

/* 1 kHz tick: Timer2 in CTC mode, 16 MHz / 64 / 250. */
ISR(TIMER2_COMPA_vect)
{
	sys_ms++;
}

void system_init(void)
{
	TCCR2A = (1 << WGM21);
	TCCR2B = (1 << CS22);
	OCR2A = (uint8_t)(F_CPU / 64 / TICK_HZ - 1);
	TIMSK2 = (1 << OCIE2A);
	memset(&sys, 0, sizeof(sys));
}

void system_get_position(int32_t pos[N_AXIS])
{
	uint8_t sreg = SREG;
	cli();
	for (uint8_t a = 0; a < N_AXIS; a++)
		pos[a] = sys_position[a];
	SREG = sreg;
}

void system_set_axis_position(uint8_t axis, int32_t steps)
{
	uint8_t sreg = SREG;
	cli();
	sys_position[axis] = steps;
	SREG = sreg;
}

void system_drivers(uint8_t on)
{
	if (on && !sys.drivers_on) {
		uint8_t sreg = SREG;
		cli();
		sys.idle_since = sys_ms; /* the idle delay counts from now */
		SREG = sreg;
	}
	sys.drivers_on = on;
	/* Enable is active low unless $4 inverts it. */
	if (on == settings.enable_invert)
		EN_PORT |= (1 << EN_BIT);
	else
		EN_PORT &= ~(1 << EN_BIT);
	EN_DDR |= (1 << EN_BIT); /* an output only once its level is right */
}

void system_apply_pin_settings(void)
{
	uint8_t sreg = SREG;
	cli();
	STEP_PORT = (STEP_PORT & ~STEP_MASK) | (uint8_t)((settings.step_invert << STEP_SHIFT) & STEP_MASK);
	SREG = sreg;
	system_drivers(sys.drivers_on);
	limits_init();
}

void system_alarm(uint8_t code)
{
	st_reset();
	plan_reset();
	plan_sync_position();
	gc_sync_position();
	sys_state = STATE_ALARM;
	sys.homed = 0;
	sys.hold_done = 0;
	report_alarm(code);
}

static uint8_t idle_or_alarm(void)
{
	return sys_state == STATE_IDLE || sys_state == STATE_ALARM;
}

/* $N=V */
static uint8_t set_setting(const char *s)
{
	uint16_t num = 0;
	uint8_t i = 0;
	while (s[i] >= '0' && s[i] <= '9') {
		num = (uint16_t)(num * 10 + (uint8_t)(s[i] - '0'));
		if (num > 999)
			return STATUS_INVALID_STATEMENT;
		i++;
	}
	if (s[i] != '=')
		return STATUS_INVALID_STATEMENT;
	if (!idle_or_alarm())
		return STATUS_NOT_IDLE;
	i++;
	decnum_t v;
	uint8_t status = read_number(s, &i, &v);
	if (status != CODE_OK)
		return status;
	if (s[i])
		return STATUS_BAD_NUMBER_FORMAT;
	status = settings_set(num, &v);
	if (status == CODE_OK) {
		system_apply_pin_settings();
		gc_sync_position(); /* steps per mm may have changed */
	}
	return status;
}

uint8_t system_execute_line(char *line)
{
	const char *c = line + 1;

	if (!*c) {
		report_help();
		return CODE_OK;
	}
	if (c[0] == 'J' && c[1] == '=') {
		if (sys_state != STATE_IDLE && sys_state != STATE_JOG)
			return STATUS_NOT_IDLE;
		return gc_execute_jog(line + 3);
	}
	if (!strcmp_P(c, PSTR("I"))) {
		report_build_info();
		return CODE_OK;
	}
	if (!strcmp_P(c, PSTR("G"))) {
		report_gcode_modes();
		return CODE_OK;
	}
	if (!strcmp_P(c, PSTR("#"))) {
		report_offsets();
		return CODE_OK;
	}
	if (c[0] >= '0' && c[0] <= '9')
		return set_setting(c);

	uint8_t home = 0;
	if (!strcmp_P(c, PSTR("H")))
		home = 7;
	else if (c[0] == 'H' && c[1] >= 'X' && c[1] <= 'Z' && !c[2])
		home = (uint8_t)(1 << (c[1] - 'X'));
	uint8_t known = home || !strcmp_P(c, PSTR("$")) || !strcmp_P(c, PSTR("X")) ||
			!strcmp_P(c, PSTR("RST=$"));
	if (!known)
		return STATUS_INVALID_STATEMENT;
	if (!idle_or_alarm())
		return STATUS_NOT_IDLE;

	if (home) {
		if (!settings.homing_enable)
			return STATUS_HOMING_DISABLED;
		return limits_home(home);
	}
	switch (c[0]) {
	case '$':
		settings_report();
		break;
	case 'X':
		if (sys_state == STATE_ALARM) {
			report_msg("Caution: Unlocked");
			sys_state = STATE_IDLE;
		}
		break;
	default: /* RST=$ */
		settings_restore_defaults();
		report_msg("Restoring defaults");
		system_apply_pin_settings();
		gc_sync_position();
		break;
	}
	return CODE_OK;
}
