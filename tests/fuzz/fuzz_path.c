// SPDX-License-Identifier: MIT
/*
 * fuzz_path.c - libFuzzer target for shm/path.c.
 *
 * Not just "does not crash": every input is also normalised by a slow,
 * obviously correct reference (split into components, fold them on a
 * stack, compare roots component by component) and the two must agree on
 * the result, the root and the error.  Every success must then have the
 * shape of a normalised path and normalise to itself.
 *
 * Input: byte 0 picks the roots (bits 0-2), NUL-terminated mode (bit 3) and
 * a small output buffer (bit 4) whose size is byte 1 + 1; the path follows.
 */
#include <errno.h>
#include <limits.h>
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

/* ------------------------------------------------------------------ */
/* The reference. */

static bool ref_utf8(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned char c = s[i];
		uint32_t cp, min;
		size_t len;

		if (c < 0x80) {
			if (c < 0x20 || c == 0x7f)
				return false;
			i++;
			continue;
		}
		if ((c & 0xe0) == 0xc0) {
			len = 2, cp = c & 0x1f, min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			len = 3, cp = c & 0x0f, min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			len = 4, cp = c & 0x07, min = 0x10000;
		} else {
			return false;
		}
		if (n - i < len)
			return false;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += len;
	}
	return true;
}

#define MAX_COMPS (3 * PATH_MAX)

struct comp {
	const unsigned char *s;
	size_t n;
};

/* Splits s[0..n) on '/' into c[], skipping empty names. */
static size_t split(const unsigned char *s, size_t n, struct comp *c, size_t k)
{
	size_t i = 0;

	while (i < n) {
		size_t start;

		while (i < n && s[i] == '/')
			i++;
		if (i == n)
			break;
		start = i;
		while (i < n && s[i] != '/')
			i++;
		c[k].s = s + start;
		c[k].n = i - start;
		k++;
	}
	return k;
}

static struct comp in_comps[MAX_COMPS], stack[MAX_COMPS], root_comps[MAX_COMPS];

static int ref_norm(const char *const *roots, size_t n_roots, const unsigned char *path, size_t n,
		    char *out, size_t *idx)
{
	size_t k = 0, depth = 0, min_depth = SIZE_MAX, len = 0, best_depth = 0;
	bool found = false;

	if (!n)
		return -EINVAL;
	if (path[0] != '/')
		k = split((const unsigned char *)roots[0], strlen(roots[0]), in_comps, 0);
	k = split(path, n, in_comps, k);

	for (size_t i = 0; i < k; i++) {
		struct comp c = in_comps[i];

		if (!ref_utf8(c.s, c.n))
			return -EINVAL;
		if (c.n > NAME_MAX)
			return -ENAMETOOLONG;
		if (c.n == 1 && c.s[0] == '.')
			continue;
		if (c.n == 2 && c.s[0] == '.' && c.s[1] == '.') {
			if (!depth)
				return -EINVAL;
			depth--;
			if (depth < min_depth)
				min_depth = depth;
			continue;
		}
		stack[depth++] = c;
	}

	for (size_t i = 0; i < depth; i++)
		len += 1 + stack[i].n;
	if (len > PATH_MAX - 1)
		return -ENAMETOOLONG;

	for (size_t r = 0; r < n_roots; r++) {
		size_t rd = split((const unsigned char *)roots[r], strlen(roots[r]), root_comps, 0);
		bool match = rd <= depth && rd <= min_depth;

		for (size_t i = 0; match && i < rd; i++)
			match = root_comps[i].n == stack[i].n &&
				memcmp(root_comps[i].s, stack[i].s, stack[i].n) == 0;
		if (match && (!found || rd > best_depth)) {
			found = true;
			best_depth = rd;
			*idx = r;
		}
	}
	if (!found)
		return -EINVAL;

	len = 0;
	for (size_t i = 0; i < depth; i++) {
		out[len++] = '/';
		memcpy(out + len, stack[i].s, stack[i].n);
		len += stack[i].n;
	}
	if (!len)
		out[len++] = '/';
	out[len] = '\0';
	return (int)len;
}

/* ------------------------------------------------------------------ */

static char long_root[PATH_MAX];
static const char *root_sets[8][3];
static size_t n_root_sets[8];

static void init_roots(void)
{
	static const char *const sets[8][3] = {
		{"/ws"},
		{"/"},
		{"/ws", "/ws/a"},
		{"/ws/a", "/ws"},
		{"/a", "/b", "/srv/c"},
		{"/", "/ws", "/ws/a/b"},
		{NULL}, /* long_root */
		{"/w", "/ws", "/wsa"},
	};
	size_t o = 0;

	/* Near PATH_MAX, so relative paths run past it quickly. */
	while (o < PATH_MAX - 250) {
		long_root[o++] = '/';
		memset(long_root + o, 'r', 200);
		o += 200;
	}
	long_root[o] = '\0';

	for (int s = 0; s < 8; s++) {
		for (int r = 0; r < 3 && sets[s][r]; r++)
			root_sets[s][n_root_sets[s]++] = sets[s][r];
	}
	root_sets[6][0] = long_root;
	n_root_sets[6] = 1;
}

