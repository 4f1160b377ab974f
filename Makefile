# baton build. `make` builds the optimized ./baton; `make test` builds and runs every test.
CC      ?= cc
LLHTTP_SRC ?= /usr/share/llhttp
LLHTTP_INC ?= $(firstword $(wildcard /usr/share/include/llhttp) $(LLHTTP_SRC))
WARN    := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -Wvla -Wformat=2
CSTD    := -std=c17 -D_GNU_SOURCE
OPT     ?= -O2 -g
SAN     ?=
CFLAGS_ALL := $(CSTD) $(WARN) $(OPT) $(SAN) -Isrc -I$(LLHTTP_INC) -I/usr/include/postgresql -pthread
LIBS    := -luv -lfyaml -lsqlite3 -lpq -lhiredis -lssl -lcrypto -lm -pthread
BUILD   ?= build/release

SRCS      := $(sort $(wildcard src/*/*.c))
LIB_SRCS  := $(filter-out src/main.c,$(SRCS))
OBJS      := $(patsubst src/%.c,$(BUILD)/src/%.o,$(LIB_SRCS))
LLHTTP_OBJS := $(BUILD)/llhttp/llhttp.o $(BUILD)/llhttp/api.o $(BUILD)/llhttp/http.o
UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))
FUZZ_SRCS := $(sort $(wildcard tests/fuzz/fuzz_*.c))

.PHONY: all test unit integration asan check-ci clean format lint fuzz fuzz-smoke bench valgrind
all: baton

baton: $(BUILD)/baton
	cp $< $@.tmp && mv -f $@.tmp $@

$(BUILD)/baton: $(BUILD)/src/main.o $(BUILD)/libbaton.a
	$(CC) $(CFLAGS_ALL) -o $@ $^ $(LIBS)

$(BUILD)/libbaton.a: $(OBJS) $(LLHTTP_OBJS)
	rm -f $@; ar rcs $@ $^

$(BUILD)/src/%.o: src/%.c $(wildcard src/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c -o $@ $<

# The tokenizer's rank files are embedded with .incbin (paths relative to the repo root).
$(BUILD)/src/tok/embed.o: data/tokenizers/cl100k_base.tiktoken data/tokenizers/o200k_base.tiktoken

# llhttp is compiled from the Debian package's sources with its own, laxer flags.
$(BUILD)/llhttp/%.o: $(LLHTTP_SRC)/%.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -g $(SAN) -I$(LLHTTP_INC) -w -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c tests/unit/harness.h $(BUILD)/libbaton.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Itests/unit -o $@ $< $(BUILD)/libbaton.a $(LIBS) $(TEST_LIBS)

TEST_LIBS := -lcjson

unit: $(UNIT_BINS)

# The one test command: unit tests, then integration tests; ends with `N passed, N failed`.
test: baton unit
	@bash tests/run.sh $(BUILD)

# Same suites under ASan+UBSan in a separate build tree.
asan:
	$(MAKE) BUILD=build/asan OPT="-O1 -g -fno-omit-frame-pointer" SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined" CC=clang build/asan/baton unit
	@BATON_BIN=build/asan/baton bash tests/run.sh build/asan

fuzz:
	@bash tests/fuzz/run.sh long

fuzz-smoke:
	@bash tests/fuzz/run.sh smoke

valgrind: baton unit
	@BATON_VALGRIND=1 bash tests/run.sh $(BUILD)

bench: baton
	@bash bench/run.sh

format:
	clang-format -i src/*/*.c src/*/*.h tests/unit/*.c tests/unit/*.h

lint:
	@bash scripts/lint.sh

clean:
	rm -rf build baton
