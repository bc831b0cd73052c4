// SPDX-License-Identifier: MIT
/*
 * test_protocol.c - unit tests of shm/protocol.c: bumba_msg_encode() and
 * bumba_msg_decode().
 *
 * Byte-exact encodings, round trips of every message type, every error of
 * both directions, and robustness: every truncation and every bit flip of
 * valid messages, and seeded random datagrams, must decode or fail cleanly
 * (the sanitizer build catches any read out of bounds).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "internal.h"

#define HDR 16

static void msg_init(struct bumba_msg *m, uint16_t type, uint32_t seq)
{
	memset(m, 0, sizeof(*m));
	m->type = type;
	m->seq = seq;
}

/* Copies val into a field; the test's own strings always fit. */
static void copy_str(char *dst, size_t size, const char *val)
{
	size_t n = strlen(val);

	assert_true(n < size);
	memcpy(dst, val, n + 1);
}

#define SET_STR(m, tag, field, val)                                                                \
	do {                                                                                       \
		copy_str((m)->field, sizeof((m)->field), (val));                                   \
		(m)->present |= 1u << (tag);                                                       \
	} while (0)

#define SET_INT(m, tag, field, val)                                                                \
	do {                                                                                       \
		(m)->field = (val);                                                                \
		(m)->present |= 1u << (tag);                                                       \
	} while (0)

static void add_cap(struct bumba_msg *m, const char *cap)
{
	copy_str(m->caps[m->n_caps++], BUMBA_FIELD_MAX, cap);
	m->present |= 1u << BUMBA_TAG_CAPABILITY;
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)v);
	put16(p + 2, (uint16_t)(v >> 16));
}

static uint16_t get_tag_at(const uint8_t *b, size_t off)
{
	return (uint16_t)(b[off] | b[off + 1] << 8);
}

/* A hand-built datagram: header, then TLVs appended with add_tlv(). */
struct raw {
	uint8_t b[BUMBA_MSG_MAX + 64];
	size_t len;
};

static void raw_init(struct raw *r, uint16_t type)
{
	memset(r, 0, sizeof(*r));
	put32(r->b, BUMBA_PROTO_MAGIC);
	put16(r->b + 4, BUMBA_PROTO_VERSION);
	put16(r->b + 6, type);
	put32(r->b + 12, 77);
	r->len = HDR;
	put32(r->b + 8, (uint32_t)r->len);
}

static void add_tlv(struct raw *r, uint16_t tag, const void *val, size_t n)
{
	put16(r->b + r->len, tag);
	put16(r->b + r->len + 2, (uint16_t)n);
	memcpy(r->b + r->len + 4, val, n);
	r->len += 4 + n;
	put32(r->b + 8, (uint32_t)r->len);
}

static void add_str(struct raw *r, uint16_t tag, const char *s)
{
	add_tlv(r, tag, s, strlen(s));
}

static void add_u32(struct raw *r, uint16_t tag, uint32_t v)
{
	uint8_t b[4];

	put32(b, v);
	add_tlv(r, tag, b, 4);
}

static int raw_decode(const struct raw *r, struct bumba_msg *m)
{
	return bumba_msg_decode(r->b, r->len, m);
}

/* Every field of a REGISTER at its limit. */
static void full_register(struct bumba_msg *m)
{
	char s[256];

	msg_init(m, BUMBA_MSG_REGISTER, 0xdeadbeef);
	memset(s, 'T', BUMBA_FIELD_MAX - 1);
	s[BUMBA_FIELD_MAX - 1] = '\0';
	SET_STR(m, BUMBA_TAG_TYPE, type_s, s);
	SET_STR(m, BUMBA_TAG_NAME, name, "n\xc3\xa4me \xf0\x9f\x98\x80");
	SET_STR(m, BUMBA_TAG_DEPARTMENT, department, "");
	for (int i = 0; i < BUMBA_MAX_CAPS; i++) {
		snprintf(s, sizeof(s), "capability-%02d-%-*s", i, 20, "x");
		s[BUMBA_FIELD_MAX - 1] = '\0';
		add_cap(m, s);
	}
	memset(s, 'p', BUMBA_ID_MAX - 1);
	s[BUMBA_ID_MAX - 1] = '\0';
	SET_STR(m, BUMBA_TAG_PARENT_ID, parent_id, s);
	SET_INT(m, BUMBA_TAG_ABI, abi, BUMBA_ABI_VERSION);
}

