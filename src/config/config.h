/* Configuration: a YAML file (libfyaml) turned into an immutable, refcounted
 * snapshot. `${VAR}` and `${VAR:-default}` are expanded inside scalar values after
 * parsing, so line:column positions stay true and no value can inject YAML.
 * Every mistake, unknown keys included, is reported as `file:line:column: what is
 * wrong`. Missing provider keys are warnings, not errors: the provider's models
 * answer with a clear error and the rest serve. See docs/config.md. */
#ifndef BT_CONFIG_CONFIG_H
#define BT_CONFIG_CONFIG_H

#include <regex.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/str.h"
#include "core/time.h" /* struct bt_timeouts */

enum bt_provider_type {
    BT_PROVIDER_OPENAI = 1, /* any OpenAI-compatible server */
    BT_PROVIDER_SIM,        /* the built-in simulated provider */
    BT_PROVIDER_ANTHROPIC,  /* Anthropic Messages API (x-api-key, anthropic-version) */
    BT_PROVIDER_GEMINI,     /* Google AI Studio generateContent (x-goog-api-key) */
    BT_PROVIDER_AZURE,      /* Azure OpenAI deployments (api-key, api-version) */
};

/* A default output cap for one upstream model id (anthropic max_tokens_per_model). */
struct bt_model_max_tokens {
    char *model;         /* upstream model id, as written */
    uint32_t max_tokens;
};

/* Knobs of the simulated provider (type: sim). All optional. */
struct bt_sim_cfg {
    uint64_t seed;           /* default 1; same seed + same request = same reply */
    uint64_t ttft_ms;        /* time to first token, default 0 */
    double tokens_per_sec;   /* streaming pace, default 0 = as fast as possible */
    uint32_t reply_tokens;   /* length of a text reply in tokens (words), default 24 */
    uint32_t embedding_dims; /* default 16 */
    /* Fault rates in [0,1]: each request draws at most one fault (deterministic
     * from seed and request). */
    double fault_429, fault_500, fault_503, fault_no_answer, fault_reset_before,
        fault_reset_mid, fault_stall_mid, fault_slow_bytes, fault_invalid_json,
        fault_error_event;
    uint64_t retry_after_s;  /* Retry-After sent with 429, default 1 */
};

struct bt_provider {
    char *name;                 /* map key under `providers:` */
    enum bt_provider_type type;
    char *base_url;             /* as written (expanded); default https://api.openai.com/v1 */
    /* base_url split up (openai type): */
    bool tls;                   /* https */
    char *host;                 /* host name or address literal (no brackets) */
    uint16_t port;              /* explicit or 80/443 */
    char *base_path;            /* path prefix without trailing slash, e.g. "/v1"; "" if none */
    char *api_key;              /* NULL when unset or empty */
    bool api_key_required;      /* true when `api_key:` was written (so an unset value is a problem) */
    char *api_key_env;          /* the ${VAR} name api_key referred to, for messages; may be NULL */
    struct bt_timeouts timeouts;
    /* How the provider is reached (openai type). Zero = system CA store,
     * verification on, direct. See docs/config.md. */
    char *tls_ca_file;          /* tls.ca_file: extra trusted CA (PEM) beside the system store */
    bool tls_no_verify;         /* tls.verify: false, written explicitly */
    char *proxy_host;           /* HTTP proxy (no brackets); NULL = direct */
    uint16_t proxy_port;
    char *proxy_auth;           /* secret: Proxy-Authorization value ("Basic ..."); NULL none */
    char *proxy_shown;          /* the proxy URL with credentials masked, for messages */
    char *proxy_from;           /* "proxy" (the key) or the variable it came from, e.g. HTTPS_PROXY */
    struct bt_sim_cfg sim;      /* sim type only */
    /* sim type: the wire it renders (`wire:` openai, anthropic or gemini), as
     * the provider type that speaks it; 0 = openai. */
    enum bt_provider_type sim_wire;
    /* anthropic: anthropic-version header (default "2023-06-01"); azure: the
     * api-version query parameter (required). NULL for other types. */
    char *api_version;
    /* anthropic: max_tokens sent when the client gave none (Anthropic requires
     * it): max_tokens_per_model's entry for the model, else max_tokens_default
     * (default 4096). See bt_provider_max_tokens. */
    uint32_t max_tokens_default;
    struct bt_model_max_tokens *max_tokens_models; /* malloc'd, each model malloc'd */
    size_t nmax_tokens_models;
    /* stream_check: full validates every relayed stream event as JSON; light (the
     * default) checks its framing and decodes only events that matter. */
    bool stream_check_full;
    /* forward_headers: the client headers passed on upstream, names as written
     * (compared case-insensitively). The type's default list when the key is
     * absent; never a credential or framing header (refused at load). */
    struct bt_str *forward_headers; /* malloc'd, each name malloc'd; NULL when none */
    size_t nforward_headers;
    bool forward_headers_set;   /* the key was written (else the type's default) */
    int line, col;              /* where the provider was defined */
};

