/*
 * deepaf-sim - the DeepAf firmware running in simavr, wired to a model of the
 * CNC Shield: three STEP/DIR drivers, their enable pin, three limit switches, and
 * UART0 bridged to a pseudo-terminal.
 *
 *   deepaf-sim [--limit AXIS=STEP[:+|-] ...] [--speed realtime|fast]
 *              [--bootloader BOOT.hex] [FIRMWARE.elf|FIRMWARE.hex]
 *
 * The first stdout line is "PTY <path>". Opening that pty resets the AVR, as the
 * Uno's DTR auto-reset does (an external reset: MCUSR.EXTRF). With --bootloader the
 * image is loaded into the 512-byte boot section (0x7E00-0x7FFF, the Uno's fuses:
 * BOOTSZ=256 words) and every reset starts there (BOOTRST programmed), so a
 * bootloader such as Optiboot runs first and can rewrite the application section with
 * SPM; the FIRMWARE is then optional (without it the application section is blank,
 * 0xFF, as on a chip that holds only a bootloader). Commands on stdin, one reply line each:
 *   pos                      -> POS <x> <y> <z> <cycle>   true motor steps, AVR cycle
 *   limit <axis> <step> [+|-]-> OK    switch closed while steps >= step (+) / <= step (-)
 *   limit <axis> off         -> OK    no switch
 *   drivers                  -> DRIVERS <enabled> <ignored x> <ignored y> <ignored z>
 *   reset                    -> OK    power-on reset (EEPROM and flash kept; MCUSR.PORF)
 *   resets                   -> RESETS <power-on> <external> <watchdog>   resets so far
 *   pc                       -> PC <byte address> running|halted   where the AVR executes
 *                               (with --bootloader a crash halts it until the next reset)
 *   spm                      -> SPM <page erases> <page writes> <buffer words>   SPM
 *                               instructions the AVR executed (self-programming)
 *   flash save <path>        -> OK    the whole 32 KB flash, as raw bytes, to <path>
 *   pty                      -> PTYSTATE open|closed   whether a host has the pty open
 *   timing [reset]           -> TIMING <min pulse> <min dir setup>   in CPU cycles, since
 *                               the last reset: shortest STEP high time, shortest time
 *                               from a DIR change to the next STEP rising edge
 *   isr [reset]              -> ISR <count> <mean> <max>   step interrupt body in cycles,
 *                               from PB5 (D13), which only the bench build drives
 *   stack                    -> STACK <deepest> <free>   bytes of stack ever used, and
 *                               never touched (the firmware paints free RAM at boot)
 *   uart                     -> UART <cycle in> <cycle out>   when the last host byte was
 *                               handed to the UART, when the AVR sent its last byte
 *   eeprom erase             -> OK    all 0xFF, as a new chip
 *   eeprom write <addr> <v>  -> OK
 *   eeprom read <addr>       -> EEPROM <v>
 *   quit                     -> exits
 * Errors answer "ERR <text>". Diagnostics go to stderr.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "avr_eeprom.h"
#include "avr_extint.h"
#include "avr_flash.h"
#include "avr_ioport.h"
#include "avr_uart.h"
#include "sim_avr.h"
#include "sim_elf.h"
#include "sim_io.h"
#include "sim_cycle_timers.h"

#define F_CPU 16000000UL
/* ATmega328P data-space addresses (I/O address + 0x20). */
#define ADDR_PINB 0x23
#define ADDR_DDRB 0x24
#define ADDR_PORTB 0x25
#define ADDR_PORTD 0x2B
#define ADDR_UCSR0B 0xC1
#define ADDR_MCUSR 0x54
#define ADDR_SPMCSR 0x57
#define PORF_BIT 0
#define EXTRF_BIT 1
#define SELFPRGEN_BIT 0
#define PGERS_BIT 1
#define PGWRT_BIT 2
#define BLBSET_BIT 3
#define RWWSRE_BIT 4
/* ATmega328P flash: 32 KB; the Uno's fuses give a 512-byte boot section. */
#define FLASH_SIZE 0x8000u
#define BOOT_START 0x7E00u
#define RXEN0_BIT 4
#define STEP_PIN0 2 /* PD2..PD4 */
#define DIR_PIN0 5  /* PD5..PD7 */
#define EN_PIN 0    /* PB0, low = enabled */
static const int limit_pin[3] = {1, 2, 4}; /* PB1, PB2, PB4 */

