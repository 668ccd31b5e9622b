/*
 * report.c - output formatting.
 */
#include <avr/interrupt.h>
#include <util/atomic.h>

#include "codes.h"
#include "config.h"
#include "cpu_map.h"
#include "gcode.h"
#include "limits.h"
#include "nuts.h"
#include "planner.h"
#include "report.h"
#include "serial.h"
#include "settings.h"
#include "stepper.h"
#include "system.h"

void report_char(char c)
{
	serial_write((uint8_t)c);
}

void report_str_P(PGM_P s)
{
	char c;
	while ((c = pgm_read_byte(s++)))
		serial_write((uint8_t)c);
}

void report_nl(void)
{
	serial_write('\r');
	serial_write('\n');
}

void report_uint(uint32_t v)
{
	char buf[10];
	uint8_t n = 0;
	do {
		buf[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		serial_write((uint8_t)buf[--n]);
}

void report_int(int32_t v)
{
	if (v < 0) {
		serial_write('-');
		report_uint((uint32_t)(-v));
	} else {
		report_uint((uint32_t)v);
	}
}

void report_e4(int32_t v)
{
	uint32_t m = v < 0 ? (uint32_t)(-v) : (uint32_t)v;
	if (v < 0)
		serial_write('-');
	report_uint(m / 10000);
	serial_write('.');
	uint16_t frac = (uint16_t)(m % 10000);
	for (uint16_t d = 1000; d; d /= 10) {
		serial_write((uint8_t)('0' + frac / d));
		frac %= d;
	}
}

void report_float4(float v)
{
	if (v > 200000.0f || v < -200000.0f) {
		/* Beyond the 32-bit 1e-4 range: a float has no decimals left there anyway. */
		if (v < 0.0f) {
			serial_write('-');
			v = -v;
		}
		report_uint((uint32_t)(v > 4.0e9f ? 4.0e9f : v + 0.5f));
		report_P(".0000");
		return;
	}
	report_e4(round_to_int(v * 10000.0f));
}

void report_status(uint8_t code)
{
	if (code == CODE_OK) {
		report_P("ok");
	} else {
		report_P("error:");
		report_uint(code);
	}
	report_nl();
}

void report_alarm(uint8_t code)
{
	report_P("ALARM:");
	report_uint(code);
	report_nl();
}

void report_msg_P(PGM_P s)
{
	report_P("[MSG:");
	report_str_P(s);
	report_char(']');
	report_nl();
}

void report_banner(void)
{
	report_P("Grbl " GRBL_DIALECT " [DeepAf " DEEPAF_FIRMWARE_VERSION " protocol " DEEPAF_PROTOCOL_VERSION_STR
		 "] ['$' for help]");
	report_nl();
}

void report_help(void)
{
	report_P("[HLP:$$ $# $G $I $N=V $H $HX $HY $HZ $X $J=line $RST=$ ? ! ~ ctrl-x]");
	report_nl();
}

void report_build_info(void)
{
	report_P("[VER:" GRBL_DIALECT ".DeepAf:]");
	report_nl();
	report_P("[OPT:HL,");
	report_uint(PLANNER_BUFFER_SIZE - 1);
	report_P("," );
	report_uint(RX_BUFFER_SIZE);
	report_char(']');
	report_nl();
	report_P("[DEEPAF:FW=" DEEPAF_FIRMWARE_VERSION ",PROTO=" DEEPAF_PROTOCOL_VERSION_STR ",AXES=");
	report_uint(N_AXIS);
	report_char(']');
	report_nl();
}

void report_gcode_modes(void)
{
	report_P("[GC:G");
	report_uint(gc.motion);
	report_P(" G54 G17 G21 G");
	report_uint(gc.absolute ? 90 : 91);
	report_P(" G94 M");
	report_uint(sys.drivers_on ? 17 : 18);
	report_P(" F");
	report_uint((uint32_t)round_to_int(gc.feed));
	report_char(']');
	report_nl();
}

static void report_axes_e4(const int32_t v[N_AXIS])
{
	for (uint8_t a = 0; a < N_AXIS; a++) {
		if (a)
			report_char(',');
		report_e4(v[a]);
	}
}

void report_offsets(void)
{
	report_P("[G92:");
	report_axes_e4(gc.offset);
	report_char(']');
	report_nl();
}

void report_realtime_status(void)
{
	int32_t pos[N_AXIS];
	system_get_position(pos);

	report_char('<');
	switch (sys_state) {
	case STATE_IDLE: report_P("Idle"); break;
	case STATE_ALARM: report_P("Alarm"); break;
	case STATE_RUN: report_P("Run"); break;
	case STATE_HOLD:
		report_P("Hold:");
		report_char(sys.hold_done ? '0' : '1');
		break;
	case STATE_JOG: report_P("Jog"); break;
	default: report_P("Home"); break;
	}
	report_P("|MPos:");
	for (uint8_t a = 0; a < N_AXIS; a++) {
		if (a)
			report_char(',');
		report_float4((float)pos[a] / settings.steps_per_mm[a]);
	}
	report_P("|Bf:");
	report_uint(plan_free_blocks());
	report_char(',');
	report_uint(serial_rx_free());
	report_P("|FS:");
	report_uint((uint32_t)round_to_int(st_current_speed()));
	report_P(",0");
	uint8_t closed = limits_closed();
	if (closed) {
		report_P("|Pn:");
		for (uint8_t a = 0; a < N_AXIS; a++)
			if (closed & (1 << a))
				report_char((char)('X' + a));
	}
	if (gc.offset[0] || gc.offset[1] || gc.offset[2]) {
		report_P("|WCO:");
		report_axes_e4(gc.offset);
	}
	report_char('>');
	report_nl();
}
