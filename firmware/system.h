/*
 * system.h - machine state shared by every subsystem, realtime requests from the
 * interrupts, and the $ commands.
 */
#ifndef SYSTEM_H
#define SYSTEM_H

#include <stdint.h>

#include "config.h"

/* States as reported in the status report (protocol.md 5). */
enum {
	STATE_IDLE = 0,
	STATE_ALARM,
	STATE_RUN,
	STATE_HOLD,
	STATE_JOG,
	STATE_HOMING,
};

/* Realtime requests, set by interrupts, consumed by protocol_poll(). */
#define RT_STATUS     (1 << 0)
#define RT_HOLD       (1 << 1)
#define RT_RESUME     (1 << 2)
#define RT_RESET      (1 << 3)
#define RT_JOG_CANCEL (1 << 4)

/* State read by interrupts (hard-limit and reset logic) is volatile. */
extern volatile uint8_t sys_state;
/* Realtime request bits (RT_*). */
extern volatile uint8_t sys_rt;
/* Alarm raised by an interrupt (hard limit, reset in motion); 0 = none. */
extern volatile uint8_t sys_rt_alarm;
/* Machine position in steps, backlash steps excluded; written by the step ISR. */
extern volatile int32_t sys_position[N_AXIS];
/* Milliseconds since power-up, from the Timer2 tick. */
extern volatile uint32_t sys_ms;

/* Main-loop-only state. */
typedef struct {
	uint8_t abort;       /* a soft reset was requested: every loop returns */
	uint8_t hold_done;   /* in STATE_HOLD: motion has stopped (Hold:0) */
	uint8_t homed;       /* axes homed since power-up or the last alarm */
	uint8_t drivers_on;  /* drivers enabled */
	uint8_t busy_wait;   /* a dwell or motion wait is running (no idle release) */
	uint32_t idle_since; /* sys_ms when the board last was busy */
} system_t;
extern system_t sys;

void system_init(void);
/* Copy of sys_position taken with interrupts off. */
void system_get_position(int32_t pos[N_AXIS]);
/* Sets the position of one axis (homing); steppers must be idle. */
void system_set_axis_position(uint8_t axis, int32_t steps);
/* Executes a line starting with '$'; returns a status code. */
uint8_t system_execute_line(char *line);
/* Raises an alarm from the main loop: stops everything, locks, prints ALARM:N. */
void system_alarm(uint8_t code);
/* Drivers on (immediately) or off. */
void system_drivers(uint8_t on);
/* Applies the step/direction/enable idle levels from the settings. */
void system_apply_pin_settings(void);

#endif
