/*
 * stepper.c - segment preparation and the step interrupt.
 */
#include <avr/interrupt.h>
#include <avr/io.h>
#include <math.h>

#include "config.h"
#include "cpu_map.h"
#include "planner.h"
#include "settings.h"
#include "stepper.h"
#include "system.h"

/* Bresenham data of a planner block, kept until its last segment has run. Steps and
 * event count are doubled so the counters can start at the exact half step. */
typedef struct {
	uint32_t steps[N_AXIS];
	uint32_t event_count;
	uint8_t dir_pins;  /* DIR port bits, inversion applied */
	uint8_t dir_neg;   /* bit a: axis a moves towards - */
	uint8_t axes;      /* bit a: axis a moves */
	uint8_t flags;     /* BLOCK_* */
} st_block_t;

/* A run of n_step steps of the dominant axis at one rate. */
typedef struct {
	uint16_t n_step;
	uint16_t period;   /* OCR1A */
	uint8_t cs;        /* prescaler: 0 /1, 1 /8, 2 /64 */
	uint8_t block;     /* index into st_blocks */
} segment_t;

/* One segment slot stays empty, so at most SEGMENT_BUFFER_SIZE-1 segments (and as
 * many blocks) are in flight. */
static st_block_t st_blocks[SEGMENT_BUFFER_SIZE - 1];
static segment_t segments[SEGMENT_BUFFER_SIZE];
static volatile uint8_t seg_head; /* written by the main loop */
static volatile uint8_t seg_tail; /* written by the interrupt */

/* Interrupt state. */
static struct {
	uint32_t counter[N_AXIS];
	st_block_t *block;
	uint16_t seg_left;
	uint8_t step_bits;    /* STEP port bits of the next pulse */
	uint8_t dir_neg;
	uint8_t flags;
	uint8_t block_index;  /* 0xFF: none loaded */
	uint8_t cs;           /* prescaler in use; 0xFF: none */
	uint16_t pulse_ticks; /* pulse width in timer ticks at the current prescaler */
	uint16_t pulse[3];    /* pulse width per prescaler */
	uint8_t home_step;    /* STEP bit of the homing axis, 0: not homing */
	uint8_t home_pin;     /* its limit pin bit */
	uint8_t home_closed;  /* pin level that means closed */
	uint8_t home_until;   /* stop when closed (1) or open (0) */
	uint8_t home_axis;
} st;

static volatile uint8_t st_running;
/* Direction of the last block each axis started to execute: what the mechanism's
 * backlash really follows when queued blocks are discarded. */
static volatile uint8_t st_exec_axes;
static volatile uint8_t st_exec_neg;
static volatile uint8_t st_halted;
volatile uint8_t st_home_triggered;
volatile int32_t st_home_latch;

/* Preparation state (main loop). */
static struct {
	plan_block_t *pl;      /* block being cut into segments */
	uint32_t steps_left;   /* its steps not yet given to a segment */
	float steps_per_mm;
	float v;               /* speed at the end of the prepared motion, mm/min */
	float dt_rem;          /* time from the last step given out to the prepared end, min */
	uint8_t block_index;
	uint8_t hold;
} prep;

#define SEG_NEXT(i) ((uint8_t)((i) + 1) == SEGMENT_BUFFER_SIZE ? 0 : (uint8_t)((i) + 1))
#define TCCR1B_CTC (1 << WGM12)

void st_init(void)
{
	/* Idle levels first ($2 may invert them), then outputs: no glitch edge. */
	STEP_PORT = (STEP_PORT & ~STEP_MASK) | (uint8_t)((settings.step_invert << STEP_SHIFT) & STEP_MASK);
	STEP_DDR |= STEP_MASK;
	DIR_DDR |= DIR_MASK;
#ifdef DEEPAF_BENCH
	BENCH_DDR |= (1 << BENCH_BIT);
#endif
	TCCR1A = 0;
	TCCR1B = TCCR1B_CTC; /* CTC, clock stopped */
	OCR1A = 0xFFFF;      /* never zero: simavr's CTC would never fire */
	st_reset();
}

void st_halt(void)
{
	TIMSK1 &= ~(1 << OCIE1A);
	TCCR1B = TCCR1B_CTC;
	st_running = 0;
	st_halted = 1;
}

void st_reset(void)
{
	cli();
	st_halt();
	st_halted = 0;
	sei();
	st.seg_left = 0;
	st.step_bits = 0;
	st.block_index = 0xFF;
	st.home_step = 0;
	seg_head = seg_tail = 0;
	prep.pl = 0;
	prep.v = 0.0f;
	prep.dt_rem = 0.0f;
	prep.hold = 0;
	prep.block_index = 0;
}

