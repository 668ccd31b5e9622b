/*
 * stepper.h - step generation.
 *
 * The main loop cuts planner blocks into short constant-rate segments
 * (st_prep_buffer, floats allowed); the Timer1 compare interrupt executes them with
 * Bresenham across the axes, integer only. A STEP pulse rises at interrupt entry and
 * falls at least $0 us later, at the end of the same interrupt.
 */
#ifndef STEPPER_H
#define STEPPER_H

#include <stdint.h>

void st_init(void);
/* Stops the steps at once and forgets every prepared segment (main loop only). */
void st_reset(void);
/* Stops the steps at once; usable from interrupts. st_reset() clears it. */
void st_halt(void);
/* Starts the step interrupt when segments are ready. */
void st_wake_up(void);
/* Non-zero while the step interrupt runs. */
uint8_t st_busy(void);
/* Fills the segment buffer from the planner; starts the steps when needed. */
void st_prep_buffer(void);
/* Non-zero when a block is being prepared or segments wait to be executed. */
uint8_t st_has_work(void);
/* Feed hold (1: decelerate to a stop, 0: go on). */
void st_hold(uint8_t on);
/* Non-zero when a hold has brought the motion to a stop. */
uint8_t st_hold_complete(void);
/* Speed of the motion being prepared, mm/min (0 when idle). */
float st_current_speed(void);

/* Direction (-1, +1; 0 unknown) of the last block each axis started to execute. */
int8_t st_executed_direction(uint8_t axis);
/* Power-up: no direction is known. */
void st_forget_directions(void);

/* Homing: while armed, the interrupt checks the axis' switch after every step of
 * that axis and stops at once, latching the position, when the switch reads
 * closed (until_closed = 1) or open (0). */
void st_home_arm(uint8_t axis, uint8_t until_closed);
void st_home_disarm(void);
extern volatile uint8_t st_home_triggered;
extern volatile int32_t st_home_latch;

#endif