/* Messages of every type, as a server and a client send them. */
static size_t sample_messages(struct bumba_msg *ms)
{
	size_t n = 0;
	struct bumba_msg *m;

	full_register(&ms[n++]);

	m = &ms[n++];
	msg_init(m, BUMBA_MSG_REGISTER, 1);
	SET_STR(m, BUMBA_TAG_TYPE, type_s, "Coder");
	SET_STR(m, BUMBA_TAG_NAME, name, "alice");
	SET_STR(m, BUMBA_TAG_DEPARTMENT, department, "backend");
	add_cap(m, "c");
	add_cap(m, "python");
	SET_INT(m, BUMBA_TAG_ABI, abi, 1);

	m = &ms[n++];
	msg_init(m, BUMBA_MSG_REGISTER_OK, 1);
	SET_STR(m, BUMBA_TAG_AGENT_ID, agent_id, "Coder-alice-1718000000000-0a1b2c3d");
	SET_INT(m, BUMBA_TAG_SLOT, slot, 41);
	SET_INT(m, BUMBA_TAG_GEN, gen, 0xffffffffu);
	SET_INT(m, BUMBA_TAG_SEG_SIZE, seg_size, 0x0123456789abcdefull);
	SET_INT(m, BUMBA_TAG_ABI, abi, 1);

	m = &ms[n++];
	msg_init(m, BUMBA_MSG_ERROR, 2);
	SET_INT(m, BUMBA_TAG_ERRNO, err, ENOSPC);
	memset(m->message, 'm', sizeof(m->message) - 1);
	m->present |= 1u << BUMBA_TAG_MESSAGE;

	m = &ms[n++];
	msg_init(m, BUMBA_MSG_OBSERVE, 3);
	SET_INT(m, BUMBA_TAG_ABI, abi, 1);

	m = &ms[n++];
	msg_init(m, BUMBA_MSG_OBSERVE_OK, 3);
	SET_INT(m, BUMBA_TAG_SEG_SIZE, seg_size, 1ull << 40);
	SET_INT(m, BUMBA_TAG_ABI, abi, 1);

	msg_init(&ms[n++], BUMBA_MSG_UNREGISTER, 4);
	msg_init(&ms[n++], BUMBA_MSG_BYE_OK, 4);
	msg_init(&ms[n++], BUMBA_MSG_PING, 0);
	msg_init(&ms[n++], BUMBA_MSG_PONG, UINT32_MAX);
	return n;
}

#define N_SAMPLES 10

static void assert_msg_equal(const struct bumba_msg *a, const struct bumba_msg *b)
{
	assert_int_equal(a->type, b->type);
	assert_int_equal(a->seq, b->seq);
	assert_int_equal(a->present, b->present);
	assert_string_equal(a->type_s, b->type_s);
	assert_string_equal(a->name, b->name);
	assert_string_equal(a->department, b->department);
	assert_int_equal(a->n_caps, b->n_caps);
	for (uint32_t i = 0; i < a->n_caps; i++)
		assert_string_equal(a->caps[i], b->caps[i]);
	assert_string_equal(a->parent_id, b->parent_id);
	assert_string_equal(a->agent_id, b->agent_id);
	assert_string_equal(a->message, b->message);
	assert_int_equal(a->slot, b->slot);
	assert_int_equal(a->gen, b->gen);
	assert_int_equal(a->err, b->err);
	assert_int_equal(a->abi, b->abi);
	assert_int_equal(a->seg_size, b->seg_size);
}

/* ------------------------------------------------------------------ */

static void test_encode_bytes(void **state)
{
	(void)state;
	struct bumba_msg m;
	uint8_t buf[BUMBA_MSG_MAX];
	static const uint8_t want[] = {
		0x01, 0x42, 0x4d, 0x50,		    /* magic */
		0x01, 0x00,			    /* version */
		0x01, 0x00,			    /* REGISTER */
		0x2b, 0x00, 0x00, 0x00,		    /* length 43 */
		0x07, 0x06, 0x05, 0x04,		    /* seq */
		0x01, 0x00, 0x01, 0x00, 'T',	    /* type "T" */
		0x02, 0x00, 0x02, 0x00, 0xc3, 0xa9, /* name "é" */
		0x04, 0x00, 0x00, 0x00,		    /* capability "" */
		0x09, 0x00, 0x08, 0x00, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
		/* seg_size */
	};

	msg_init(&m, BUMBA_MSG_REGISTER, 0x04050607);
	SET_STR(&m, BUMBA_TAG_TYPE, type_s, "T");
	SET_STR(&m, BUMBA_TAG_NAME, name, "\xc3\xa9");
	add_cap(&m, "");
	SET_INT(&m, BUMBA_TAG_SEG_SIZE, seg_size, 0x0102030405060708ull);
	/* Set but not present: not sent. */
	snprintf(m.department, sizeof(m.department), "ignored");
	m.slot = 5;

	assert_int_equal(sizeof(want), 43);
	assert_int_equal(bumba_msg_encode(&m, buf, sizeof(buf)), sizeof(want));
	assert_memory_equal(buf, want, sizeof(want));
	/* The magic reads "\x01BMP". */
	assert_memory_equal(buf, "\x01\x42\x4d\x50", 4);

	/* Exactly enough room works; one byte less does not. */
	assert_int_equal(bumba_msg_encode(&m, buf, sizeof(want)), sizeof(want));
	assert_int_equal(bumba_msg_encode(&m, buf, sizeof(want) - 1), -ENOSPC);
}

