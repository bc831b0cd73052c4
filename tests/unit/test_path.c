// SPDX-License-Identifier: MIT
/*
 * test_path.c - unit tests of shm/path.c: bumba_path_norm(),
 * bumba_path_norm_root() and bumba_utf8_valid().
 *
 * Most cases are tables: a path, the roots, and the exact result (or
 * errno) expected, so a failure names the input.  A seeded random walk then
 * checks the properties every result must have.
 */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "internal.h"

#define NOERR 0

struct norm_case {
	const char *path;
	const char *want; /* NULL when an error is expected */
	int err;	  /* negative errno, or NOERR */
	size_t root;	  /* expected root index on success */
};

/* Runs one case against roots and reports the input on a mismatch. */
static void check_case(const char *const *roots, size_t n_roots, const struct norm_case *c)
{
	char out[PATH_MAX];
	size_t idx = SIZE_MAX;
	int ret = bumba_path_norm(roots, n_roots, c->path, (size_t)-1, out, sizeof(out), &idx);

	if (c->want) {
		if (ret < 0)
			print_message("path \"%s\": got %d, want \"%s\"\n", c->path, ret, c->want);
		assert_true(ret >= 0);
		if (strcmp(out, c->want) != 0)
			print_message("path \"%s\": got \"%s\", want \"%s\"\n", c->path, out,
				      c->want);
		assert_string_equal(out, c->want);
		assert_int_equal(ret, strlen(c->want));
		if (idx != c->root)
			print_message("path \"%s\": root %zu, want %zu\n", c->path, idx, c->root);
		assert_int_equal(idx, c->root);
	} else {
		if (ret != c->err)
			print_message("path \"%s\": got %d (%s), want %d\n", c->path, ret,
				      ret >= 0 ? out : "error", c->err);
		assert_int_equal(ret, c->err);
	}
}

static void run_cases(const char *const *roots, size_t n_roots, const struct norm_case *cases,
		      size_t n)
{
	for (size_t i = 0; i < n; i++)
		check_case(roots, n_roots, &cases[i]);
}

#define RUN(roots, cases)                                                                          \
	run_cases(roots, sizeof(roots) / sizeof(roots[0]), cases, sizeof(cases) / sizeof(cases[0]))

static const char *const ws[] = {"/ws"};

/* ------------------------------------------------------------------ */

static void test_relative(void **state)
{
	(void)state;
	static const struct norm_case cases[] = {
		{"a", "/ws/a", NOERR, 0},
		{"a/b", "/ws/a/b", NOERR, 0},
		{"./a", "/ws/a", NOERR, 0},
		{"a//b", "/ws/a/b", NOERR, 0},
		{"a///b////c", "/ws/a/b/c", NOERR, 0},
		{"a/b/", "/ws/a/b", NOERR, 0},
		{"a/b//", "/ws/a/b", NOERR, 0},
		{"a/./b", "/ws/a/b", NOERR, 0},
		{"a/./././b/.", "/ws/a/b", NOERR, 0},
		{"a/../b", "/ws/b", NOERR, 0},
		{"a/b/../../c", "/ws/c", NOERR, 0},
		{"a/b/c/../../..", "/ws", NOERR, 0},
		{".", "/ws", NOERR, 0},
		{"./", "/ws", NOERR, 0},
		{".//.", "/ws", NOERR, 0},
		{"a/..", "/ws", NOERR, 0},
		{"a/../", "/ws", NOERR, 0},
		/* Names that only look like dot components. */
		{"...", "/ws/...", NOERR, 0},
		{"..a", "/ws/..a", NOERR, 0},
		{"a..", "/ws/a..", NOERR, 0},
		{".a", "/ws/.a", NOERR, 0},
		{"a.", "/ws/a.", NOERR, 0},
		{".../..", "/ws", NOERR, 0},
		{"src/main.c", "/ws/src/main.c", NOERR, 0},
		{" ", "/ws/ ", NOERR, 0},
		{"a b/~c", "/ws/a b/~c", NOERR, 0},
		{"a\\b", "/ws/a\\b", NOERR, 0},
	};
	RUN(ws, cases);
}

static void test_absolute(void **state)
{
	(void)state;
	static const struct norm_case cases[] = {
		{"/ws", "/ws", NOERR, 0},
		{"/ws/", "/ws", NOERR, 0},
		{"/ws/.", "/ws", NOERR, 0},
		{"//ws", "/ws", NOERR, 0},
		{"//ws//a//", "/ws/a", NOERR, 0},
		{"/ws/a/b", "/ws/a/b", NOERR, 0},
		{"/ws/./a/../b", "/ws/b", NOERR, 0},
		{"/./ws/a", "/ws/a", NOERR, 0},
		{"/ws/a/..", "/ws", NOERR, 0},
		/* Outside every root. */
		{"/", NULL, -EINVAL, 0},
		{"/w", NULL, -EINVAL, 0},
		{"/wsx", NULL, -EINVAL, 0},
		{"/wsx/a", NULL, -EINVAL, 0},
		{"/ws2/a", NULL, -EINVAL, 0},
		{"/etc/passwd", NULL, -EINVAL, 0},
		{"/a/ws", NULL, -EINVAL, 0},
	};
	RUN(ws, cases);
}

