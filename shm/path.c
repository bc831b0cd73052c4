// SPDX-License-Identifier: MIT
/*
 * path.c - lexical path normalisation and UTF-8 validation.
 *
 * Owns bumba_path_norm(), bumba_path_norm_root() and bumba_utf8_valid().
 * A lock is keyed by the hash of its normalised path, so two spellings of
 * one file must normalise to the same bytes, and this runs on every lock
 * acquire: no allocation and never a system call (the filesystem is not
 * consulted, so symlinks are not resolved: a path is judged by its spelling
 * alone).  A path already in normal form - most of them - is recognised
 * eight bytes at a time and copied; anything else takes one pass that folds
 * components as it goes.
 *
 * Rules, beyond what internal.h says:
 *  - path_len == (size_t)-1 means path is NUL-terminated;
 *  - a relative path means exactly roots[0] + "/" + path;
 *  - ".." may never climb above the root the result is attributed to, even
 *    if later components come back inside it ("/ws/a/../../ws/b" is
 *    -EINVAL for root "/ws"); ".." above "/" is always -EINVAL;
 *  - of the roots that contain the result on a component boundary and were
 *    never climbed out of, the longest one wins (roots may nest);
 *  - roots are expected in the form bumba_path_norm_root() produces; a
 *    trailing slash is tolerated, anything else unnormalised never matches.
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "internal.h"

#define likely(x) __builtin_expect(!!(x), 1)

/*
 * Length of the well-formed UTF-8 sequence of two or more bytes starting at
 * s (s[0] >= 0x80), or 0 if it is not one: a stray continuation byte, an
 * overlong form, a surrogate, a code point above U+10FFFF or a sequence cut
 * short by the end of the buffer.  The ranges are Table 3-7 of the Unicode
 * standard.  ASCII is the caller's fast path.
 */
size_t bumba_utf8_seq(const unsigned char *s, size_t avail)
{
	unsigned char c = s[0];
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n;

	if (c < 0x80)
		return avail ? 1 : 0;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		if (c == 0xe0)
			lo = 0xa0; /* overlong below U+0800 */
		else if (c == 0xed)
			hi = 0x9f; /* U+D800..U+DFFF are surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		if (c == 0xf0)
			lo = 0x90; /* overlong below U+10000 */
		else if (c == 0xf4)
			hi = 0x8f; /* above U+10FFFF */
	} else {
		return 0; /* 0x80..0xc1 (continuation, overlong lead), 0xf5.. */
	}
	if (avail < n)
		return 0;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return n;
}

bool bumba_utf8_valid(const char *str, size_t len)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;

	while (i < len) {
		unsigned char c = s[i];

		if (likely(c >= 0x20 && c < 0x7f)) {
			i++;
			continue;
		}
		if (c < 0x80)
			return false; /* control character, NUL or DEL */
		size_t n = bumba_utf8_seq(s + i, len - i);
		if (!n)
			return false;
		i += n;
	}
	return true;
}

static bool plain(unsigned char c)
{
	return c >= 0x20 && c < 0x7f && c != '/';
}

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define ONES  0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

/*
 * The bytes of w that are not plain: '/', below 0x20, 0x7f and above, each
 * flagged by its top bit.  The classic "has a zero byte" tricks; a borrow
 * can flag a byte above a true hit, never below one, so the lowest flag is
 * exact and that is the only one used.
 */
static uint64_t not_plain(uint64_t w)
{
	uint64_t s = w ^ (ONES * '/');
	uint64_t slash = (s - ONES) & ~s;
	uint64_t ctl = (w - ONES * 0x20) & ~w;
	uint64_t high = ((w & ~HIGHS) + ONES) | w;

	return (slash | ctl | high) & HIGHS;
}

/* 0x80 in every byte of w equal to c, exactly: no carry crosses bytes. */
static uint64_t byte_eq(uint64_t w, unsigned char c)
{
	uint64_t x = w ^ (ONES * c);

	return ~(((x & ~HIGHS) + ~HIGHS) | x) & HIGHS;
}

/* Index of the first byte of p[i..n) that is not plain, or n; *c gets
 * that byte.  Eight bytes at a time: names are mostly ASCII and this is the
 * hot loop.  The byte comes out of the word already loaded, not from a
 * load that would wait for the bit scan. */
