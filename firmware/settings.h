/*
 * settings.h - run-time settings ($N=V), kept in EEPROM with a format version and
 * a checksum (protocol.md section 8).
 */
#ifndef SETTINGS_H
#define SETTINGS_H

#include <stdint.h>

#include "config.h"
#include "nuts.h"

typedef struct {
	float steps_per_mm[N_AXIS]; /* $100-$102 */
	float max_rate[N_AXIS];     /* $110-$112, mm/min */
	float acceleration[N_AXIS]; /* $120-$122, mm/s^2 */
	float max_travel[N_AXIS];   /* $130-$132, mm */
	float backlash[N_AXIS];     /* $140-$142, mm */
	float junction_deviation;   /* $11, mm */
	float homing_locate;        /* $24, mm/min */
	float homing_seek;          /* $25, mm/min */
	float homing_pulloff;       /* $27, mm */
	uint16_t homing_debounce;   /* $26, ms */
	uint16_t idle_release;      /* $150, s */
	uint8_t pulse_us;           /* $0 */
	uint8_t step_invert;        /* $2 */
	uint8_t dir_invert;         /* $3 */
	uint8_t enable_invert;      /* $4 */
	uint8_t limit_invert;       /* $5 */
	uint8_t soft_limits;        /* $20 */
	uint8_t hard_limits;        /* $21 */
	uint8_t homing_enable;      /* $22 */
	uint8_t homing_dir;         /* $23 */
} settings_t;

extern settings_t settings;

/* What settings_init() found in the EEPROM. */
enum {
	SETTINGS_LOADED = 0,
	SETTINGS_BLANK,
	SETTINGS_OLD_VERSION,
	SETTINGS_BAD_CHECKSUM,
};

/* Loads the settings; on a blank, old or corrupt EEPROM loads and stores the
 * defaults. Returns one of SETTINGS_*. */
uint8_t settings_init(void);
/* Restores and stores the defaults. */
void settings_restore_defaults(void);
/* $N=V: validates and stores one setting; returns a status code. */
uint8_t settings_set(uint16_t num, const decnum_t *value);
/* Prints every setting as "$N=V" lines (for $$). */
void settings_report(void);

#endif