uint8_t st_busy(void)
{
	return st_running;
}

uint8_t st_has_work(void)
{
	return prep.pl != 0 || seg_head != seg_tail || st_running;
}

void st_hold(uint8_t on)
{
	prep.hold = on;
}

uint8_t st_hold_complete(void)
{
	return prep.hold && prep.v == 0.0f && seg_head == seg_tail && !st_running;
}

float st_current_speed(void)
{
	return st_has_work() ? prep.v : 0.0f;
}

int8_t st_executed_direction(uint8_t axis)
{
	uint8_t bit = (uint8_t)(1 << axis);
	if (!(st_exec_axes & bit))
		return 0;
	return (st_exec_neg & bit) ? -1 : 1;
}

void st_forget_directions(void)
{
	st_exec_axes = 0;
}

void st_home_arm(uint8_t axis, uint8_t until_closed)
{
	uint8_t pin = (uint8_t)(1 << LIMIT_BIT(axis));
	st.home_pin = pin;
	st.home_closed = (settings.limit_invert & (1 << axis)) ? pin : 0;
	st.home_until = until_closed;
	st.home_axis = axis;
	st_home_triggered = 0;
	st.home_step = (uint8_t)(1 << (STEP_SHIFT + axis));
}

void st_home_disarm(void)
{
	st.home_step = 0;
}

void st_wake_up(void)
{
	if (st_running || st_halted)
		return;
	uint8_t was_off = !sys.drivers_on;
	system_drivers(1);
	uint16_t cycles = (uint16_t)settings.pulse_us * (F_CPU / 1000000UL);
	st.pulse[0] = cycles;
	st.pulse[1] = (cycles + 7) >> 3;
	st.pulse[2] = (cycles + 63) >> 6;
	st.seg_left = 0;
	st.step_bits = 0;
	cli();
	TCNT1 = 0;
	if (was_off) {
		/* Let the drivers wake up before the first pulse. */
		OCR1A = (uint16_t)(DRIVER_WAKE_MS * (F_CPU / 8000UL));
		TCCR1B = TCCR1B_CTC | (1 << CS11);
		st.cs = 1;
	} else {
		OCR1A = 200;
		TCCR1B = TCCR1B_CTC | (1 << CS10);
		st.cs = 0;
	}
	st.pulse_ticks = st.pulse[st.cs];
	TIFR1 = (1 << OCF1A);
	TIMSK1 |= (1 << OCIE1A);
	st_running = 1;
	sei();
}

/* The step interrupt: issue the pulse computed last time, then compute the next. */
ISR(TIMER1_COMPA_vect)
{
	uint8_t bits = st.step_bits;
	uint8_t stop = 0;
	uint16_t t0 = 0;
#ifdef DEEPAF_BENCH
	BENCH_PORT |= (1 << BENCH_BIT);
#endif

	if (bits) {
		STEP_PORT ^= bits;
		t0 = TCNT1;
		if (!(st.flags & BLOCK_BACKLASH)) {
			uint8_t neg = st.dir_neg;
			if (bits & (1 << STEP_SHIFT)) {
				if (neg & 1) sys_position[0]--; else sys_position[0]++;
			}
			if (bits & (2 << STEP_SHIFT)) {
				if (neg & 2) sys_position[1]--; else sys_position[1]++;
			}
			if (bits & (4 << STEP_SHIFT)) {
				if (neg & 4) sys_position[2]--; else sys_position[2]++;
			}
		}
		if (bits & st.home_step) {
			uint8_t closed = (LIMIT_PIN & st.home_pin) == st.home_closed;
			if (closed == st.home_until) {
				st_home_latch = sys_position[st.home_axis];
				st_home_triggered = 1;
				st_halted = 1;
				stop = 1;
				goto pulse_end;
			}
		}
	}

	if (!st.seg_left) {
		uint8_t t = seg_tail;
		if (t == seg_head) {
			stop = 1;
			st.step_bits = 0;
			goto pulse_end;
		}
		segment_t *s = &segments[t];
		OCR1A = s->period;
		if (s->cs != st.cs) {
			st.cs = s->cs;
			TCCR1B = TCCR1B_CTC | (uint8_t)(s->cs + 1);
			st.pulse_ticks = st.pulse[s->cs];
		}
		st.seg_left = s->n_step;
		if (s->block != st.block_index) {
			st_block_t *b = &st_blocks[s->block];
			st.block_index = s->block;
			st.block = b;
			uint32_t half = b->event_count >> 1;
			st.counter[0] = half;
			st.counter[1] = half;
			st.counter[2] = half;
			DIR_PORT = (DIR_PORT & ~DIR_MASK) | b->dir_pins;
			st.dir_neg = b->dir_neg;
			st.flags = b->flags;
			st_exec_axes |= b->axes;
			st_exec_neg = (st_exec_neg & ~b->axes) | (b->dir_neg & b->axes);
		}
	}

	{
		/* Bresenham, only for the axes that move in this block. */
		st_block_t *b = st.block;
		uint32_t ev = b->event_count;
		uint8_t axes = b->axes;
		uint8_t next = 0;
		if (axes & 1) {
			uint32_t c = st.counter[0] + b->steps[0];
			if (c > ev) {
				c -= ev;
				next |= (1 << STEP_SHIFT);
			}
			st.counter[0] = c;
		}
		if (axes & 2) {
			uint32_t c = st.counter[1] + b->steps[1];
			if (c > ev) {
				c -= ev;
				next |= (2 << STEP_SHIFT);
			}
			st.counter[1] = c;
		}
		if (axes & 4) {
			uint32_t c = st.counter[2] + b->steps[2];
			if (c > ev) {
				c -= ev;
				next |= (4 << STEP_SHIFT);
			}
			st.counter[2] = c;
		}
		st.step_bits = next;
		if (--st.seg_left == 0)
			seg_tail = SEG_NEXT(seg_tail);
	}

pulse_end:
	if (bits) {
		uint16_t w = st.pulse_ticks;
		while ((uint16_t)(TCNT1 - t0) < w)
			;
		STEP_PORT ^= bits;
	}
	if (stop) {
		TIMSK1 &= ~(1 << OCIE1A);
		TCCR1B = TCCR1B_CTC;
		st_running = 0;
	}
#ifdef DEEPAF_BENCH
	BENCH_PORT &= ~(1 << BENCH_BIT);
#endif
}

