/*
 * codes.h - error and alarm numbers (protocol.md section 10).
 *
 * The firmware sends numbers only; the text of each code lives in protocol.md and
 * in the host's deepaf_host/codes.py. tests/test_codes.py fails when this file and
 * protocol.md disagree, so keep the `#define STATUS_<NAME> <N>` form.
 */
#ifndef CODES_H
#define CODES_H

/* Success: not a code of the table, so not spelled STATUS_. */
#define CODE_OK 0

#define STATUS_EXPECTED_COMMAND_LETTER 1
#define STATUS_BAD_NUMBER_FORMAT 2
#define STATUS_INVALID_STATEMENT 3
#define STATUS_NEGATIVE_VALUE 4
#define STATUS_HOMING_DISABLED 5
#define STATUS_NOT_IDLE 8
#define STATUS_SYSTEM_LOCKED 9
#define STATUS_SOFT_LIMIT_NEEDS_HOMING 10
#define STATUS_LINE_OVERFLOW 11
#define STATUS_STEP_RATE_TOO_HIGH 12
#define STATUS_JOG_TRAVEL_EXCEEDED 15
#define STATUS_INVALID_JOG_COMMAND 16
#define STATUS_UNSUPPORTED_COMMAND 20
#define STATUS_MODAL_GROUP_VIOLATION 21
#define STATUS_UNDEFINED_FEED_RATE 22
#define STATUS_INTEGER_REQUIRED 23
#define STATUS_REPEATED_WORD 25
#define STATUS_NO_AXIS_WORDS 26
#define STATUS_G53_INVALID_MOTION_MODE 30
#define STATUS_UNUSED_AXIS_WORDS 31
#define STATUS_UNUSED_VALUE_WORDS 36
#define STATUS_INVALID_CHARACTER 60
#define STATUS_SOFT_LIMIT 61
#define STATUS_VALUE_OUT_OF_RANGE 62
#define STATUS_HOMING_FAILED 63

#define ALARM_HARD_LIMIT 1
#define ALARM_ABORT_CYCLE 3
#define ALARM_HOMING_FAIL_RESET 6
#define ALARM_HOMING_FAIL_PULLOFF 8
#define ALARM_HOMING_FAIL_APPROACH 9

#endif