static void test_header_only(void **state)
{
	(void)state;
	struct bumba_msg m, d;
	uint8_t buf[64];

	msg_init(&m, BUMBA_MSG_PING, 9);
	assert_int_equal(bumba_msg_encode(&m, buf, sizeof(buf)), HDR);
	assert_int_equal(bumba_msg_encode(&m, buf, HDR), HDR);
	assert_int_equal(bumba_msg_decode(buf, HDR, &d), 0);
	assert_int_equal(d.type, BUMBA_MSG_PING);
	assert_int_equal(d.seq, 9);
	assert_int_equal(d.present, 0);
}

static void test_round_trip(void **state)
{
	(void)state;
	struct bumba_msg ms[N_SAMPLES], d;
	uint8_t buf[BUMBA_MSG_MAX];

	assert_int_equal(sample_messages(ms), N_SAMPLES);
	for (size_t i = 0; i < N_SAMPLES; i++) {
		int len = bumba_msg_encode(&ms[i], buf, sizeof(buf));

		assert_true(len >= HDR && len <= BUMBA_MSG_MAX);
		assert_int_equal(bumba_msg_decode(buf, (size_t)len, &d), 0);
		assert_msg_equal(&ms[i], &d);
		/* Decoded structs compare bytewise too: decode zeroes first. */
		struct bumba_msg d2;
		uint8_t buf2[BUMBA_MSG_MAX];
		assert_int_equal(bumba_msg_encode(&d, buf2, sizeof(buf2)), len);
		assert_memory_equal(buf, buf2, (size_t)len);
		assert_int_equal(bumba_msg_decode(buf2, (size_t)len, &d2), 0);
		assert_memory_equal(&d, &d2, sizeof(d));
	}
}

/* The largest message there is still fits a datagram. */
static void test_largest(void **state)
{
	(void)state;
	struct bumba_msg m, d;
	uint8_t buf[BUMBA_MSG_MAX];

	full_register(&m);
	memset(m.agent_id, 'a', BUMBA_ID_MAX - 1);
	memset(m.message, 'm', sizeof(m.message) - 1);
	m.present = ~0u & ~1u & ((1u << (BUMBA_TAG_ABI + 1)) - 1);
	int len = bumba_msg_encode(&m, buf, sizeof(buf));
	assert_true(len > 1000 && len <= BUMBA_MSG_MAX);
	assert_int_equal(bumba_msg_decode(buf, (size_t)len, &d), 0);
	assert_msg_equal(&m, &d);
}

static void test_encode_nospace(void **state)
{
	(void)state;
	struct bumba_msg ms[N_SAMPLES];
	uint8_t buf[BUMBA_MSG_MAX], *exact;

	sample_messages(ms);
	for (size_t i = 0; i < N_SAMPLES; i++) {
		int len = bumba_msg_encode(&ms[i], buf, sizeof(buf));

		for (int cap = 0; cap < len; cap++) {
			/* An exact-size buffer, so a write past cap is caught. */
			exact = malloc(cap ? (size_t)cap : 1);
			assert_non_null(exact);
			assert_int_equal(bumba_msg_encode(&ms[i], exact, (size_t)cap), -ENOSPC);
			free(exact);
		}
		exact = malloc((size_t)len);
		assert_non_null(exact);
		assert_int_equal(bumba_msg_encode(&ms[i], exact, (size_t)len), len);
		assert_memory_equal(exact, buf, (size_t)len);
		free(exact);
	}
	assert_int_equal(bumba_msg_encode(&ms[0], NULL, 0), -ENOSPC);
	assert_int_equal(bumba_msg_encode(&ms[0], NULL, 100), -ENOSPC);
}