static void test_escape(void **state)
{
	(void)state;
	static const struct norm_case cases[] = {
		{"..", NULL, -EINVAL, 0},
		{"../", NULL, -EINVAL, 0},
		{"../x", NULL, -EINVAL, 0},
		{"a/../..", NULL, -EINVAL, 0},
		{"a/../../ws/a", NULL, -EINVAL, 0}, /* comes back inside: still refused */
		{"../ws", NULL, -EINVAL, 0},
		{"./../ws/a", NULL, -EINVAL, 0},
		{"/ws/..", NULL, -EINVAL, 0},
		{"/ws/../ws", NULL, -EINVAL, 0},
		{"/ws/a/../../ws/b", NULL, -EINVAL, 0},
		{"/..", NULL, -EINVAL, 0},
		{"/../ws/a", NULL, -EINVAL, 0},
		{"/ws/../../ws", NULL, -EINVAL, 0},
		{"a/b/../../../ws/c", NULL, -EINVAL, 0},
	};
	RUN(ws, cases);
}

/* "/ws/ab" is not inside "/ws/a": roots match on component boundaries. */
static void test_component_boundary(void **state)
{
	(void)state;
	static const char *const roots[] = {"/ws/a"};
	static const struct norm_case cases[] = {
		{"/ws/a", "/ws/a", NOERR, 0}, {"/ws/a/b", "/ws/a/b", NOERR, 0},
		{"/ws/ab", NULL, -EINVAL, 0}, {"/ws/ab/c", NULL, -EINVAL, 0},
		{"/ws/a.", NULL, -EINVAL, 0}, {"/ws", NULL, -EINVAL, 0},
		{"/ws/", NULL, -EINVAL, 0},   {"b", "/ws/a/b", NOERR, 0},
		{"../ab", NULL, -EINVAL, 0},
	};
	RUN(roots, cases);
}

static void test_root_slash(void **state)
{
	(void)state;
	static const char *const roots[] = {"/"};
	static const struct norm_case cases[] = {
		{"/", "/", NOERR, 0},	     {"//", "/", NOERR, 0},
		{"/.", "/", NOERR, 0},	     {"/etc/passwd", "/etc/passwd", NOERR, 0},
		{"/a/../b", "/b", NOERR, 0}, {"a", "/a", NOERR, 0},
		{"a/b", "/a/b", NOERR, 0},   {".", "/", NOERR, 0},
		{"a/..", "/", NOERR, 0},     {"/a/..", "/", NOERR, 0},
		{"..", NULL, -EINVAL, 0},    {"/..", NULL, -EINVAL, 0},
		{"/../a", NULL, -EINVAL, 0}, {"a/../..", NULL, -EINVAL, 0},
	};
	RUN(roots, cases);
}

/* A root written with a trailing slash still works; one that is not
 * absolute (an unset "") matches nothing. */
static void test_root_forms(void **state)
{
	(void)state;
	static const char *const trailing[] = {"/ws/"};
	static const struct norm_case t_cases[] = {
		{"a", "/ws/a", NOERR, 0},
		{"/ws/a", "/ws/a", NOERR, 0},
		{"/ws", "/ws", NOERR, 0},
	};
	RUN(trailing, t_cases);

	static const char *const empty[] = {""};
	static const struct norm_case e_cases[] = {
		{"a", NULL, -EINVAL, 0},
		{"/a", NULL, -EINVAL, 0},
		{"/", NULL, -EINVAL, 0},
	};
	RUN(empty, e_cases);

	static const char *const with_null[] = {"/ws", NULL, "/other"};
	static const struct norm_case n_cases[] = {
		{"a", "/ws/a", NOERR, 0},
		{"/other/x", "/other/x", NOERR, 2},
		{"/x", NULL, -EINVAL, 0},
	};
	RUN(with_null, n_cases);
}

static void test_several_roots(void **state)
{
	(void)state;
	static const char *const roots[] = {"/a", "/b", "/srv/c"};
	static const struct norm_case cases[] = {
		{"x", "/a/x", NOERR, 0},
		{"/a/x", "/a/x", NOERR, 0},
		{"/b/x", "/b/x", NOERR, 1},
		{"/b", "/b", NOERR, 1},
		{"/srv/c/d/e", "/srv/c/d/e", NOERR, 2},
		{"/srv", NULL, -EINVAL, 0},
		{"/srv/cc", NULL, -EINVAL, 0},
		{"/c", NULL, -EINVAL, 0},
		/* Relative paths are taken against roots[0] only. */
		{"../b/x", NULL, -EINVAL, 0},
		/* Leaving one root for another by ".." is an escape. */
		{"/a/../b/x", NULL, -EINVAL, 0},
	};
	RUN(roots, cases);
}