/* Simulated time between two looks at the pty and stdin. */
#define CHUNK_CYCLES (F_CPU / 1000)
/* After the pty is opened the AVR is held in reset this long (wall clock), like the
 * Uno's bootloader wait: the host's open() has flushed its input by then, so the
 * banner reaches it. */
#define BOOT_HOLD_MS 30

static avr_t *avr;
static FILE *out; /* protocol stdout; stray library output goes to stderr */
static int fast;

static struct {
	int64_t motor[3];
	int64_t ignored[3]; /* STEP edges while the drivers were disabled */
	int64_t sw_step[3];
	char sw_side[3];    /* '+', '-', or 0: no switch */
	int sw_closed[3];
} model;
static avr_irq_t *limit_irq[3];

/* Bench build: PB5 is high while the step interrupt runs. */
#define BENCH_PIN 5
static uint64_t isr_rise, isr_count, isr_sum, isr_max;

/* Signal timing, in cycles. */
static uint64_t step_rise[3], dir_change[3];
static uint64_t min_pulse = UINT64_MAX, min_dir_setup = UINT64_MAX;

/* UART bridge. */
static avr_irq_t *uart_in_irq;
static int uart_xoff;
#define QSIZE 65536
static uint8_t in_q[QSIZE], out_q[QSIZE];
static size_t in_head, in_tail, out_head, out_tail;
static uint64_t uart_in_cycle, uart_out_cycle;
static uint32_t ram_end_of_static; /* the ELF's _end: first byte after .data/.bss */
#define RAMEND 0x8FF
#define STACK_CANARY 0xC5
static int master_fd = -1;
static int slave_open;
static char slave_path[256];

/* Resets and self-programming. */
enum { RESET_POWER_ON, RESET_EXTERNAL, RESET_WATCHDOG };
static int bootloader;                 /* a boot section image is loaded: BOOTRST */
static int harness_reset = -1;         /* cause of the reset the harness is making */
static int halted;                     /* crashed, with a bootloader: waits for a reset */
static uint64_t resets[3];
static uint64_t spm_erases, spm_writes, spm_fills;

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "deepaf-sim: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(2);
}

static uint64_t wall_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* --- limit switches ------------------------------------------------------------ */

static int switch_closed(int axis)
{
	if (model.sw_side[axis] == '+')
		return model.motor[axis] >= model.sw_step[axis];
	if (model.sw_side[axis] == '-')
		return model.motor[axis] <= model.sw_step[axis];
	return 0;
}

/* Drives the switch pins: closed = pulled to ground, open = high. The external
 * state keeps the ioport's pull-up model from overriding them, and the pin IRQ
 * updates PINB (and raises the pin change interrupt) now. */
static void apply_switches(int force)
{
	avr_ioport_external_t ext = {.name = 'B', .mask = 0, .value = 0};
	for (int a = 0; a < 3; a++) {
		ext.mask |= 1u << limit_pin[a];
		if (!model.sw_closed[a])
			ext.value |= 1u << limit_pin[a];
	}
	avr_ioctl(avr, AVR_IOCTL_IOPORT_SET_EXTERNAL('B'), &ext);
	for (int a = 0; a < 3; a++) {
		uint32_t v = model.sw_closed[a] ? 0 : 1;
		if (force)
			limit_irq[a]->value = !v; /* the IRQ caches values across avr_reset */
		avr_raise_irq(limit_irq[a], v);
	}
}

static void update_switch(int axis)
{
	int closed = switch_closed(axis);
	if (closed != model.sw_closed[axis]) {
		model.sw_closed[axis] = closed;
		apply_switches(0);
	}
}

/* --- stepper drivers ------------------------------------------------------------ */

static int drivers_enabled(void)
{
	return (avr->data[ADDR_DDRB] & (1u << EN_PIN)) && !(avr->data[ADDR_PORTB] & (1u << EN_PIN));
}

/* Every STEP rising edge moves the motor one step in the direction of its DIR pin
 * (high = negative), unless the drivers are disabled. */
