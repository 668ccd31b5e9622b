/*
 * protocol.c - realtime bytes, line assembly, the main loop and its waits.
 */
#include <avr/interrupt.h>
#include <avr/sleep.h>
#include <avr/wdt.h>

#include "codes.h"
#include "config.h"
#include "gcode.h"
#include "planner.h"
#include "protocol.h"
#include "report.h"
#include "serial.h"
#include "settings.h"
#include "stepper.h"
#include "system.h"

/* Line being received: significant characters only (no spaces, no comments). */
static char line[LINE_MAX + 1];
static uint8_t line_len;
static uint8_t raw_len;   /* bytes received for this line, saturating at LINE_MAX + 1 */
static uint8_t line_flags;

#define LF_OVERFLOW (1 << 0)
#define LF_BAD      (1 << 1)
#define LF_PAREN    (1 << 2)
#define LF_SEMI     (1 << 3)
#define LF_CR       (1 << 4) /* last terminator was CR: a following LF is ignored */

static uint8_t jog_cancelling;

/* Soft reset from the receive interrupt: stop at once, drop unanswered bytes. */
static void reset_isr(void)
{
	if (sys_state == STATE_HOMING)
		sys_rt_alarm = ALARM_HOMING_FAIL_RESET;
	else if (st_busy() && !sys_rt_alarm)
		sys_rt_alarm = ALARM_ABORT_CYCLE;
	st_halt();
	serial_rx_flush_isr();
	sys_rt |= RT_RESET;
}

uint8_t protocol_realtime_byte(uint8_t b)
{
	switch (b) {
	case '?': sys_rt |= RT_STATUS; return 1;
	case '!': sys_rt |= RT_HOLD; return 1;
	case '~': sys_rt |= RT_RESUME; return 1;
	case 0x18: reset_isr(); return 1;
	case 0x85: sys_rt |= RT_JOG_CANCEL; return 1;
	case 0x84: case 0x87: case 0xA0: case 0xA1: return 1; /* GRBL extras: ignored */
	default: return b >= 0x90 && b <= 0x9E; /* GRBL overrides: ignored */
	}
}

void protocol_reset_line(void)
{
	line_len = 0;
	raw_len = 0;
	line_flags = 0;
	jog_cancelling = 0;
}

uint8_t protocol_jog_cancelling(void)
{
	return jog_cancelling;
}

static void start_jog_cancel(void)
{
	jog_cancelling = 1;
	st_hold(1);
}

void protocol_poll(void)
{
	wdt_reset();
	uint8_t rt;
	cli();
	rt = sys_rt;
	sys_rt = 0;
	sei();

	if (rt & RT_STATUS)
		report_realtime_status();
	if (rt & RT_RESET)
		sys.abort = 1;
	if (sys.abort)
		return; /* the main loop re-initialises and reports */

	if (sys_rt_alarm) {
		uint8_t alarm;
		cli();
		alarm = sys_rt_alarm;
		sys_rt_alarm = 0;
		sei();
		jog_cancelling = 0;
		system_alarm(alarm);
	}
	if (rt & RT_HOLD) {
		if (sys_state == STATE_RUN) {
			sys_state = STATE_HOLD;
			sys.hold_done = 0;
			st_hold(1);
		} else if (sys_state == STATE_JOG) {
			start_jog_cancel();
		}
	}
	if ((rt & RT_RESUME) && sys_state == STATE_HOLD) {
		st_hold(0);
		sys.hold_done = 0;
		sys_state = STATE_RUN;
	}
	if ((rt & RT_JOG_CANCEL) && sys_state == STATE_JOG)
		start_jog_cancel();

	st_prep_buffer();

	uint8_t moving = st_has_work() || !plan_is_empty();
	switch (sys_state) {
	case STATE_RUN:
		if (!moving)
			sys_state = STATE_IDLE;
		break;
	case STATE_HOLD:
		if (st_hold_complete())
			sys.hold_done = 1;
		break;
	case STATE_JOG:
		if (jog_cancelling && (st_hold_complete() || !moving)) {
			/* Stopped: every queued jog is discarded. */
			st_reset();
			plan_reset();
			plan_sync_position();
			gc_sync_position();
			jog_cancelling = 0;
			sys_state = STATE_IDLE;
		} else if (!moving) {
			sys_state = STATE_IDLE;
		}
		break;
	default:
		break;
	}

	/* Drivers are released after $150 s of idleness (0: never). */
	uint32_t now;
	cli();
	now = sys_ms;
	sei();
	uint8_t s = sys_state;
	if (moving || sys.busy_wait || (s != STATE_IDLE && s != STATE_ALARM)) {
		sys.idle_since = now;
	} else if (sys.drivers_on && settings.idle_release &&
		   now - sys.idle_since >= (uint32_t)settings.idle_release * 1000UL) {
		system_drivers(0);
	}
}

