/*
 * report.h - everything the firmware sends: replies, alarms, messages, status
 * reports and the $ listings (protocol.md sections 3-5, 7). No printf: it would
 * cost several KB of flash.
 */
#ifndef REPORT_H
#define REPORT_H

#include <avr/pgmspace.h>
#include <stdint.h>

void report_char(char c);
void report_str_P(PGM_P s);
#define report_P(s) report_str_P(PSTR(s))
void report_nl(void);
void report_uint(uint32_t v);
void report_int(int32_t v);
/* Fixed point with 4 decimals: v is in units of 1e-4. */
void report_e4(int32_t v);
void report_float4(float v);

/* "ok" or "error:N". */
void report_status(uint8_t code);
void report_alarm(uint8_t code);
/* "[MSG:text]". */
void report_msg_P(PGM_P s);
#define report_msg(s) report_msg_P(PSTR(s))

void report_banner(void);
void report_help(void);
void report_build_info(void);
void report_gcode_modes(void);
void report_offsets(void);
void report_realtime_status(void);

#endif
