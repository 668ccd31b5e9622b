/*
 * planner.h - the queue of straight moves with look-ahead (protocol.md 6.4).
 *
 * Each block is one straight move in steps. A reverse pass over the queue gives
 * every block the highest entry speed from which the rest of the queue can still
 * stop; the segment preparation (stepper.c) then runs each block from its actual
 * speed, so the planner never has to touch the block being executed.
 */
#ifndef PLANNER_H
#define PLANNER_H

#include <stdint.h>

#include "config.h"

/* Block flags. */
#define BLOCK_BACKLASH (1 << 0) /* backlash take-up: steps the motors, not the position */
#define BLOCK_JOG      (1 << 1) /* part of a jog */
#define BLOCK_HOMING   (1 << 2) /* homing move: no backlash compensation */

typedef struct {
	uint32_t steps[N_AXIS];     /* steps per axis (absolute) */
	uint32_t step_event_count;  /* steps of the axis that moves most */
	uint8_t direction_bits;     /* bit a set: axis a moves towards - */
	uint8_t flags;              /* BLOCK_* */
	float millimeters;          /* length still to prepare, mm */
	float acceleration;         /* mm/min^2 along the move */
	float nominal_speed;        /* mm/min */
	float entry_speed_sqr;      /* planned entry speed squared */
	float max_entry_speed_sqr;  /* junction and nominal limit */
} plan_block_t;

/* Empties the queue (plan_sync_position() then resynchronises). */
void plan_reset(void);
uint8_t plan_free_blocks(void);
uint8_t plan_is_empty(void);
/* Oldest block (the one being prepared), or NULL. */
plan_block_t *plan_current_block(void);
/* Block after the oldest, or NULL. */
plan_block_t *plan_next_block(void);
void plan_discard_current_block(void);
/* Queues a straight move to target (machine steps) at feed mm/min (0: rapid,
 * each axis at its maximum rate). Needs two free blocks (backlash + move). */
void plan_buffer_line(const int32_t target[N_AXIS], float feed, uint8_t flags);
/* Sets the planner's position to the machine position, and each axis' last
 * direction to that of the last block it executed (after a stop or homing). */
void plan_sync_position(void);
/* Sets the last direction of an axis (homing: the direction of its pull-off). */
void plan_set_last_dir(uint8_t axis, int8_t dir);

#endif
