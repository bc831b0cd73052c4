// SPDX-License-Identifier: MIT
/*
 * protocol.c - the codec of the registration socket's datagrams.
 *
 * Owns bumba_msg_encode() and bumba_msg_decode(); docs/protocol.md is the
 * description for client writers.  A datagram is a 16-byte header and then
 * TLV fields, every integer little-endian.  The decoder is the one piece of
 * bumbad that parses bytes from any local process, so it trusts nothing:
 * every length is checked against the buffer before it is used, and a
 * message either decodes completely or not at all.  The encoder refuses to
 * produce what the decoder would refuse, so encode -> decode round-trips.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "internal.h"

#define HDR_SIZE 16u
#define TLV_HDR	 4u

#define MSG_TEXT_MAX 256 /* sizeof(((struct bumba_msg *)0)->message) */

_Static_assert(sizeof(((struct bumba_msg *)0)->message) == MSG_TEXT_MAX, "message size");
_Static_assert(BUMBA_TAG_ABI < 32, "present is a 32-bit mask");

/* The largest message the encoder can produce fits one datagram, so the
 * encoder never has to report -EMSGSIZE. */
_Static_assert(HDR_SIZE + (3 + BUMBA_MAX_CAPS) * (TLV_HDR + BUMBA_FIELD_MAX - 1) +
			       2 * (TLV_HDR + BUMBA_ID_MAX - 1) + 4 * (TLV_HDR + 4) +
			       (TLV_HDR + 8) + (TLV_HDR + MSG_TEXT_MAX - 1) <=
		       BUMBA_MSG_MAX,
	       "largest message exceeds BUMBA_MSG_MAX");

enum field_kind { F_NONE, F_STR, F_U32, F_U64 };

/* Where each tag lives in struct bumba_msg, and its limits. */
struct field {
	uint8_t kind;
	uint16_t max; /* strings: the longest value in bytes, without NUL */
	uint16_t off;
};

#define OFF(member) offsetof(struct bumba_msg, member)

static const struct field fields[] = {
	[BUMBA_TAG_TYPE] = {F_STR, BUMBA_FIELD_MAX - 1, OFF(type_s)},
	[BUMBA_TAG_NAME] = {F_STR, BUMBA_FIELD_MAX - 1, OFF(name)},
	[BUMBA_TAG_DEPARTMENT] = {F_STR, BUMBA_FIELD_MAX - 1, OFF(department)},
	/* off is that of caps[0]; caps[i] is i * BUMBA_FIELD_MAX further. */
	[BUMBA_TAG_CAPABILITY] = {F_STR, BUMBA_FIELD_MAX - 1, OFF(caps)},
	[BUMBA_TAG_PARENT_ID] = {F_STR, BUMBA_ID_MAX - 1, OFF(parent_id)},
	[BUMBA_TAG_AGENT_ID] = {F_STR, BUMBA_ID_MAX - 1, OFF(agent_id)},
	[BUMBA_TAG_SLOT] = {F_U32, 4, OFF(slot)},
	[BUMBA_TAG_GEN] = {F_U32, 4, OFF(gen)},
	[BUMBA_TAG_SEG_SIZE] = {F_U64, 8, OFF(seg_size)},
	[BUMBA_TAG_ERRNO] = {F_U32, 4, OFF(err)},
	[BUMBA_TAG_MESSAGE] = {F_STR, MSG_TEXT_MAX - 1, OFF(message)},
	[BUMBA_TAG_ABI] = {F_U32, 4, OFF(abi)},
};

#define N_TAGS (sizeof(fields) / sizeof(fields[0]))

static bool known_type(uint16_t type)
{
	return type >= BUMBA_MSG_REGISTER && type <= BUMBA_MSG_BYE_OK;
}