/* Nested roots: the longest one that contains the result and was never
 * climbed out of. */
static void test_nested_roots(void **state)
{
	(void)state;
	static const char *const roots[] = {"/ws", "/ws/sub", "/ws/sub/deep"};
	static const struct norm_case cases[] = {
		{"/ws/x", "/ws/x", NOERR, 0},
		{"/ws", "/ws", NOERR, 0},
		{"/ws/sub", "/ws/sub", NOERR, 1},
		{"/ws/sub/x", "/ws/sub/x", NOERR, 1},
		{"/ws/subx", "/ws/subx", NOERR, 0},
		{"/ws/sub/deep/x", "/ws/sub/deep/x", NOERR, 2},
		{"/ws/sub/deeper", "/ws/sub/deeper", NOERR, 1},
		{"sub/x", "/ws/sub/x", NOERR, 1},
		{"sub/deep", "/ws/sub/deep", NOERR, 2},
		{"x", "/ws/x", NOERR, 0},
		{"/ws/sub/../x", "/ws/x", NOERR, 0},
		/* Climbed out of /ws/sub and back: attributed to /ws, which it
		 * never left. */
		{"/ws/sub/../sub/x", "/ws/sub/x", NOERR, 0},
		{"/ws/sub/deep/../x", "/ws/sub/x", NOERR, 1},
		{"/ws/sub/deep/../deep", "/ws/sub/deep", NOERR, 1},
		{"/ws/sub/deep/../../sub/deep", "/ws/sub/deep", NOERR, 0},
		{"/ws/sub/../..", NULL, -EINVAL, 0},
	};
	RUN(roots, cases);

	/* Order does not matter for absolute paths; relative ones start from
	 * roots[0] and may climb into an enclosing root. */
	static const char *const rev[] = {"/ws/sub", "/ws"};
	static const struct norm_case r_cases[] = {
		{"x", "/ws/sub/x", NOERR, 0}, {"/ws/sub/x", "/ws/sub/x", NOERR, 0},
		{"/ws/x", "/ws/x", NOERR, 1}, {"../x", "/ws/x", NOERR, 1},
		{"../..", NULL, -EINVAL, 0},
	};
	RUN(rev, r_cases);

	/* "/" nests everything. */
	static const char *const slash[] = {"/", "/ws"};
	static const struct norm_case s_cases[] = {
		{"/ws/a", "/ws/a", NOERR, 1},
		{"/etc", "/etc", NOERR, 0},
		{"/ws/../etc", "/etc", NOERR, 0},
		{"ws", "/ws", NOERR, 1},
	};
	RUN(slash, s_cases);
}

static void test_bad_args(void **state)
{
	(void)state;
	char out[PATH_MAX];
	size_t idx;

	assert_int_equal(bumba_path_norm(ws, 1, "", (size_t)-1, out, sizeof(out), &idx), -EINVAL);
	assert_int_equal(bumba_path_norm(ws, 1, "abc", 0, out, sizeof(out), &idx), -EINVAL);
	assert_int_equal(bumba_path_norm(ws, 1, NULL, 3, out, sizeof(out), &idx), -EINVAL);
	assert_int_equal(bumba_path_norm(NULL, 1, "a", (size_t)-1, out, sizeof(out), &idx),
			 -EINVAL);
	assert_int_equal(bumba_path_norm(ws, 0, "a", (size_t)-1, out, sizeof(out), &idx), -EINVAL);
	assert_int_equal(bumba_path_norm(ws, 0, "/ws/a", (size_t)-1, out, sizeof(out), &idx),
			 -EINVAL);
	/* No buffer at all, or none with room for anything. */
	assert_int_equal(bumba_path_norm(ws, 1, "a", (size_t)-1, NULL, 0, &idx), -ENAMETOOLONG);
	assert_int_equal(bumba_path_norm(ws, 1, "a", (size_t)-1, out, 0, &idx), -ENAMETOOLONG);
	assert_int_equal(bumba_path_norm(ws, 1, "a", (size_t)-1, out, 1, &idx), -ENAMETOOLONG);
	/* root_idx is optional. */
	assert_int_equal(bumba_path_norm(ws, 1, "a", (size_t)-1, out, sizeof(out), NULL), 5);
	assert_string_equal(out, "/ws/a");
}