static size_t skip_plain(const unsigned char *p, size_t i, size_t n, unsigned char *c)
{
	while (n - i >= 8) {
		uint64_t w, m;

		memcpy(&w, p + i, 8);
		m = not_plain(w);
		if (m) {
			unsigned int bit = (unsigned int)__builtin_ctzll(m) & ~7u;

			*c = (unsigned char)(w >> bit);
			return i + (bit >> 3);
		}
		i += 8;
	}
	while (i < n && plain(p[i]))
		i++;
	if (i < n)
		*c = p[i];
	return i;
}
#else
static size_t skip_plain(const unsigned char *p, size_t i, size_t n, unsigned char *c)
{
	while (i < n && plain(p[i]))
		i++;
	if (i < n)
		*c = p[i];
	return i;
}
#endif

static void copy8(char *d, const void *s)
{
	uint64_t w;

	memcpy(&w, s, 8);
	memcpy(d, &w, 8);
}

static void copy4(char *d, const void *s)
{
	uint32_t w;

	memcpy(&w, s, 4);
	memcpy(d, &w, 4);
}

/* memcpy without the call, which costs more than copying a short name: the
 * tail is one more move overlapping the previous one. */
static inline __attribute__((always_inline)) void copy_name(char *d, const void *src, size_t n)
{
	const char *s = src;

	if (n >= 8) {
		for (size_t k = 0; k + 8 < n; k += 8)
			copy8(d + k, s + k);
		copy8(d + n - 8, s + n - 8);
	} else if (n >= 4) {
		copy4(d, s);
		copy4(d + n - 4, s + n - 4);
	} else if (n) {
		d[0] = s[0];
		d[n / 2] = s[n / 2];
		d[n - 1] = s[n - 1];
	}
}

/* Length of a root without trailing slashes: "/" is the empty prefix, which
 * is what the normaliser builds on.  SIZE_MAX for a root that is not
 * absolute (an unset "" must not turn into "/" and admit everything). */
static size_t root_len(const char *root)
{
	size_t n;

	if (!root || root[0] != '/')
		return SIZE_MAX;
	n = strlen(root);
	while (n > 0 && root[n - 1] == '/')
		n--;
	return n;
}

/*
 * The common spelling, checked in one word-at-a-time sweep: printable ASCII
 * only, no "//" and no "/." (so no "." or ".." component and no name
 * starting with a dot: those take the general walk, which is also right for
 * them, only slower), no trailing slash, a relative path not starting with
 * '.', and short enough that no component can pass NAME_MAX.  Such a path
 * is already normal and needs only copying.
 */
static bool already_normal(const unsigned char *p, size_t n)
{
	if (n > NAME_MAX || p[n - 1] == '/' || p[0] == '.')
		return false;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	uint64_t carry = 0;
	size_t i = 0;

	for (;;) {
		uint64_t w, slash, dot, bad;

		if (n - i >= 8) {
			memcpy(&w, p + i, 8);
			i += 8;
		} else if (i < n) {
			/* The last bytes, at the bottom of a word padded with
			 * a plain byte. */
			size_t r = n - i;

			w = ONES * 'a';
			if (n >= 8) {
				memcpy(&w, p + n - 8, 8);
				w = w >> (64 - 8 * r) | (ONES * 'a') << (8 * r);
			} else {
				for (size_t k = 0; k < r; k++)
					((unsigned char *)&w)[k] = p[i + k];
			}
			i = n;
		} else {
			break;
		}
		slash = byte_eq(w, '/');
		dot = byte_eq(w, '.');
		/* "//" or "/.": a slash flag moved up one byte meets either. */
		bad = ((slash << 8) | carry) & (slash | dot);
		carry = slash >> 56;
		/* Below 0x20 (any such byte sets some flag), 0x7f and above. */
		bad |= (w - ONES * 0x20) & ~w & HIGHS;
		bad |= (((w & ~HIGHS) + ONES) | w) & HIGHS;
		if (bad)
			return false;
	}
	return true;
#else
	for (size_t i = 0; i < n; i++) {
		if (p[i] < 0x20 || p[i] >= 0x7f)
			return false;
		if (p[i] == '/' && i + 1 < n && (p[i + 1] == '/' || p[i + 1] == '.'))
			return false;
	}
	return true;
#endif
}

/*
 * The general walk: appends the components of p[0..n) to out[0..*o),
 * folding "." and "..".  out holds "/c1/.../ck" ("" standing for "/").
 * *min_len gets the shortest out became after a "..", so the caller can
 * tell which roots were climbed out of.
 */
