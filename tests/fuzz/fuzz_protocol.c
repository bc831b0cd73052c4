// SPDX-License-Identifier: MIT
/*
 * fuzz_protocol.c - libFuzzer target for shm/protocol.c.
 *
 * Both directions, from the same input:
 *  - the input as a datagram: whatever decodes must satisfy the struct's
 *    invariants, re-encode to a datagram of the same length that decodes to
 *    the same struct, and be a fixed point from there on;
 *  - the input as the bytes of a struct bumba_msg (strings unterminated,
 *    counts out of range): the encoder must stay inside the struct and the
 *    buffer, and whatever it accepts must decode to exactly the fields it
 *    was told were present.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

#define HDR	   16
#define KNOWN_TAGS (((1u << (BUMBA_TAG_ABI + 1)) - 1) & ~1u)

static void check_str(const char *s, size_t size, uint32_t present, int tag)
{
	size_t n = strnlen(s, size);

	CHECK(n < size);
	CHECK(bumba_utf8_valid(s, n));
	/* Unused bytes stay zero, so structs compare with memcmp. */
	for (size_t i = n; i < size; i++)
		CHECK(s[i] == '\0');
	if (!(present & (1u << tag)))
		CHECK(n == 0);
}

static void check_invariants(const struct bumba_msg *m)
{
	CHECK(m->type >= BUMBA_MSG_REGISTER && m->type <= BUMBA_MSG_BYE_OK);
	CHECK((m->present & ~KNOWN_TAGS) == 0);
	CHECK(m->n_caps <= BUMBA_MAX_CAPS);
	CHECK(!!(m->present & (1u << BUMBA_TAG_CAPABILITY)) == (m->n_caps > 0));
	check_str(m->type_s, sizeof(m->type_s), m->present, BUMBA_TAG_TYPE);
	check_str(m->name, sizeof(m->name), m->present, BUMBA_TAG_NAME);
	check_str(m->department, sizeof(m->department), m->present, BUMBA_TAG_DEPARTMENT);
	check_str(m->parent_id, sizeof(m->parent_id), m->present, BUMBA_TAG_PARENT_ID);
	check_str(m->agent_id, sizeof(m->agent_id), m->present, BUMBA_TAG_AGENT_ID);
	check_str(m->message, sizeof(m->message), m->present, BUMBA_TAG_MESSAGE);
	for (uint32_t i = 0; i < BUMBA_MAX_CAPS; i++)
		check_str(m->caps[i], sizeof(m->caps[i]), i < m->n_caps ? ~0u : 0,
			  BUMBA_TAG_CAPABILITY);
	if (!(m->present & (1u << BUMBA_TAG_SLOT)))
		CHECK(m->slot == 0);
	if (!(m->present & (1u << BUMBA_TAG_SEG_SIZE)))
		CHECK(m->seg_size == 0);
}

static void decode_direction(const uint8_t *data, size_t size)
{
	struct bumba_msg m, m2;
	uint8_t *re = malloc(BUMBA_MSG_MAX), *re2 = malloc(BUMBA_MSG_MAX);
	int ret, n;

	CHECK(re && re2);
	ret = bumba_msg_decode(data, size, &m);
	CHECK(ret == 0 || ret == -EPROTO || ret == -EBADMSG || ret == -EMSGSIZE);
	if (ret < 0) {
		static const struct bumba_msg zero;

		CHECK(memcmp(&m, &zero, sizeof(m)) == 0);
		goto out;
	}
	check_invariants(&m);

	/* Same fields, canonical order: same length. */
	n = bumba_msg_encode(&m, re, BUMBA_MSG_MAX);
	CHECK(n == (int)size);
	CHECK(bumba_msg_decode(re, (size_t)n, &m2) == 0);
	CHECK(memcmp(&m, &m2, sizeof(m)) == 0);
	CHECK(bumba_msg_encode(&m2, re2, BUMBA_MSG_MAX) == n);
	CHECK(memcmp(re, re2, (size_t)n) == 0);
	/* One byte short of room is refused, never overrun. */
	CHECK(bumba_msg_encode(&m2, re2, (size_t)n - 1) == -ENOSPC);
out:
	free(re);
	free(re2);
}