/* path_len counts bytes; (size_t)-1 means NUL-terminated. */
static void test_explicit_length(void **state)
{
	(void)state;
	char out[PATH_MAX];
	size_t idx;

	assert_int_equal(bumba_path_norm(ws, 1, "abc", 2, out, sizeof(out), &idx), 6);
	assert_string_equal(out, "/ws/ab");
	assert_int_equal(bumba_path_norm(ws, 1, "a/b/", 4, out, sizeof(out), &idx), 7);
	assert_string_equal(out, "/ws/a/b");
	assert_int_equal(bumba_path_norm(ws, 1, "a/..b", 4, out, sizeof(out), &idx), 3);
	assert_string_equal(out, "/ws");
	assert_int_equal(bumba_path_norm(ws, 1, "a/b", (size_t)-1, out, sizeof(out), &idx), 7);
	assert_string_equal(out, "/ws/a/b");

	/* A NUL before path_len. */
	assert_int_equal(bumba_path_norm(ws, 1, "a\0b", 3, out, sizeof(out), &idx), -EINVAL);
	assert_int_equal(bumba_path_norm(ws, 1, "\0", 1, out, sizeof(out), &idx), -EINVAL);
	assert_int_equal(bumba_path_norm(ws, 1, "ab\0", 3, out, sizeof(out), &idx), -EINVAL);
	assert_int_equal(bumba_path_norm(ws, 1, "/ws/\0", 5, out, sizeof(out), &idx), -EINVAL);
	/* ...which NUL-terminated mode just stops at. */
	assert_int_equal(bumba_path_norm(ws, 1, "a\0b", (size_t)-1, out, sizeof(out), &idx), 5);
	assert_string_equal(out, "/ws/a");
	assert_int_equal(bumba_path_norm(ws, 1, "\0a", (size_t)-1, out, sizeof(out), &idx),
			 -EINVAL);

	/* Explicit length over a buffer with no NUL at all: never read past. */
	char *exact = malloc(5);
	assert_non_null(exact);
	memcpy(exact, "/ws/x", 5);
	assert_int_equal(bumba_path_norm(ws, 1, exact, 5, out, sizeof(out), &idx), 5);
	assert_string_equal(out, "/ws/x");
	memcpy(exact, "x/\xc3\xa9", 4);
	assert_int_equal(bumba_path_norm(ws, 1, exact, 4, out, sizeof(out), &idx), 8);
	assert_string_equal(out, "/ws/x/\xc3\xa9");
	/* A sequence cut by path_len is truncated, even though the byte after
	 * it would complete it. */
	assert_int_equal(bumba_path_norm(ws, 1, exact, 3, out, sizeof(out), &idx), -EINVAL);
	free(exact);
}

static void test_utf8_in_paths(void **state)
{
	(void)state;
	static const struct norm_case cases[] = {
		{"caf\xc3\xa9", "/ws/caf\xc3\xa9", NOERR, 0},
		{"\xe6\x97\xa5\xe6\x9c\xac/x", "/ws/\xe6\x97\xa5\xe6\x9c\xac/x", NOERR, 0},
		{"\xf0\x9f\x98\x80", "/ws/\xf0\x9f\x98\x80", NOERR, 0},
		{"\xef\xbf\xbf", "/ws/\xef\xbf\xbf", NOERR, 0},		/* U+FFFF */
		{"\xf4\x8f\xbf\xbf", "/ws/\xf4\x8f\xbf\xbf", NOERR, 0}, /* U+10FFFF */
		{"\xc2\x80", "/ws/\xc2\x80", NOERR, 0},			/* U+0080 */
		{"\xed\x9f\xbf", "/ws/\xed\x9f\xbf", NOERR, 0},		/* U+D7FF */
		{"\xee\x80\x80", "/ws/\xee\x80\x80", NOERR, 0},		/* U+E000 */
		/* Overlong forms, "/" among them: must not become a separator. */
		{"a\xc0\xaf..", NULL, -EINVAL, 0},
		{"\xc0\x80", NULL, -EINVAL, 0},
		{"\xc1\xbf", NULL, -EINVAL, 0},
		{"\xe0\x80\xaf", NULL, -EINVAL, 0},
		{"\xe0\x9f\xbf", NULL, -EINVAL, 0},
		{"\xf0\x80\x80\xaf", NULL, -EINVAL, 0},
		{"\xf0\x8f\xbf\xbf", NULL, -EINVAL, 0},
		/* Surrogates. */
		{"\xed\xa0\x80", NULL, -EINVAL, 0},
		{"\xed\xbf\xbf", NULL, -EINVAL, 0},
		{"\xed\xa0\xbd\xed\xb8\x80", NULL, -EINVAL, 0},
		/* Beyond U+10FFFF. */
		{"\xf4\x90\x80\x80", NULL, -EINVAL, 0},
		{"\xf5\x80\x80\x80", NULL, -EINVAL, 0},
		{"\xf8\x88\x80\x80\x80", NULL, -EINVAL, 0},
		{"\xfe", NULL, -EINVAL, 0},
		{"\xff", NULL, -EINVAL, 0},
		/* Stray continuation bytes. */
		{"\x80", NULL, -EINVAL, 0},
		{"a\xbf", NULL, -EINVAL, 0},
		{"\xc3\xa9\xa9", NULL, -EINVAL, 0},
		/* Truncated sequences: at the end, before a slash, before ASCII. */
		{"\xc3", NULL, -EINVAL, 0},
		{"a\xe6\x97", NULL, -EINVAL, 0},
		{"\xf0\x9f\x98", NULL, -EINVAL, 0},
		{"\xc3/a", NULL, -EINVAL, 0},
		{"\xe6\x97/", NULL, -EINVAL, 0},
		{"\xe6\x61", NULL, -EINVAL, 0},		/* "\xe6" then 'a' */
		{"\xf0\x9f\x98\x61", NULL, -EINVAL, 0}, /* cut, then 'a' */
		/* Control characters and DEL. */
		{"a\x01", NULL, -EINVAL, 0},
		{"\x1f", NULL, -EINVAL, 0},
		{"a\tb", NULL, -EINVAL, 0},
		{"a\nb", NULL, -EINVAL, 0},
		{"a\rb", NULL, -EINVAL, 0},
		{"\x7f", NULL, -EINVAL, 0},
		{"/ws/a\x7f", NULL, -EINVAL, 0},
		{"/ws/\x1b[0m", NULL, -EINVAL, 0},
		/* A bad byte in a component that ".." would drop is still bad. */
		{"\xff/..", NULL, -EINVAL, 0},
		{"a/\x01/..", NULL, -EINVAL, 0},
	};
	RUN(ws, cases);
}