static int walk(const unsigned char *p, size_t n, char *out, size_t cap, size_t *o_io,
		size_t *min_len)
{
	size_t o = *o_io, i = 0;
	/* Components that did not fit in out, stacked virtually on top of it:
	 * a later ".." may still bring the result back under the limit. */
	size_t over = 0;

	while (i < n) {
		size_t start, clen;

		if (p[i] == '/') {
			i++;
			continue;
		}

		start = i;
		for (;;) {
			unsigned char c = 0;
			size_t k;

			i = skip_plain(p, i, n, &c);
			if (i == n || c == '/')
				break;
			if (c < 0x80)
				return -EINVAL; /* control character, NUL or DEL */
			k = bumba_utf8_seq(p + i, n - i);
			if (!k)
				return -EINVAL;
			i += k;
		}
		clen = i - start;

		if (clen > NAME_MAX)
			return -ENAMETOOLONG;
		if (p[start] == '.' && clen <= 2) {
			if (clen == 1)
				continue;
			if (p[start + 1] == '.') {
				if (over) {
					/* Back down to the stored part: that counts as
					 * a climb like any other. */
					if (!--over && o < *min_len)
						*min_len = o;
					continue;
				}
				if (!o)
					return -EINVAL; /* above "/" */
				/* Drop "/ck". */
				while (out[--o] != '/')
					;
				if (o < *min_len)
					*min_len = o;
				continue;
			}
		}
		if (over || clen + 1 > cap - o) {
			over++;
			continue;
		}
		out[o] = '/';
		copy_name(out + o + 1, p + start, clen);
		o += clen + 1;
	}
	if (over)
		return -ENAMETOOLONG;
	*o_io = o;
	return 0;
}

int bumba_path_norm(const char *const *roots, size_t n_roots, const char *path, size_t path_len,
		    char *out, size_t out_len, size_t *root_idx)
{
	const unsigned char *p = (const unsigned char *)path;
	bool relative;
	size_t cap, o = 0, rl0 = 0;
	/* Shortest the result got after a "..": a root longer than this was
	 * climbed out of. */
	size_t min_len = SIZE_MAX;
	size_t best = SIZE_MAX, best_len = 0;

	if (!roots || !n_roots || !path)
		return -EINVAL;
	if (path_len == (size_t)-1)
		path_len = strlen(path);
	if (!path_len)
		return -EINVAL;

	/* A buffer smaller than PATH_MAX may hold the result but not the
	 * way there (a long root a ".." then climbs out of): work in a full
	 * one and copy what fits. */
	if (out && out_len >= 2 && out_len < PATH_MAX) {
		char full[PATH_MAX];
		int n = bumba_path_norm(roots, n_roots, path, path_len, full, sizeof(full),
					root_idx);
		if (n < 0)
			return n;
		if ((size_t)n >= out_len)
			return -ENAMETOOLONG;
		memcpy(out, full, (size_t)n + 1);
		return n;
	}

	/* Room for the path without its NUL. */
	cap = out_len < PATH_MAX ? out_len : PATH_MAX;
	if (!out || cap < 2)
		return -ENAMETOOLONG;
	cap--;

	relative = p[0] != '/';
	if (relative) {
		rl0 = root_len(roots[0]);
		if (rl0 == SIZE_MAX)
			return -EINVAL;
		if (rl0 > cap)
			return -ENAMETOOLONG;
		copy_name(out, roots[0], rl0);
		o = rl0;
	}

	if (likely(already_normal(p, path_len))) {
		if (relative) {
			if (path_len + 1 > cap - o)
				return -ENAMETOOLONG;
			out[o++] = '/';
		} else if (path_len > cap) {
			return -ENAMETOOLONG;
		}
		copy_name(out + o, p, path_len);
		o += path_len;
	} else {
		int ret = walk(p, path_len, out, cap, &o, &min_len);

		if (ret < 0)
			return ret;
	}

	if (n_roots == 1 && relative) {
		/* The common case: nothing to compare. */
		if (rl0 <= min_len)
			best = 0;
	} else {
		for (size_t r = 0; r < n_roots; r++) {
			size_t rl = root_len(roots[r]);

			if (rl > o || rl > min_len || (best != SIZE_MAX && rl <= best_len))
				continue;
			if (memcmp(out, roots[r], rl) != 0 || (rl < o && out[rl] != '/'))
				continue;
			best = r;
			best_len = rl;
		}
	}
	if (best == SIZE_MAX)
		return -EINVAL;

	if (!o)
		out[o++] = '/';
	out[o] = '\0';
	if (root_idx)
		*root_idx = best;
	return (int)o;
}

int bumba_path_norm_root(const char *root, char *out, size_t out_len)
{
	static const char *const slash[] = {"/"};

	if (!root || root[0] != '/')
		return -EINVAL;
	return bumba_path_norm(slash, 1, root, (size_t)-1, out, out_len, NULL);
}
