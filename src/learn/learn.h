/* The learned router: from the prompt text alone, a score of how much a request
 * needs the strong model (higher = strong), RouteLLM-style (Ong et al. 2024).
 *
 * Features are hashed into 2^hash_bits buckets: words and word bigrams (digits
 * folded to '0', weighted log(1 + count) x IDF, L2-normalised), optional
 * character 4-grams (off by default), and hand-made features that carry difficulty (length,
 * digits, math symbols, code markers, question word, multiple-choice shape,
 * script, lines), one-hot in bins. Two logistic models trained with AdaGrad
 * predict each model's score; the router's score is their difference
 * P(strong right) - P(weak right) (mode BT_LEARN_TWO), or one logistic model
 * predicts "strong scored higher than weak" (mode BT_LEARN_LABEL).
 *
 * A router file holds the feature config, the IDF table, the weights and the
 * threshold calibrated on out-of-fold scores (docs/routing.md). Design and
 * figures: docs/routing.md. */
#ifndef BT_LEARN_LEARN_H
#define BT_LEARN_LEARN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/err.h"

#define BT_LEARN_NAME_MAX 256
#define BT_LEARN_MIN_BITS 8
#define BT_LEARN_MAX_BITS 24
#define BT_LEARN_CAL 101 /* calibration points: strong shares 0%, 1%, ... 100% */

enum bt_learn_mode {
    BT_LEARN_TWO = 0,   /* score = P(strong right) - P(weak right) */
    BT_LEARN_LABEL = 1, /* score = P(strong scored higher than weak) */
};

/* Feature flags (a router file records which were used). */
#define BT_LEARN_F_WORDS 1u   /* words and word bigrams */
#define BT_LEARN_F_CHARS 2u   /* character 4-grams */
#define BT_LEARN_F_SHAPE 4u   /* hand-made features */
#define BT_LEARN_F_ALL 7u
#define BT_LEARN_F_DEFAULT (BT_LEARN_F_WORDS | BT_LEARN_F_SHAPE) /* chars did not help (docs/routing.md) */

/* A trained router. Owns its arrays; immutable once trained or loaded, so one
 * router may score from many threads (each with its own scratch). */
struct bt_router {
    uint32_t hash_bits;                 /* buckets = 1 << hash_bits */
    uint32_t mode;                      /* enum bt_learn_mode */
    uint32_t features;                  /* BT_LEARN_F_* */
    double threshold;                   /* strong when score > threshold */
    double strong_share;                /* the share the threshold was calibrated for */
    char strong[BT_LEARN_NAME_MAX + 1]; /* model names, NUL-terminated */
    char weak[BT_LEARN_NAME_MAX + 1];
    float bias[2];                      /* per model (mode TWO) or bias[0] (LABEL) */
    float *idf;                         /* [buckets] text-feature weights, owned */
    float *w[2];                        /* [buckets] per model; w[1] NULL in LABEL mode */
    /* Calibration: cal[i] is the threshold that sends a share i / (BT_LEARN_CAL - 1)
     * of the training prompts' out-of-fold scores strong (non-increasing in i), so
     * a config can ask for any share without retraining. */
    double cal[BT_LEARN_CAL];
};

/* The threshold for `share` (0..1) of unseen prompts going strong, interpolated
 * in the calibration table. */
double bt_router_threshold_for(const struct bt_router *r, double share);

/* Per-thread working memory for feature extraction (about 200 KB). */
struct bt_learn_scratch;
struct bt_learn_scratch *bt_learn_scratch_new(void);
void bt_learn_scratch_free(struct bt_learn_scratch *s);

/* The router's score for text[0..len) (bytes, any content; only the first 6 KB
 * are read for features; length counts all). Borrows everything; allocates nothing. */
double bt_router_score(const struct bt_router *r, struct bt_learn_scratch *s, const char *text,
                       size_t len);

/* Writes `r` to `path` (binary, versioned, checksummed; docs/routing.md).
 * BT_EIO with errno set on a write failure. */
enum bt_err bt_router_save(const struct bt_router *r, const char *path);

/* Reads a router from memory / a file into *r (which it owns afterwards: free
 * with bt_router_free). Any malformed input is BT_EPARSE (or BT_EIO for a file
 * that cannot be read) with a reason in msg[0..cap); *r is then empty. */
enum bt_err bt_router_load_mem(struct bt_router *r, const void *p, size_t len, char *msg,
                               size_t cap);
enum bt_err bt_router_load(struct bt_router *r, const char *path, char *msg, size_t cap);
void bt_router_free(struct bt_router *r);

/* The file's checksum: 64-bit FNV-1a of every byte before the last 8, which
 * hold it little-endian. Exposed for tests and fuzzing, which forge files. */
uint64_t bt_router_checksum(const void *p, size_t n);

/* ---- training data and metrics ---- */

/* Rows of a routing JSONL file: only `id`, `prompt` and `scores` are read. */
struct bt_learn_data {
    size_t n;
    char **id;      /* owned, NUL-terminated */
    char **prompt;  /* owned, decoded (escapes resolved), NUL-terminated */
    size_t *plen;   /* prompt lengths */
    double *s, *w;  /* the strong and weak model's scores */
};

/* Loads FILE.jsonl; each non-blank line must be an object with a string
 * `prompt`, a string `id` and numeric scores for both models. On error, msg
 * says which line and why; *d is then empty. */
enum bt_err bt_learn_data_load(struct bt_learn_data *d, const char *path, const char *strong,
                               const char *weak, char *msg, size_t cap);
void bt_learn_data_free(struct bt_learn_data *d);

struct bt_learn_opts {
    uint32_t hash_bits;  /* 0 = 18 */
    uint32_t mode;       /* enum bt_learn_mode */
    uint32_t features;   /* 0 = BT_LEARN_F_DEFAULT */
    uint32_t epochs;     /* 0 = 5 */
    uint32_t folds;      /* 0 = 10 (for the out-of-fold calibration) */
    double lr;           /* AdaGrad step, 0 = 0.03 */
    double l2;           /* per-step shrink, 0 = 1e-6 */
    double strong_share; /* 0..1; the threshold's target share */
    uint64_t seed;       /* 0 = a fixed default */
    FILE *progress;      /* stderr-like, or NULL */
};

/* Trains on all rows into *r, after computing out-of-fold scores with
 * `folds`-fold cross-validation (written to oof[0..n) when non-NULL) and
 * calibrating the threshold on them. Deterministic for given data and opts. */
enum bt_err bt_router_train(struct bt_router *r, const struct bt_learn_data *d,
                            const struct bt_learn_opts *o, const char *strong, const char *weak,
                            double *oof);

struct bt_route_metrics {
    double apgr;        /* area under PGR over the strong share 0..1 */
    double cpt50, cpt80;/* smallest strong share reaching PGR 50% / 80% */
    double strong_mean; /* mean score of the strong / weak model alone */
    double weak_mean;
};

/* RouteLLM's metrics for scores score[0..n) (higher = send to strong) against
 * per-row outcomes s and w. Rows are sent strong in descending score order;
 * equal scores form one block whose rows go strong together in expectation
 * (PGR is linear across the block). BT_EINVAL when n == 0 or when the two
 * models' means are equal (PGR undefined). */
enum bt_err bt_learn_metrics(const double *score, const double *s, const double *w, size_t n,
                             struct bt_route_metrics *m);

#endif