static void step_hook(struct avr_irq_t *irq, uint32_t value, void *param)
{
	(void)irq;
	int axis = (int)(intptr_t)param;
	if (!value) {
		if (step_rise[axis] && avr->cycle - step_rise[axis] < min_pulse)
			min_pulse = avr->cycle - step_rise[axis];
		return;
	}
	step_rise[axis] = avr->cycle;
	if (dir_change[axis] && avr->cycle - dir_change[axis] < min_dir_setup)
		min_dir_setup = avr->cycle - dir_change[axis];
	dir_change[axis] = 0; /* only the first edge after a change counts */
	if (!drivers_enabled()) {
		model.ignored[axis]++;
		return;
	}
	if (avr->data[ADDR_PORTD] & (1u << (DIR_PIN0 + axis)))
		model.motor[axis]--;
	else
		model.motor[axis]++;
	update_switch(axis);
}

static void isr_hook(struct avr_irq_t *irq, uint32_t value, void *param)
{
	(void)irq;
	(void)param;
	if (value) {
		isr_rise = avr->cycle;
	} else if (isr_rise) {
		uint64_t d = avr->cycle - isr_rise;
		isr_count++;
		isr_sum += d;
		if (d > isr_max)
			isr_max = d;
	}
}

static void dir_hook(struct avr_irq_t *irq, uint32_t value, void *param)
{
	(void)irq;
	(void)value;
	dir_change[(int)(intptr_t)param] = avr->cycle;
}

/* --- UART bridge ----------------------------------------------------------------- */

static void uart_out_hook(struct avr_irq_t *irq, uint32_t value, void *param)
{
	(void)irq;
	(void)param;
	uart_out_cycle = avr->cycle;
	if (!slave_open)
		return; /* nobody listens: a real UART's bytes are lost too */
	size_t next = (out_head + 1) % QSIZE;
	if (next != out_tail) {
		out_q[out_head] = (uint8_t)value;
		out_head = next;
	}
}

static void uart_xon_hook(struct avr_irq_t *irq, uint32_t value, void *param)
{
	(void)irq;
	(void)value;
	(void)param;
	uart_xoff = 0;
}

static void uart_xoff_hook(struct avr_irq_t *irq, uint32_t value, void *param)
{
	(void)irq;
	(void)param;
	uart_xoff = value != 0;
}

/* Hands queued host bytes to the UART while its receive FIFO has room. The UART
 * itself delivers them to the firmware at the baud rate. */
static void feed_uart(void)
{
	if (!(avr->data[ADDR_UCSR0B] & (1u << RXEN0_BIT)))
		return;
	while (!uart_xoff && in_tail != in_head) {
		uint8_t b = in_q[in_tail];
		in_tail = (in_tail + 1) % QSIZE;
		uart_in_cycle = avr->cycle;
		avr_raise_irq(uart_in_irq, b);
	}
}

/* --- board ----------------------------------------------------------------------- */

/* Level-triggered INT0/INT1 polling on PD2/PD3 (the X/Y STEP pins) slows the
 * simulation about six times and is not used: off. The extint module turns it back on
 * in its own reset, after the core's reset hook: hence one cycle later. */
static avr_cycle_count_t extint_lvl_off(avr_t *a, avr_cycle_count_t when, void *param)
{
	(void)when;
	(void)param;
	avr_extint_set_strict_lvl_trig(a, 0, 0);
	avr_extint_set_strict_lvl_trig(a, 1, 0);
	return 0;
}

/* Runs inside every avr_reset: the ones the harness makes and the ones the AVR makes
 * itself (a watchdog timeout, as Optiboot uses to start the application). The reset
 * cleared every I/O register, PINB included: the switches are driven again. */
static void (*core_reset)(avr_t *);
static void on_reset(avr_t *a)
{
	if (core_reset)
		core_reset(a);
	resets[harness_reset >= 0 ? harness_reset : RESET_WATCHDOG]++;
	for (int i = 0; i < 3; i++)
		model.sw_closed[i] = switch_closed(i);
	apply_switches(1);
	uart_xoff = 0; /* the UART's receive FIFO is emptied without an XON */
	avr_cycle_timer_register(a, 1, extint_lvl_off, NULL);
}

