/*
 * gcode.c - parser, validation and execution of G-code lines and jogs.
 */
#include <math.h>
#include <string.h>

#include "codes.h"
#include "gcode.h"
#include "nuts.h"
#include "planner.h"
#include "protocol.h"
#include "settings.h"
#include "stepper.h"
#include "system.h"

gc_state_t gc;

/* Words (bits of block.words). X, Y, Z are bits 0..2 so they index axes. */
#define W_F (1 << 3)
#define W_P (1 << 4)
#define W_N (1 << 5)
#define W_AXES 7

/* Modal groups (bits of block.groups). */
#define G_MOTION   (1 << 0)
#define G_DISTANCE (1 << 1)
#define G_NONMODAL (1 << 2)
#define G_UNITS    (1 << 3)
#define G_PLANE    (1 << 4)
#define G_COORD    (1 << 5)
#define G_FEEDMODE (1 << 6)
#define G_M        (1 << 7)

/* wait_for_planner(): a jog cancel began while the line waited (not a wire code). */
#define STATUS_JOG_CANCELLED 0xFE

/* Non-modal commands. */
enum { NM_NONE = 0, NM_DWELL, NM_G53, NM_G92, NM_G92_1 };

typedef struct {
	uint8_t words;
	uint8_t groups;
	uint8_t motion;    /* 0xFF: none on the line */
	uint8_t distance;  /* 0xFF: none, 1 absolute, 0 incremental */
	uint8_t nonmodal;  /* NM_* */
	uint8_t mcode;     /* 0, 17, 18 */
	int32_t xyz[N_AXIS];   /* axis words in 1e-4 mm (G92, range checks) */
	float xyz_mm[N_AXIS];  /* the same, unrounded: a move's steps come from these */
	float f;
	float p;
} block_t;

void gc_sync_position(void)
{
	system_get_position(gc.position);
}

/* A step position as the status report prints it, in 1e-4 mm. */
static int32_t steps_to_e4(int32_t steps, uint8_t axis)
{
	return round_to_int((float)steps / settings.steps_per_mm[axis] * 10000.0f);
}

void gc_init(void)
{
	memset(&gc, 0, sizeof(gc));
	gc.absolute = 1;
	gc_sync_position();
}

/* G and M numbers times ten (G92.1 = 921); 0xFFFF when not of that form. */
static uint16_t code_x10(const decnum_t *v)
{
	decnum_t n = *v;
	while (n.dec > 1 && n.mant % 10 == 0) {
		n.mant /= 10;
		n.dec--;
	}
	if (n.mant < 0 || n.dec > 1 || n.mant > 9999)
		return 0xFFFF;
	return (uint16_t)(n.dec ? n.mant : n.mant * 10);
}

/* Parses every word of a line into blk. jog: only the words $J= allows. */
static uint8_t parse(const char *line, block_t *blk, uint8_t jog)
{
	uint8_t bad_word = jog ? STATUS_INVALID_JOG_COMMAND : STATUS_UNSUPPORTED_COMMAND;
	uint8_t i = 0;

	memset(blk, 0, sizeof(*blk));
	blk->motion = 0xFF;
	blk->distance = 0xFF;
	while (line[i]) {
		char letter = line[i];
		if (letter < 'A' || letter > 'Z') /* first word: no letter; later: number junk */
			return i == 0 ? STATUS_EXPECTED_COMMAND_LETTER : STATUS_BAD_NUMBER_FORMAT;
		if (!strchr("GMXYZFPN", letter))
			return bad_word;
		i++;
		decnum_t v;
		uint8_t status = read_number(line, &i, &v);
		if (status != CODE_OK)
			return status;

		uint8_t group = 0, word = 0;
		switch (letter) {
		case 'G': {
			uint16_t code = code_x10(&v);
			if (jog && code != 530 && code != 900 && code != 910 && code != 210)
				return bad_word;
			switch (code) {
			case 0: case 10:
				group = G_MOTION;
				blk->motion = (uint8_t)(code / 10);
				break;
			case 40: group = G_NONMODAL; blk->nonmodal = NM_DWELL; break;
			case 530: group = G_NONMODAL; blk->nonmodal = NM_G53; break;
			case 920: group = G_NONMODAL; blk->nonmodal = NM_G92; break;
			case 921: group = G_NONMODAL; blk->nonmodal = NM_G92_1; break;
			case 900: case 910:
				group = G_DISTANCE;
				blk->distance = code == 900;
				break;
			case 210: group = G_UNITS; break;
			case 170: group = G_PLANE; break;
			case 540: group = G_COORD; break;
			case 940: group = G_FEEDMODE; break;
			default: return STATUS_UNSUPPORTED_COMMAND; /* G20 included */
			}
			break;
		}
		case 'M': {
			if (jog)
				return bad_word;
			uint16_t code = code_x10(&v);
			if (code != 170 && code != 180)
				return STATUS_UNSUPPORTED_COMMAND;
			group = G_M;
			blk->mcode = (uint8_t)(code / 10);
			break;
		}
		case 'X': case 'Y': case 'Z': {
			uint8_t a = (uint8_t)(letter - 'X');
			word = (uint8_t)(1 << a);
			if (blk->words & word)
				return STATUS_REPEATED_WORD;
			status = decnum_to_e4(&v, &blk->xyz[a]);
			if (status != CODE_OK)
				return status;
			blk->xyz_mm[a] = decnum_to_float(&v);
			break;
		}
		case 'F':
			word = W_F;
			if (blk->words & word)
				return STATUS_REPEATED_WORD;
			if (v.mant < 0)
				return STATUS_NEGATIVE_VALUE;
			/* A feed that reads 0 at 4 decimals is 0: rejected below (error:62). */
			blk->f = decnum_rounds_to_zero(&v) ? 0.0f : decnum_to_float(&v);
			break;
		case 'P':
			if (jog)
				return bad_word;
			word = W_P;
			if (blk->words & word)
				return STATUS_REPEATED_WORD;
			if (v.mant < 0)
				return STATUS_NEGATIVE_VALUE;
			blk->p = decnum_to_float(&v);
			break;
		default: /* N */
			if (jog)
				return bad_word;
			word = W_N; /* line number: accepted and ignored */
			if (blk->words & word)
				return STATUS_REPEATED_WORD;
			break;
		}
		if (group) {
			if (blk->groups & group)
				return STATUS_MODAL_GROUP_VIOLATION;
			blk->groups |= group;
		}
		blk->words |= word;
	}
	return CODE_OK;
}

