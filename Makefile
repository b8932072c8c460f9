# cutoffd - see README.md.  `make`, `make check`, `make run`, `make install`.

PREFIX  ?= /usr/local
DESTDIR ?=
SBINDIR ?= $(PREFIX)/sbin
MANDIR  ?= $(PREFIX)/share/man
DATADIR ?= $(PREFIX)/share/cutoffd
DOCDIR  ?= $(PREFIX)/share/doc/cutoffd
SYSCONFDIR ?= /etc
# where systemd looks, as its pkg-config file says (Debian 12: /lib/...)
SYSTEMD_VAR = $(shell pkg-config --variable=$(1) systemd 2>/dev/null)
UNITDIR ?= $(or $(call SYSTEMD_VAR,systemdsystemunitdir),$(PREFIX)/lib/systemd/system)
SYSUSERSDIR ?= $(or $(call SYSTEMD_VAR,sysusersdir),$(PREFIX)/lib/sysusers.d)
TMPFILESDIR ?= $(or $(call SYSTEMD_VAR,tmpfilesdir),$(PREFIX)/lib/tmpfiles.d)

CC      ?= cc
CLANG   ?= clang
PYTHON  ?= /usr/bin/python3
PKGS    := libcurl libical inih sqlite3 libmicrohttpd jansson libcrypto

# DEVELOPER=1 (the default in the tree) makes every warning an error; a
# package build passes DEVELOPER=0 so a newer compiler's new warning does
# not break a distribution's build.
DEVELOPER ?= 1
WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes \
           -Wmissing-prototypes -Wpointer-arith -Wformat=2 \
           $(if $(filter 1,$(DEVELOPER)),-Werror)
CFLAGS  ?= -O2 -g
CPPFLAGS ?=
LDFLAGS ?=
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lev -lm
ALL_CFLAGS := -std=c11 -D_GNU_SOURCE $(WARN) -Idaemon $(PKG_CFLAGS) \
              -DCUTOFFD_DATADIR='"$(DATADIR)"' $(CPPFLAGS) $(CFLAGS)

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

.PHONY: all deps check test unit-tests fuzz integration systemd-test run \
	install clean sanity deb lint-man FORCE

all: build/cutoffd build/cutoffctl

# ---------------------------------------------------------------- build
build/obj/%.o: daemon/%.c $(HDRS) | build/obj
	$(CC) $(ALL_CFLAGS) -c $< -o $@

build/libcutoffd.a: $(LIB_OBJS)
	rm -f $@
	ar rcs $@ $^

build/cutoffd: build/obj/main.o build/libcutoffd.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

build/cutoffctl: build/obj/cutoffctl.o build/libcutoffd.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

# The data directory is compiled in: a changed DATADIR must rebuild conf.o.
build/obj/conf.o: build/datadir.stamp
build/datadir.stamp: FORCE | build/obj
	@echo '$(DATADIR)' | cmp -s - $@ || echo '$(DATADIR)' > $@
FORCE:

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
# Installs the Debian packages the build and tests need, when missing (a
# no-op when all are there), so that `make run` and `make check` work on a
# fresh Debian machine.  The package build never calls it: debian/rules
# runs `make test`, which needs only the Build-Depends.
deps:
	@scripts/install-deps

# ---------------------------------------------------------------- tests
# `make check`: everything, including the systemd test (tests/
# test_systemd.py boots a Debian 12 container) and the man page lint.
# `make test`: what a package build runs; needs only the Build-Depends.
check: deps
	$(MAKE) all
	$(MAKE) unit-tests
	$(MAKE) fuzz
	$(MAKE) lint-man
	$(MAKE) integration

test: unit-tests

lint-man:
	mandoc -Tlint -W warning daemon/man/cutoffd.8 daemon/man/cutoffctl.8 \
		daemon/man/cutoffd.conf.5

systemd-test: all
	$(PYTHON) -m pytest -q -rsx tests/test_systemd.py

# The Debian package, from a clean export of HEAD (what a fresh clone
# holds), into build/deb/; lintian must be clean.
deb:
	rm -rf build/deb && mkdir -p build/deb/src
	git archive HEAD | tar -x -C build/deb/src
	cd build/deb/src && dpkg-buildpackage -us -uc -b
	lintian --fail-on error,warning --info build/deb/cutoffd_*.changes

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
	$(PYTHON) -m pytest -q -rsx tests