static void fill(char *p, char c, size_t n)
{
	memset(p, c, n);
	p[n] = '\0';
}

static void test_name_max(void **state)
{
	(void)state;
	char path[1024], out[PATH_MAX], want[1100];
	size_t idx;

	fill(path, 'n', NAME_MAX);
	assert_int_equal(bumba_path_norm(ws, 1, path, (size_t)-1, out, sizeof(out), &idx),
			 4 + NAME_MAX);
	snprintf(want, sizeof(want), "/ws/%s", path);
	assert_string_equal(out, want);

	fill(path, 'n', NAME_MAX + 1);
	assert_int_equal(bumba_path_norm(ws, 1, path, (size_t)-1, out, sizeof(out), &idx),
			 -ENAMETOOLONG);

	/* The limit is per component, even one ".." would drop. */
	fill(path, 'n', NAME_MAX + 1);
	strcat(path, "/..");
	assert_int_equal(bumba_path_norm(ws, 1, path, (size_t)-1, out, sizeof(out), &idx),
			 -ENAMETOOLONG);
	snprintf(path, sizeof(path), "/ws/a/");
	fill(path + 6, 'n', NAME_MAX + 1);
	assert_int_equal(bumba_path_norm(ws, 1, path, (size_t)-1, out, sizeof(out), &idx),
			 -ENAMETOOLONG);

	/* NAME_MAX counts bytes, not characters: 127 two-byte characters are
	 * 254 bytes and fit, 128 are 256 bytes and do not. */
	char *q = path;
	for (int i = 0; i < 127; i++, q += 2)
		memcpy(q, "\xc3\xa9", 2);
	*q = '\0';
	assert_int_equal(bumba_path_norm(ws, 1, path, (size_t)-1, out, sizeof(out), &idx), 4 + 254);
	memcpy(q, "\xc3\xa9", 3);
	assert_int_equal(bumba_path_norm(ws, 1, path, (size_t)-1, out, sizeof(out), &idx),
			 -ENAMETOOLONG);

	/* Many slashes and dots around short names are not a long component. */
	path[0] = 'a';
	memset(path + 1, '/', 600);
	strcpy(path + 601, "./x");
	assert_int_equal(bumba_path_norm(ws, 1, path, (size_t)-1, out, sizeof(out), &idx), 7);
	assert_string_equal(out, "/ws/a/x");
}

/* Builds "/ws" + "/xxx...x" components until the total is exactly len. */
static void build_abs(char *p, size_t len)
{
	size_t o = 3;

	memcpy(p, "/ws", 3);
	while (o < len) {
		size_t room = len - o - 1; /* after the '/' */
		size_t n = room > 200 ? 200 : room;

		/* Never leave a remainder of 1 that could only be "/" alone. */
		if (room > 200 && room - 200 < 2)
			n = 150;
		p[o++] = '/';
		memset(p + o, 'x', n);
		o += n;
	}
	p[o] = '\0';
}

