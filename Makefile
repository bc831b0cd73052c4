# bumba - a supervisor that lets many AI coding agents share one file tree.
#
#   make            build everything into build/
#   make check      every test: units, sanitizer builds, multi-process, fuzz smoke
#   make bench      every benchmark, with the anchors beside it
#   make demo       the main job on built-in defaults
#   make deps       install the Debian packages we need (idempotent)
#   make install    PREFIX=/usr/local DESTDIR=
#   make fuzz       longer libFuzzer runs
#   make format     clang-format every C file

PREFIX  ?= /usr/local
DESTDIR ?=
# Where `make install` puts things (systemd, sysusers.d and tmpfiles.d
# search /usr/local/lib/... too); the configuration stays in /etc/bumba,
# where bumbad reads it.
BINDIR        ?= $(PREFIX)/bin
SBINDIR       ?= $(PREFIX)/sbin
LIBDIR        ?= $(PREFIX)/lib
INCLUDEDIR    ?= $(PREFIX)/include
MANDIR        ?= $(PREFIX)/share/man
SYSCONFDIR    ?= /etc
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR   ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR   ?= $(PREFIX)/lib/tmpfiles.d
# The Python binding goes where the python3 that will import it looks:
# Debian's (/usr/bin/python3 first: a pyenv or venv python3 may come first in
# PATH) reads /usr/local/lib/python3.X/dist-packages and
# /usr/lib/python3/dist-packages; any other PREFIX gets the upstream
# $(PREFIX)/lib/python3.X/site-packages, for PYTHONPATH.  PYTHON_VERSION
# (3.X) is asked of $(PYTHON) once, and only when PYTHONDIR is used.
PYTHON        ?= $(firstword $(wildcard /usr/bin/python3) python3)
PYTHON_VERSION = $(eval PYTHON_VERSION := $(shell $(PYTHON) -c \
                   'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null))$(PYTHON_VERSION)
PYTHONDIR     ?= $(if $(filter /usr,$(PREFIX)),/usr/lib/python3/dist-packages,$(PYTHON_PREFIXDIR))
PYTHON_PREFIXDIR = $(if $(PYTHON_VERSION),$(PREFIX)/lib/python$(PYTHON_VERSION)/$(PYTHON_PKGDIR))
PYTHON_PKGDIR = $(if $(filter /usr/local,$(PREFIX)),dist,site)-packages
# After installing or removing the library for good (no DESTDIR), as root.
LDCONFIG      ?= /sbin/ldconfig
CC      ?= cc
CLANG   ?= clang
O       := build

SOVERSION := 0
VERSION   := 0.1.0

WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wno-unused-parameter
CFLAGS  ?= -O2 -g
LDFLAGS ?=
XCFLAGS := $(CFLAGS) -std=gnu11 $(WARN) -D_GNU_SOURCE -fPIC -Ishm
LDLIBS_SHM := -luring -lxxhash -lpthread
# bumbad's own libraries on top of the agent library's.
LDLIBS_SUP := -ljemalloc -lcap -linih -lmicrohttpd -lcjson -lm
# The configuration and dashboard code bumbactl shares with bumbad.
CTL_SUP_OBJ := $(O)/supervisor/config.o $(O)/supervisor/dashboard.o
LDLIBS_CTL  := -linih -lcjson -lm

# The eBPF guard (bpf/guard.bpf.c, CO-RE): built when clang, bpftool and the
# kernel's BTF are present, else bumbad is built without it and says so.
# vmlinux.h and the libbpf skeleton are generated into $(O).
BPFTOOL     ?= $(firstword $(shell command -v bpftool) /usr/sbin/bpftool)
LLVM_STRIP  ?= llvm-strip
VMLINUX_BTF ?= /sys/kernel/btf/vmlinux
HAVE_GUARD  := $(shell test -r $(VMLINUX_BTF) && test -x $(BPFTOOL) && \
                 command -v $(CLANG) >/dev/null && echo 1)
# bumbactl's audit and doctor (agents/ctl_guard.c).
CTL_SUP_OBJ += $(O)/agents/ctl_guard.o
# bumbactl's backups and restore (agents/ctl_safeio.c).
CTL_SUP_OBJ += $(O)/agents/ctl_safeio.o
ifeq ($(HAVE_GUARD),1)
LDLIBS_SUP  += -lbpf -lelf -lz
LDLIBS_CTL  += -lbpf -lelf -lz
endif

SHM_SRC := $(wildcard shm/*.c)
SUP_SRC := $(wildcard supervisor/*.c)
CTL_SRC := agents/bumbactl.c
TEST_UNIT_SRC := $(wildcard tests/unit/test_*.c)
TEST_MP_SRC   := $(wildcard tests/integration/mp_*.c)
TEST_GUARD_SRC := $(wildcard tests/integration/guard_*.c)
BENCH_SRC     := $(wildcard bench/bench_*.c)
FUZZ_SRC      := $(wildcard tests/fuzz/fuzz_*.c)

SHM_OBJ := $(SHM_SRC:%.c=$(O)/%.o)
SUP_OBJ := $(SUP_SRC:%.c=$(O)/%.o)

BINS := $(O)/bumbad $(O)/bumbactl $(O)/bumba-run
LIBS := $(O)/libbumba-shm.so $(O)/libbumba-shm.a $(O)/bumba-shm.pc
TESTS_UNIT := $(TEST_UNIT_SRC:tests/unit/%.c=$(O)/tests/%)
TESTS_MP   := $(TEST_MP_SRC:tests/integration/%.c=$(O)/tests/%)
TESTS_GUARD := $(TEST_GUARD_SRC:tests/integration/%.c=$(O)/tests/%)
BENCHES    := $(BENCH_SRC:bench/%.c=$(O)/bench/%)
EXAMPLES := $(patsubst agents/examples/%.c,$(O)/examples/%,$(wildcard agents/examples/*.c))

.PHONY: all check bench demo deps install uninstall fuzz format clean \
        check-unit check-asan check-tsan check-integration check-fuzz
all: $(LIBS) $(BINS)

$(O)/%.o: %.c $(wildcard shm/*.h supervisor/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(XCFLAGS) -c -o $@ $<

$(O)/libbumba-shm.a: $(SHM_OBJ)
	$(AR) rcs $@ $^

$(O)/libbumba-shm.so: $(SHM_OBJ)
	$(CC) $(LDFLAGS) -shared -Wl,-soname,libbumba-shm.so.$(SOVERSION) -Wl,--version-script=shm/libbumba-shm.map \
		-o $@ $^ $(LDLIBS_SHM)

$(O)/bumba-shm.pc: shm/bumba-shm.pc.in
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' $< > $@

$(O)/bumbad: $(SUP_OBJ) $(O)/libbumba-shm.a
	$(CC) $(XCFLAGS) $(LDFLAGS) -o $@ $(SUP_OBJ) $(O)/libbumba-shm.a $(LDLIBS_SHM) $(LDLIBS_SUP)

$(O)/bumbactl: $(O)/agents/bumbactl.o $(O)/agents/run_common.o $(CTL_SUP_OBJ) $(O)/libbumba-shm.a
	$(CC) $(XCFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS_SHM) $(LDLIBS_CTL)

# bumba-run: wraps any command as one agent (agents/bumba-run.c); COMMAND's
# fork/exec/signals are bumbactl lock's (agents/run_common.c).
$(O)/bumba-run: $(O)/agents/bumba-run.o $(O)/agents/run_common.o $(O)/libbumba-shm.a
	$(CC) $(XCFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS_SHM)

$(O)/agents/bumbactl.o $(O)/agents/bumba-run.o $(O)/agents/run_common.o: agents/run_common.h


# --- the eBPF guard ----------------------------------------------------------

ifeq ($(HAVE_GUARD),1)
$(O)/vmlinux.h:
	@mkdir -p $(dir $@)
	$(BPFTOOL) btf dump file $(VMLINUX_BTF) format c > $@.tmp && mv $@.tmp $@

# The skeleton embeds the object: its DWARF is stripped, its BTF kept.
$(O)/bpf/guard.bpf.o: bpf/guard.bpf.c bpf/guard.h $(O)/vmlinux.h
	@mkdir -p $(dir $@)
	$(CLANG) -target bpf -g -O2 -D__TARGET_ARCH_x86 -I$(O) -Ibpf -c $< -o $@.tmp
	$(LLVM_STRIP) -g $@.tmp -o $@ && rm -f $@.tmp

$(O)/guard.skel.h: $(O)/bpf/guard.bpf.o
	$(BPFTOOL) gen skeleton $< name guard_bpf > $@.tmp && mv $@.tmp $@

$(O)/supervisor/guard.o $(O)/agents/ctl_guard.o: $(O)/guard.skel.h bpf/guard.h
$(O)/supervisor/guard.o $(O)/agents/ctl_guard.o: XCFLAGS += -DBUMBA_GUARD -I$(O)
endif

# --- tests -----------------------------------------------------------------

$(O)/tests/%: tests/unit/%.c tests/unit/unit_bumbad.h $(O)/libbumba-shm.a
	@mkdir -p $(dir $@)
	$(CC) $(XCFLAGS) $(LDFLAGS) -o $@ $< $(O)/libbumba-shm.a $(LDLIBS_SHM) -lcmocka

$(O)/tests/test_config: tests/unit/test_config.c $(O)/supervisor/config.o $(O)/libbumba-shm.a
	@mkdir -p $(dir $@)
	$(CC) $(XCFLAGS) $(LDFLAGS) -Isupervisor -o $@ $^ $(LDLIBS_SHM) -linih -lcmocka

$(O)/tests/mp_%: tests/integration/mp_%.c tests/integration/harness.h $(O)/libbumba-shm.a
	@mkdir -p $(dir $@)
	$(CC) $(XCFLAGS) $(LDFLAGS) -Itests/integration -o $@ $< $(O)/libbumba-shm.a $(LDLIBS_SHM)

# Helpers of the guard's shell tests (t_guard_*.sh).
$(O)/tests/guard_%: tests/integration/guard_%.c $(O)/libbumba-shm.a
	@mkdir -p $(dir $@)
	$(CC) $(XCFLAGS) $(LDFLAGS) -o $@ $< $(O)/libbumba-shm.a $(LDLIBS_SHM)

# Sanitizer builds reuse this Makefile with another output directory.
SAN_ASAN := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
SAN_TSAN := -fsanitize=thread
# TSan does not model atomic_thread_fence (gcc -Wtsan); the seqlock-style
# readers that use one touch only atomics, which TSan never reports.
TSAN_WARN := -Wno-tsan

check: all $(TESTS_UNIT) $(TESTS_MP) $(TESTS_GUARD) $(EXAMPLES)
	bash tests/run.sh

check-asan:
	$(MAKE) O=build/asan CFLAGS="-O1 -g $(SAN_ASAN)" LDFLAGS="$(SAN_ASAN)" \
		build/asan/libbumba-shm.a $(TEST_UNIT_SRC:tests/unit/%.c=build/asan/tests/%)

check-tsan:
	$(MAKE) O=build/tsan CFLAGS="-O1 -g $(SAN_TSAN) $(TSAN_WARN)" \
		build/tsan/libbumba-shm.a build/tsan/tests/test_locks

# --- fuzzing ---------------------------------------------------------------

$(O)/fuzz/%: tests/fuzz/%.c $(SHM_SRC)
	@mkdir -p $(dir $@)
	$(CLANG) -g -O1 -std=gnu11 -D_GNU_SOURCE -Ishm -fsanitize=fuzzer,address,undefined \
		-o $@ $< $(filter-out shm/client.c,$(SHM_SRC)) $(LDLIBS_SHM)

FUZZ_BINS := $(FUZZ_SRC:tests/fuzz/%.c=$(O)/fuzz/%)
fuzz: $(FUZZ_BINS)
	for f in $(FUZZ_BINS); do $$f -max_total_time=$${FUZZ_SECONDS:-60} -rss_limit_mb=1024 -error_exitcode=1 -artifact_prefix=$(O)/fuzz/ || exit 1; done

# --- benchmarks ------------------------------------------------------------

$(O)/bench/%: bench/%.c bench/bench.h $(O)/libbumba-shm.a
	@mkdir -p $(dir $@)
	$(CC) $(XCFLAGS) $(LDFLAGS) -Ibench -o $@ $< $(O)/libbumba-shm.a $(LDLIBS_SHM) -lm

bench: all $(BENCHES)
	bash bench/run.sh

$(O)/examples/%: agents/examples/%.c $(O)/libbumba-shm.a
	@mkdir -p $(dir $@)
	$(CC) $(XCFLAGS) $(LDFLAGS) -o $@ $< $(O)/libbumba-shm.a $(LDLIBS_SHM)

demo: all $(EXAMPLES)
	bash agents/demo.sh

# --- dependencies and install ----------------------------------------------

DEB_PKGS := build-essential pkg-config clang llvm liburing-dev libbpf-dev bpftool libcap-dev \
            libjemalloc-dev libcmocka-dev libelf-dev zlib1g-dev libxxhash-dev libinih-dev \
            libmicrohttpd-dev libcjson-dev libclang-rt-14-dev python3 python3-pytest tmux \
            prometheus curl util-linux procps xfsprogs systemd libcap2-bin man-db groff-base \
            passwd
deps:
	@missing=$$(for p in $(DEB_PKGS); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else echo "all build dependencies present"; fi

# The Python package's modules (not its tests).
PY_SRC := $(wildcard agents/python/bumba/*.py)

# Generated at install time, so that PREFIX and the directories given to
# `make install` (not those of the build) end up in the .pc, the unit and
# the Python loader (INSTALLED_LIBDIR).  ldconfig only for a real install.
install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR) $(DESTDIR)$(LIBDIR)/pkgconfig \
		$(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man3 \
		$(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(SYSTEMDUNITDIR) \
		$(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR) $(DESTDIR)$(SYSCONFDIR)/bumba
	install -m 0755 $(O)/bumbad $(DESTDIR)$(SBINDIR)/bumbad
	install -m 0755 $(O)/bumbactl $(O)/bumba-run $(DESTDIR)$(BINDIR)/
	install -m 0644 $(O)/libbumba-shm.a $(DESTDIR)$(LIBDIR)/
	install -m 0755 $(O)/libbumba-shm.so $(DESTDIR)$(LIBDIR)/libbumba-shm.so.$(VERSION)
	ln -sf libbumba-shm.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libbumba-shm.so.$(SOVERSION)
	ln -sf libbumba-shm.so.$(SOVERSION) $(DESTDIR)$(LIBDIR)/libbumba-shm.so
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' \
		-e 's|^libdir=.*|libdir=$(patsubst $(PREFIX)/%,$${prefix}/%,$(LIBDIR))|' \
		-e 's|^includedir=.*|includedir=$(patsubst $(PREFIX)/%,$${prefix}/%,$(INCLUDEDIR))|' \
		shm/bumba-shm.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/bumba-shm.pc
	chmod 0644 $(DESTDIR)$(LIBDIR)/pkgconfig/bumba-shm.pc
	install -m 0644 shm/bumba.h $(DESTDIR)$(INCLUDEDIR)/
	install -m 0644 docs/man/bumbactl.1 docs/man/bumba-run.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 docs/man/libbumba-shm.3 $(DESTDIR)$(MANDIR)/man3/
	install -m 0644 docs/man/bumba.conf.5 $(DESTDIR)$(MANDIR)/man5/
	install -m 0644 docs/man/bumbad.8 $(DESTDIR)$(MANDIR)/man8/
	sed -e 's|/usr/local/sbin/bumbad|$(SBINDIR)/bumbad|' systemd/bumbad.service \
		> $(DESTDIR)$(SYSTEMDUNITDIR)/bumbad.service
	chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/bumbad.service
	install -m 0644 systemd/bumba.sysusers $(DESTDIR)$(SYSUSERSDIR)/bumba.conf
	install -m 0644 systemd/bumba.tmpfiles $(DESTDIR)$(TMPFILESDIR)/bumba.conf
	install -m 0644 systemd/bumba.conf.example $(DESTDIR)$(SYSCONFDIR)/bumba/bumba.conf.example
	$(if $(PYTHONDIR),install -d $(DESTDIR)$(PYTHONDIR)/bumba,@echo "make install: $(PYTHON) not found, so no Python package (PYTHONDIR= says where)")
	$(if $(PYTHONDIR),install -m 0644 $(PY_SRC) $(DESTDIR)$(PYTHONDIR)/bumba/)
	$(if $(PYTHONDIR),sed -i -e 's|^INSTALLED_LIBDIR = None$$|INSTALLED_LIBDIR = "$(LIBDIR)"|' \
		$(DESTDIR)$(PYTHONDIR)/bumba/_native.py)
	$(if $(DESTDIR),,if [ "$$(id -u)" = 0 ]; then $(LDCONFIG); fi)

# Files only (and /etc/bumba, the Python package's directory and its
# __pycache__ if that leaves them empty): the configuration an operator
# wrote stays.
uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/bumbad $(DESTDIR)$(BINDIR)/bumbactl $(DESTDIR)$(BINDIR)/bumba-run \
		$(DESTDIR)$(LIBDIR)/libbumba-shm.a $(DESTDIR)$(LIBDIR)/libbumba-shm.so \
		$(DESTDIR)$(LIBDIR)/libbumba-shm.so.$(SOVERSION) \
		$(DESTDIR)$(LIBDIR)/libbumba-shm.so.$(VERSION) \
		$(DESTDIR)$(LIBDIR)/pkgconfig/bumba-shm.pc $(DESTDIR)$(INCLUDEDIR)/bumba.h \
		$(DESTDIR)$(MANDIR)/man1/bumbactl.1 $(DESTDIR)$(MANDIR)/man1/bumba-run.1 \
		$(DESTDIR)$(MANDIR)/man3/libbumba-shm.3 $(DESTDIR)$(MANDIR)/man5/bumba.conf.5 \
		$(DESTDIR)$(MANDIR)/man8/bumbad.8 $(DESTDIR)$(SYSTEMDUNITDIR)/bumbad.service \
		$(DESTDIR)$(SYSUSERSDIR)/bumba.conf $(DESTDIR)$(TMPFILESDIR)/bumba.conf \
		$(DESTDIR)$(SYSCONFDIR)/bumba/bumba.conf.example
	@rmdir $(DESTDIR)$(SYSCONFDIR)/bumba 2>/dev/null || true
	$(if $(PYTHONDIR),rm -f $(addprefix $(DESTDIR)$(PYTHONDIR)/bumba/,$(notdir $(PY_SRC))) \
		$(patsubst %.py,$(DESTDIR)$(PYTHONDIR)/bumba/__pycache__/%.*.pyc,$(notdir $(PY_SRC))))
	$(if $(PYTHONDIR),@rmdir $(DESTDIR)$(PYTHONDIR)/bumba/__pycache__ $(DESTDIR)$(PYTHONDIR)/bumba 2>/dev/null || true)
	$(if $(DESTDIR),,if [ "$$(id -u)" = 0 ]; then $(LDCONFIG); fi)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build
