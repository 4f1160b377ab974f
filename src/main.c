/* baton's command line: serve, check, sim, tokens, route, keys, version. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/arena.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/time.h"
#include "core/version.h"
#include "account/usage.h"
#include "gate/keys_cli.h"
#include "json/json.h"
#include "api/explain.h"
#include "learn/learn_cli.h"
#include "sim/sim.h"
#include "sim/server.h"
#include "serve/serve.h"
#include "tok/tok.h"

static void usage_main(FILE *f)
{
    fprintf(f,
            "baton %s: a model-orchestration gateway for LLM APIs\n"
            "\n"
            "usage: baton COMMAND [OPTIONS]\n"
            "\n"
            "commands:\n"
            "  serve -c FILE [--listen HOST:PORT]   run the gateway (also --reuse-port)\n"
            "  check -c FILE [--listen HOST:PORT]   validate a config as serve would\n"
            "  sim --listen HOST:PORT [OPTIONS]     run the simulated OpenAI-compatible provider\n"
            "  tokens [--model NAME] [FILE|-]       count (or list) the tokens of a text\n"
            "  route train|eval [OPTIONS]           train / evaluate the learned router\n"
            "  keys create|list|get|update|revoke -c FILE   manage virtual keys\n"
            "  usage -c FILE [--by G] [--since DATE]  spend and tokens from the usage ledger\n"
            "  route explain -c FILE REQUEST.json   how a request would be routed (no call)\n"
            "  version                              print the version\n"
            "\n"
            "`baton COMMAND --help` describes each command. Documentation: docs/.\n",
            BT_VERSION);
}

static int cmd_version(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: baton version\n\nPrints baton's version.\n");
        return 0;
    }
    printf("baton %s\n", BT_VERSION);
    return 0;
}

static int cmd_serve(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"listen", required_argument, NULL, 'l'},
                                         {"reuse-port", no_argument, NULL, 'r'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *config = NULL;
    struct bt_config_load_opts lo = {0};
    int c;
    while ((c = getopt_long(argc, argv, "c:l:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': config = optarg; break;
        case 'l': lo.listen = optarg; break;
        case 'r': lo.reuse_port = true; break;
        case 'h':
            printf("usage: baton serve -c FILE [--listen HOST:PORT] [--reuse-port]\n\n"
                   "Runs the gateway with the configuration in FILE (see docs/config.md).\n"
                   "  -c, --config FILE     configuration file (YAML)\n"
                   "  -l, --listen ADDR     listen address, overrides server.listen (same\n"
                   "                        forms: IPV4:PORT, [IPV6]:PORT, localhost:PORT)\n"
                   "      --reuse-port      share the address with a process already on it\n"
                   "                        (server.reuse_port: true; for a binary swap)\n"
                   "Signals: SIGHUP reloads the configuration, SIGTERM/SIGINT drain and exit,\n"
                   "SIGUSR1 reopens the access log.\n");
            return 0;
        default: return 2;
        }
    }
    if (!config) {
        fprintf(stderr, "baton serve: -c FILE is required (try --help)\n");
        return 2;
    }
    return bt_serve_main(config, &lo);
}

static int cmd_check(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"listen", required_argument, NULL, 'l'},
                                         {"reuse-port", no_argument, NULL, 'r'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *config = NULL;
    struct bt_config_load_opts lo = {0};
    int c;
    while ((c = getopt_long(argc, argv, "c:l:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': config = optarg; break;
        case 'l': lo.listen = optarg; break;
        case 'r': lo.reuse_port = true; break;
        case 'h':
            printf("usage: baton check -c FILE [--listen HOST:PORT] [--reuse-port]\n\n"
                   "Validates FILE as `baton serve` would (give it the same flags) and prints\n"
                   "the resolved model table (secrets masked). Exits 1 when serve would refuse\n"
                   "to start; warnings (such as an unset provider key) are printed but do not\n"
                   "fail the check. It does not try to bind the address.\n"
                   "  -c, --config FILE     configuration file (YAML)\n"
                   "  -l, --listen ADDR     listen address, overrides server.listen\n");
            return 0;
        default: return 2;
        }
    }
    if (!config && optind < argc) config = argv[optind];
    if (!config) {
        fprintf(stderr, "baton check: -c FILE is required (try --help)\n");
        return 2;
    }
    struct bt_config *cfg = NULL;
    struct bt_config_diags d = {0};
    enum bt_err err = bt_config_load_opts(config, &lo, &cfg, &d);
    bt_config_diags_print(&d, stderr);
    size_t nwarn = 0;
    for (size_t i = 0; i < d.n; i++)
        if (!d.items[i].is_error) nwarn++;
    bt_config_diags_free(&d);
    if (err) {
        fprintf(stderr, "%s: invalid configuration\n", config);
        return 1;
    }
    bt_config_print_table(cfg, stdout);
    printf("%s: OK (%zu warning%s)\n", config, nwarn, nwarn == 1 ? "" : "s");
    bt_config_unref(cfg);
    return 0;
}

static int parse_u64(const char *name, const char *s, uint64_t *out)
{
    if (!bt_str_to_u64(bt_str_c(s), out)) {
        fprintf(stderr, "baton sim: %s expects a whole number, got '%s'\n", name, s);
        return -1;
    }
    return 0;
}

static int cmd_sim(int argc, char **argv)
{
    static const struct option opts[] = {{"listen", required_argument, NULL, 'l'},
                                         {"seed", required_argument, NULL, 's'},
                                         {"ttft", required_argument, NULL, 't'},
                                         {"tps", required_argument, NULL, 'p'},
                                         {"tokens", required_argument, NULL, 'n'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    struct bt_sim_cfg cfg;
    bt_sim_cfg_default(&cfg);
    const char *listen = "127.0.0.1:8000";
    int c;
    uint64_t v;
    while ((c = getopt_long(argc, argv, "l:s:t:p:n:h", opts, NULL)) != -1) {
        switch (c) {
        case 'l': listen = optarg; break;
        case 's':
            if (parse_u64("--seed", optarg, &v)) return 2;
            cfg.seed = v;
            break;
        case 't':
            if (!bt_parse_duration_ms(bt_str_c(optarg), &v)) {
                fprintf(stderr, "baton sim: --ttft expects a duration such as 200ms\n");
                return 2;
            }
            cfg.ttft_ms = v;
            break;
        case 'p':
            if (parse_u64("--tps", optarg, &v)) return 2;
            cfg.tokens_per_sec = (double)v;
            break;
        case 'n':
            if (parse_u64("--tokens", optarg, &v) || v == 0 || v > 100000) return 2;
            cfg.reply_tokens = (uint32_t)v;
            break;
        case 'h':
            printf("usage: baton sim [--listen HOST:PORT] [--seed N] [--ttft DURATION] [--tps N] "
                   "[--tokens N]\n\n"
                   "Runs the simulated provider as an OpenAI-compatible server at\n"
                   "http://HOST:PORT/v1 (default 127.0.0.1:8000). Replies are deterministic for\n"
                   "a seed and request. A request header `x-sim-fault: NAME` forces a fault:\n"
                   "429, 500, 503, no_answer, reset_before, reset_mid, stall_mid, slow_bytes,\n"
                   "invalid_json, error_event. GET /sim/stats reports counters.\n"
                   "  --ttft DURATION   time to first token (e.g. 200ms; default 0)\n"
                   "  --tps N           tokens per second while streaming (default: no delay)\n"
                   "  --tokens N        reply length in tokens (default %u)\n",
                   cfg.reply_tokens);
            return 0;
        default: return 2;
        }
    }
    char host[BT_LISTEN_HOST_MAX], why[300];
    uint16_t port;
    if (!bt_config_parse_listen(listen, strlen(listen), "--listen", host, sizeof(host), &port, why,
                                sizeof(why))) {
        fprintf(stderr, "baton sim: %s\n", why);
        return 2;
    }
    return bt_sim_serve_main(host, port, &cfg, 1);
}

/* ---- tokens ---- */

