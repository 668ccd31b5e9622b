/*
 * config.h - compile-time options of the DeepAf stage firmware.
 *
 * Everything a user may want to change at build time lives here, each option with
 * the reason for its value. Run-time settings ($N=V) live in settings.c.
 */
#ifndef CONFIG_H
#define CONFIG_H

/* Versions, as printed by the banner and $I (protocol.md section 1). The firmware
 * and settings-format versions may be given on the compiler's command line
 * (make FW_DEFS=...): the tests build an "older" firmware that way to flash over it. */
#ifndef DEEPAF_FIRMWARE_VERSION
#define DEEPAF_FIRMWARE_VERSION "0.1.0"
#endif
#define DEEPAF_PROTOCOL_VERSION 1
#define DEEPAF_PROTOCOL_VERSION_STR "1"
#define GRBL_DIALECT "1.1h"

/* Three axes (X, Y stage; Z focus): the CNC Shield has exactly three driver sockets
 * on the pins cpu_map.h uses. */
#define N_AXIS 3

/* 115200 8N1 is what every GRBL 1.1 sender expects on an Uno. */
#define BAUD_RATE 115200UL

/* Receive buffer: protocol.md 3.4 promises 128 bytes to character-counting senders. */
#define RX_BUFFER_SIZE 128

/* Transmit buffer: large enough for a status report or one $$ line without waiting,
 * so reports do not stall the main loop during motion. */
#define TX_BUFFER_SIZE 128

/* Longest line accepted (protocol.md 3.2); a longer line is answered error:11. */
#define LINE_MAX 80

/* Planner ring size; one slot stays empty, so PLANNER_BUFFER_SIZE-1 blocks are
 * usable. 16 keeps streamed short moves joined while leaving stack room in 2 KB. */
#ifndef PLANNER_BUFFER_SIZE
#define PLANNER_BUFFER_SIZE 16
#endif

/* Step segments prepared ahead of the step interrupt: 6 x 10 ms of motion is enough
 * to hide the longest main-loop task (a status report or a planned line). */
#define SEGMENT_BUFFER_SIZE 6

/* Segment duration: 100 segments per second gives speed updates every 10 ms, smooth
 * enough for stepper acceleration and cheap enough for float maths on the AVR. */
#define SEGMENTS_PER_SECOND 100

/* Highest step rate a setting may ask for (steps/mm x max rate / 60). Above it the
 * step interrupt and segment preparation no longer keep up reliably (see the
 * benchmark in firmware/README.md). The bench build lifts it to measure the limit. */
#ifdef DEEPAF_BENCH
#define MAX_STEP_RATE 200000.0f
#else
#define MAX_STEP_RATE 30000.0f
#endif

/* Shortest timer period, in CPU cycles, the step interrupt is ever programmed for:
 * a guard against float rounding producing absurd rates (it is below 1/MAX_STEP_RATE). */
#ifdef DEEPAF_BENCH
#define MIN_STEP_CYCLES 80
#else
#define MIN_STEP_CYCLES 400
#endif

/* After the drivers are switched on, wait this long before the first step pulse:
 * A4988/DRV8825/TMC2208 need about a millisecond to wake their charge pumps. */
#define DRIVER_WAKE_MS 2

/* System tick for dwell, debounce and the idle release: 1 ms resolution is what
 * G4 and $26 are specified in. */
#define TICK_HZ 1000

/* Homing search distances (protocol.md 9.1). */
#define HOMING_SEEK_TRAVEL_FACTOR 1.5f
#define HOMING_LOCATE_PULLOFF_FACTOR 5.0f
#define HOMING_LOCATE_MIN_MM 1.0f

/* Homing order for $H: Z first, so the objective is lifted off the slide before the
 * stage moves sideways. */
#define HOMING_ORDER {2, 0, 1}

/* Junction speed used for a full reversal (mm/min); 0 = stop, as it must be. */
#define MINIMUM_JUNCTION_SPEED 0.0f

/* Largest axis value accepted in a line, mm (protocol.md 6.2). */
#define MAX_AXIS_VALUE_MM 100000L

/* Longest dwell, s (protocol.md 6.2). */
#define MAX_DWELL_S 3600

/* EEPROM format version: bump when settings_t changes layout, so an old layout is
 * detected and replaced by the defaults instead of being misread. */
#ifndef SETTINGS_FORMAT_VERSION
#define SETTINGS_FORMAT_VERSION 1
#endif
#define SETTINGS_EEPROM_ADDR 0

#endif