/* What the encoder was told to send: the present fields of m, nothing
 * else, as the decoder fills them in. */
static void expected(const struct bumba_msg *m, struct bumba_msg *e)
{
	memset(e, 0, sizeof(*e));
	e->type = m->type;
	e->seq = m->seq;
	e->present = m->present;
	if (m->present & (1u << BUMBA_TAG_TYPE))
		strcpy(e->type_s, m->type_s);
	if (m->present & (1u << BUMBA_TAG_NAME))
		strcpy(e->name, m->name);
	if (m->present & (1u << BUMBA_TAG_DEPARTMENT))
		strcpy(e->department, m->department);
	if (m->present & (1u << BUMBA_TAG_PARENT_ID))
		strcpy(e->parent_id, m->parent_id);
	if (m->present & (1u << BUMBA_TAG_AGENT_ID))
		strcpy(e->agent_id, m->agent_id);
	if (m->present & (1u << BUMBA_TAG_MESSAGE))
		strcpy(e->message, m->message);
	if (m->present & (1u << BUMBA_TAG_SLOT))
		e->slot = m->slot;
	if (m->present & (1u << BUMBA_TAG_GEN))
		e->gen = m->gen;
	if (m->present & (1u << BUMBA_TAG_ERRNO))
		e->err = m->err;
	if (m->present & (1u << BUMBA_TAG_ABI))
		e->abi = m->abi;
	if (m->present & (1u << BUMBA_TAG_SEG_SIZE))
		e->seg_size = m->seg_size;
	if (m->present & (1u << BUMBA_TAG_CAPABILITY)) {
		for (uint32_t i = 0; i < m->n_caps; i++)
			strcpy(e->caps[i], m->caps[i]);
		e->n_caps = m->n_caps;
		if (!e->n_caps)
			e->present &= ~(1u << BUMBA_TAG_CAPABILITY);
	}
}

static void encode_direction(const uint8_t *data, size_t size)
{
	struct bumba_msg *m = malloc(sizeof(*m)), d, e;
	size_t cap;
	uint8_t *buf;
	int n;

	CHECK(m);
	memset(m, 0, sizeof(*m));
	memcpy(m, data, size < sizeof(*m) ? size : sizeof(*m));
	/* Keep the interesting cases likely: a known type and known tags
	 * most of the time, a small count. */
	if (size > 0 && !(data[0] & 0x80)) {
		m->type = (uint16_t)(1 + m->type % BUMBA_MSG_BYE_OK);
		m->present &= KNOWN_TAGS;
		m->n_caps %= BUMBA_MAX_CAPS + 1;
	}
	/* Terminated strings get past the length check to the content
	 * checks and the wire. */
	if (size > 0 && (data[0] & 0x40)) {
		m->type_s[sizeof(m->type_s) - 1] = '\0';
		m->name[sizeof(m->name) - 1] = '\0';
		m->department[sizeof(m->department) - 1] = '\0';
		m->parent_id[sizeof(m->parent_id) - 1] = '\0';
		m->agent_id[sizeof(m->agent_id) - 1] = '\0';
		m->message[sizeof(m->message) - 1] = '\0';
		for (int i = 0; i < BUMBA_MAX_CAPS; i++)
			m->caps[i][BUMBA_FIELD_MAX - 1] = '\0';
	}
	cap = size > 1 ? (size_t)data[1] * 8 : BUMBA_MSG_MAX;
	buf = malloc(cap ? cap : 1);
	CHECK(buf);

	n = bumba_msg_encode(m, buf, cap);
	CHECK(n == -EINVAL || n == -ENOSPC || (n >= HDR && (size_t)n <= cap));
	if (n > 0) {
		CHECK(bumba_msg_decode(buf, (size_t)n, &d) == 0);
		expected(m, &e);
		CHECK(memcmp(&d, &e, sizeof(d)) == 0);
	}
	free(buf);
	free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* An exact-size copy, so that a read past size is caught. */
	uint8_t *copy = malloc(size ? size : 1);

	CHECK(copy);
	memcpy(copy, data, size);
	decode_direction(copy, size);
	encode_direction(copy, size);
	free(copy);
	return 0;
}