/* Reads all of `f` into b (capped by b->max). */
static enum bt_err read_all(FILE *f, struct bt_buf *b)
{
    for (;;) {
        enum bt_err err = bt_buf_reserve(b, 64 * 1024);
        if (err) return err;
        size_t n = fread(b->p + b->len, 1, b->cap - b->len, f);
        b->len += n;
        if (n == 0) return ferror(f) ? BT_EIO : BT_OK;
    }
}

/* Prints ids as "1 2 3" (or "[1,2,3]" when json) and a newline. */
static void print_ids(const uint32_t *ids, size_t n, bool json)
{
    if (json) putchar('[');
    for (size_t i = 0; i < n; i++) {
        if (i) putchar(json ? ',' : ' ');
        printf("%" PRIu32, ids[i]);
    }
    if (json) putchar(']');
    putchar('\n');
}

/* Encodes text; *ids is grown as needed (len + 1 ids always suffice). */
static enum bt_err encode_text(const struct bt_tok *t, struct bt_str text, uint32_t **ids,
                               size_t *cap, size_t *n)
{
    if (*cap < text.len + 1) {
        uint32_t *p = realloc(*ids, (text.len + 1) * sizeof(uint32_t));
        if (!p) return BT_ENOMEM;
        *ids = p;
        *cap = text.len + 1;
    }
    return bt_tok_encode(t, text.p, text.len, *ids, *cap, n);
}

