/*
 * nuts.h - numbers and utilities: exact decimal parsing of G-code numbers and
 * the 4-decimal fixed-point unit (1e-4 mm) in which offsets are kept and positions
 * printed (positions themselves are kept in steps, gcode.h).
 */
#ifndef NUTS_H
#define NUTS_H

#include <stdint.h>

/* A decimal number as written: value = mant / 10^dec. */
typedef struct {
	int32_t mant;
	uint8_t dec;
} decnum_t;

/* Reads a number (sign, digits, at most one point, 1..9 digits) at line[*pos];
 * advances *pos. Returns CODE_OK or STATUS_BAD_NUMBER_FORMAT. */
uint8_t read_number(const char *line, uint8_t *pos, decnum_t *out);
float decnum_to_float(const decnum_t *n);
/* Non-zero when the number has no non-zero fractional digit. */
uint8_t decnum_is_integer(const decnum_t *n);
/* Integer value of an integer number (caller checked decnum_is_integer). */
int32_t decnum_to_int(const decnum_t *n);
/* Converts mm to 1e-4 mm units, rounding further decimals; returns
 * STATUS_VALUE_OUT_OF_RANGE when |value| > MAX_AXIS_VALUE_MM. */
uint8_t decnum_to_e4(const decnum_t *n, int32_t *out);
/* Non-zero when the number reads 0 at 4 decimals (1e-4 units, rounded as
 * decnum_to_e4): such a value is 0 for every "> 0" check, since the board prints and
 * positions in 1e-4 units and a smaller feed or setting would stall or divide by 0. */
uint8_t decnum_rounds_to_zero(const decnum_t *n);
/* Rounds to the nearest integer, halves away from zero. */
int32_t round_to_int(float x);

#endif