/* Steps of a move; checks ranges and soft limits. A relative move adds its own
 * rounded steps to the last target, so whole-step moves never drift. */
static uint8_t compute_target(const block_t *blk, uint8_t absolute, int32_t steps[N_AXIS],
			      uint8_t soft_limit_status)
{
	for (uint8_t a = 0; a < N_AXIS; a++) {
		float spm = settings.steps_per_mm[a];
		float s = (float)gc.position[a]; /* the target, for the range check */
		float v = 0.0f;                   /* steps of the axis word */
		uint8_t relative = 0;
		if (blk->words & (1 << a)) {
			v = blk->xyz_mm[a] * spm;
			relative = blk->nonmodal != NM_G53 && !absolute;
			if (blk->nonmodal != NM_G53 && absolute)
				v += (float)gc.offset[a] * spm / 10000.0f;
			s = relative ? s + v : v;
		}
		if (fabsf(s) > 2.0e9f || fabsf(s / spm) > (float)MAX_AXIS_VALUE_MM)
			return STATUS_VALUE_OUT_OF_RANGE;
		if (!(blk->words & (1 << a)))
			steps[a] = gc.position[a];
		else if (relative)
			steps[a] = gc.position[a] + round_to_int(v);
		else
			steps[a] = round_to_int(v);
	}
	if (settings.soft_limits) {
		for (uint8_t a = 0; a < N_AXIS; a++) {
			int32_t travel = round_to_int(settings.max_travel[a] * settings.steps_per_mm[a]);
			if (steps[a] > 0 || steps[a] < -travel)
				return soft_limit_status;
		}
	}
	return CODE_OK;
}

/* Waits for room for a move (its backlash block included) before anything of the
 * line is executed, so an interrupted wait leaves no trace. */
static uint8_t wait_for_planner(void)
{
	while (plan_free_blocks() < 2) {
		if (protocol_wait_tick())
			return STATUS_SYSTEM_LOCKED;
		if (protocol_jog_cancelling())
			return STATUS_JOG_CANCELLED;
	}
	return CODE_OK;
}

static void queue_move(const int32_t steps[N_AXIS], float feed, uint8_t flags)
{
	plan_buffer_line(steps, feed, flags);
	memcpy(gc.position, steps, sizeof(gc.position));
	if (sys_state == STATE_IDLE)
		sys_state = (flags & BLOCK_JOG) ? STATE_JOG : STATE_RUN;
	st_prep_buffer();
}