/* Advances the prepared motion of block b by at most dt minutes along a trapezoid
 * computed from the actual speed prep.v: accelerate towards the nominal speed,
 * cruise, and brake in time to leave the block at ve (mm/min). Updates prep.v and
 * *mm_left; returns the time used; sets *end when the block is done. */
static float advance(const plan_block_t *b, float ve, float *mm_left, float dt, uint8_t *end)
{
	float a = b->acceleration;
	float vn = prep.hold ? 0.0f : b->nominal_speed;
	float v = prep.v;
	float L = *mm_left;
	float t = dt;

	if (ve > vn)
		ve = vn;
	for (uint8_t phase = 0; phase < 6 && t > 0.0f; phase++) {
		float brake = (v * v - ve * ve) / (2.0f * a); /* distance to slow to ve */
		if (v > vn || brake >= L) {
			/* Decelerate: to ve at the end of the block, or down to vn. */
			float vt = brake >= L ? ve : vn;
			float tp = (v - vt) / a;
			float dp = 0.5f * (v + vt) * tp;
			if (dp >= L) {
				float v2 = v * v - 2.0f * a * L;
				float v_end = v2 > 0.0f ? sqrtf(v2) : 0.0f;
				float te = (v - v_end) / a;
				if (te <= t) {
					t -= te;
					v = v_end;
					L = 0.0f;
					*end = 1;
					break;
				}
				tp = te; /* partial below */
			}
			if (tp <= t) {
				L -= dp;
				v = vt;
				t -= tp;
				if (v <= 0.0f)
					break; /* stopped by a hold */
			} else {
				L -= t * (v - 0.5f * a * t);
				v -= a * t;
				t = 0.0f;
			}
		} else if (v < vn) {
			/* Accelerate to where the braking curve to ve begins, or to vn. */
			float peak2 = 0.5f * (2.0f * a * L + v * v + ve * ve);
			float vp = peak2 < vn * vn ? sqrtf(peak2) : vn;
			if (vp <= v) {
				vn = v; /* at the braking point already: cruise, then brake */
				continue;
			}
			float tp = (vp - v) / a;
			float dp = 0.5f * (v + vp) * tp;
			if (dp >= L) {
				float v_end = sqrtf(v * v + 2.0f * a * L);
				float te = (v_end - v) / a;
				if (te <= t) {
					t -= te;
					v = v_end;
					L = 0.0f;
					*end = 1;
					break;
				}
				tp = te;
			}
			if (tp <= t) {
				L -= dp;
				v = vp;
				t -= tp;
				if (vp < vn)
					vn = vp; /* the peak: cruise (zero length) until braking */
			} else {
				L -= t * (v + 0.5f * a * t);
				v += a * t;
				t = 0.0f;
			}
		} else {
			/* Cruise up to the braking point (the block end when v <= ve). */
			if (v <= 0.0f)
				break;
			float dc = brake > 0.0f ? L - brake : L;
			float tp = dc / v;
			if (tp <= t) {
				t -= tp;
				if (brake > 0.0f) {
					L = brake;
				} else {
					L = 0.0f;
					*end = 1;
					break;
				}
			} else {
				L -= v * t;
				t = 0.0f;
			}
		}
	}
	if (L < 0.0f)
		L = 0.0f;
	prep.v = v;
	*mm_left = L;
	return dt - t;
}