# ---------------------------------------------------------------- run
# The daemon on the example configuration: mail to conf/../var/mail
# (Maildir), state in var/state.db, feeds on http://127.0.0.1:8470/.
# With --now in RUN_ARGS (a demo in simulated time) it runs on a copy,
# var/demo/cutoffd.conf, with its own state and Maildir, so a demo never
# mixes with (nor is blocked by) what a normal run recorded.
RUN_CONF = $(if $(findstring --now,$(RUN_ARGS)),var/demo/cutoffd.conf,conf/cutoffd.conf)
RUN_VAR  = $(if $(findstring --now,$(RUN_ARGS)),var/demo,var)
run: deps
	@$(MAKE) --no-print-directory all
	@mkdir -p var/demo
	@sed -e '1i ; generated by make run from conf/cutoffd.conf: a demo state in var/demo/' \
	     -e '/^; no admin_token_file/d' -e '/^; templates and holidays/d' \
	     -e 's|^state *=.*|state = state.db|' \
	     -e 's|^maildir *=.*|maildir = mail|' \
	     -e 's|^holidays *=.*|holidays = ../../conf/holidays-vn.ics|' \
	     -e '/^\[daemon\]/a templates = ../../conf/templates' \
	     conf/cutoffd.conf > var/demo/cutoffd.conf
	@echo "cutoffd: feed http://127.0.0.1:8470/calendar.ics, status http://127.0.0.1:8470/,"
	@echo "         mail in $(RUN_VAR)/mail/new, admin token: build/cutoffctl -c $(RUN_CONF) admin-token"
	@echo "         Ctrl-C stops"
	./build/cutoffd -c $(RUN_CONF) $(RUN_ARGS)

# ---------------------------------------------------------------- install
# Programs in sbin (both are for the administrator), defaults in DATADIR,
# an inert configuration in /etc/cutoffd (kept when it exists), the unit,
# the system user (sysusers.d) and the ownership of /etc/cutoffd's files
# (tmpfiles.d: root:cutoffd 0640, applied at boot or by the package).
install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man5 \
		$(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(DATADIR)/templates/vi \
		$(DESTDIR)$(DATADIR)/templates/en $(DESTDIR)$(SYSCONFDIR)/cutoffd \
		$(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) \
		$(DESTDIR)$(TMPFILESDIR)
	install -m 755 build/cutoffd build/cutoffctl $(DESTDIR)$(SBINDIR)/
	install -m 644 daemon/man/cutoffd.8 daemon/man/cutoffctl.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 644 daemon/man/cutoffd.conf.5 $(DESTDIR)$(MANDIR)/man5/
	install -m 644 conf/holidays-vn.ics $(DESTDIR)$(DATADIR)/
	install -m 644 conf/templates/vi/* $(DESTDIR)$(DATADIR)/templates/vi/
	install -m 644 conf/templates/en/* $(DESTDIR)$(DATADIR)/templates/en/
	test -e $(DESTDIR)$(SYSCONFDIR)/cutoffd/cutoffd.conf || \
		install -m 640 conf/cutoffd.conf.dist $(DESTDIR)$(SYSCONFDIR)/cutoffd/cutoffd.conf
	sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
		systemd/cutoffd.service.in > $(DESTDIR)$(UNITDIR)/cutoffd.service
	chmod 644 $(DESTDIR)$(UNITDIR)/cutoffd.service
	install -m 644 systemd/cutoffd.sysusers $(DESTDIR)$(SYSUSERSDIR)/cutoffd.conf
	sed -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' systemd/cutoffd.tmpfiles.in \
		> $(DESTDIR)$(TMPFILESDIR)/cutoffd.conf
	chmod 644 $(DESTDIR)$(TMPFILESDIR)/cutoffd.conf

# keeps build/nspawn-root, the systemd test's cached Debian root
clean:
	[ ! -d build ] || find build -mindepth 1 -maxdepth 1 ! -name nspawn-root \
		-exec rm -rf {} +
	rm -rf .pytest_cache tests/__pycache__
