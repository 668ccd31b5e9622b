/*
 * settings.c - setting table, defaults, EEPROM storage.
 *
 * EEPROM layout at SETTINGS_EEPROM_ADDR: format version (1 byte), settings_t, then a
 * CRC-16 of the version byte and the settings.
 */
#include <avr/eeprom.h>
#include <avr/pgmspace.h>
#include <avr/wdt.h>
#include <stddef.h>
#include <string.h>

#include "codes.h"
#include "report.h"
#include "settings.h"
#include "system.h"

settings_t settings;

/* Defaults: the reference build of protocol.md section 8. */
static const settings_t defaults PROGMEM = {
	.steps_per_mm = {800.0f, 800.0f, 16000.0f},
	.max_rate = {600.0f, 600.0f, 60.0f},
	.acceleration = {50.0f, 50.0f, 5.0f},
	.max_travel = {60.0f, 40.0f, 8.0f},
	.backlash = {0.0f, 0.0f, 0.0f},
	.junction_deviation = 0.01f,
	.homing_locate = 25.0f,
	.homing_seek = 300.0f,
	.homing_pulloff = 1.0f,
	.homing_debounce = 25,
	.idle_release = 60,
	.pulse_us = 4,
	.step_invert = 0,
	.dir_invert = 0,
	.enable_invert = 0,
	.limit_invert = 0,
	.soft_limits = 1,
	.hard_limits = 1,
	.homing_enable = 1,
	.homing_dir = 0,
};

/* Value kinds: storage type and range. */
enum {
	K_INT_PULSE,  /* u8 2..20 */
	K_MASK,       /* u8 0..7 */
	K_BOOL,       /* u8 0..1 */
	K_INT_1000,   /* u16 0..1000 */
	K_INT_65535,  /* u16 0..65535 */
	K_FLOAT_POS,  /* float > 0 */
	K_FLOAT_1,    /* float 0..1 */
	K_FLOAT_10,   /* float 0..10 */
};

typedef struct {
	uint8_t num; /* setting number (all below 256) */
	uint8_t kind;
	uint8_t offset;
} setting_desc_t;

#define S(n, k, field) {n, k, offsetof(settings_t, field)}
static const setting_desc_t table[] PROGMEM = {
	S(0, K_INT_PULSE, pulse_us),
	S(2, K_MASK, step_invert),
	S(3, K_MASK, dir_invert),
	S(4, K_BOOL, enable_invert),
	S(5, K_MASK, limit_invert),
	S(11, K_FLOAT_1, junction_deviation),
	S(20, K_BOOL, soft_limits),
	S(21, K_BOOL, hard_limits),
	S(22, K_BOOL, homing_enable),
	S(23, K_MASK, homing_dir),
	S(24, K_FLOAT_POS, homing_locate),
	S(25, K_FLOAT_POS, homing_seek),
	S(26, K_INT_1000, homing_debounce),
	S(27, K_FLOAT_10, homing_pulloff),
	S(100, K_FLOAT_POS, steps_per_mm[0]),
	S(101, K_FLOAT_POS, steps_per_mm[1]),
	S(102, K_FLOAT_POS, steps_per_mm[2]),
	S(110, K_FLOAT_POS, max_rate[0]),
	S(111, K_FLOAT_POS, max_rate[1]),
	S(112, K_FLOAT_POS, max_rate[2]),
	S(120, K_FLOAT_POS, acceleration[0]),
	S(121, K_FLOAT_POS, acceleration[1]),
	S(122, K_FLOAT_POS, acceleration[2]),
	S(130, K_FLOAT_POS, max_travel[0]),
	S(131, K_FLOAT_POS, max_travel[1]),
	S(132, K_FLOAT_POS, max_travel[2]),
	S(140, K_FLOAT_1, backlash[0]),
	S(141, K_FLOAT_1, backlash[1]),
	S(142, K_FLOAT_1, backlash[2]),
	S(150, K_INT_65535, idle_release),
};
#define TABLE_LEN (sizeof(table) / sizeof(table[0]))

#define EE_VERSION ((uint8_t *)SETTINGS_EEPROM_ADDR)
#define EE_DATA ((uint8_t *)SETTINGS_EEPROM_ADDR + 1)
#define EE_CRC ((uint8_t *)SETTINGS_EEPROM_ADDR + 1 + sizeof(settings_t))

static uint16_t crc16_update(uint16_t crc, uint8_t b)
{
	crc ^= b;
	for (uint8_t i = 0; i < 8; i++)
		crc = (crc & 1) ? (crc >> 1) ^ 0xA001 : crc >> 1;
	return crc;
}

static uint16_t settings_crc(void)
{
	uint16_t crc = crc16_update(0xFFFF, SETTINGS_FORMAT_VERSION);
	const uint8_t *p = (const uint8_t *)&settings;
	for (uint8_t i = 0; i < sizeof(settings_t); i++)
		crc = crc16_update(crc, p[i]);
	return crc;
}