/* --jsonl: each input line is one JSON string; each output line is its ids as a
 * JSON array (how tests/integration/tokens.test.mjs compares thousands of texts
 * with one process). */
static int tokens_jsonl(const struct bt_tok *t, struct bt_str in)
{
    struct bt_arena a;
    bt_arena_init(&a, 64 * 1024, 0);
    uint32_t *ids = NULL;
    size_t cap = 0, lineno = 0;
    int rc = 0;
    while (in.len) {
        long nl = bt_str_index(in, '\n');
        struct bt_str line = {in.p, nl < 0 ? in.len : (size_t)nl};
        in.p += nl < 0 ? in.len : (size_t)nl + 1;
        in.len -= nl < 0 ? in.len : (size_t)nl + 1;
        lineno++;
        struct bt_json_doc doc;
        struct bt_str text;
        size_t n = 0;
        bt_arena_reset(&a);
        if (bt_json_parse(&doc, line.p, line.len, &a, NULL, NULL) ||
            bt_json_type(&doc, 0) != BT_JSON_STRING || bt_json_str(&doc, 0, &a, &text)) {
            fprintf(stderr, "baton tokens: line %zu: expected a JSON string\n", lineno);
            rc = 1;
            break;
        }
        enum bt_err err = encode_text(t, text, &ids, &cap, &n);
        if (err) {
            fprintf(stderr, "baton tokens: line %zu: %s\n", lineno, bt_strerror(err));
            rc = 1;
            break;
        }
        print_ids(ids, n, true);
    }
    free(ids);
    bt_arena_free(&a);
    return rc;
}