static void test_path_max(void **state)
{
	(void)state;
	static char path[3 * PATH_MAX], out[PATH_MAX + 64];
	size_t idx;

	build_abs(path, PATH_MAX - 1);
	assert_int_equal(strlen(path), PATH_MAX - 1);
	assert_int_equal(bumba_path_norm(ws, 1, path, (size_t)-1, out, sizeof(out), &idx),
			 PATH_MAX - 1);
	assert_string_equal(out, path);

	build_abs(path, PATH_MAX);
	assert_int_equal(bumba_path_norm(ws, 1, path, (size_t)-1, out, sizeof(out), &idx),
			 -ENAMETOOLONG);

	/* The relative form of the same: the root counts toward the limit. */
	build_abs(path, PATH_MAX);
	assert_int_equal(bumba_path_norm(ws, 1, path + 4, (size_t)-1, out, sizeof(out), &idx),
			 -ENAMETOOLONG);
	build_abs(path, PATH_MAX - 1);
	assert_int_equal(bumba_path_norm(ws, 1, path + 4, (size_t)-1, out, sizeof(out), &idx),
			 PATH_MAX - 1);

	/* An input far longer than PATH_MAX whose result is short. */
	size_t o = 3;
	memcpy(path, "/ws", 3);
	while (o < 2 * PATH_MAX) {
		memcpy(path + o, "/./", 3);
		o += 3;
	}
	strcpy(path + o, "end");
	assert_int_equal(bumba_path_norm(ws, 1, path, (size_t)-1, out, sizeof(out), &idx), 7);
	assert_string_equal(out, "/ws/end");

	/* The result goes past PATH_MAX half way and comes back. */
	static char want[3 * PATH_MAX];
	build_abs(path, PATH_MAX + 300);
	strcpy(want, path);
	for (int i = 0; i < 3; i++)
		*strrchr(want, '/') = '\0';
	strcat(want, "/y");
	assert_true(strlen(want) < PATH_MAX - 1);
	strcat(path, "/../../../y");
	assert_int_equal(bumba_path_norm(ws, 1, path, (size_t)-1, out, sizeof(out), &idx),
			 (int)strlen(want));
	assert_string_equal(out, want);
	/* Not far enough back. */
	build_abs(path, PATH_MAX + 300);
	strcat(path, "/../y");
	assert_int_equal(bumba_path_norm(ws, 1, path, (size_t)-1, out, sizeof(out), &idx),
			 -ENAMETOOLONG);
}

/* out_len bounds the result as PATH_MAX does, and nothing past out_len is
 * written. */
static void test_out_len(void **state)
{
	(void)state;
	char buf[64];
	size_t idx;

	for (size_t len = 0; len <= 16; len++) {
		memset(buf, 0x5a, sizeof(buf));
		int ret = bumba_path_norm(ws, 1, "abc/def", (size_t)-1, buf, len, &idx);

		if (len > 11) {
			assert_int_equal(ret, 11);
			assert_string_equal(buf, "/ws/abc/def");
		} else {
			assert_int_equal(ret, -ENAMETOOLONG);
		}
		for (size_t i = len; i < sizeof(buf); i++)
			assert_int_equal((unsigned char)buf[i], 0x5a);
	}

	/* "/" needs two bytes. */
	static const char *const slash[] = {"/"};
	assert_int_equal(bumba_path_norm(slash, 1, "/", (size_t)-1, buf, 1, &idx), -ENAMETOOLONG);
	assert_int_equal(bumba_path_norm(slash, 1, "/", (size_t)-1, buf, 2, &idx), 1);
	assert_string_equal(buf, "/");

	/* The root alone does not fit. */
	assert_int_equal(bumba_path_norm(ws, 1, ".", (size_t)-1, buf, 3, &idx), -ENAMETOOLONG);
	assert_int_equal(bumba_path_norm(ws, 1, ".", (size_t)-1, buf, 4, &idx), 3);

	/* Past the buffer for a while, back inside by "..". */
	memset(buf, 0x5a, sizeof(buf));
	assert_int_equal(bumba_path_norm(ws, 1, "aaaaaaaaaaaaaaaaaaaa/bbbbbbbb/../../c", (size_t)-1,
					 buf, 12, &idx),
			 5);
	assert_string_equal(buf, "/ws/c");
	for (size_t i = 12; i < sizeof(buf); i++)
		assert_int_equal((unsigned char)buf[i], 0x5a);
	assert_int_equal(bumba_path_norm(ws, 1, "aaaaaaaaaaaaaaaaaaaa/bbbbbbbb/../c", (size_t)-1,
					 buf, 12, &idx),
			 -ENAMETOOLONG);
	assert_int_equal(
		bumba_path_norm(ws, 1, "aaaaaaa/bbbbbbbb/../../c", (size_t)-1, buf, 12, &idx), 5);

	/* A bad byte after the overflow is still reported as such. */
	assert_int_equal(
		bumba_path_norm(ws, 1, "aaaaaaaaaaaaaaaaaaaa/\x01", (size_t)-1, buf, 12, &idx),
		-EINVAL);
}