struct bt_health; /* route/health.h: a deployment's live state, outside the snapshot */

/* Where a deployment's price came from. */
enum bt_price_source {
    BT_PRICE_NONE = 0,   /* no price: its cost is unknown */
    BT_PRICE_CONFIGURED, /* `price:` in the file */
    BT_PRICE_DEFAULT,    /* the shipped table (bt_price_default) */
};

/* A deployment's price per token class. The unit is the pico-USD (10^-12 USD)
 * per token, which is the same number as micro-USD per million tokens: a price
 * written in USD per million tokens with up to 6 decimals is an exact integer
 * here (2.5 USD/M = 2500000), and tokens x price is an exact cost in pico-USD
 * (account/cost.h). */
struct bt_price {
    enum bt_price_source source;
    int64_t input;        /* prompt tokens not read from or written to a cache */
    int64_t cached_input; /* prompt tokens read from the cache (default: input) */
    int64_t cache_write;  /* prompt tokens written to the cache (default: input) */
    int64_t output;       /* completion tokens that are not reasoning */
    int64_t reasoning;    /* completion tokens spent reasoning (default: output) */
};

/* Largest price accepted: 1,000,000 USD per million tokens. */
#define BT_PRICE_MAX_PUSD 1000000000000LL

/* The date the shipped prices were taken from the vendors' price lists. */
#define BT_PRICES_DATE "2026-12-07"

/* Parses a price in USD per million tokens written as a plain decimal (digits,
 * an optional '.' and at most 6 more digits; no sign, exponent or spaces), up
 * to BT_PRICE_MAX_PUSD, into pico-USD per token, exactly (no floating point).
 * False for anything else, *out unchanged. */
bool bt_price_parse(struct bt_str text, int64_t *out);

/* The shipped price of an upstream model id, looked up in a table of common
 * models (src/config/prices.c, docs/config.md): an entry matches the id itself,
 * or the id followed by a dated snapshot suffix: '-' then digits and '-' only
 * ("gpt-4o-2024-08-06", "claude-sonnet-4-5-20250929"), or "-latest". True and
 * *out filled (source BT_PRICE_DEFAULT) when found. */
bool bt_price_default(struct bt_str model, struct bt_price *out);

/* `limits:` of a model or a deployment, per process: 0 unset. */
struct bt_limits {
    int64_t rpm;          /* requests per calendar minute */
    int64_t concurrency;  /* requests (attempts, for a deployment) in flight */
    int64_t tpm;          /* tokens per calendar minute: each request's estimate (its
                             prompt and max_tokens) taken, corrected to its usage */
};

struct bt_deployment {
    struct bt_provider *provider; /* borrowed from the same snapshot */
    char *model;                  /* upstream model id sent to the provider */
    uint32_t weight;              /* default 1 */
    struct bt_price price;        /* `price:`, else the shipped default, else none */
    struct bt_limits limits;      /* `limits:` (rpm, concurrency), unset by default */
    int line, col;                /* where the deployment was written */
    struct bt_health *health;     /* set by bt_health_attach (route/health.h) when the
                                     snapshot is put in service; NULL = not tracked */
};