#define DT_SEGMENT (1.0f / (SEGMENTS_PER_SECOND * 60.0f)) /* minutes */
#define DT_MAX (1.0f / 60.0f)                              /* one second */

void st_prep_buffer(void)
{
	if (st_halted)
		return;
	for (;;) {
		uint8_t h = seg_head;
		if (SEG_NEXT(h) == seg_tail)
			break; /* full */
		if (!prep.pl) {
			if (prep.hold && prep.v == 0.0f)
				break;
			plan_block_t *b = plan_current_block();
			if (!b) {
				prep.v = 0.0f; /* the queue ends at rest (rounding aside) */
				break;
			}
			uint8_t i = prep.block_index + 1;
			if (i == SEGMENT_BUFFER_SIZE - 1)
				i = 0;
			prep.block_index = i;
			st_block_t *sb = &st_blocks[i];
			for (uint8_t a = 0; a < N_AXIS; a++)
				sb->steps[a] = b->steps[a] << 1;
			sb->event_count = b->step_event_count << 1;
			sb->dir_neg = b->direction_bits;
			sb->axes = 0;
			for (uint8_t a = 0; a < N_AXIS; a++)
				if (b->steps[a])
					sb->axes |= (uint8_t)(1 << a);
			sb->dir_pins = (uint8_t)((b->direction_bits ^ settings.dir_invert) << DIR_SHIFT) & DIR_MASK;
			sb->flags = b->flags;
			prep.steps_per_mm = (float)b->step_event_count / b->millimeters;
			prep.steps_left = b->step_event_count;
			prep.pl = b;
		}
		plan_block_t *b = prep.pl;
		float ve = 0.0f;
		if (!prep.hold) {
			plan_block_t *nb = plan_next_block();
			if (nb)
				ve = sqrtf(nb->entry_speed_sqr);
		}
		float mm_left = b->millimeters;
		float dt = prep.dt_rem;
		float steps_float;
		uint32_t n = 0;
		uint8_t end = 0;
		do {
			float used = advance(b, ve, &mm_left, DT_SEGMENT, &end);
			dt += used;
			if (end) {
				steps_float = 0.0f;
				n = prep.steps_left;
			} else {
				steps_float = mm_left * prep.steps_per_mm;
				float c = ceilf(steps_float);
				n = c < (float)prep.steps_left ? prep.steps_left - (uint32_t)c : 0;
			}
			if (used <= 0.0f || (prep.hold && prep.v == 0.0f))
				break; /* a hold has stopped the motion */
		} while (n == 0 && !end && dt < DT_MAX);
		b->millimeters = mm_left;

		if (n > 0) {
			/* Period: the time from the last step given out to the end of the
			 * segment, over the steps from there to where the motion really is.
			 * The n steps end (span - n) periods before the segment does; that
			 * remainder starts the next segment, so the average rate is exact. */
			float span = (float)prep.steps_left - steps_float;
			float period = dt / span;
			prep.dt_rem = dt - period * (float)n;
			float cycles = period * (F_CPU * 60.0f);
			uint32_t c = cycles > 4.0e6f ? 4000000UL : (uint32_t)(cycles + 0.5f);
			if (c < MIN_STEP_CYCLES)
				c = MIN_STEP_CYCLES;
			segment_t *s = &segments[h];
			if (c <= 0x10000UL) {
				s->cs = 0;
			} else if (c <= 0x80000UL) {
				s->cs = 1;
				c >>= 3;
			} else {
				s->cs = 2;
				c >>= 6;
				if (c > 0x10000UL)
					c = 0x10000UL;
			}
			s->period = (uint16_t)(c - 1);
			s->n_step = (uint16_t)n;
			s->block = prep.block_index;
			prep.steps_left -= n;
			seg_head = SEG_NEXT(h);
		}
		if (end) {
			plan_discard_current_block();
			prep.pl = 0;
		} else if (n == 0) {
			prep.dt_rem = 0.0f;
			break; /* held, or no progress possible */
		}
	}
	if (seg_head != seg_tail && !st_running)
		st_wake_up();
}
