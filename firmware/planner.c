/*
 * planner.c - move queue, junction speeds and the reverse look-ahead pass.
 */
#include <math.h>
#include <string.h>

#include "planner.h"
#include "stepper.h"
#include "settings.h"
#include "system.h"

static plan_block_t blocks[PLANNER_BUFFER_SIZE];
static uint8_t head; /* next free slot */
static uint8_t tail; /* oldest block */

static struct {
	int32_t position[N_AXIS];  /* target of the last queued move, steps */
	float prev_unit[N_AXIS];   /* direction of the last queued block */
	float prev_nominal;        /* its nominal speed, mm/min */
	float prev_accel;          /* its acceleration, mm/min^2 */
	int8_t last_dir[N_AXIS];   /* last direction of each axis: -1, +1, 0 unknown */
} pl;

static uint8_t next_index(uint8_t i)
{
	return (uint8_t)(i + 1) == PLANNER_BUFFER_SIZE ? 0 : (uint8_t)(i + 1);
}

static uint8_t prev_index(uint8_t i)
{
	return i == 0 ? PLANNER_BUFFER_SIZE - 1 : (uint8_t)(i - 1);
}

void plan_reset(void)
{
	head = tail = 0;
	pl.prev_nominal = 0.0f;
}

uint8_t plan_free_blocks(void)
{
	uint8_t used = head >= tail ? head - tail : (uint8_t)(head + PLANNER_BUFFER_SIZE - tail);
	return (uint8_t)(PLANNER_BUFFER_SIZE - 1 - used);
}

uint8_t plan_is_empty(void)
{
	return head == tail;
}

plan_block_t *plan_current_block(void)
{
	return head == tail ? 0 : &blocks[tail];
}

plan_block_t *plan_next_block(void)
{
	if (head == tail)
		return 0;
	uint8_t n = next_index(tail);
	return n == head ? 0 : &blocks[n];
}

void plan_discard_current_block(void)
{
	if (head != tail)
		tail = next_index(tail);
}

void plan_sync_position(void)
{
	system_get_position(pl.position);
	/* Queued blocks may have been discarded: backlash follows what really ran. */
	for (uint8_t a = 0; a < N_AXIS; a++)
		pl.last_dir[a] = st_executed_direction(a);
}

void plan_set_last_dir(uint8_t axis, int8_t dir)
{
	pl.last_dir[axis] = dir;
}

/* Reverse pass: from the newest block back to the one after the oldest, each entry
 * speed is the highest from which the rest of the queue can still stop. The oldest
 * block belongs to the segment preparation and is not changed. */
static void recalculate(void)
{
	uint8_t newest = prev_index(head);
	float next_entry_sqr = 0.0f;
	for (uint8_t i = newest; i != tail; i = prev_index(i)) {
		plan_block_t *b = &blocks[i];
		float e = next_entry_sqr + 2.0f * b->acceleration * b->millimeters;
		if (e > b->max_entry_speed_sqr)
			e = b->max_entry_speed_sqr;
		/* Entries only grow as blocks are added: once one is unchanged, every
		 * earlier one is too. */
		if (i != newest && e == b->entry_speed_sqr)
			break;
		b->entry_speed_sqr = e;
		next_entry_sqr = e;
	}
}

static void add_block(const int32_t delta[N_AXIS], float feed, uint8_t flags)
{
	plan_block_t *b = &blocks[head];
	float unit[N_AXIS];
	float mm_sqr = 0.0f;

	b->step_event_count = 0;
	b->direction_bits = 0;
	b->flags = flags;
	for (uint8_t a = 0; a < N_AXIS; a++) {
		int32_t d = delta[a];
		uint32_t s = d < 0 ? (uint32_t)(-d) : (uint32_t)d;
		b->steps[a] = s;
		if (s > b->step_event_count)
			b->step_event_count = s;
		if (d < 0)
			b->direction_bits |= (uint8_t)(1 << a);
		unit[a] = (float)d / settings.steps_per_mm[a];
		mm_sqr += unit[a] * unit[a];
	}
	float mm = sqrtf(mm_sqr);
	float inv = 1.0f / mm;
	float accel = 1e30f, rapid = 1e30f;
	for (uint8_t a = 0; a < N_AXIS; a++) {
		unit[a] *= inv;
		float u = fabsf(unit[a]);
		if (u > 0.0f) {
			float acc = settings.acceleration[a] * 3600.0f / u;
			float rate = settings.max_rate[a] / u;
			if (acc < accel)
				accel = acc;
			if (rate < rapid)
				rapid = rate;
		}
	}
	float nominal = (feed > 0.0f && feed < rapid) ? feed : rapid;
	b->millimeters = mm;
	b->acceleration = accel;
	b->nominal_speed = nominal;

	/* Junction speed by junction deviation: the speed at which a circle of radius
	 * r, deviating $11 from the corner, is driven at the acceleration limit. */
	float max_entry = 0.0f;
	if (!plan_is_empty()) {
		float cos_theta = 0.0f;
		for (uint8_t a = 0; a < N_AXIS; a++)
			cos_theta -= pl.prev_unit[a] * unit[a];
		if (cos_theta < -0.999999f) {
			max_entry = 1e30f; /* straight on */
		} else if (cos_theta > 0.999999f) {
			max_entry = MINIMUM_JUNCTION_SPEED * MINIMUM_JUNCTION_SPEED; /* reversal */
		} else {
			float sin_half = sqrtf(0.5f * (1.0f - cos_theta));
			float acc = accel < pl.prev_accel ? accel : pl.prev_accel;
			max_entry = acc * settings.junction_deviation * sin_half / (1.0f - sin_half);
		}
		float n2 = nominal * nominal;
		float p2 = pl.prev_nominal * pl.prev_nominal;
		if (max_entry > n2)
			max_entry = n2;
		if (max_entry > p2)
			max_entry = p2;
	}
	b->max_entry_speed_sqr = max_entry;
	b->entry_speed_sqr = 0.0f;

	memcpy(pl.prev_unit, unit, sizeof(unit));
	pl.prev_nominal = nominal;
	pl.prev_accel = accel;
	head = next_index(head);
	recalculate();
}

void plan_buffer_line(const int32_t target[N_AXIS], float feed, uint8_t flags)
{
	int32_t delta[N_AXIS];
	int32_t backlash[N_AXIS];
	uint8_t moving = 0, take_up = 0;

	for (uint8_t a = 0; a < N_AXIS; a++) {
		delta[a] = target[a] - pl.position[a];
		backlash[a] = 0;
		if (!delta[a])
			continue;
		moving = 1;
		if (flags & BLOCK_HOMING)
			continue;
		int8_t dir = delta[a] > 0 ? 1 : -1;
		if (pl.last_dir[a] && pl.last_dir[a] != dir) {
			int32_t s = (int32_t)lroundf(settings.backlash[a] * settings.steps_per_mm[a]);
			if (s) {
				backlash[a] = dir > 0 ? s : -s;
				take_up = 1;
			}
		}
		pl.last_dir[a] = dir;
	}
	if (!moving)
		return;
	/* On a reversal the axis first takes up its backlash, as a block of its own
	 * whose steps never reach the reported position. */
	if (take_up)
		add_block(backlash, feed, flags | BLOCK_BACKLASH);
	add_block(delta, feed, flags);
	memcpy(pl.position, target, sizeof(pl.position));
}