/* A reset from outside the AVR: power-on or the RESET pin (the Uno's DTR circuit).
 * The cause is left in MCUSR, which a bootloader reads to decide whether to wait
 * for an upload (external reset) or start the application at once. */
static void board_reset(int cause)
{
	harness_reset = cause;
	avr_reset(avr);
	harness_reset = -1;
	halted = 0;
	avr->data[ADDR_MCUSR] = (uint8_t)(1u << (cause == RESET_POWER_ON ? PORF_BIT : EXTRF_BIT));
	avr_extint_set_strict_lvl_trig(avr, 0, 0);
	avr_extint_set_strict_lvl_trig(avr, 1, 0);
	uint32_t flags = 0; /* no stdio echo, no usleep in UART polling */
	avr_ioctl(avr, AVR_IOCTL_UART_SET_FLAGS('0'), &flags);
	in_head = in_tail = 0;
	out_head = out_tail = 0;
}

/* Counts the SPM instructions the AVR executes, by the operation SPMCSR selects.
 * It sits first in simavr's list of I/O modules and passes every request on (-1),
 * so simavr's own flash module still does the programming. */
static int spm_count_ioctl(struct avr_io_t *io, uint32_t ctl, void *param)
{
	(void)param;
	if (ctl != AVR_IOCTL_FLASH_SPM)
		return -1;
	uint8_t spmcsr = io->avr->data[ADDR_SPMCSR];
	if (!(spmcsr & (1u << SELFPRGEN_BIT)))
		return -1;
	if (spmcsr & (1u << PGERS_BIT))
		spm_erases++;
	else if (spmcsr & (1u << PGWRT_BIT))
		spm_writes++;
	else if (!(spmcsr & ((1u << BLBSET_BIT) | (1u << RWWSRE_BIT))))
		spm_fills++;
	return -1;
}
static avr_io_t spm_counter = {.kind = "spm-count", .ioctl = spm_count_ioctl};

/* --- Intel HEX images -------------------------------------------------------------- */

static int hex_digit(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Loads an Intel HEX file into flash. Every record's checksum is checked, and every
 * data byte must fall in [lo, hi): an image that does not fit where it is meant to
 * go is refused, as a real chip has no flash there. */
static void load_hex(const char *path, uint32_t lo, uint32_t hi)
{
	FILE *f = fopen(path, "r");
	if (!f)
		die("cannot read %s: %s", path, strerror(errno));
	char line[600];
	uint32_t base = 0, bytes = 0;
	int lineno = 0, eof = 0;
	while (!eof && fgets(line, sizeof(line), f)) {
		lineno++;
		size_t len = strcspn(line, "\r\n");
		if (len == 0)
			continue;
		uint8_t rec[260];
		size_t n = 0;
		if (line[0] != ':' || len % 2 != 1 || len > 1 + 2 * sizeof(rec))
			die("%s:%d: not an Intel HEX record", path, lineno);
		uint8_t sum = 0;
		for (size_t i = 1; i < len; i += 2) {
			int h = hex_digit(line[i]), l = hex_digit(line[i + 1]);
			if (h < 0 || l < 0)
				die("%s:%d: not an Intel HEX record", path, lineno);
			rec[n] = (uint8_t)(h << 4 | l);
			sum += rec[n++];
		}
		if (n < 5 || n != (size_t)rec[0] + 5u)
			die("%s:%d: record length does not match its byte count", path, lineno);
		if (sum != 0)
			die("%s:%d: bad record checksum", path, lineno);
		uint32_t addr = (uint32_t)rec[1] << 8 | rec[2];
		switch (rec[3]) {
		case 0x00:
			for (uint32_t i = 0; i < rec[0]; i++) {
				uint32_t at = base + addr + i;
				if (at < lo || at >= hi)
					die("%s:%d: byte at 0x%04x is outside 0x%04x-0x%04x", path, lineno, at, lo, hi - 1);
				avr->flash[at] = rec[4 + i];
			}
			bytes += rec[0];
			break;
		case 0x01: eof = 1; break;
		case 0x02: base = ((uint32_t)rec[4] << 8 | rec[5]) << 4; break;
		case 0x04: base = ((uint32_t)rec[4] << 8 | rec[5]) << 16; break;
		case 0x03: case 0x05: break; /* start address: the reset vector decides */
		default: die("%s:%d: unknown record type %02x", path, lineno, rec[3]);
		}
	}
	fclose(f);
	if (!eof)
		die("%s: no end-of-file record", path);
	fprintf(stderr, "deepaf-sim: %s: %u bytes loaded in 0x%04x-0x%04x\n", path, bytes, lo, hi - 1);
}

static int ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && !strcmp(s + a - b, suffix);
}