/* How a group spreads requests over its deployments (models.NAME.strategy). */
enum bt_strategy {
    BT_STRATEGY_WEIGHTED = 0, /* weighted round robin for the first, the rest in order */
    BT_STRATEGY_ROUND_ROBIN,  /* each deployment first in turn */
    BT_STRATEGY_LEAST_BUSY,   /* fewest requests in flight first */
    BT_STRATEGY_LATENCY,      /* power of two choices over the latency EWMA */
    BT_STRATEGY_COST,         /* cheapest blended price first (bt_price_blended) */
};

/* The price the cost strategy orders by, in pico-USD per token: (3 x input +
 * output) / 4, a prompt three times as long as the reply. */
static inline int64_t bt_price_blended(const struct bt_price *p)
{
    return (3 * p->input + p->output) / 4;
}

/* models.NAME.breaker: skip a deployment that failed `failures` times in a row
 * until `cooldown_ms` has passed, then let one probe decide. failures 0 = off. */
struct bt_breaker_cfg {
    uint32_t failures;
    uint64_t cooldown_ms;
};

/* models.NAME.retry: `attempts` in all across the model's deployments, with
 * exponential backoff and full jitter between them. attempts 0 = no retry key:
 * each deployment once, no wait (the behaviour without a policy). */
struct bt_retry_cfg {
    uint32_t attempts;
    uint64_t backoff_ms;     /* the first wait's ceiling, doubled each time */
    uint64_t max_backoff_ms; /* no wait is longer, a provider's Retry-After included */
};

/* models.NAME.hedge: when an attempt has no response head after `after_ms`, one
 * more attempt starts on the model's next deployment; the first 2xx head wins
 * and the other attempt is cancelled. after_ms 0 = no hedge key. */
struct bt_hedge_cfg {
    uint64_t after_ms;
};

#define BT_FALLBACK_MAX 4

/* models.NAME.fallback: other public models tried after this one's deployments,
 * for failures of the classes in `on` (a bit per enum bt_outcome value). */
struct bt_fallback_cfg {
    const struct bt_model *models[BT_FALLBACK_MAX]; /* borrowed from the same snapshot */
    char *names[BT_FALLBACK_MAX];                   /* as written (resolved after loading) */
    int lines[BT_FALLBACK_MAX], cols[BT_FALLBACK_MAX];
    uint32_t n;
    uint32_t on;                                    /* 1u << outcome class */
};

/* Languages a rule can ask for, by the script of the prompt's letters
 * (docs/routing.md: how each is counted). */
enum bt_lang {
    BT_LANG_KO = 0, /* Hangul */
    BT_LANG_JA,     /* kana, with the Han characters of a text that has kana */
    BT_LANG_ZH,     /* Han characters in a text without kana */
    BT_LANG_EN,     /* Latin letters (any Latin-script language) */
    BT_LANG_RU,     /* Cyrillic */
    BT_LANG_AR,     /* Arabic */
    BT_LANG_HI,     /* Devanagari */
    BT_LANG_TH,     /* Thai */
    BT_LANG_EL,     /* Greek */
    BT_LANG_HE,     /* Hebrew */
    BT_LANG_COUNT
};
extern const char *const bt_lang_codes[BT_LANG_COUNT]; /* "ko", "ja", ... */

/* Conditions of a rule's `when` (bits of bt_rule.conds); all given must hold. */
enum {
    BT_COND_LANGUAGE = 1u << 0,
    BT_COND_TOOLS = 1u << 1,
    BT_COND_IMAGES = 1u << 2,
    BT_COND_JSON_SCHEMA = 1u << 3,
    BT_COND_PROMPT_TOKENS = 1u << 4,
    BT_COND_METADATA = 1u << 5,
    BT_COND_TAGS = 1u << 6,
    BT_COND_USER = 1u << 7,
    BT_COND_REGEX = 1u << 8,
    BT_COND_BUDGET_LEFT = 1u << 9,
};