static void test_encode_invalid(void **state)
{
	(void)state;
	struct bumba_msg m;
	uint8_t buf[BUMBA_MSG_MAX];

	assert_int_equal(bumba_msg_encode(NULL, buf, sizeof(buf)), -EINVAL);

	/* Unknown message types. */
	static const uint16_t bad_types[] = {0, 10, 0x100, 0xffff};
	for (size_t i = 0; i < sizeof(bad_types) / sizeof(bad_types[0]); i++) {
		msg_init(&m, bad_types[i], 0);
		assert_int_equal(bumba_msg_encode(&m, buf, sizeof(buf)), -EINVAL);
	}

	/* Present bits of tags that do not exist. */
	msg_init(&m, BUMBA_MSG_PING, 0);
	m.present = 1u << 0;
	assert_int_equal(bumba_msg_encode(&m, buf, sizeof(buf)), -EINVAL);
	m.present = 1u << (BUMBA_TAG_ABI + 1);
	assert_int_equal(bumba_msg_encode(&m, buf, sizeof(buf)), -EINVAL);
	m.present = 1u << 31;
	assert_int_equal(bumba_msg_encode(&m, buf, sizeof(buf)), -EINVAL);

	/* Too many capabilities. */
	full_register(&m);
	m.n_caps = BUMBA_MAX_CAPS + 1;
	assert_int_equal(bumba_msg_encode(&m, buf, sizeof(buf)), -EINVAL);

	/* A string that fills its array: no room for the NUL, too long. */
	msg_init(&m, BUMBA_MSG_REGISTER, 0);
	memset(m.name, 'x', sizeof(m.name));
	m.present = 1u << BUMBA_TAG_NAME;
	assert_int_equal(bumba_msg_encode(&m, buf, sizeof(buf)), -EINVAL);
	/* ...but only if present. */
	m.present = 0;
	assert_int_equal(bumba_msg_encode(&m, buf, sizeof(buf)), HDR);

	msg_init(&m, BUMBA_MSG_REGISTER_OK, 0);
	memset(m.agent_id, 'x', sizeof(m.agent_id));
	m.present = 1u << BUMBA_TAG_AGENT_ID;
	assert_int_equal(bumba_msg_encode(&m, buf, sizeof(buf)), -EINVAL);
	msg_init(&m, BUMBA_MSG_ERROR, 0);
	memset(m.message, 'x', sizeof(m.message));
	m.present = 1u << BUMBA_TAG_MESSAGE;
	assert_int_equal(bumba_msg_encode(&m, buf, sizeof(buf)), -EINVAL);
	msg_init(&m, BUMBA_MSG_REGISTER, 0);
	memset(m.caps[3], 'x', sizeof(m.caps[3]));
	m.n_caps = 4;
	m.present = 1u << BUMBA_TAG_CAPABILITY;
	assert_int_equal(bumba_msg_encode(&m, buf, sizeof(buf)), -EINVAL);
	/* Only the first n_caps count. */
	m.n_caps = 3;
	assert_true(bumba_msg_encode(&m, buf, sizeof(buf)) > 0);

	/* Bad contents. */
	static const char *const bad[] = {
		"tab\there", "nl\n", "\x7f", "\x01", "\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xff",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		msg_init(&m, BUMBA_MSG_REGISTER, 0);
		SET_STR(&m, BUMBA_TAG_DEPARTMENT, department, bad[i]);
		assert_int_equal(bumba_msg_encode(&m, buf, sizeof(buf)), -EINVAL);
		msg_init(&m, BUMBA_MSG_ERROR, 0);
		SET_STR(&m, BUMBA_TAG_MESSAGE, message, bad[i]);
		assert_int_equal(bumba_msg_encode(&m, buf, sizeof(buf)), -EINVAL);
	}

	/* A bad string is -EINVAL even when the buffer is also too small. */
	msg_init(&m, BUMBA_MSG_REGISTER, 0);
	SET_STR(&m, BUMBA_TAG_NAME, name, "bad\x01");
	assert_int_equal(bumba_msg_encode(&m, buf, HDR + 2), -EINVAL);
}

/* ------------------------------------------------------------------ */