static uint8_t *eeprom_bytes(void)
{
	avr_eeprom_desc_t d = {.ee = NULL, .offset = 0, .size = 0};
	avr_ioctl(avr, AVR_IOCTL_EEPROM_GET, &d);
	return d.ee;
}

static void fast_sleep(avr_t *a, avr_cycle_count_t how_long)
{
	(void)a;
	(void)how_long; /* pacing is done by the main loop */
}

/* --- pty --------------------------------------------------------------------------- */

static void open_pty(void)
{
	int slave;
	struct termios tio;
	if (openpty(&master_fd, &slave, slave_path, NULL, NULL) < 0)
		die("openpty: %s", strerror(errno));
	/* Raw, so the line discipline neither echoes nor translates CR/LF. */
	tcgetattr(slave, &tio);
	cfmakeraw(&tio);
	tcsetattr(slave, TCSANOW, &tio);
	close(slave); /* from now on, POLLHUP on the master means: nobody has it open */
	fcntl(master_fd, F_SETFL, fcntl(master_fd, F_GETFL) | O_NONBLOCK);
}

static void pump_pty_output(void)
{
	while (out_tail != out_head) {
		size_t end = out_head > out_tail ? out_head : QSIZE;
		ssize_t n = write(master_fd, out_q + out_tail, end - out_tail);
		if (n <= 0)
			break;
		out_tail = (out_tail + (size_t)n) % QSIZE;
	}
}

static void read_pty_input(void)
{
	for (;;) {
		size_t room;
		if (in_head >= in_tail)
			room = QSIZE - in_head - (in_tail == 0 ? 1 : 0);
		else
			room = in_tail - in_head - 1;
		if (!room)
			return;
		ssize_t n = read(master_fd, in_q + in_head, room);
		if (n <= 0)
			return;
		in_head = (in_head + (size_t)n) % QSIZE;
	}
}

/* --- stdin commands -------------------------------------------------------------- */

static int parse_axis(const char *s)
{
	if (!s || !s[0] || s[1])
		return -1;
	switch (s[0]) {
	case 'x': case 'X': return 0;
	case 'y': case 'Y': return 1;
	case 'z': case 'Z': return 2;
	default: return -1;
	}
}

static void reply(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfprintf(out, fmt, ap);
	va_end(ap);
	fputc('\n', out);
	fflush(out);
}