/* EEPROM writes take 3.4 ms a byte: feed the watchdog between bytes. */
static void ee_write(uint8_t *addr, const uint8_t *src, uint8_t len)
{
	while (len--) {
		wdt_reset();
		eeprom_update_byte(addr++, *src++);
	}
}

static void settings_store(void)
{
	uint8_t v = SETTINGS_FORMAT_VERSION;
	uint16_t crc = settings_crc();
	ee_write(EE_VERSION, &v, 1);
	ee_write(EE_DATA, (const uint8_t *)&settings, sizeof(settings_t));
	ee_write(EE_CRC, (const uint8_t *)&crc, 2);
}

void settings_restore_defaults(void)
{
	memcpy_P(&settings, &defaults, sizeof(settings_t));
	settings_store();
}

uint8_t settings_init(void)
{
	uint8_t version = eeprom_read_byte(EE_VERSION);
	uint8_t result = SETTINGS_LOADED;
	if (version == 0xFF) {
		result = SETTINGS_BLANK;
	} else if (version != SETTINGS_FORMAT_VERSION) {
		result = SETTINGS_OLD_VERSION;
	} else {
		uint16_t crc;
		eeprom_read_block(&settings, EE_DATA, sizeof(settings_t));
		eeprom_read_block(&crc, EE_CRC, 2);
		if (crc != settings_crc())
			result = SETTINGS_BAD_CHECKSUM;
	}
	if (result != SETTINGS_LOADED)
		settings_restore_defaults();
	return result;
}

static float max_step_rate(uint8_t axis)
{
	return settings.steps_per_mm[axis] * settings.max_rate[axis] / 60.0f;
}

uint8_t settings_set(uint16_t num, const decnum_t *value)
{
	uint8_t i;
	for (i = 0; i < TABLE_LEN; i++)
		if (pgm_read_byte(&table[i].num) == num)
			break;
	if (i == TABLE_LEN || num > 255)
		return STATUS_INVALID_STATEMENT;
	uint8_t kind = pgm_read_byte(&table[i].kind);
	uint8_t *field = (uint8_t *)&settings + pgm_read_byte(&table[i].offset);

	if (value->mant < 0)
		return STATUS_NEGATIVE_VALUE;
	uint8_t size = kind <= K_BOOL ? 1 : (kind <= K_INT_65535 ? 2 : 4);
	uint8_t old[4]; /* the field's bytes, restored when a cross-check fails */
	memcpy(old, field, size);
	if (kind <= K_INT_65535) {
		if (!decnum_is_integer(value))
			return STATUS_INTEGER_REQUIRED;
		int32_t v = decnum_to_int(value);
		int32_t lo = 0, hi = 1;
		switch (kind) {
		case K_INT_PULSE: lo = 2; hi = 20; break;
		case K_MASK: hi = 7; break;
		case K_INT_1000: hi = 1000; break;
		case K_INT_65535: hi = 65535; break;
		default: break;
		}
		if (v < lo || v > hi)
			return STATUS_VALUE_OUT_OF_RANGE;
		if (kind >= K_INT_1000)
			*(uint16_t *)field = (uint16_t)v;
		else
			*field = (uint8_t)v;
	} else {
		float v = decnum_to_float(value);
		float hi = kind == K_FLOAT_1 ? 1.0f : (kind == K_FLOAT_10 ? 10.0f : 1e9f);
		/* Values are kept and printed at 4 decimals: one that reads 0 there is 0 for
		 * a "> 0" setting and unrepresentable for the others (error:62 either way). */
		if ((kind == K_FLOAT_POS || value->mant != 0) && decnum_rounds_to_zero(value))
			return STATUS_VALUE_OUT_OF_RANGE;
		if (v > hi)
			return STATUS_VALUE_OUT_OF_RANGE;
		*(float *)field = v;
	}

	/* Cross-checks: restore the old values on failure (an error changes nothing). */
	uint8_t status = CODE_OK;
	if (num == 20 && settings.soft_limits && !settings.homing_enable)
		status = STATUS_SOFT_LIMIT_NEEDS_HOMING;
	for (uint8_t a = 0; a < N_AXIS; a++)
		if (max_step_rate(a) > MAX_STEP_RATE)
			status = STATUS_STEP_RATE_TOO_HIGH;
	if (status != CODE_OK) {
		memcpy(field, old, size);
		return status;
	}
	/* As GRBL: turning homing off turns soft limits off, which need it. */
	if (!settings.homing_enable)
		settings.soft_limits = 0;
	settings_store();
	return CODE_OK;
}

void settings_report(void)
{
	for (uint8_t i = 0; i < TABLE_LEN; i++) {
		uint8_t kind = pgm_read_byte(&table[i].kind);
		const uint8_t *field = (const uint8_t *)&settings + pgm_read_byte(&table[i].offset);
		report_char('$');
		report_uint(pgm_read_byte(&table[i].num));
		report_char('=');
		if (kind >= K_FLOAT_POS)
			report_float4(*(const float *)field);
		else if (kind >= K_INT_1000)
			report_uint(*(const uint16_t *)field);
		else
			report_uint(*field);
		report_nl();
	}
}