static void test_decode_header(void **state)
{
	(void)state;
	struct raw r;
	struct bumba_msg m;
	uint8_t big[BUMBA_MSG_MAX + 1];

	raw_init(&r, BUMBA_MSG_PING);
	assert_int_equal(raw_decode(&r, &m), 0);

	/* Too long, whatever it holds. */
	memset(big, 0, sizeof(big));
	assert_int_equal(bumba_msg_decode(big, sizeof(big), &m), -EMSGSIZE);
	memcpy(big, r.b, HDR);
	put32(big + 8, sizeof(big));
	assert_int_equal(bumba_msg_decode(big, sizeof(big), &m), -EMSGSIZE);
	assert_int_equal(bumba_msg_decode(big, SIZE_MAX, &m), -EMSGSIZE);

	/* Exactly BUMBA_MSG_MAX is not too long: it gets as far as the TLVs
	 * (no valid message is that long, so they fail). */
	memcpy(big, r.b, HDR);
	memset(big + HDR, 0, sizeof(big) - HDR);
	put32(big + 8, BUMBA_MSG_MAX);
	assert_int_equal(bumba_msg_decode(big, BUMBA_MSG_MAX, &m), -EBADMSG);

	/* Shorter than a header. */
	for (size_t len = 0; len < HDR; len++)
		assert_int_equal(bumba_msg_decode(r.b, len, &m), -EPROTO);
	assert_int_equal(bumba_msg_decode(NULL, 0, &m), -EPROTO);

	/* Bad magic, every byte of it. */
	for (int i = 0; i < 4; i++) {
		raw_init(&r, BUMBA_MSG_PING);
		r.b[i] ^= 0x20;
		assert_int_equal(raw_decode(&r, &m), -EPROTO);
	}
	/* Big-endian magic. */
	raw_init(&r, BUMBA_MSG_PING);
	memcpy(r.b, "PMB\x01", 4);
	assert_int_equal(raw_decode(&r, &m), -EPROTO);

	/* Other versions. */
	static const uint16_t versions[] = {0, 2, 0x100, 0xffff};
	for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
		raw_init(&r, BUMBA_MSG_PING);
		put16(r.b + 4, versions[i]);
		assert_int_equal(raw_decode(&r, &m), -EPROTO);
	}

	/* The header's length disagrees with the datagram's. */
	raw_init(&r, BUMBA_MSG_PING);
	put32(r.b + 8, HDR + 1);
	assert_int_equal(raw_decode(&r, &m), -EBADMSG);
	put32(r.b + 8, HDR - 1);
	assert_int_equal(raw_decode(&r, &m), -EBADMSG);
	put32(r.b + 8, 0);
	assert_int_equal(raw_decode(&r, &m), -EBADMSG);
	put32(r.b + 8, 0xffffffffu);
	assert_int_equal(raw_decode(&r, &m), -EBADMSG);
	raw_init(&r, BUMBA_MSG_PING);
	add_u32(&r, BUMBA_TAG_ABI, 1);
	put32(r.b + 8, HDR);
	assert_int_equal(raw_decode(&r, &m), -EBADMSG);

	/* Unknown types. */
	static const uint16_t types[] = {0, 10, 11, 0x0100, 0xffff};
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		raw_init(&r, types[i]);
		assert_int_equal(raw_decode(&r, &m), -EBADMSG);
	}
	for (uint16_t t = BUMBA_MSG_REGISTER; t <= BUMBA_MSG_BYE_OK; t++) {
		raw_init(&r, t);
		assert_int_equal(raw_decode(&r, &m), 0);
		assert_int_equal(m.type, t);
		assert_int_equal(m.seq, 77);
	}
}

static void test_decode_tlv_errors(void **state)
{
	(void)state;
	struct raw r;
	struct bumba_msg m;
	char s[300];

	/* Unknown tags. */
	static const uint16_t tags[] = {0, BUMBA_TAG_ABI + 1, 31, 32, 0x100, 0xffff};
	for (size_t i = 0; i < sizeof(tags) / sizeof(tags[0]); i++) {
		raw_init(&r, BUMBA_MSG_REGISTER);
		add_tlv(&r, tags[i], "", 0);
		assert_int_equal(raw_decode(&r, &m), -EBADMSG);
	}

	/* A TLV header cut short: 1, 2, 3 bytes of it. */
	for (size_t k = 1; k < 4; k++) {
		raw_init(&r, BUMBA_MSG_REGISTER);
		r.len += k;
		put32(r.b + 8, (uint32_t)r.len);
		assert_int_equal(raw_decode(&r, &m), -EBADMSG);
	}

	/* A value running past the end. */
	raw_init(&r, BUMBA_MSG_REGISTER);
	add_str(&r, BUMBA_TAG_NAME, "alice");
	put16(r.b + HDR + 2, 6);
	assert_int_equal(raw_decode(&r, &m), -EBADMSG);
	put16(r.b + HDR + 2, 0xffff);
	assert_int_equal(raw_decode(&r, &m), -EBADMSG);
	put16(r.b + HDR + 2, 4); /* short: the rest is a bad TLV header */
	assert_int_equal(raw_decode(&r, &m), -EBADMSG);

	/* Integers of the wrong size. */
	static const uint16_t u32_tags[] = {BUMBA_TAG_SLOT, BUMBA_TAG_GEN, BUMBA_TAG_ERRNO,
					    BUMBA_TAG_ABI};
	for (size_t i = 0; i < 4; i++) {
		for (size_t n = 0; n <= 9; n++) {
			raw_init(&r, BUMBA_MSG_REGISTER_OK);
			add_tlv(&r, u32_tags[i], "\x01\x02\x03\x04\x05\x06\x07\x08\x09", n);
			assert_int_equal(raw_decode(&r, &m), n == 4 ? 0 : -EBADMSG);
		}
	}
	for (size_t n = 0; n <= 9; n++) {
		raw_init(&r, BUMBA_MSG_REGISTER_OK);
		add_tlv(&r, BUMBA_TAG_SEG_SIZE, "\x01\x02\x03\x04\x05\x06\x07\x08\x09", n);
		assert_int_equal(raw_decode(&r, &m), n == 8 ? 0 : -EBADMSG);
	}

	/* Strings at and past their limits. */
	static const struct {
		uint16_t tag;
		size_t max;
	} strs[] = {
		{BUMBA_TAG_TYPE, BUMBA_FIELD_MAX - 1},
		{BUMBA_TAG_NAME, BUMBA_FIELD_MAX - 1},
		{BUMBA_TAG_DEPARTMENT, BUMBA_FIELD_MAX - 1},
		{BUMBA_TAG_CAPABILITY, BUMBA_FIELD_MAX - 1},
		{BUMBA_TAG_PARENT_ID, BUMBA_ID_MAX - 1},
		{BUMBA_TAG_AGENT_ID, BUMBA_ID_MAX - 1},
		{BUMBA_TAG_MESSAGE, 255},
	};
	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
		memset(s, 'a', sizeof(s));
		raw_init(&r, BUMBA_MSG_REGISTER);
		add_tlv(&r, strs[i].tag, s, strs[i].max);
		assert_int_equal(raw_decode(&r, &m), 0);
		raw_init(&r, BUMBA_MSG_REGISTER);
		add_tlv(&r, strs[i].tag, s, strs[i].max + 1);
		assert_int_equal(raw_decode(&r, &m), -EBADMSG);
		/* The longest fits its array with the NUL. */
		raw_init(&r, BUMBA_MSG_REGISTER);
		add_tlv(&r, strs[i].tag, s, strs[i].max);
		assert_int_equal(raw_decode(&r, &m), 0);

		/* Contents: NUL, control characters, bad UTF-8. */
		static const char *const bad[] = {
			"a\0b",
			"\x01",
			"\t",
			"\n",
			"\x1f",
			"\x7f",
			"\xc3",
			"\xc0\xaf",
			"\xe0\x80\x80",
			"\xed\xa0\x80",
			"\xf4\x90\x80\x80",
			"\x80",
			"\xff",
		};
		static const size_t bad_len[] = {3, 1, 1, 1, 1, 1, 1, 2, 3, 3, 4, 1, 1};
		for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
			raw_init(&r, BUMBA_MSG_REGISTER);
			add_tlv(&r, strs[i].tag, bad[k], bad_len[k]);
			assert_int_equal(raw_decode(&r, &m), -EBADMSG);
		}
		/* An empty string is a string. */
		raw_init(&r, BUMBA_MSG_REGISTER);
		add_tlv(&r, strs[i].tag, "", 0);
		assert_int_equal(raw_decode(&r, &m), 0);
		assert_true(m.present & (1u << strs[i].tag));
	}
}

