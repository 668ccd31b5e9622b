/*
 * gcode.h - G-code lines and jogs: parse the whole line, validate it, then execute
 * (protocol.md section 6). A line answered with an error changes nothing.
 */
#ifndef GCODE_H
#define GCODE_H

#include <stdint.h>

#include "config.h"

typedef struct {
	uint8_t motion;             /* 0: G0, 1: G1 */
	uint8_t absolute;           /* 1: G90, 0: G91 */
	float feed;                 /* mm/min; 0: none given since reset */
	/* Machine target of the last move, in steps: whole-step moves stay exact however
	 * fine a step is (Z: 0.0625 um, finer than the 1e-4 mm of the reports). */
	int32_t position[N_AXIS];
	int32_t offset[N_AXIS];     /* G92 offset, 1e-4 mm */
} gc_state_t;

extern gc_state_t gc;

/* Parser state after a reset: G0 G90, no feed, no G92 offset. */
void gc_init(void);
/* Position from the machine position (after a stop, homing or new steps/mm). */
void gc_sync_position(void);
/* Executes a G-code line (upper case, no spaces or comments). */
uint8_t gc_execute_line(const char *line);
/* Executes the words of a $J= line. */
uint8_t gc_execute_jog(const char *words);

#endif
