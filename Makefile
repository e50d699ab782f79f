# socks5d build. `make` builds bin/socks5d; `make run` runs it on its defaults;
# `make test` installs what the tests need and runs the whole suite.
CC       ?= cc
CFLAGS   ?= -O2 -g
CPPFLAGS += -D_GNU_SOURCE -Isrc
XFLAGS   := -std=c11 -Wall -Wextra -Werror -pthread
LDLIBS   += -lcares -lcrypt -pthread
# GSS-API (RFC 1961) on MIT Kerberos: libkrb5-dev.
KRB5_PKGS := krb5-gssapi krb5
CPPFLAGS += $(shell pkg-config --cflags $(KRB5_PKGS)) \
            -DSOCKS5D_KRB5_VERSION='"MIT $(shell pkg-config --modversion krb5-gssapi)"'
LDLIBS   += $(shell pkg-config --libs $(KRB5_PKGS))
BUILD    ?= build/release
BIN      ?= bin/socks5d
PREFIX   ?= /usr/local
UNITDIR  ?= $(PREFIX)/lib/systemd/system
DESTDIR  ?=

SRC     := $(wildcard src/*.c)
OBJ     := $(SRC:src/%.c=$(BUILD)/%.o)
LIBOBJ  := $(filter-out $(BUILD)/main.o,$(OBJ))
UNIT    := $(patsubst tests/unit/%.c,$(BUILD)/unit/%,$(wildcard tests/unit/test_*.c))
FUZZ    := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))

ASAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all

.PHONY: all run test unit integration asan tsan fuzz fuzz-build bench deps install uninstall clean \
        format format-check analyze coverage

all: $(BIN)

$(BIN): $(OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(XFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS)

$(BUILD)/%.o: src/%.c $(wildcard src/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(XFLAGS) -c -o $@ $<

$(BUILD)/unit/%: tests/unit/%.c $(LIBOBJ) $(wildcard tests/unit/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(XFLAGS) -o $@ $< $(LIBOBJ) $(LDFLAGS) $(LDLIBS) -lcmocka

# Makes the session's own allocations fail on demand (calloc wrapped).
$(BUILD)/unit/test_session_alloc: LDFLAGS += -Wl,--wrap=calloc

deps:
	scripts/install-deps.sh build

run: deps
	$(MAKE) $(BIN)
	$(BIN)

unit: $(UNIT)
	scripts/run-unit.sh $(UNIT)

integration: $(BIN)
	SOCKS5D_BIN=$(abspath $(BIN)) /usr/bin/python3 -m pytest -q tests/integration

# The whole suite: release build (unit + integration), then the same under
# ASan+UBSan with clang, then every fuzz target for a bounded time.
test:
	scripts/test.sh

asan:
	$(MAKE) CC=clang CFLAGS="$(ASAN_FLAGS)" BUILD=build/asan BIN=build/asan/socks5d build/asan/socks5d

tsan:
	$(MAKE) CC=clang CFLAGS="-O1 -g -fsanitize=thread" BUILD=build/tsan BIN=build/tsan/socks5d build/tsan/socks5d

# The clang static analyzer over the whole server; any report fails.
analyze:
	rm -rf build/scan
	scan-build -o build/scan-report --status-bugs $(MAKE) -s BUILD=build/scan BIN=build/scan/socks5d build/scan/socks5d

# Line and branch coverage of unit + integration tests, report in build/coverage/.
coverage:
	scripts/coverage.sh

build/fuzz/%: tests/fuzz/%.c $(filter-out src/main.c,$(SRC)) $(wildcard src/*.h)
	@mkdir -p $(dir $@)
	clang $(CPPFLAGS) -g -O1 -std=c11 -Wall -Wextra -Werror -pthread \
	  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	  -o $@ $< $(filter-out src/main.c,$(SRC)) $(LDLIBS)

fuzz-build: $(FUZZ)

fuzz: fuzz-build
	scripts/run-fuzz.sh $${FUZZ_SECONDS:-60} $(FUZZ)

bench:
	scripts/install-deps.sh bench
	$(MAKE) $(BIN)
	$(MAKE) -C bench
	/usr/bin/python3 bench/run.py

install: $(BIN)
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/sbin/socks5d
	install -D -m 0644 docs/socks5d.8 $(DESTDIR)$(PREFIX)/share/man/man8/socks5d.8
	install -D -m 0644 docs/socks5d.conf.5 $(DESTDIR)$(PREFIX)/share/man/man5/socks5d.conf.5
	@mkdir -p $(DESTDIR)$(UNITDIR)
	sed 's|/usr/local/sbin/socks5d|$(PREFIX)/sbin/socks5d|g' packaging/socks5d.service \
	  > $(DESTDIR)$(UNITDIR)/socks5d.service
	install -D -m 0644 packaging/socks5d.sysusers $(DESTDIR)$(PREFIX)/lib/sysusers.d/socks5d.conf
	install -D -m 0644 packaging/socks5d.bash-completion \
	  $(DESTDIR)$(PREFIX)/share/bash-completion/completions/socks5d
	install -D -m 0644 docs/socks5d.conf.example $(DESTDIR)/etc/socks5d/socks5d.conf.example
	test -e $(DESTDIR)/etc/socks5d/socks5d.conf || \
	  install -D -m 0644 docs/socks5d.conf.example $(DESTDIR)/etc/socks5d/socks5d.conf

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/sbin/socks5d $(DESTDIR)$(PREFIX)/share/man/man8/socks5d.8 \
	  $(DESTDIR)$(PREFIX)/share/man/man5/socks5d.conf.5 \
	  $(DESTDIR)$(UNITDIR)/socks5d.service $(DESTDIR)$(PREFIX)/lib/sysusers.d/socks5d.conf \
	  $(DESTDIR)/etc/socks5d/socks5d.conf.example \
	  $(DESTDIR)$(PREFIX)/share/bash-completion/completions/socks5d
	# The config goes only if nobody changed it since install.
	! cmp -s docs/socks5d.conf.example $(DESTDIR)/etc/socks5d/socks5d.conf || \
	  rm -f $(DESTDIR)/etc/socks5d/socks5d.conf

FORMAT_FILES = src/*.c src/*.h tests/unit/*.c tests/unit/*.h tests/fuzz/*.c

format:
	clang-format -i $(FORMAT_FILES)

format-check:
	clang-format --dry-run -Werror $(FORMAT_FILES)

clean:
	rm -rf build bin