static void test_decode_repeats(void **state)
{
	(void)state;
	struct raw r;
	struct bumba_msg m;
	char cap[8];

	/* Every single-valued tag, twice. */
	for (uint16_t tag = 1; tag <= BUMBA_TAG_ABI; tag++) {
		if (tag == BUMBA_TAG_CAPABILITY)
			continue;
		raw_init(&r, BUMBA_MSG_REGISTER);
		for (int k = 0; k < 2; k++) {
			if (tag == BUMBA_TAG_SEG_SIZE)
				add_tlv(&r, tag, "\0\0\0\0\0\0\0\0", 8);
			else if (tag >= BUMBA_TAG_SLOT && tag != BUMBA_TAG_MESSAGE)
				add_u32(&r, tag, 1);
			else
				add_str(&r, tag, "x");
			assert_int_equal(raw_decode(&r, &m), k == 0 ? 0 : -EBADMSG);
		}
		/* Not even adjacent. */
		raw_init(&r, BUMBA_MSG_REGISTER);
		add_u32(&r, tag == BUMBA_TAG_ABI ? BUMBA_TAG_SLOT : BUMBA_TAG_ABI, 1);
		if (tag == BUMBA_TAG_SEG_SIZE)
			add_tlv(&r, tag, "\0\0\0\0\0\0\0\0", 8);
		else if (tag >= BUMBA_TAG_SLOT && tag != BUMBA_TAG_MESSAGE)
			add_u32(&r, tag, 1);
		else
			add_str(&r, tag, "x");
		add_str(&r, BUMBA_TAG_MESSAGE == tag ? BUMBA_TAG_NAME : BUMBA_TAG_MESSAGE, "y");
		if (tag == BUMBA_TAG_SEG_SIZE)
			add_tlv(&r, tag, "\0\0\0\0\0\0\0\0", 8);
		else if (tag >= BUMBA_TAG_SLOT && tag != BUMBA_TAG_MESSAGE)
			add_u32(&r, tag, 2);
		else
			add_str(&r, tag, "z");
		assert_int_equal(raw_decode(&r, &m), -EBADMSG);
	}

	/* Capabilities repeat up to BUMBA_MAX_CAPS, in order. */
	raw_init(&r, BUMBA_MSG_REGISTER);
	for (int i = 0; i < BUMBA_MAX_CAPS; i++) {
		snprintf(cap, sizeof(cap), "c%d", i);
		add_str(&r, BUMBA_TAG_CAPABILITY, cap);
		if (i == 5)
			add_str(&r, BUMBA_TAG_NAME, "between");
	}
	assert_int_equal(raw_decode(&r, &m), 0);
	assert_int_equal(m.n_caps, BUMBA_MAX_CAPS);
	assert_string_equal(m.caps[0], "c0");
	assert_string_equal(m.caps[BUMBA_MAX_CAPS - 1], "c15");
	assert_string_equal(m.name, "between");
	add_str(&r, BUMBA_TAG_CAPABILITY, "one-too-many");
	assert_int_equal(raw_decode(&r, &m), -EBADMSG);
	assert_int_equal(m.n_caps, 0); /* zeroed on failure */
}