static void test_norm_root(void **state)
{
	(void)state;
	static const struct {
		const char *in, *want;
		int err;
	} cases[] = {
		{"/", "/", 0},
		{"//", "/", 0},
		{"/ws", "/ws", 0},
		{"/ws/", "/ws", 0},
		{"//ws//a/./b/..", "/ws/a", 0},
		{"/home/u/proj/", "/home/u/proj", 0},
		{"/a/..", "/", 0},
		{"/..", NULL, -EINVAL},
		{"/a/../..", NULL, -EINVAL},
		{"", NULL, -EINVAL},
		{"ws", NULL, -EINVAL},
		{"./ws", NULL, -EINVAL},
		{"/ws\x01", NULL, -EINVAL},
		{"/ws/\xc0\xaf", NULL, -EINVAL},
	};
	char out[PATH_MAX];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int ret = bumba_path_norm_root(cases[i].in, out, sizeof(out));

		if (cases[i].want) {
			assert_int_equal(ret, strlen(cases[i].want));
			assert_string_equal(out, cases[i].want);
		} else {
			assert_int_equal(ret, cases[i].err);
		}
	}
	assert_int_equal(bumba_path_norm_root(NULL, out, sizeof(out)), -EINVAL);
	assert_int_equal(bumba_path_norm_root("/abcdef", out, 4), -ENAMETOOLONG);

	/* A normalised root then works as a root. */
	assert_int_equal(bumba_path_norm_root("//ws//./", out, sizeof(out)), 3);
	const char *roots[] = {out};
	char res[PATH_MAX];
	assert_int_equal(bumba_path_norm(roots, 1, "x", (size_t)-1, res, sizeof(res), NULL), 5);
	assert_string_equal(res, "/ws/x");
}

/* ------------------------------------------------------------------ */