enum bt_cmp { BT_CMP_LT = 0, BT_CMP_LE, BT_CMP_GT, BT_CMP_GE };

struct bt_rule_kv {
    char *key, *value;
};

/* One entry of models.NAME.rules: when every condition holds (or there are
 * none), the request goes to `model`. Compiled when the file loads. */
struct bt_rule {
    uint32_t conds;             /* BT_COND_* */
    uint32_t languages;         /* language: 1u << BT_LANG_*, any of them */
    double language_share;      /* the share of letters the script must reach (0.3) */
    bool tools, images, json_schema; /* the value asked for */
    enum bt_cmp tokens_op;      /* prompt_tokens: "> 8000" */
    uint64_t tokens;
    struct bt_rule_kv *metadata; /* metadata: {key: value}: every pair present */
    uint32_t nmetadata;
    char **tags;                /* tags: [a, b]: any of them */
    uint32_t ntags;
    char **users;               /* user: NAME or [NAMES]: any of them */
    uint32_t nusers;
    double budget_left_below;   /* budget_left_below: the caller's key has less than this
                                   share of its budget left in the period */
    regex_t *regex;             /* regex: on the last user message (POSIX ERE) */
    char *regex_src;            /* as written */
    char *model_name;           /* model: NAME (resolved after loading) */
    const struct bt_model *model;
    int line, col;              /* of the entry */
    atomic_uint_fast64_t chosen; /* requests it sent on since the config loaded (/metrics) */
};

/* models.NAME.router: the learned router picks `strong` or `weak`. */
struct bt_router_cfg {
    char *file;                 /* as written (relative to the config file's folder) */
    struct bt_router *router;   /* loaded (learn/learn.h), owned */
    char *strong_name, *weak_name;
    const struct bt_model *strong, *weak;
    double threshold;           /* strong when the score is above it */
    double strong_share;        /* the share asked for; < 0 when threshold: was given
                                   (or neither: the file's own calibration) */
    int line, col;
    atomic_uint_fast64_t chosen[2]; /* requests sent weak [0] and strong [1] (/metrics) */
};

enum bt_model_kind {
    BT_MODEL_DEPLOYMENTS = 0,   /* provider/model or deployments: a group */
    BT_MODEL_RULES,             /* rules: first matching rule names the model */
    BT_MODEL_ROUTER,            /* router: the learned router names it */
};

struct bt_model {
    char *name;                 /* public name clients ask for */
    enum bt_model_kind kind;
    struct bt_rule *rules;      /* BT_MODEL_RULES: the last one has no condition */
    size_t nrules;
    struct bt_router_cfg router; /* BT_MODEL_ROUTER */
    struct bt_deployment *deployments;
    size_t ndeployments;        /* >= 1 for a group; 0 for rules and a router */
    struct bt_limits limits;    /* `limits:` over all the group's requests, unset by default */
    struct bt_health *health;   /* the model's own counters (its limits), attached with the
                                   deployments' (route/health.h); NULL = not tracked */
    enum bt_strategy strategy;  /* default weighted */
    bool sticky_user;           /* sticky: user — one end user stays on one deployment */
    struct bt_breaker_cfg breaker;
    struct bt_retry_cfg retry;
    struct bt_hedge_cfg hedge;
    struct bt_fallback_cfg fallback;
    int line, col;
};