static void command(char *line)
{
	char *argv[5] = {0};
	int argc = 0;
	for (char *tok = strtok(line, " \t\r"); tok && argc < 5; tok = strtok(NULL, " \t\r"))
		argv[argc++] = tok;
	if (!argc)
		return;
	if (!strcmp(argv[0], "pos")) {
		reply("POS %" PRId64 " %" PRId64 " %" PRId64 " %" PRIu64, model.motor[0], model.motor[1],
		      model.motor[2], (uint64_t)avr->cycle);
	} else if (!strcmp(argv[0], "limit")) {
		int axis = parse_axis(argv[1]);
		if (axis < 0 || !argv[2]) {
			reply("ERR usage: limit <x|y|z> <step> [+|-] | limit <axis> off");
			return;
		}
		if (!strcmp(argv[2], "off")) {
			model.sw_side[axis] = 0;
		} else {
			char *end;
			long long step = strtoll(argv[2], &end, 10);
			char side = argv[3] ? argv[3][0] : '+';
			if (*end || (side != '+' && side != '-') || (argv[3] && argv[3][1])) {
				reply("ERR usage: limit <x|y|z> <step> [+|-]");
				return;
			}
			model.sw_step[axis] = step;
			model.sw_side[axis] = side;
		}
		update_switch(axis);
		reply("OK");
	} else if (!strcmp(argv[0], "drivers")) {
		reply("DRIVERS %d %" PRId64 " %" PRId64 " %" PRId64, drivers_enabled(), model.ignored[0],
		      model.ignored[1], model.ignored[2]);
	} else if (!strcmp(argv[0], "timing")) {
		if (argv[1] && !strcmp(argv[1], "reset")) {
			min_pulse = min_dir_setup = UINT64_MAX;
			memset(step_rise, 0, sizeof(step_rise));
			memset(dir_change, 0, sizeof(dir_change));
		}
		reply("TIMING %" PRId64 " %" PRId64, min_pulse == UINT64_MAX ? -1 : (int64_t)min_pulse,
		      min_dir_setup == UINT64_MAX ? -1 : (int64_t)min_dir_setup);
	} else if (!strcmp(argv[0], "isr")) {
		if (argv[1] && !strcmp(argv[1], "reset"))
			isr_count = isr_sum = isr_max = isr_rise = 0;
		reply("ISR %" PRIu64 " %.1f %" PRIu64, isr_count, isr_count ? (double)isr_sum / isr_count : 0.0, isr_max);
	} else if (!strcmp(argv[0], "stack")) {
		if (!ram_end_of_static) {
			reply("ERR no _end symbol in the ELF");
			return;
		}
		uint32_t a = ram_end_of_static;
		while (a <= RAMEND && avr->data[a] == STACK_CANARY)
			a++;
		reply("STACK %u %u", RAMEND + 1 - a, a - ram_end_of_static);
	} else if (!strcmp(argv[0], "uart")) {
		reply("UART %" PRIu64 " %" PRIu64, uart_in_cycle, uart_out_cycle);
	} else if (!strcmp(argv[0], "pty")) {
		reply("PTYSTATE %s", slave_open ? "open" : "closed");
	} else if (!strcmp(argv[0], "reset")) {
		board_reset(RESET_POWER_ON);
		reply("OK");
	} else if (!strcmp(argv[0], "resets")) {
		reply("RESETS %" PRIu64 " %" PRIu64 " %" PRIu64, resets[RESET_POWER_ON], resets[RESET_EXTERNAL],
		      resets[RESET_WATCHDOG]);
	} else if (!strcmp(argv[0], "pc")) {
		reply("PC 0x%04x %s", (unsigned)avr->pc, halted ? "halted" : "running");
	} else if (!strcmp(argv[0], "spm")) {
		reply("SPM %" PRIu64 " %" PRIu64 " %" PRIu64, spm_erases, spm_writes, spm_fills);
	} else if (!strcmp(argv[0], "flash") && argv[1] && !strcmp(argv[1], "save") && argv[2]) {
		FILE *f = fopen(argv[2], "wb");
		if (!f || fwrite(avr->flash, 1, FLASH_SIZE, f) != FLASH_SIZE || fclose(f) != 0) {
			reply("ERR cannot write %s: %s", argv[2], strerror(errno));
			return;
		}
		reply("OK");
	} else if (!strcmp(argv[0], "eeprom") && argv[1]) {
		uint8_t *ee = eeprom_bytes();
		if (!ee) {
			reply("ERR no eeprom");
		} else if (!strcmp(argv[1], "erase")) {
			memset(ee, 0xFF, 1024);
			reply("OK");
		} else if (!strcmp(argv[1], "write") && argv[2] && argv[3]) {
			long addr = strtol(argv[2], NULL, 0), v = strtol(argv[3], NULL, 0);
			if (addr < 0 || addr > 1023 || v < 0 || v > 255) {
				reply("ERR address 0..1023, value 0..255");
				return;
			}
			ee[addr] = (uint8_t)v;
			reply("OK");
		} else if (!strcmp(argv[1], "read") && argv[2]) {
			long addr = strtol(argv[2], NULL, 0);
			if (addr < 0 || addr > 1023) {
				reply("ERR address 0..1023");
				return;
			}
			reply("EEPROM %d", ee[addr]);
		} else {
			reply("ERR usage: eeprom erase | eeprom write <addr> <v> | eeprom read <addr>");
		}
	} else if (!strcmp(argv[0], "quit")) {
		exit(0);
	} else {
		reply("ERR unknown command: %s", argv[0]);
	}
}