/* Sleeps until the next interrupt unless something is waiting to be done. The
 * instruction after sei() runs before any interrupt, so no wake-up is missed. */
static void sleep_if_idle(void)
{
	cli();
	if (!sys_rt && !sys_rt_alarm && !serial_rx_count()) {
		set_sleep_mode(SLEEP_MODE_IDLE);
		sleep_enable();
		sei();
		sleep_cpu();
		sleep_disable();
	} else {
		sei();
	}
}

uint8_t protocol_wait_tick(void)
{
	protocol_poll();
	if (sys.abort || sys_state == STATE_ALARM)
		return 1;
	sleep_if_idle();
	return 0;
}

uint8_t protocol_wait_motion_done(void)
{
	for (;;) {
		protocol_poll();
		if (sys.abort || sys_state == STATE_ALARM)
			return 1;
		if (!st_has_work() && plan_is_empty())
			return 0;
		sleep_if_idle();
	}
}

uint8_t protocol_delay_ms(uint32_t ms)
{
	uint32_t start, now;
	cli();
	start = sys_ms;
	sei();
	for (;;) {
		cli();
		now = sys_ms;
		sei();
		if (now - start >= ms)
			return 0;
		if (protocol_wait_tick())
			return 1;
	}
}

static uint8_t execute_line(void)
{
	if (line_flags & LF_OVERFLOW)
		return STATUS_LINE_OVERFLOW;
	if (line_flags & LF_BAD)
		return STATUS_INVALID_CHARACTER;
	line[line_len] = 0;
	if (!line_len)
		return CODE_OK;
	if (line[0] == '$')
		return system_execute_line(line);
	return gc_execute_line(line);
}

/* Takes one received byte; returns non-zero when it completed a line. */
static uint8_t take_byte(uint8_t c)
{
	uint8_t after_cr = line_flags & LF_CR;
	line_flags &= ~LF_CR;
	if (c == '\n' && after_cr)
		return 0;
	if (c == '\n' || c == '\r') {
		uint8_t status = execute_line();
		if (!sys.abort)
			report_status(status);
		line_len = 0;
		raw_len = 0;
		line_flags = (c == '\r') ? LF_CR : 0;
		return 1;
	}
	if (raw_len <= LINE_MAX)
		raw_len++;
	if (raw_len > LINE_MAX)
		line_flags |= LF_OVERFLOW;
	if (line_flags & LF_OVERFLOW)
		return 0;
	if ((c < 0x20 && c != '\t') || c > 0x7E) {
		line_flags |= LF_BAD;
		return 0;
	}
	if (line_flags & LF_PAREN) {
		if (c == ')')
			line_flags &= ~LF_PAREN;
		return 0;
	}
	if (line_flags & LF_SEMI)
		return 0;
	if (c == '(') {
		line_flags |= LF_PAREN;
		return 0;
	}
	if (c == ';') {
		line_flags |= LF_SEMI;
		return 0;
	}
	if (c == ' ' || c == '\t')
		return 0;
	if (c >= 'a' && c <= 'z')
		c = (uint8_t)(c - 'a' + 'A');
	line[line_len++] = (char)c;
	return 0;
}

void protocol_main_loop(void)
{
	for (;;) {
		protocol_poll();
		if (sys.abort)
			return;
		int16_t c;
		uint8_t got = 0;
		while ((c = serial_read()) >= 0) {
			got = 1;
			if (take_byte((uint8_t)c))
				break; /* one line at a time, then poll again */
		}
		if (sys.abort)
			return;
		if (!got)
			sleep_if_idle();
	}
}
