# cutoffd - see README.md.  `make`, `make check`, `make run`, `make install`.

PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR  ?= $(PREFIX)/bin
SBINDIR ?= $(PREFIX)/sbin
MANDIR  ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc
UNITDIR ?= $(PREFIX)/lib/systemd/system

CC      ?= cc
CLANG   ?= clang
PYTHON  ?= /usr/bin/python3
PKGS    := libcurl libical inih sqlite3 libmicrohttpd jansson libcrypto

WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
           -Wmissing-prototypes -Wpointer-arith -Wformat=2
CFLAGS  ?= -O2 -g
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lev -lm
ALL_CFLAGS := -std=c11 -D_GNU_SOURCE $(WARN) -Idaemon $(PKG_CFLAGS) $(CFLAGS)

SAN_FLAGS  := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
              -fno-sanitize-recover=undefined
CMOCKA_CFLAGS := $(shell pkg-config --cflags cmocka 2>/dev/null)
CMOCKA_LIBS   := $(shell pkg-config --libs cmocka 2>/dev/null)

SRCS     := $(sort $(wildcard daemon/*.c))
MAINS    := daemon/main.c daemon/cutoffctl.c
LIB_SRCS := $(filter-out $(MAINS),$(SRCS))
LIB_OBJS := $(LIB_SRCS:daemon/%.c=build/obj/%.o)
SAN_OBJS := $(LIB_SRCS:daemon/%.c=build/san/%.o)
HDRS     := $(wildcard daemon/*.h)

UNIT_SRCS  := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS  := $(UNIT_SRCS:tests/unit/%.c=build/san/%)
FUZZ_SRCS  := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS  := $(FUZZ_SRCS:tests/fuzz/%.c=build/fuzz/%)
FUZZ_LIB_OBJS := $(LIB_SRCS:daemon/%.c=build/fuzz/obj/%.o)
FUZZ_SECONDS ?= 15

.PHONY: all deps check unit-tests fuzz integration run install clean sanity

all: build/cutoffd build/cutoffctl

# ---------------------------------------------------------------- build
build/obj/%.o: daemon/%.c $(HDRS) | build/obj
	$(CC) $(ALL_CFLAGS) -c $< -o $@

build/libcutoffd.a: $(LIB_OBJS)
	rm -f $@
	ar rcs $@ $^

build/cutoffd: build/obj/main.o build/libcutoffd.a
	$(CC) $(CFLAGS) -o $@ $^ $(PKG_LIBS)

build/cutoffctl: build/obj/cutoffctl.o build/libcutoffd.a
	$(CC) $(CFLAGS) -o $@ $^ $(PKG_LIBS)

# Sanitizer build of the library, for the unit tests.  An archive lets a
# test #include a module's .c (to reach its statics) without clashing.
build/san/%.o: daemon/%.c $(HDRS) | build/san
	$(CC) $(ALL_CFLAGS) $(SAN_FLAGS) -c $< -o $@

build/san/libcutoffd.a: $(SAN_OBJS)
	rm -f $@
	ar rcs $@ $^

build/san/test_%: tests/unit/test_%.c build/san/libcutoffd.a $(HDRS) $(wildcard tests/unit/*.h)
	$(CC) $(ALL_CFLAGS) $(SAN_FLAGS) $(CMOCKA_CFLAGS) -Idaemon \
		-o $@ $< build/san/libcutoffd.a $(PKG_LIBS) $(CMOCKA_LIBS)

# libFuzzer targets (clang), linked against a clang-built library.
build/fuzz/obj/%.o: daemon/%.c $(HDRS) | build/fuzz/obj
	$(CLANG) -std=c11 -D_GNU_SOURCE -Idaemon $(PKG_CFLAGS) -g -O1 \
		-fsanitize=fuzzer-no-link,address,undefined -c $< -o $@

build/fuzz/libcutoffd.a: $(FUZZ_LIB_OBJS)
	rm -f $@
	ar rcs $@ $^

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c build/fuzz/libcutoffd.a $(HDRS)
	$(CLANG) -std=c11 -D_GNU_SOURCE -Idaemon $(PKG_CFLAGS) -g -O1 \
		-fsanitize=fuzzer,address,undefined -o $@ $< \
		build/fuzz/libcutoffd.a $(PKG_LIBS)

build/obj build/san build/fuzz/obj:
	mkdir -p $@

# ---------------------------------------------------------------- deps
# Installs the Debian packages the build and tests need, when missing.
deps:
	@scripts/install-deps

# ---------------------------------------------------------------- tests
check: deps
	$(MAKE) all
	$(MAKE) unit-tests
	$(MAKE) fuzz
	$(MAKE) integration

unit-tests: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do \
		echo "== $$t"; \
		ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 $$t; \
	done

fuzz: $(FUZZ_BINS)
	@set -e; for f in $(FUZZ_BINS); do \
		name=$${f#build/fuzz/fuzz_}; \
		corpus=tests/fuzz/corpus/$$name; mkdir -p build/fuzz/work-$$name; \
		echo "== $$f ($(FUZZ_SECONDS)s)"; \
		$$f -max_total_time=$(FUZZ_SECONDS) -max_len=16384 \
			-print_final_stats=0 build/fuzz/work-$$name \
			$$( [ -d $$corpus ] && echo $$corpus ) 2>build/fuzz/$$name.log \
			|| { tail -50 build/fuzz/$$name.log; exit 1; }; \
	done

integration: all
	$(PYTHON) -m pytest -q tests

# ---------------------------------------------------------------- run
# The daemon on the example configuration: mail to conf/../var/mail
# (Maildir), state in var/state.db, feeds on http://127.0.0.1:8470/.
run: deps all
	@mkdir -p var
	@test -s var/admin.token || { umask 077; od -An -N24 -tx1 /dev/urandom | tr -d ' \n' > var/admin.token; }
	@echo "cutoffd: feed http://127.0.0.1:8470/calendar.ics, status http://127.0.0.1:8470/,"
	@echo "         mail in var/mail/new, admin token in var/admin.token; Ctrl-C stops"
	./build/cutoffd -c conf/cutoffd.conf $(RUN_ARGS)

# ---------------------------------------------------------------- install
install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) \
		$(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 \
		$(DESTDIR)$(SYSCONFDIR)/cutoffd/templates/vi \
		$(DESTDIR)$(SYSCONFDIR)/cutoffd/templates/en \
		$(DESTDIR)$(UNITDIR)
	install -m 755 build/cutoffd $(DESTDIR)$(SBINDIR)/cutoffd
	install -m 755 build/cutoffctl $(DESTDIR)$(BINDIR)/cutoffctl
	install -m 644 daemon/man/cutoffd.8 daemon/man/cutoffctl.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 644 daemon/man/cutoffd.conf.5 $(DESTDIR)$(MANDIR)/man5/
	install -m 644 conf/holidays-vn.ics $(DESTDIR)$(SYSCONFDIR)/cutoffd/
	install -m 644 conf/templates/vi/* $(DESTDIR)$(SYSCONFDIR)/cutoffd/templates/vi/
	install -m 644 conf/templates/en/* $(DESTDIR)$(SYSCONFDIR)/cutoffd/templates/en/
	test -e $(DESTDIR)$(SYSCONFDIR)/cutoffd/cutoffd.conf || \
		install -m 640 conf/cutoffd.conf.dist $(DESTDIR)$(SYSCONFDIR)/cutoffd/cutoffd.conf
	sed 's|@SBINDIR@|$(SBINDIR)|g' systemd/cutoffd.service.in \
		> $(DESTDIR)$(UNITDIR)/cutoffd.service

clean:
	rm -rf build .pytest_cache tests/__pycache__