static void read_stdin(void)
{
	static char buf[512];
	static size_t len;
	ssize_t n = read(0, buf + len, sizeof(buf) - 1 - len);
	if (n == 0)
		exit(0); /* our parent went away */
	if (n < 0)
		return;
	len += (size_t)n;
	char *start = buf, *nl;
	while ((nl = memchr(start, '\n', len - (size_t)(start - buf)))) {
		*nl = 0;
		command(start);
		start = nl + 1;
	}
	len -= (size_t)(start - buf);
	memmove(buf, start, len);
	if (len == sizeof(buf) - 1)
		len = 0; /* an absurdly long line: drop it */
}

/* --- main ------------------------------------------------------------------------- */

static void usage(void)
{
	fprintf(stderr, "usage: deepaf-sim [--limit AXIS=STEP[:+|-] ...] [--speed realtime|fast]\n"
			"                  [--bootloader BOOT.hex] [FIRMWARE.elf|FIRMWARE.hex]\n");
	exit(2);
}

static void quiet_logger(avr_t *a, const int level, const char *fmt, va_list ap)
{
	if (!a || level <= LOG_ERROR)
		vfprintf(stderr, fmt, ap);
}

int main(int argc, char **argv)
{
	const char *elf = NULL, *boot = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--limit") && i + 1 < argc) {
			char *spec = argv[++i];
			int axis = (spec[0] && spec[1] == '=') ? parse_axis((char[]){spec[0], 0}) : -1;
			if (axis < 0)
				usage();
			char *end;
			model.sw_step[axis] = strtoll(spec + 2, &end, 10);
			model.sw_side[axis] = '+';
			if (*end == ':' && (end[1] == '+' || end[1] == '-') && !end[2])
				model.sw_side[axis] = end[1];
			else if (*end)
				usage();
		} else if (!strcmp(argv[i], "--speed") && i + 1 < argc) {
			const char *s = argv[++i];
			if (!strcmp(s, "fast"))
				fast = 1;
			else if (!strcmp(s, "realtime"))
				fast = 0;
			else
				usage();
		} else if (!strcmp(argv[i], "--bootloader") && i + 1 < argc) {
			boot = argv[++i];
		} else if (argv[i][0] == '-' || elf) {
			usage();
		} else {
			elf = argv[i];
		}
	}
	if (!elf && !boot)
		usage();

	/* Our protocol owns stdout; anything else that prints goes to stderr. */
	int out_fd = dup(1);
	dup2(2, 1);
	out = fdopen(out_fd, "w");
	signal(SIGPIPE, SIG_IGN);
	avr_global_logger_set(quiet_logger);

	avr = avr_make_mcu_by_name("atmega328p");
	if (!avr)
		die("simavr has no atmega328p");
	avr_init(avr); /* flash all 0xFF, as a new chip */
	/* With a bootloader the application must leave the boot section alone. */
	uint32_t app_end = boot ? BOOT_START : FLASH_SIZE;
	if (elf && ends_with(elf, ".hex")) {
		load_hex(elf, 0, app_end);
	} else if (elf) {
		elf_firmware_t fw;
		memset(&fw, 0, sizeof(fw));
		if (elf_read_firmware(elf, &fw) != 0)
			die("cannot read %s", elf);
		if (fw.flashbase + fw.flashsize > app_end)
			die("%s: %u bytes of flash do not fit below 0x%04x", elf, fw.flashbase + fw.flashsize, app_end);
		/* The ELF carries no AVR_MCU() section: the board is fixed. */
		strcpy(fw.mmcu, "atmega328p");
		fw.frequency = F_CPU;
		avr_load_firmware(avr, &fw);
		for (uint32_t i = 0; i < fw.symbolcount; i++)
			if (!strcmp(fw.symbol[i]->symbol, "_end"))
				ram_end_of_static = fw.symbol[i]->addr & 0xFFFF;
	}
	if (boot) {
		load_hex(boot, BOOT_START, FLASH_SIZE);
		bootloader = 1;
		avr->reset_pc = BOOT_START; /* BOOTRST programmed: reset jumps to the boot section */
	}
	avr->codeend = avr->flashend; /* the whole flash may hold code (SPM writes it) */
	avr_register_io(avr, &spm_counter);
	avr->frequency = F_CPU;
	avr->sleep = fast_sleep;
	avr->log = LOG_ERROR;

	for (int a = 0; a < 3; a++) {
		avr_irq_t *irq = avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ('D'), STEP_PIN0 + a);
		avr_irq_register_notify(irq, step_hook, (void *)(intptr_t)a);
		avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ('D'), DIR_PIN0 + a), dir_hook,
					(void *)(intptr_t)a);
		limit_irq[a] = avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ('B'), limit_pin[a]);
	}
	avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ('B'), BENCH_PIN), isr_hook, NULL);
	uart_in_irq = avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_INPUT);
	avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUTPUT), uart_out_hook, NULL);
	avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUT_XON), uart_xon_hook, NULL);
	avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUT_XOFF), uart_xoff_hook, NULL);
	core_reset = avr->reset;
	avr->reset = on_reset;

	open_pty();
	fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
	fprintf(out, "PTY %s\n", slave_path);
	fflush(out);

	board_reset(RESET_POWER_ON);
	uint64_t wall0 = wall_us();
	avr_cycle_count_t cycle0 = avr->cycle;
	uint64_t last_hup_check = 0;

	for (;;) {
		avr_cycle_count_t until = avr->cycle + CHUNK_CYCLES;
		while (!halted && avr->cycle < until) {
			int state = avr_run(avr);
			if (state != cpu_Done && state != cpu_Crashed)
				continue;
			/* Without a bootloader a crash is a firmware bug: exit, loudly. With
			 * one, the application section may be blank or half written, and a
			 * real chip would run on into garbage until reset: the AVR is halted
			 * until the next reset (pty open or "reset"). */
			if (!bootloader)
				die("the AVR %s at cycle %" PRIu64 ", pc 0x%04x", state == cpu_Done ? "stopped" : "crashed",
				    (uint64_t)avr->cycle, avr->pc);
			fprintf(stderr, "deepaf-sim: the AVR %s at cycle %" PRIu64 ", pc 0x%04x: halted until the next reset\n",
				state == cpu_Done ? "stopped" : "crashed", (uint64_t)avr->cycle, avr->pc);
			halted = 1;
		}
		feed_uart();

		/* Wait for the wall clock in realtime mode; just look around in fast mode. */
		int timeout = halted ? 10 : 0;
		if (!fast && !halted) {
			uint64_t sim_us = (avr->cycle - cycle0) / (F_CPU / 1000000u);
			uint64_t now = wall_us() - wall0;
			if (sim_us > now + 1000)
				timeout = (int)((sim_us - now) / 1000);
			else if (now > sim_us + 100000) { /* far behind: do not race to catch up */
				wall0 = wall_us();
				cycle0 = avr->cycle;
			}
		}
		uint64_t now_us = wall_us();
		int watch_master = slave_open || now_us - last_hup_check > 2000;
		struct pollfd fds[2] = {{.fd = 0, .events = POLLIN}, {.fd = master_fd, .events = POLLIN}};
		if (watch_master && out_tail != out_head)
			fds[1].events |= POLLOUT;
		int n = poll(fds, watch_master ? 2 : 1, timeout);
		if (n < 0 && errno != EINTR)
			die("poll: %s", strerror(errno));
		if (fds[0].revents & (POLLIN | POLLHUP))
			read_stdin();
		if (watch_master) {
			last_hup_check = now_us;
			int hup = (fds[1].revents & POLLHUP) != 0;
			if (slave_open && hup) {
				slave_open = 0;
				out_head = out_tail = 0;
			} else if (!slave_open && !hup) {
				/* Somebody opened the pty: DTR pulse, reset, bootloader wait. */
				slave_open = 1;
				board_reset(RESET_EXTERNAL);
				tcflush(master_fd, TCIOFLUSH);
				usleep(BOOT_HOLD_MS * 1000);
				if (!fast) {
					wall0 = wall_us();
					cycle0 = avr->cycle;
				}
			}
			if (slave_open) {
				if (fds[1].revents & POLLIN)
					read_pty_input();
				pump_pty_output();
			}
		}
	}
}