uint8_t gc_execute_line(const char *line)
{
	block_t blk;
	int32_t steps[N_AXIS];
	uint8_t status;

	if (sys_state == STATE_ALARM || sys_state == STATE_JOG)
		return STATUS_SYSTEM_LOCKED;
	status = parse(line, &blk, 0);
	if (status != CODE_OK)
		return status;

	/* Validation: nothing below changes state until every check has passed. */
	uint8_t axes = blk.words & W_AXES;
	uint8_t explicit_motion = blk.motion != 0xFF;
	if (blk.nonmodal == NM_G53 && !explicit_motion)
		return STATUS_G53_INVALID_MOTION_MODE;
	if ((blk.words & W_P) && blk.nonmodal != NM_DWELL)
		return STATUS_UNUSED_VALUE_WORDS;
	if (blk.nonmodal == NM_DWELL && !(blk.words & W_P))
		return STATUS_UNSUPPORTED_COMMAND; /* G4 needs its P */
	if (axes && (blk.nonmodal == NM_DWELL || blk.nonmodal == NM_G92_1 ||
		     (blk.mcode && blk.nonmodal != NM_G92)))
		return STATUS_UNUSED_AXIS_WORDS;
	if (blk.nonmodal == NM_G92) {
		if (!axes)
			return STATUS_NO_AXIS_WORDS;
		if (explicit_motion)
			return STATUS_MODAL_GROUP_VIOLATION;
	}
	if ((blk.words & W_F) && blk.f <= 0.0f)
		return STATUS_VALUE_OUT_OF_RANGE;
	if (blk.nonmodal == NM_DWELL && blk.p > MAX_DWELL_S)
		return STATUS_VALUE_OUT_OF_RANGE;

	uint8_t motion = explicit_motion ? blk.motion : gc.motion;
	uint8_t absolute = blk.distance != 0xFF ? blk.distance : gc.absolute;
	float feed = (blk.words & W_F) ? blk.f : gc.feed;
	uint8_t moving = axes && blk.nonmodal != NM_G92;
	int32_t offset[N_AXIS];
	memcpy(offset, gc.offset, sizeof(offset));

	if (moving) {
		if (motion == 1 && feed <= 0.0f)
			return STATUS_UNDEFINED_FEED_RATE;
		status = compute_target(&blk, absolute, steps, STATUS_SOFT_LIMIT);
		if (status != CODE_OK)
			return status;
	}
	if (blk.nonmodal == NM_G92) {
		/* The current position reads as the given values. */
		for (uint8_t a = 0; a < N_AXIS; a++) {
			if (!(axes & (1 << a)))
				continue;
			int32_t o = steps_to_e4(gc.position[a], a) - blk.xyz[a];
			if (o > MAX_AXIS_VALUE_MM * 10000L || o < -MAX_AXIS_VALUE_MM * 10000L)
				return STATUS_VALUE_OUT_OF_RANGE;
			offset[a] = o;
		}
	} else if (blk.nonmodal == NM_G92_1) {
		memset(offset, 0, sizeof(offset));
	}

	/* Execution. */
	if (moving && wait_for_planner() != CODE_OK)
		return STATUS_SYSTEM_LOCKED; /* the board locked while the line waited */
	if (sys.abort)
		return CODE_OK;
	if (blk.mcode == 17)
		system_drivers(1);
	if (blk.nonmodal == NM_DWELL) {
		sys.busy_wait = 1;
		status = protocol_wait_motion_done() ? STATUS_SYSTEM_LOCKED : CODE_OK;
		if (status == CODE_OK)
			status = protocol_delay_ms((uint32_t)lroundf(blk.p * 1000.0f)) ? STATUS_SYSTEM_LOCKED : CODE_OK;
		sys.busy_wait = 0;
		if (status != CODE_OK)
			return status;
	}
	gc.feed = feed;
	gc.motion = motion;
	gc.absolute = absolute;
	memcpy(gc.offset, offset, sizeof(offset));
	if (moving)
		queue_move(steps, motion == 0 ? 0.0f : feed, 0);
	if (blk.mcode == 18) {
		if (protocol_wait_motion_done())
			return STATUS_SYSTEM_LOCKED;
		system_drivers(0);
	}
	return CODE_OK;
}

uint8_t gc_execute_jog(const char *words)
{
	block_t blk;
	int32_t steps[N_AXIS];
	uint8_t status = parse(words, &blk, 1);
	if (status != CODE_OK)
		return status;
	if (!(blk.words & W_F))
		return STATUS_INVALID_JOG_COMMAND;
	if (!(blk.words & W_AXES))
		return STATUS_NO_AXIS_WORDS;
	if (blk.f <= 0.0f)
		return STATUS_VALUE_OUT_OF_RANGE;
	uint8_t absolute = blk.distance != 0xFF ? blk.distance : gc.absolute;
	status = compute_target(&blk, absolute, steps, STATUS_JOG_TRAVEL_EXCEEDED);
	if (status != CODE_OK)
		return status;
	status = wait_for_planner();
	if (status == STATUS_JOG_CANCELLED || sys.abort)
		return CODE_OK; /* a jog cancel discards the jog that waited for room */
	if (status != CODE_OK)
		return status;
	queue_move(steps, blk.f, BLOCK_JOG);
	return CODE_OK;
}
