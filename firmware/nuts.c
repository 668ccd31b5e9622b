/*
 * nuts.c - number parsing and conversions.
 */
#include <math.h>

#include "codes.h"
#include "config.h"
#include "nuts.h"

#define MAX_DIGITS 9

static uint32_t pow10u(uint8_t n)
{
	uint32_t v = 1;
	while (n--)
		v *= 10;
	return v;
}

static uint8_t is_number_char(char c)
{
	return (c >= '0' && c <= '9') || c == '.' || c == '+' || c == '-';
}

uint8_t read_number(const char *line, uint8_t *pos, decnum_t *out)
{
	uint8_t i = *pos;
	uint8_t neg = 0, digits = 0, point = 0, dec = 0;
	uint32_t mant = 0;
	uint8_t bad = 0;

	/* Take the whole run of number characters, then judge it: "1.2.3", "--1" and
	 * "1-2" are one malformed number, not a number followed by garbage. */
	for (uint8_t first = 1; is_number_char(line[i]); i++, first = 0) {
		char c = line[i];
		if (c == '+' || c == '-') {
			if (!first)
				bad = 1;
			neg = (c == '-');
		} else if (c == '.') {
			if (point)
				bad = 1;
			point = 1;
		} else {
			if (++digits > MAX_DIGITS)
				bad = 1;
			else {
				mant = mant * 10 + (uint8_t)(c - '0');
				if (point)
					dec++;
			}
		}
	}
	*pos = i;
	/* An exponent ("1e3") is not a G-code number. */
	if (line[i] == 'E')
		bad = 1;
	if (bad || digits == 0)
		return STATUS_BAD_NUMBER_FORMAT;
	out->mant = neg ? -(int32_t)mant : (int32_t)mant;
	out->dec = dec;
	return CODE_OK;
}

float decnum_to_float(const decnum_t *n)
{
	return (float)n->mant / (float)pow10u(n->dec);
}

uint8_t decnum_is_integer(const decnum_t *n)
{
	return (n->mant % (int32_t)pow10u(n->dec)) == 0;
}

int32_t decnum_to_int(const decnum_t *n)
{
	return n->mant / (int32_t)pow10u(n->dec);
}

uint8_t decnum_to_e4(const decnum_t *n, int32_t *out)
{
	uint32_t m = n->mant < 0 ? (uint32_t)(-n->mant) : (uint32_t)n->mant;
	uint32_t v;
	if (n->dec <= 4) {
		if (m > (uint32_t)MAX_AXIS_VALUE_MM * pow10u(n->dec))
			return STATUS_VALUE_OUT_OF_RANGE;
		v = m * pow10u(4 - n->dec);
	} else {
		uint32_t d = pow10u(n->dec - 4);
		v = (m + d / 2) / d; /* at most 9 digits: always within range */
	}
	*out = n->mant < 0 ? -(int32_t)v : (int32_t)v;
	return CODE_OK;
}

uint8_t decnum_rounds_to_zero(const decnum_t *n)
{
	if (n->dec <= 4)
		return n->mant == 0;
	uint32_t m = n->mant < 0 ? (uint32_t)(-n->mant) : (uint32_t)n->mant;
	return m < pow10u(n->dec - 4) / 2; /* as decnum_to_e4 rounds: half away from 0 */
}

int32_t round_to_int(float x)
{
	return (int32_t)lroundf(x);
}
