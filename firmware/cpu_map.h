/*
 * cpu_map.h - every pin of the ATmega328P the firmware uses, in one place.
 *
 * The map is GRBL 1.1's default Uno map, so a CNC Shield V3 wired for GRBL works
 * unchanged: STEP X/Y/Z on D2/D3/D4, DIR on D5/D6/D7, drivers' enable on D8 (active
 * low), limit switches X D9, Y D10, Z D12, normally open to ground with the internal
 * pull-ups. Invert masks ($2-$5) are run-time settings.
 */
#ifndef CPU_MAP_H
#define CPU_MAP_H

#include <avr/io.h>

/* STEP: PD2..PD4 (Uno D2..D4), axis i on bit STEP_SHIFT + i. */
#define STEP_DDR   DDRD
#define STEP_PORT  PORTD
#define STEP_SHIFT 2
#define STEP_MASK  (7 << STEP_SHIFT)

/* DIR: PD5..PD7 (Uno D5..D7), axis i on bit DIR_SHIFT + i; high = negative. */
#define DIR_DDR    DDRD
#define DIR_PORT   PORTD
#define DIR_SHIFT  5
#define DIR_MASK   (7 << DIR_SHIFT)

/* Drivers' enable: PB0 (Uno D8), low = enabled unless $4=1. */
#define EN_DDR     DDRB
#define EN_PORT    PORTB
#define EN_BIT     0

/* Limit switches: X PB1 (D9), Y PB2 (D10), Z PB4 (D12), pin change group PCINT0. */
#define LIMIT_DDR   DDRB
#define LIMIT_PORT  PORTB
#define LIMIT_PIN   PINB
#define X_LIMIT_BIT 1
#define Y_LIMIT_BIT 2
#define Z_LIMIT_BIT 4
#define LIMIT_MASK  ((1 << X_LIMIT_BIT) | (1 << Y_LIMIT_BIT) | (1 << Z_LIMIT_BIT))
#define LIMIT_PCMSK PCMSK0
#define LIMIT_PCIE  PCIE0
#define LIMIT_vect  PCINT0_vect

/* Bench build only: PB5 (D13, unused on the shield) is high while the step
 * interrupt runs, so the simulator can time it. */
#define BENCH_DDR  DDRB
#define BENCH_PORT PORTB
#define BENCH_BIT  5

/* Limit pin bit of an axis (0..2). */
#define LIMIT_BIT(axis) ((axis) == 0 ? X_LIMIT_BIT : ((axis) == 1 ? Y_LIMIT_BIT : Z_LIMIT_BIT))

#endif