static int cmd_tokens(int argc, char **argv)
{
    static const struct option opts[] = {{"encoding", required_argument, NULL, 'e'},
                                         {"model", required_argument, NULL, 'm'},
                                         {"ids", no_argument, NULL, 'i'},
                                         {"jsonl", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    enum bt_tok_encoding enc = BT_TOK_O200K;
    bool ids_out = false, jsonl = false;
    int c;
    while ((c = getopt_long(argc, argv, "e:m:ih", opts, NULL)) != -1) {
        switch (c) {
        case 'e':
            if (!bt_tok_encoding_from_name(bt_str_c(optarg), &enc)) {
                fprintf(stderr, "baton tokens: unknown encoding '%s' (cl100k_base, o200k_base)\n",
                        optarg);
                return 2;
            }
            break;
        case 'm': enc = bt_tok_encoding_for_model(bt_str_c(optarg)); break;
        case 'i': ids_out = true; break;
        case 'j': jsonl = true; break;
        case 'h':
            printf("usage: baton tokens [--encoding NAME | --model NAME] [--ids] [FILE|-]\n\n"
                   "Prints the number of tokens in FILE's bytes (or stdin), counted like OpenAI's\n"
                   "tiktoken (special tokens such as <|endoftext|> count as ordinary text).\n"
                   "  -e, --encoding NAME   cl100k_base or o200k_base (default o200k_base)\n"
                   "  -m, --model NAME      the encoding that model uses (gpt-4o, gpt-4, ...)\n"
                   "  -i, --ids             print the token ids, space separated, instead\n");
            return 0;
        default: return 2;
        }
    }
    if (argc - optind > 1) {
        fprintf(stderr, "baton tokens: one FILE at most (try --help)\n");
        return 2;
    }
    const char *path = optind < argc ? argv[optind] : "-";
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "baton tokens: %s: %s\n", path, strerror(errno));
        return 1;
    }
    struct bt_buf in;
    bt_buf_init(&in, (size_t)1 << 30);
    enum bt_err err = read_all(f, &in);
    if (f != stdin) fclose(f);
    if (err) {
        fprintf(stderr, "baton tokens: %s: %s\n", path, bt_strerror(err));
        bt_buf_free(&in);
        return 1;
    }
    const struct bt_tok *t = bt_tok_get(enc);
    if (!t) {
        fprintf(stderr, "baton tokens: cannot load %s\n", bt_tok_encoding_name(enc));
        bt_buf_free(&in);
        return 1;
    }
    int rc = 0;
    if (jsonl) {
        rc = tokens_jsonl(t, bt_buf_str(&in));
    } else if (ids_out) {
        uint32_t *ids = NULL;
        size_t cap = 0, n = 0;
        err = encode_text(t, bt_buf_str(&in), &ids, &cap, &n);
        if (err) {
            fprintf(stderr, "baton tokens: %s\n", bt_strerror(err));
            rc = 1;
        } else {
            print_ids(ids, n, false);
        }
        free(ids);
    } else {
        size_t n = bt_tok_count(t, in.p, in.len);
        if (n == SIZE_MAX) {
            fprintf(stderr, "baton tokens: %s\n", bt_strerror(BT_ENOMEM));
            rc = 1;
        } else {
            printf("%zu\n", n);
        }
    }
    bt_buf_free(&in);
    if (fflush(stdout) != 0) rc = 1;
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage_main(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage_main(stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) return cmd_version(1, argv);
    argc--;
    argv++;
    if (strcmp(cmd, "version") == 0) return cmd_version(argc, argv);
    if (strcmp(cmd, "serve") == 0) return cmd_serve(argc, argv);
    if (strcmp(cmd, "check") == 0) return cmd_check(argc, argv);
    if (strcmp(cmd, "sim") == 0) return cmd_sim(argc, argv);
    if (strcmp(cmd, "tokens") == 0) return cmd_tokens(argc, argv);
    if (strcmp(cmd, "route") == 0 && argc > 1 && strcmp(argv[1], "explain") == 0)
        return bt_explain_cli(argc - 1, argv + 1);
    if (strcmp(cmd, "route") == 0) return bt_learn_cli(argc, argv);
    if (strcmp(cmd, "keys") == 0) return bt_keys_cli(argc, argv);
    if (strcmp(cmd, "usage") == 0) return bt_usage_cli(argc, argv);
    fprintf(stderr, "baton: unknown command '%s'\n\n", cmd);
    usage_main(stderr);
    return 2;
}
