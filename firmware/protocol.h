/*
 * protocol.h - line assembly, realtime bytes and the main loop (protocol.md 3).
 */
#ifndef PROTOCOL_H
#define PROTOCOL_H

#include <stdint.h>

/* Reads and executes lines until a soft reset (sys.abort). */
void protocol_main_loop(void);
/* Forgets a partly received line (after a reset). */
void protocol_reset_line(void);
/* Realtime requests, segment preparation, state changes, idle release: called by
 * every loop of the firmware. */
void protocol_poll(void);
/* One turn of a waiting loop: poll, then sleep until the next interrupt. Returns
 * non-zero when the wait must end: a soft reset or an alarm. */
uint8_t protocol_wait_tick(void);
/* Non-zero while a jog cancel decelerates to its stop. */
uint8_t protocol_jog_cancelling(void);
/* Waits until the queued motion has finished; non-zero when interrupted. */
uint8_t protocol_wait_motion_done(void);
/* Waits ms milliseconds; non-zero when interrupted. */
uint8_t protocol_delay_ms(uint32_t ms);

#endif