struct bt_config {
    atomic_int refs;            /* snapshot refcount: see bt_config_ref/unref */
    char *path;                 /* file it was loaded from */
    struct {
        char *listen_host;      /* default 127.0.0.1 */
        uint16_t listen_port;   /* default 4000 */
        uint32_t workers;       /* 0 = number of usable CPUs */
        uint32_t max_connections;      /* default 10000 */
        uint64_t max_header_bytes;     /* default 64 KiB -> 431 */
        uint64_t max_body_bytes;       /* default 32 MiB -> 413 */
        uint64_t header_timeout_ms;    /* default 30s: whole head must arrive */
        uint64_t idle_timeout_ms;      /* default 120s: keep-alive idle */
        uint64_t drain_timeout_ms;     /* default 30s */
        /* Upstream connection pools, per provider origin and worker (read at
         * start; a reload keeps the running values). */
        uint32_t upstream_max_connections; /* default 256 */
        uint32_t upstream_max_idle;        /* default: upstream_max_connections */
        uint32_t upstream_max_queued;      /* default 1024; beyond: 503 */
        bool reuse_port;                   /* share the address with others (read at start) */
    } server;
    struct {
        char *master_key;       /* NULL when unset or empty */
        bool allow_anonymous;   /* serve without a key on a non-loopback address */
    } auth;
    struct {
        bool require_key;       /* GET /metrics needs the master key; default false */
    } metrics;
    struct {
        char *level;            /* debug|info|warn|error, default info */
        char *access;           /* access-log path, NULL = stderr */
        char *file;             /* operational log path, NULL = stderr */
    } log;
    struct {
        /* store.sqlite: the SQLite file of keys, budgets and the usage
         * ledger; relative paths taken from the config file's directory;
         * default baton.db beside the config file. Read at start. */
        char *sqlite;
        /* store.postgres: a libpq connection URI; when set, keys (and later the
         * ledger) live in PostgreSQL instead of the SQLite file. Read at start. */
        char *postgres;
        /* store.redis: redis://[:PASSWORD@]HOST[:PORT][/DB]; when set, the limits
         * and budgets of keys, teams and users, and the limits of models and
         * deployments, are counted in Redis, shared by every instance. Read at
         * start. */
        char *redis;
        /* store.redis_unavailable: when Redis does not answer, admit with the
         * per-process limits (open, the default) or refuse with 503 (closed). */
        bool redis_closed;
        uint64_t redis_timeout_ms; /* store.redis_timeout: how long an admission waits for
                                      Redis before it counts as down; default 500 ms.
                                      Read at start. */
        uint64_t ledger_interval_ms; /* store.ledger_interval: the longest a usage record
                                        waits to be written; default 1 s */
        uint32_t ledger_batch;       /* store.ledger_batch: records per write, and the
                                        count that starts one early; default 500 */
        uint64_t admin_timeout_ms;   /* store.admin_timeout: the longest an admin API call
                                        waits for the store before a 504; default 10 s */
        uint64_t ledger_retention_ms; /* store.ledger_retention: ledger rows older than this
                                         are deleted; 0 (the default): kept forever */
    } store;
    struct bt_provider *providers;
    size_t nproviders;
    struct bt_model *models;
    size_t nmodels;
};

/* One problem found while loading. */
struct bt_config_diag {
    bool is_error;    /* false: warning (e.g. an unset provider key) */
    int line, col;    /* 1-based; 0 when not tied to a position */
    char *msg;        /* whole message, malloc'd, owned by the diags */
};

struct bt_config_diags {
    struct bt_config_diag *items; /* malloc'd */
    size_t n, cap;
    char *path;                   /* file name used in messages, malloc'd */
};

/* Loads and validates `path`. On success *out is a snapshot with refs == 1.
 * Diagnostics (errors and warnings) are appended to `diags` (which the caller
 * frees with bt_config_diags_free); BT_ECONFIG when any error was found, and
 * then *out is NULL. Environment variables are read with getenv(). */
enum bt_err bt_config_load(const char *path, struct bt_config **out,
                           struct bt_config_diags *diags);
/* For a command that works on the store (`baton keys`, `baton usage`): loads
 * `path`, prints its diagnostics to stderr and, on failure, why (prefixed by
 * `cmd`). Returns the snapshot (refs == 1) when it loaded and names a store
 * file, else NULL. */
struct bt_config *bt_config_load_for_store(const char *path, const char *cmd);
/* Same, from a string in memory; `name` is used in messages in place of a path. */
enum bt_err bt_config_load_string(const char *name, const char *yaml, size_t len,
                                  struct bt_config **out, struct bt_config_diags *diags);

