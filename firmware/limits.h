/*
 * limits.h - limit switches: hard limits (pin change interrupt) and step-precise
 * homing (protocol.md 9.1, 9.2).
 */
#ifndef LIMITS_H
#define LIMITS_H

#include <stdint.h>

/* Pull-ups on; the pin change interrupt on when hard limits are on ($21). */
void limits_init(void);
/* Bit a set: the switch of axis a reads closed now. */
uint8_t limits_closed(void);
/* Homes the axes in the mask (Z, then X, then Y). Returns a status code; on a
 * homing failure the alarm has been raised. */
uint8_t limits_home(uint8_t axes);

#endif