static int put_utf8(unsigned char *p, uint32_t cp)
{
	if (cp < 0x80) {
		p[0] = (unsigned char)cp;
		return 1;
	}
	if (cp < 0x800) {
		p[0] = (unsigned char)(0xc0 | cp >> 6);
		p[1] = (unsigned char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		p[0] = (unsigned char)(0xe0 | cp >> 12);
		p[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
		p[2] = (unsigned char)(0x80 | (cp & 0x3f));
		return 3;
	}
	p[0] = (unsigned char)(0xf0 | cp >> 18);
	p[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
	p[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
	p[3] = (unsigned char)(0x80 | (cp & 0x3f));
	return 4;
}

/* Every code point, its overlong encodings, and every truncation. */
static void test_utf8_exhaustive(void **state)
{
	(void)state;
	unsigned char b[8];

	for (uint32_t cp = 0; cp <= 0x10ffff; cp++) {
		int n = put_utf8(b, cp);
		bool want = !(cp < 0x20 || cp == 0x7f || (cp >= 0xd800 && cp <= 0xdfff));

		if (bumba_utf8_valid((char *)b, (size_t)n) != want)
			print_message("U+%04X\n", cp);
		assert_int_equal(bumba_utf8_valid((char *)b, (size_t)n), want);
		for (int k = 1; k < n; k++)
			assert_false(bumba_utf8_valid((char *)b, (size_t)k));
	}
	/* Overlong: a code point in a longer form than it needs. */
	for (uint32_t cp = 0; cp < 0x10000; cp++) {
		if (cp < 0x800) {
			b[0] = (unsigned char)(0xe0 | cp >> 12);
			b[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
			b[2] = (unsigned char)(0x80 | (cp & 0x3f));
			assert_false(bumba_utf8_valid((char *)b, 3));
		}
		if (cp < 0x80) {
			b[0] = (unsigned char)(0xc0 | cp >> 6);
			b[1] = (unsigned char)(0x80 | (cp & 0x3f));
			assert_false(bumba_utf8_valid((char *)b, 2));
		}
		b[0] = 0xf0;
		b[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
		b[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
		b[3] = (unsigned char)(0x80 | (cp & 0x3f));
		assert_false(bumba_utf8_valid((char *)b, 4));
	}
	/* Above U+10FFFF in four bytes. */
	for (uint32_t cp = 0x110000; cp < 0x200000; cp += 0x3f) {
		put_utf8(b, cp);
		assert_false(bumba_utf8_valid((char *)b, 4));
	}
	/* Every byte that cannot start a sequence. */
	for (int c = 0x80; c <= 0xff; c++) {
		if (c >= 0xc2 && c <= 0xf4)
			continue;
		b[0] = (unsigned char)c;
		b[1] = b[2] = b[3] = 0x80;
		assert_false(bumba_utf8_valid((char *)b, 4));
	}
	/* A lead byte followed by something other than a continuation. */
	for (int c = 0xc2; c <= 0xf4; c++) {
		b[0] = (unsigned char)c;
		b[1] = 'a';
		b[2] = b[3] = 0x80;
		assert_false(bumba_utf8_valid((char *)b, 4));
		b[1] = 0xc0;
		assert_false(bumba_utf8_valid((char *)b, 4));
	}
}

static void test_utf8_strings(void **state)
{
	(void)state;
	assert_true(bumba_utf8_valid("", 0));
	assert_true(bumba_utf8_valid(NULL, 0));
	assert_true(bumba_utf8_valid("hello, world", 12));
	static const char mixed[] = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";
	assert_true(bumba_utf8_valid(mixed, strlen(mixed)));
	for (size_t i = 0; i < strlen(mixed); i++)
		assert_true(bumba_utf8_valid(mixed, i) == (i != 4 && i != 7 && i != 8 && i < 11));
	assert_false(bumba_utf8_valid("a\0b", 3));
	assert_true(bumba_utf8_valid("a\0b", 1)); /* len bounds the check */
	assert_false(bumba_utf8_valid("tab\there", 8));
	assert_false(bumba_utf8_valid("del\x7f", 4));
	assert_false(bumba_utf8_valid("\xc3\xa9\xc3", 3));
	assert_true(bumba_utf8_valid("\xc3\xa9\xc3", 2));
}

/* ------------------------------------------------------------------ */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(void)
{
	/* xorshift64*: the sequence is the same on every libc. */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (uint32_t)((rng_state * 0x2545f4914f6cdd1dull) >> 32);
}

/* Length of a root as a prefix: "/" is the empty one. */
static size_t rlen(const char *root)
{
	return strcmp(root, "/") == 0 ? 0 : strlen(root);
}

static void check_shape(const char *out, int len, const char *const *roots, size_t idx)
{
	size_t rl = strlen(roots[idx]);

	assert_true(len > 0);
	assert_int_equal(strlen(out), (size_t)len);
	assert_int_equal(out[0], '/');
	assert_null(strstr(out, "//"));
	assert_null(strstr(out, "/./"));
	assert_null(strstr(out, "/../"));
	if (len > 1) {
		assert_int_not_equal(out[len - 1], '/');
		assert_false(len >= 2 && strcmp(out + len - 2, "/.") == 0);
		assert_false(len >= 3 && strcmp(out + len - 3, "/..") == 0);
	}
	if (strcmp(roots[idx], "/") != 0) {
		assert_true((size_t)len >= rl);
		assert_memory_equal(out, roots[idx], rl);
		assert_true(out[rl] == '\0' || out[rl] == '/');
	}
}

/* Random paths from a small alphabet of components: every success has the
 * shape of a normalised path and normalises to itself. */
static void test_random_properties(void **state)
{
	(void)state;
	static const char *const roots[] = {"/ws", "/ws/a", "/", "/srv/x"};
	static const char *const parts[] = {
		"a", "b", ".", "..", "", "ws", "srv", "x", "\xc3\xa9", "...", ".a", "a.",
	};
	char path[512], out[PATH_MAX], again[PATH_MAX];
	size_t n_ok = 0, n_err = 0;

	for (int iter = 0; iter < 200000; iter++) {
		size_t n_roots = 1 + rnd() % 4, idx = SIZE_MAX, idx2 = SIZE_MAX;
		size_t first = rnd() % 4;
		const char *rs[4];
		size_t o = 0;

		for (size_t r = 0; r < n_roots; r++)
			rs[r] = roots[(first + r) % 4];
		if (rnd() & 1)
			path[o++] = '/';
		for (int k = 0, n = (int)(rnd() % 8); k < n; k++) {
			const char *p = parts[rnd() % (sizeof(parts) / sizeof(parts[0]))];
			size_t pl = strlen(p);

			memcpy(path + o, p, pl);
			o += pl;
			if (k + 1 < n || rnd() % 4 == 0)
				path[o++] = '/';
		}
		path[o] = '\0';

		int ret = bumba_path_norm(rs, n_roots, path, (size_t)-1, out, sizeof(out), &idx);
		if (ret < 0) {
			assert_int_equal(ret, -EINVAL);
			n_err++;
			continue;
		}
		n_ok++;
		assert_true(idx < n_roots);
		check_shape(out, ret, rs, idx);

		int ret2 =
			bumba_path_norm(rs, n_roots, out, (size_t)-1, again, sizeof(again), &idx2);
		assert_int_equal(ret2, ret);
		assert_string_equal(again, out);
		/* Without ".." the result is attributed to the longest root. */
		assert_true(idx2 < n_roots);
		assert_true(rlen(rs[idx2]) >= rlen(rs[idx]));

		/* The same path given with its length gives the same result. */
		ret2 = bumba_path_norm(rs, n_roots, path, o, again, sizeof(again), &idx2);
		assert_int_equal(ret2, ret);
		assert_string_equal(again, out);
		assert_int_equal(idx2, idx);
	}
	/* Both outcomes were exercised in earnest. */
	assert_true(n_ok > 50000);
	assert_true(n_err > 10000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_relative),      cmocka_unit_test(test_absolute),
		cmocka_unit_test(test_escape),	      cmocka_unit_test(test_component_boundary),
		cmocka_unit_test(test_root_slash),    cmocka_unit_test(test_root_forms),
		cmocka_unit_test(test_several_roots), cmocka_unit_test(test_nested_roots),
		cmocka_unit_test(test_bad_args),      cmocka_unit_test(test_explicit_length),
		cmocka_unit_test(test_utf8_in_paths), cmocka_unit_test(test_name_max),
		cmocka_unit_test(test_path_max),      cmocka_unit_test(test_out_len),
		cmocka_unit_test(test_norm_root),     cmocka_unit_test(test_utf8_exhaustive),
		cmocka_unit_test(test_utf8_strings),  cmocka_unit_test(test_random_properties),
	};

	return cmocka_run_group_tests_name("path", tests, NULL, NULL);
}