static void check_shape(const char *out, int len, const char *root)
{
	size_t rl = strcmp(root, "/") == 0 ? 0 : strlen(root);

	CHECK(len > 0 && len < PATH_MAX);
	CHECK(strlen(out) == (size_t)len);
	CHECK(out[0] == '/');
	CHECK(!strstr(out, "//"));
	CHECK(!strstr(out, "/./"));
	CHECK(!strstr(out, "/../"));
	if (len > 1) {
		CHECK(out[len - 1] != '/');
		CHECK(!(len >= 2 && strcmp(out + len - 2, "/.") == 0));
		CHECK(!(len >= 3 && strcmp(out + len - 3, "/..") == 0));
	}
	CHECK((size_t)len >= rl && memcmp(out, root, rl) == 0);
	CHECK(out[rl] == '\0' || out[rl] == '/');
	CHECK(bumba_utf8_valid(out, (size_t)len));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	static char want[PATH_MAX + 8];
	uint8_t cfg, small;
	const char *const *roots;
	size_t n_roots, n, idx = SIZE_MAX, ref_idx = SIZE_MAX, out_len;
	const unsigned char *path;
	unsigned char *copy = NULL;
	char *out;
	int ret, ref;

	if (!ready) {
		init_roots();
		ready = true;
	}
	/* The reference's component arrays are sized for this. */
	if (size < 2 || size > 2 * PATH_MAX)
		return 0;
	cfg = data[0];
	small = data[1];
	roots = root_sets[cfg & 7];
	n_roots = n_root_sets[cfg & 7];
	n = size - 2;

	CHECK(bumba_utf8_valid((const char *)data + 2, n) == ref_utf8(data + 2, n));

	/* An exact-size copy, so that a read past n is caught. */
	if (cfg & 8) {
		copy = malloc(n + 1);
		CHECK(copy);
		memcpy(copy, data + 2, n);
		copy[n] = '\0';
		path = copy;
	} else {
		copy = malloc(n ? n : 1);
		CHECK(copy);
		memcpy(copy, data + 2, n);
		path = copy;
	}

	out_len = (cfg & 16) ? (size_t)small + 1 : PATH_MAX;
	out = malloc(out_len);
	CHECK(out);

	ret = bumba_path_norm(roots, n_roots, (const char *)path, (cfg & 8) ? (size_t)-1 : n, out,
			      out_len, &idx);
	ref = ref_norm(roots, n_roots, path, (cfg & 8) ? strlen((const char *)path) : n, want,
		       &ref_idx);

	CHECK(ret == -EINVAL || ret == -ENAMETOOLONG || ret > 0);
	if (!(cfg & 16)) {
		if (ret != ref)
			fprintf(stderr, "impl %d, reference %d (%s)\n", ret, ref,
				ref > 0 ? want : "");
		CHECK(ret == ref);
	} else {
		/* A small buffer may turn any result into -ENAMETOOLONG. */
		if (ret > 0)
			CHECK(ref == ret);
		if (ref > 0 && (size_t)ref < out_len)
			CHECK(ret == ref);
		if (ref == -ENAMETOOLONG)
			CHECK(ret == -ENAMETOOLONG);
	}

	if (ret > 0) {
		char *again = malloc(PATH_MAX);
		size_t idx2 = SIZE_MAX;

		CHECK(again);
		CHECK(strcmp(out, want) == 0);
		CHECK(idx == ref_idx);
		CHECK(idx < n_roots);
		check_shape(out, ret, roots[idx]);

		CHECK(bumba_path_norm(roots, n_roots, out, (size_t)-1, again, PATH_MAX, &idx2) ==
		      ret);
		CHECK(strcmp(again, out) == 0);
		CHECK(idx2 < n_roots);
		free(again);
	}

	/* A root is normalised by the same rules against "/". */
	if (n && path[0] == '/' && (cfg & 8)) {
		static const char *const slash[] = {"/"};
		char *r = malloc(PATH_MAX);

		CHECK(r);
		ret = bumba_path_norm_root((const char *)path, r, PATH_MAX);
		ref = ref_norm(slash, 1, path, strlen((const char *)path), want, &ref_idx);
		CHECK(ret == ref);
		if (ret > 0)
			CHECK(strcmp(r, want) == 0);
		free(r);
	}

	free(out);
	free(copy);
	return 0;
}
