/*
 * serial.h - interrupt-driven UART0 with a receive ring (line bytes only) and a
 * transmit ring. Realtime bytes are taken out in the receive interrupt (protocol.c).
 */
#ifndef SERIAL_H
#define SERIAL_H

#include <stdint.h>

#define SERIAL_NO_DATA 0xFF

void serial_init(void);
/* Next received line byte, or -1 when none. */
int16_t serial_read(void);
/* Bytes waiting in the receive ring. */
uint8_t serial_rx_count(void);
/* Free receive bytes as reported in Bf (protocol.md 5). */
uint8_t serial_rx_free(void);
/* Drops every received byte (soft reset). Called from the receive interrupt. */
void serial_rx_flush_isr(void);
/* Queues one byte for sending; waits (running the segment preparation) when full. */
void serial_write(uint8_t c);
/* Non-zero while bytes wait to be sent. */
uint8_t serial_tx_pending(void);

/* Called by the receive interrupt for every byte; returns non-zero when the byte was
 * a realtime byte that must not enter the line buffer (implemented in protocol.c). */
uint8_t protocol_realtime_byte(uint8_t b);

#endif