/* What the command line adds to the file (`baton serve` and `baton check` take
 * the same flags, so both judge the same configuration). Zero: nothing. */
struct bt_config_load_opts {
    const char *listen; /* --listen HOST:PORT: replaces server.listen; parsed and
                           checked exactly like it (borrowed for the call) */
    bool reuse_port;    /* --reuse-port: server.reuse_port true */
};
/* bt_config_load and bt_config_load_string with command-line options (NULL:
 * none). Besides each key, the loader checks the whole result the way
 * `baton serve` needs it: a non-loopback address without a master key (unless
 * auth.allow_anonymous), log paths that cannot be opened for appending. */
enum bt_err bt_config_load_opts(const char *path, const struct bt_config_load_opts *opts,
                                struct bt_config **out, struct bt_config_diags *diags);
enum bt_err bt_config_load_string_opts(const char *name, const char *yaml, size_t len,
                                       const struct bt_config_load_opts *opts,
                                       struct bt_config **out, struct bt_config_diags *diags);

/* Parses a listen address, "HOST:PORT" or "[IPV6]:PORT", s[0..len): HOST is an
 * IPv4 or IPv6 literal or "localhost" (written as 127.0.0.1); names are not
 * resolved; the port is 1-65535. On success writes host (hostcap >=
 * BT_LISTEN_HOST_MAX) and *port. Otherwise false and a message starting with
 * `what` (e.g. "server.listen", "--listen") in why. server.listen and every
 * --listen flag go through it, so they accept and refuse the same text. */
#define BT_LISTEN_HOST_MAX 64
bool bt_config_parse_listen(const char *s, size_t len, const char *what, char *host, size_t hostcap,
                            uint16_t *port, char *why, size_t whycap);
/* True for 127.0.0.0/8, ::1 and "localhost". */
bool bt_config_is_loopback(const char *host);
/* Whether c's auth settings allow serving on `host`: a master key, a loopback
 * address, or auth.allow_anonymous. Otherwise false and why ("WHAT: refusing to
 * serve on HOST without a master key: ..."). The loader applies it to the
 * configured address; serve applies it at reload to the address in use. */
bool bt_config_exposure_ok(const struct bt_config *c, const char *host, const char *what, char *why,
                           size_t whycap);
void bt_config_diags_free(struct bt_config_diags *d);
/* Prints each diagnostic as `file:line:column: error: msg` (or `warning:`) to f. */
void bt_config_diags_print(const struct bt_config_diags *d, void *file /* FILE* */);

/* Refcounting: a worker takes a ref for each request; reload swaps in a new
 * snapshot and drops the old one's base ref. Thread-safe. */
struct bt_config *bt_config_ref(struct bt_config *c);
void bt_config_unref(struct bt_config *c);

/* Looks up a public model name. NULL when absent. */
const struct bt_model *bt_config_model(const struct bt_config *c, struct bt_str name);
/* The type's name as the config writes it ("openai", "sim", "anthropic", ...). */
const char *bt_provider_type_name(enum bt_provider_type t);
/* The max_tokens an encoder sends `p` for upstream model `model` when the
 * client gave none: max_tokens_per_model's entry, else max_tokens_default. */
uint32_t bt_provider_max_tokens(const struct bt_provider *p, struct bt_str model);

const struct bt_provider *bt_config_provider(const struct bt_config *c, struct bt_str name);

/* A rule's conditions in words ("language ko (share >= 0.30), tools true"),
 * "default" for none, NUL-terminated in out[0..cap) (cut at cap). */
void bt_config_describe_rule(const struct bt_rule *r, char *out, size_t cap);

/* Prints the resolved model table for `baton check` (secrets masked) to f. */
void bt_config_print_table(const struct bt_config *c, void *file /* FILE* */);

/* A config for tests and `baton sim`: builds an empty snapshot with defaults. */
struct bt_config *bt_config_new_default(void);

#endif