/* Tags in any order decode; the encoder always writes them ascending. */
static void test_decode_order(void **state)
{
	(void)state;
	struct raw r;
	struct bumba_msg m;
	uint8_t buf[BUMBA_MSG_MAX];

	raw_init(&r, BUMBA_MSG_REGISTER_OK);
	add_u32(&r, BUMBA_TAG_ABI, 1);
	add_u32(&r, BUMBA_TAG_SLOT, 3);
	add_str(&r, BUMBA_TAG_AGENT_ID, "A-b-1-00000000");
	assert_int_equal(raw_decode(&r, &m), 0);
	assert_int_equal(m.abi, 1);
	assert_int_equal(m.slot, 3);
	assert_string_equal(m.agent_id, "A-b-1-00000000");
	assert_int_equal(m.present, (1u << BUMBA_TAG_ABI) | (1u << BUMBA_TAG_SLOT) |
					    (1u << BUMBA_TAG_AGENT_ID));

	int len = bumba_msg_encode(&m, buf, sizeof(buf));
	assert_int_equal(len, r.len);
	assert_int_equal(get_tag_at(buf, HDR), BUMBA_TAG_AGENT_ID);
}

static void test_decode_state(void **state)
{
	(void)state;
	struct raw r;
	struct bumba_msg m;

	/* The struct is zeroed before decoding... */
	memset(&m, 0xa5, sizeof(m));
	raw_init(&r, BUMBA_MSG_PONG);
	assert_int_equal(raw_decode(&r, &m), 0);
	assert_int_equal(m.present, 0);
	assert_int_equal(m.n_caps, 0);
	assert_int_equal(m.name[0], '\0');
	assert_int_equal(m.seg_size, 0);

	/* ...and after a failure, so nothing half-decoded survives. */
	memset(&m, 0xa5, sizeof(m));
	raw_init(&r, BUMBA_MSG_REGISTER);
	add_str(&r, BUMBA_TAG_NAME, "alice");
	add_str(&r, BUMBA_TAG_NAME, "bob");
	assert_int_equal(raw_decode(&r, &m), -EBADMSG);
	struct bumba_msg zero;
	memset(&zero, 0, sizeof(zero));
	assert_memory_equal(&m, &zero, sizeof(m));

	/* A string is NUL-terminated in the struct even when the array held
	 * garbage. */
	memset(&m, 'G', sizeof(m));
	raw_init(&r, BUMBA_MSG_REGISTER);
	add_str(&r, BUMBA_TAG_NAME, "al");
	assert_int_equal(raw_decode(&r, &m), 0);
	assert_string_equal(m.name, "al");

	/* Unaligned buffers are fine. */
	uint8_t *un = malloc(r.len + 1);
	assert_non_null(un);
	memcpy(un + 1, r.b, r.len);
	assert_int_equal(bumba_msg_decode(un + 1, r.len, &m), 0);
	assert_string_equal(m.name, "al");
	assert_int_equal(bumba_msg_encode(&m, un + 1, r.len), r.len);
	assert_memory_equal(un + 1, r.b, r.len);
	free(un);
}

/* ------------------------------------------------------------------ */

/* Decodes buf[0..len) from an exact-size heap copy, so that any read past
 * len is caught by the sanitizer; if it decodes, it must survive the trip
 * through the encoder unchanged. */
static int decode_checked(const uint8_t *buf, size_t len)
{
	uint8_t *copy = malloc(len ? len : 1);
	struct bumba_msg m, m2;
	uint8_t re[BUMBA_MSG_MAX];
	int ret;

	assert_non_null(copy);
	memcpy(copy, buf, len);
	ret = bumba_msg_decode(copy, len, &m);
	free(copy);
	assert_true(ret == 0 || ret == -EPROTO || ret == -EBADMSG || ret == -EMSGSIZE);
	if (ret == 0) {
		int n = bumba_msg_encode(&m, re, sizeof(re));

		/* The same fields in canonical order: the same length. */
		assert_int_equal(n, len);
		assert_int_equal(bumba_msg_decode(re, (size_t)n, &m2), 0);
		assert_memory_equal(&m, &m2, sizeof(m));
	}
	return ret;
}

