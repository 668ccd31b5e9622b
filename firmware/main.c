/*
 * main.c - DeepAf stage firmware for the Arduino Uno + CNC Shield V3.
 *
 * Power-up initialisation, then the main loop; a soft reset (0x18) returns from the
 * loop, re-initialises what a reset clears and prints the banner again.
 */
#include <avr/interrupt.h>
#include <avr/io.h>
#include <avr/wdt.h>

#include "codes.h"
#include "config.h"
#include "gcode.h"
#include "limits.h"
#include "planner.h"
#include "protocol.h"
#include "report.h"
#include "serial.h"
#include "settings.h"
#include "stepper.h"
#include "system.h"

/* A watchdog reset leaves the watchdog running at its shortest period: switch it
 * off before anything else, or the board would reset again during start-up. */
void early_wdt_off(void) __attribute__((naked, used, section(".init3")));
void early_wdt_off(void)
{
	MCUSR = 0;
	wdt_disable();
}

/* Fills the RAM between the static data and the stack with a canary byte, so the
 * deepest stack ever used can be read out (deepaf-sim's `stack` command). Runs
 * before anything uses the stack; the free RAM is not touched afterwards. */
void paint_stack(void) __attribute__((naked, used, section(".init1")));
void paint_stack(void)
{
	__asm__ volatile("	ldi r30, lo8(_end)\n"
			 "	ldi r31, hi8(_end)\n"
			 "	ldi r24, 0xC5\n"
			 "	ldi r25, hi8(__stack)\n"
			 "	rjmp 2f\n"
			 "1:	st Z+, r24\n"
			 "2:	cpi r30, lo8(__stack)\n"
			 "	cpc r31, r25\n"
			 "	brlo 1b\n"
			 "	breq 1b\n");
}

static void report_boot_messages(uint8_t eeprom)
{
	report_banner();
	switch (eeprom) {
	case SETTINGS_BLANK: report_msg("EEPROM blank, defaults loaded"); break;
	case SETTINGS_OLD_VERSION: report_msg("EEPROM version changed, defaults loaded"); break;
	case SETTINGS_BAD_CHECKSUM: report_msg("EEPROM checksum error, defaults loaded"); break;
	default: break;
	}
	if (sys_state == STATE_ALARM)
		report_msg("'$H'|'$X' to unlock");
}

int main(void)
{
	serial_init();
	system_init();
	uint8_t eeprom = settings_init();
	system_drivers(0);
	st_init();
	system_apply_pin_settings();
	plan_reset();
	plan_sync_position();
	gc_init();
	protocol_reset_line();
	sys_state = settings.homing_enable ? STATE_ALARM : STATE_IDLE;
	sei();
	wdt_enable(WDTO_500MS);
	report_boot_messages(eeprom);

	for (;;) {
		protocol_main_loop();

		/* Soft reset: motion has been stopped in the receive interrupt. */
		uint8_t alarm;
		cli();
		alarm = sys_rt_alarm;
		sys_rt_alarm = 0;
		sei();
		st_reset();
		plan_reset();
		plan_sync_position();
		gc_init();
		protocol_reset_line();
		sys.abort = 0;
		sys.hold_done = 0;
		sys.busy_wait = 0;
		if (alarm) {
			report_alarm(alarm);
			sys_state = STATE_ALARM;
			sys.homed = 0; /* steps may have been lost: home again */
		} else if (sys_state != STATE_ALARM) {
			sys_state = STATE_IDLE;
		}
		report_boot_messages(SETTINGS_LOADED);
	}
}
