/*
 * serial.c - UART0 at 115200 8N1 with receive and transmit rings.
 */
#include <avr/interrupt.h>
#include <avr/io.h>
#include <avr/wdt.h>

#include "config.h"
#include "serial.h"
#include "stepper.h"

/* Rings of 128 bytes; one slot stays empty so head == tail means empty. */
static uint8_t rx_buf[RX_BUFFER_SIZE];
static volatile uint8_t rx_head;
static volatile uint8_t rx_tail;
static uint8_t tx_buf[TX_BUFFER_SIZE];
static volatile uint8_t tx_head;
static volatile uint8_t tx_tail;

#define RX_NEXT(i) ((uint8_t)((i) + 1) & (RX_BUFFER_SIZE - 1))
#define TX_NEXT(i) ((uint8_t)((i) + 1) & (TX_BUFFER_SIZE - 1))

void serial_init(void)
{
	/* U2X before UBRR: 16 MHz / (8 x 17) = 117647 baud, 2.1 % off 115200, as every
	 * Arduino Uno does it. */
	UCSR0A = (1 << U2X0);
	UCSR0C = (1 << UCSZ01) | (1 << UCSZ00);
	UBRR0H = 0;
	UBRR0L = (uint8_t)(F_CPU / (8UL * BAUD_RATE) - 1);
	rx_head = rx_tail = 0;
	tx_head = tx_tail = 0;
	UCSR0B = (1 << RXEN0) | (1 << TXEN0) | (1 << RXCIE0);
}

ISR(USART_RX_vect)
{
	uint8_t b = UDR0;
	if (protocol_realtime_byte(b))
		return;
	uint8_t next = RX_NEXT(rx_head);
	if (next != rx_tail) { /* a full ring drops the byte; senders count characters */
		rx_buf[rx_head] = b;
		rx_head = next;
	}
}

void serial_rx_flush_isr(void)
{
	rx_tail = rx_head;
}

int16_t serial_read(void)
{
	uint8_t t = rx_tail;
	if (t == rx_head)
		return -1;
	uint8_t b = rx_buf[t];
	rx_tail = RX_NEXT(t);
	return b;
}

uint8_t serial_rx_count(void)
{
	return (uint8_t)(rx_head - rx_tail) & (RX_BUFFER_SIZE - 1);
}

uint8_t serial_rx_free(void)
{
	return RX_BUFFER_SIZE - serial_rx_count();
}

ISR(USART_UDRE_vect)
{
	uint8_t t = tx_tail;
	if (t == tx_head) { /* main re-armed the interrupt after the ring emptied */
		UCSR0B &= ~(1 << UDRIE0);
		return;
	}
	UDR0 = tx_buf[t];
	t = TX_NEXT(t);
	tx_tail = t;
	if (t == tx_head)
		UCSR0B &= ~(1 << UDRIE0);
}

void serial_write(uint8_t c)
{
	uint8_t next = TX_NEXT(tx_head);
	while (next == tx_tail) {
		/* Full: keep the steps flowing while the UART drains. */
		wdt_reset();
		st_prep_buffer();
	}
	tx_buf[tx_head] = c;
	tx_head = next;
	UCSR0B |= (1 << UDRIE0);
}

uint8_t serial_tx_pending(void)
{
	return tx_head != tx_tail;
}