static void test_truncation(void **state)
{
	(void)state;
	struct bumba_msg ms[N_SAMPLES];
	uint8_t buf[BUMBA_MSG_MAX], cut[BUMBA_MSG_MAX];

	sample_messages(ms);
	for (size_t i = 0; i < N_SAMPLES; i++) {
		int len = bumba_msg_encode(&ms[i], buf, sizeof(buf));

		for (int k = 0; k < len; k++) {
			/* Cut as a datagram: the header says more. */
			assert_true(decode_checked(buf, (size_t)k) < 0);

			/* Cut with the header fixed up: a TLV cut short. */
			if (k < HDR)
				continue;
			memcpy(cut, buf, (size_t)k);
			put32(cut + 8, (uint32_t)k);
			int ret = decode_checked(cut, (size_t)k);
			if (ret == 0) {
				/* Only at a TLV boundary, and then it is the
				 * message minus its last fields. */
				struct bumba_msg m;
				uint8_t re[BUMBA_MSG_MAX];

				assert_int_equal(bumba_msg_decode(cut, (size_t)k, &m), 0);
				assert_int_equal(bumba_msg_encode(&m, re, sizeof(re)), k);
				assert_memory_equal(re, cut, (size_t)k);
			}
		}
	}
}

static void test_bit_flips(void **state)
{
	(void)state;
	struct bumba_msg ms[N_SAMPLES];
	uint8_t buf[BUMBA_MSG_MAX], mut[BUMBA_MSG_MAX];
	size_t ok = 0, bad = 0;

	sample_messages(ms);
	for (size_t i = 0; i < N_SAMPLES; i++) {
		int len = bumba_msg_encode(&ms[i], buf, sizeof(buf));

		for (int bit = 0; bit < len * 8; bit++) {
			memcpy(mut, buf, (size_t)len);
			mut[bit / 8] ^= (uint8_t)(1u << (bit % 8));
			if (decode_checked(mut, (size_t)len) == 0)
				ok++;
			else
				bad++;
		}
	}
	/* Both outcomes happen: flips in values decode, in structure fail. */
	assert_true(ok > 1000);
	assert_true(bad > 1000);
}

static uint64_t rng_state = 0x2545f4914f6cdd1dull;

static uint32_t rnd(void)
{
	/* xorshift64*: the same sequence on every libc. */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (uint32_t)((rng_state * 0x2545f4914f6cdd1dull) >> 32);
}

static void test_random(void **state)
{
	(void)state;
	uint8_t buf[BUMBA_MSG_MAX + 16];
	size_t ok = 0;

	/* Raw noise: almost all of it fails the header check. */
	for (int iter = 0; iter < 20000; iter++) {
		size_t len = rnd() % (sizeof(buf) + 1);

		for (size_t i = 0; i < len; i++)
			buf[i] = (uint8_t)rnd();
		decode_checked(buf, len);
	}

	/* A valid header over random TLVs built from plausible pieces, so the
	 * TLV parser sees deep inputs. */
	for (int iter = 0; iter < 200000; iter++) {
		size_t len = HDR;
		int n_tlv = (int)(rnd() % 8);

		for (int t = 0; t < n_tlv && len + 4 < 512; t++) {
			uint16_t tag = (uint16_t)(rnd() % 16);
			uint16_t n;

			switch (rnd() % 4) {
			case 0:
				n = 4;
				break;
			case 1:
				n = 8;
				break;
			default:
				n = (uint16_t)(rnd() % 40);
			}
			if (rnd() % 16 == 0)
				n = (uint16_t)rnd();
			put16(buf + len, tag);
			put16(buf + len + 2, n);
			len += 4;
			for (uint16_t k = 0; k < n && len < 512; k++)
				buf[len++] = (uint8_t)(rnd() % 4 ? 'a' + rnd() % 26 : rnd());
		}
		put32(buf, BUMBA_PROTO_MAGIC);
		put16(buf + 4, BUMBA_PROTO_VERSION);
		put16(buf + 6, (uint16_t)(1 + rnd() % 10));
		put32(buf + 8, (uint32_t)len);
		put32(buf + 12, rnd());
		if (decode_checked(buf, len) == 0)
			ok++;
	}
	assert_true(ok > 1000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_encode_bytes),   cmocka_unit_test(test_header_only),
		cmocka_unit_test(test_round_trip),     cmocka_unit_test(test_largest),
		cmocka_unit_test(test_encode_nospace), cmocka_unit_test(test_encode_invalid),
		cmocka_unit_test(test_decode_header),  cmocka_unit_test(test_decode_tlv_errors),
		cmocka_unit_test(test_decode_repeats), cmocka_unit_test(test_decode_order),
		cmocka_unit_test(test_decode_state),   cmocka_unit_test(test_truncation),
		cmocka_unit_test(test_bit_flips),      cmocka_unit_test(test_random),
	};

	return cmocka_run_group_tests_name("protocol", tests, NULL, NULL);
}
