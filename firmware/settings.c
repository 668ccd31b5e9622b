/*
 * settings.c - validating, storing and listing the settings of settings_table.h
 * (generated from protocol/settings.csv and kinds.csv).
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
#include "settings_table.h"
#include "system.h"

settings_t settings;

/* Defaults: the reference build of protocol.md section 8. */
static const settings_t defaults PROGMEM = SETTINGS_DEFAULTS;

typedef struct {
	uint8_t num; /* setting number (all below 256) */
	uint8_t kind;
	uint8_t offset;
} setting_desc_t;

#define S(n, k, field) {n, k, offsetof(settings_t, field)},
static const setting_desc_t table[] PROGMEM = {SETTINGS_TABLE(S)};
#undef S
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
	uint8_t size = kind <= K_LAST_U8 ? 1 : (kind <= K_LAST_INT ? 2 : 4);
	uint8_t old[4]; /* the field's bytes, restored when a cross-check fails */
	memcpy(old, field, size);
	if (kind <= K_LAST_INT) {
		if (!decnum_is_integer(value))
			return STATUS_INTEGER_REQUIRED;
		int32_t v = decnum_to_int(value);
		int32_t lo = 0, hi = 1;
		switch (kind) {
#define R(k, low, high) case k: lo = low; hi = high; break;
		SETTING_INT_RANGES(R)
#undef R
		default: break;
		}
		if (v < lo || v > hi)
			return STATUS_VALUE_OUT_OF_RANGE;
		if (kind > K_LAST_U8)
			*(uint16_t *)field = (uint16_t)v;
		else
			*field = (uint8_t)v;
	} else {
		float v = decnum_to_float(value);
		float hi = SETTING_FLOAT_HIGH(kind);
		/* Values are kept and printed at 4 decimals: one that reads 0 there is 0 for
		 * a "> 0" setting and unrepresentable for the others (error:62 either way). */
		if ((SETTING_POSITIVE(kind) || value->mant != 0) && decnum_rounds_to_zero(value))
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
		if (kind > K_LAST_INT)
			report_float4(*(const float *)field);
		else if (kind > K_LAST_U8)
			report_uint(*(const uint16_t *)field);
		else
			report_uint(*field);
		report_nl();
	}
}