static bool known_tag(uint16_t tag)
{
	return tag < N_TAGS && fields[tag].kind != F_NONE;
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
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

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

/* ------------------------------------------------------------------ */

struct writer {
	uint8_t *buf;
	size_t cap, len;
};

/* Reserves a TLV of n value bytes; NULL if it does not fit. */
static uint8_t *tlv(struct writer *w, uint16_t tag, size_t n)
{
	uint8_t *p;

	if (w->cap - w->len < TLV_HDR + n)
		return NULL;
	p = w->buf + w->len;
	put16(p, tag);
	put16(p + 2, (uint16_t)n);
	w->len += TLV_HDR + n;
	return p + TLV_HDR;
}

/* Length of a string field, or -EINVAL.  The struct's array is max + 1
 * bytes: one with no NUL inside it is too long. */
static int str_len(const char *s, size_t max)
{
	size_t n = strnlen(s, max + 1);

	if (n > max || !bumba_utf8_valid(s, n))
		return -EINVAL;
	return (int)n;
}

static int put_str(struct writer *w, uint16_t tag, const char *s, size_t n)
{
	uint8_t *p = tlv(w, tag, n);

	if (!p)
		return -ENOSPC;
	memcpy(p, s, n);
	return 0;
}

int bumba_msg_encode(const struct bumba_msg *m, void *buf, size_t cap)
{
	struct writer w = {.buf = buf, .cap = cap, .len = HDR_SIZE};

	if (!m || !known_type(m->type))
		return -EINVAL;
	/* A bit for a tag that does not exist would not survive the trip. */
	for (uint32_t bits = m->present; bits; bits &= bits - 1) {
		if (!known_tag((uint16_t)__builtin_ctz(bits)))
			return -EINVAL;
	}
	if (m->n_caps > BUMBA_MAX_CAPS)
		return -EINVAL;
	if (!buf || cap < HDR_SIZE)
		return -ENOSPC;

	/* Strings are checked before space, so a bad field is -EINVAL whatever
	 * the buffer: the caller's bug is not hidden behind a size problem. */
	for (uint16_t tag = 1; tag < N_TAGS; tag++) {
		const struct field *f = &fields[tag];
		const char *base = (const char *)m + f->off;
		size_t count = 1;

		if (!(m->present & (1u << tag)) || f->kind != F_STR)
			continue;
		if (tag == BUMBA_TAG_CAPABILITY)
			count = m->n_caps;
		for (size_t i = 0; i < count; i++) {
			if (str_len(base + i * BUMBA_FIELD_MAX, f->max) < 0)
				return -EINVAL;
		}
	}

	for (uint16_t tag = 1; tag < N_TAGS; tag++) {
		const struct field *f = &fields[tag];
		const char *base = (const char *)m + f->off;
		uint8_t *p;
		int err = 0;

		if (!(m->present & (1u << tag)))
			continue;
		switch (f->kind) {
		case F_STR:
			if (tag != BUMBA_TAG_CAPABILITY) {
				err = put_str(&w, tag, base, (size_t)str_len(base, f->max));
				break;
			}
			for (uint32_t i = 0; i < m->n_caps && !err; i++) {
				const char *s = base + (size_t)i * BUMBA_FIELD_MAX;

				err = put_str(&w, tag, s, (size_t)str_len(s, f->max));
			}
			break;
		case F_U32:
			p = tlv(&w, tag, 4);
			if (!p)
				return -ENOSPC;
			uint32_t v32;
			memcpy(&v32, base, 4);
			put32(p, v32);
			break;
		case F_U64:
			p = tlv(&w, tag, 8);
			if (!p)
				return -ENOSPC;
			uint64_t v64;
			memcpy(&v64, base, 8);
			put64(p, v64);
			break;
		}
		if (err)
			return err;
	}

	uint8_t *h = buf;
	put32(h, BUMBA_PROTO_MAGIC);
	put16(h + 4, BUMBA_PROTO_VERSION);
	put16(h + 6, m->type);
	put32(h + 8, (uint32_t)w.len);
	put32(h + 12, m->seq);
	return (int)w.len;
}

/* ------------------------------------------------------------------ */

/* Returns 0: the datagram's length is the caller's already. */
static int decode(const uint8_t *b, size_t len, struct bumba_msg *m)
{
	size_t off = HDR_SIZE;

	if (len > BUMBA_MSG_MAX)
		return -EMSGSIZE;
	if (len < HDR_SIZE || get32(b) != BUMBA_PROTO_MAGIC || get16(b + 4) != BUMBA_PROTO_VERSION)
		return -EPROTO;
	if (get32(b + 8) != len)
		return -EBADMSG;
	m->type = get16(b + 6);
	m->seq = get32(b + 12);
	if (!known_type(m->type))
		return -EBADMSG;

	while (off < len) {
		uint16_t tag, n;
		const struct field *f;
		char *dst;

		if (len - off < TLV_HDR)
			return -EBADMSG;
		tag = get16(b + off);
		n = get16(b + off + 2);
		off += TLV_HDR;
		if (n > len - off || !known_tag(tag))
			return -EBADMSG;
		f = &fields[tag];
		dst = (char *)m + f->off;

		if (tag == BUMBA_TAG_CAPABILITY) {
			if (m->n_caps == BUMBA_MAX_CAPS)
				return -EBADMSG;
			dst += (size_t)m->n_caps++ * BUMBA_FIELD_MAX;
		} else if (m->present & (1u << tag)) {
			return -EBADMSG;
		}
		m->present |= 1u << tag;

		switch (f->kind) {
		case F_STR:
			if (n > f->max || !bumba_utf8_valid((const char *)b + off, n))
				return -EBADMSG;
			memcpy(dst, b + off, n);
			dst[n] = '\0';
			break;
		case F_U32:
			if (n != 4)
				return -EBADMSG;
			uint32_t v32 = get32(b + off);
			memcpy(dst, &v32, 4);
			break;
		case F_U64:
			if (n != 8)
				return -EBADMSG;
			uint64_t v64 = get64(b + off);
			memcpy(dst, &v64, 8);
			break;
		}
		off += n;
	}
	return 0;
}

int bumba_msg_decode(const void *buf, size_t len, struct bumba_msg *m)
{
	int ret;

	memset(m, 0, sizeof(*m));
	if (!buf && len)
		return -EINVAL;
	ret = decode(buf, len, m);
	/* A half-filled struct must not be mistaken for a message. */
	if (ret < 0)
		memset(m, 0, sizeof(*m));
	return ret;
}
