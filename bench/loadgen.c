/* bench/loadgen: a small streaming load generator for bench/run.sh.
 *
 * wrk measures whole responses; a streaming gateway is judged by when the first
 * event arrives and by the gaps between events, so this client times each SSE
 * event (a blank line ends one) as it comes out of the de-chunked body.
 *
 *   loadgen --url http://127.0.0.1:PORT/path --body FILE [options]
 *     --conns N        concurrent connections (default 16)
 *     --duration S     keep-alive mode: each connection posts again and again for S
 *                      seconds (default 5)
 *     --once           many-streams mode: each connection posts exactly one request
 *                      and the run ends when every stream has ended
 *     --ramp N         connections opened per second (default: all at once)
 *     --timeout S      give up after S seconds in --once mode (default 120)
 *     -H "name: value" extra request header (repeatable)
 *     --control-url URL --control-conns N
 *                      N more connections, spread evenly through the ramp, to a
 *                      second URL (the upstream itself): a control group timed
 *                      in the same loop at the same moments, so that what a proxy
 *                      adds to a trip is its group's percentile less the
 *                      control group's, both under the same machine load
 *   --body may be given several times (at most 64): connection i posts body
 *   i mod n, e.g. one body per model to spread streams over deployments.
 *
 * Prints one line of key=value pairs: streams completed, errors, time to first
 * event and inter-event gap percentiles in microseconds, the largest number of
 * streams open at the same time, and the gaps again counting only those that
 * ended while every connection had its stream open ("steady": the load the
 * connections make once they are all up, without the storm of opening them).
 * Events stamped by bench/paced_sse with their send time ('@' and 19 digits of
 * uv_hrtime) are also timed end to end: "trip" percentiles, all and steady.
 * Loopback only: the URL must be http:// to a numeric IPv4 address. Single-threaded libuv loop; llhttp parses responses
 * (linked from build/release/libbaton.a, which carries the llhttp objects). */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <uv.h>

#include "common.h"

#include "llhttp.h"

#define MAX_HEADERS 16
#define MAX_BODIES 64
#define STAMP_DIGITS 19 /* bench/paced_sse's send-time stamp: '@' and 19 digits */

/* ---- histogram: 1 µs buckets below 10 ms, 100 µs buckets below 10 s ---- */

#define FINE_N 10000
#define COARSE_N 100000

struct hist {
    uint64_t fine[FINE_N];     /* [0, 10 ms) by 1 µs */
    uint64_t coarse[COARSE_N]; /* [10 ms, 10 s) by 100 µs */
    uint64_t over;             /* >= 10 s */
    uint64_t n;
    uint64_t max_us;
};

static void hist_add(struct hist *h, uint64_t ns)
{
    uint64_t us = ns / 1000;
    if (us < FINE_N) h->fine[us]++;
    else if ((us - FINE_N) / 100 < COARSE_N) h->coarse[(us - FINE_N) / 100]++;
    else h->over++;
    h->n++;
    if (us > h->max_us) h->max_us = us;
}

/* Value in µs at quantile q (0..1); 0 for an empty histogram. */
static double hist_q(const struct hist *h, double q)
{
    if (!h->n) return 0;
    uint64_t want = (uint64_t)(q * (double)h->n);
    if (want >= h->n) want = h->n - 1;
    uint64_t seen = 0;
    for (uint64_t i = 0; i < FINE_N; i++) {
        seen += h->fine[i];
        if (seen > want) return (double)i;
    }
    for (uint64_t i = 0; i < COARSE_N; i++) {
        seen += h->coarse[i];
        if (seen > want) return (double)(FINE_N + i * 100);
    }
    return (double)h->max_us;
}

static double hist_mean(const struct hist *h)
{
    if (!h->n) return 0;
    double sum = 0;
    for (uint64_t i = 0; i < FINE_N; i++) sum += (double)h->fine[i] * (double)i;
    for (uint64_t i = 0; i < COARSE_N; i++)
        sum += (double)h->coarse[i] * (double)(FINE_N + i * 100 + 50);
    sum += (double)h->over * 1e7;
    return sum / (double)h->n;
}

/* ---- run state ---- */

struct conn;

/* Connections of one target: the measured one, or the control group. */
struct group {
    struct sockaddr_in addr;
    char *req[MAX_BODIES];     /* whole requests: head + body */
    size_t req_len[MAX_BODIES];
    int nreq;
    int nconns;
    uint64_t streams_ok;       /* responses complete with status 200 */
    uint64_t events;
    struct hist trip;          /* upstream's write -> arrival, for events stamped by paced_sse */
    struct hist steady_trip;   /* the same, while every connection has its stream open */
};

struct run {
    uv_loop_t *loop;
    struct group grp[2];       /* [0] measured, [1] control (nconns 0 when none) */
    int nconns;                /* both groups */
    bool once;
    uint64_t deadline;  /* keep-alive mode: no new request after this (hrtime ns) */
    uint64_t timeout_ns;
    int ramp;           /* connections opened per second, 0 = all at once */
    int opened;         /* connections started so far */
    int finished;       /* connections done for good */
    int open_streams;   /* streams between first event and end */
    int max_open;
    uint64_t errors, bad_status;
    struct hist ttfe;   /* request written -> first complete event */
    struct hist gap;    /* between consecutive events of one stream */
    struct hist steady; /* the same, while every connection has its stream open */
    struct hist total;  /* request written -> response complete */
    struct conn *conns;
    uv_timer_t ramp_timer, stop_timer;
    uint64_t started;
};

struct conn {
    struct run *run;
    struct group *grp;
    int req;            /* which of its group's requests this connection posts */
    uv_tcp_t tcp;
    uv_connect_t connect;
    uv_write_t write;
    llhttp_t parser;
    uint64_t t_sent, t_last_event;
    int nevents;        /* events seen in the current response */
    bool prev_nl;       /* last body byte was '\n' (a blank line ends an event) */
    bool in_stamp;      /* reading the digits after '@' (paced_sse's send time) */
    int stamp_digits;
    uint64_t stamp;     /* hrtime ns the upstream wrote the current event at */
    bool in_stream;     /* counted in open_streams */
    bool done;
    bool closing;
    char rbuf[65536];
};

static llhttp_settings_t settings;

static void conn_finish(struct conn *c, bool error);
static void conn_send(struct conn *c);

static void stream_closed(struct conn *c)
{
    if (c->in_stream) {
        c->in_stream = false;
        c->run->open_streams--;
    }
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    struct conn *c = p->data;
    struct run *r = c->run;
    for (size_t i = 0; i < len; i++) {
        char ch = at[i];
        if (ch == '\r') continue;
        if (ch != '\n') {
            c->prev_nl = false;
            if (ch == '@') {
                c->in_stamp = true;
                c->stamp = 0;
                c->stamp_digits = 0;
            } else if (c->in_stamp && ch >= '0' && ch <= '9') {
                c->stamp = c->stamp * 10 + (uint64_t)(ch - '0');
                c->stamp_digits++;
            } else {
                c->in_stamp = false;
            }
            continue;
        }
        if (!c->prev_nl) {
            c->prev_nl = true;
            continue;
        }
        /* a blank line: one event complete */
        c->prev_nl = false;
        uint64_t now = uv_hrtime();
        if (c->nevents == 0) {
            hist_add(&r->ttfe, now - c->t_sent);
            c->in_stream = true;
            if (++r->open_streams > r->max_open) r->max_open = r->open_streams;
        } else {
            hist_add(&r->gap, now - c->t_last_event);
            if (r->open_streams == r->nconns) hist_add(&r->steady, now - c->t_last_event);
        }
        if (c->stamp_digits == STAMP_DIGITS && now >= c->stamp) {
            hist_add(&c->grp->trip, now - c->stamp);
            if (r->open_streams == r->nconns) hist_add(&c->grp->steady_trip, now - c->stamp);
        }
        c->in_stamp = false;
        c->stamp_digits = 0;
        c->t_last_event = now;
        c->nevents++;
        c->grp->events++;
    }
    return 0;
}

static int on_complete(llhttp_t *p)
{
    struct conn *c = p->data;
    struct run *r = c->run;
    hist_add(&r->total, uv_hrtime() - c->t_sent);
    stream_closed(c);
    if (p->status_code != 200) r->bad_status++;
    else c->grp->streams_ok++;
    return HPE_PAUSED; /* the caller decides what comes next */
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)hint;
    struct conn *c = h->data;
    *buf = uv_buf_init(c->rbuf, sizeof(c->rbuf));
}

static void on_close(uv_handle_t *h)
{
    struct conn *c = h->data;
    struct run *r = c->run;
    r->finished++;
    if (r->finished == r->nconns) uv_stop(r->loop);
}

/* Ends a connection for good. In many-streams mode the socket is reset rather
 * than closed so that 10,000 TIME_WAIT entries do not eat the port range that
 * the next run needs. */
static void conn_finish(struct conn *c, bool error)
{
    if (c->closing) return;
    c->closing = true;
    stream_closed(c);
    if (error) c->run->errors++;
    if (c->run->once) {
        uv_os_fd_t fd;
        if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0) {
            struct linger lg = {1, 0};
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        }
    }
    uv_close((uv_handle_t *)&c->tcp, on_close);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    if (n == 0) return;
    if (n < 0) {
        conn_finish(c, true); /* the server closed before the response ended */
        return;
    }
    const char *p = buf->base;
    size_t left = (size_t)n;
    while (left) {
        enum llhttp_errno e = llhttp_execute(&c->parser, p, left);
        if (e == HPE_OK) return;
        if (e != HPE_PAUSED) {
            fprintf(stderr, "loadgen: bad response: %s\n", llhttp_errno_name(e));
            conn_finish(c, true);
            return;
        }
        /* paused at the end of a response */
        size_t used = (size_t)(llhttp_get_error_pos(&c->parser) - p);
        llhttp_resume(&c->parser);
        p += used;
        left -= used;
        struct run *r = c->run;
        if (r->once || uv_hrtime() >= r->deadline || !llhttp_should_keep_alive(&c->parser)) {
            conn_finish(c, false);
            return;
        }
        conn_send(c);
        if (left) {
            /* pipelined bytes after a complete response: not expected */
            conn_finish(c, true);
            return;
        }
    }
}

static void on_write(uv_write_t *w, int status)
{
    struct conn *c = w->data;
    if (status < 0) conn_finish(c, true);
}

static void conn_send(struct conn *c)
{
    uv_buf_t b = uv_buf_init(c->grp->req[c->req], (unsigned)c->grp->req_len[c->req]);
    c->nevents = 0;
    c->prev_nl = false;
    c->t_sent = uv_hrtime();
    c->write.data = c;
    if (uv_write(&c->write, (uv_stream_t *)&c->tcp, &b, 1, on_write) < 0) conn_finish(c, true);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct conn *c = req->data;
    if (status < 0) {
        static int reported; /* a refused ramp would otherwise print thousands of lines */
        if (reported++ < 3) fprintf(stderr, "loadgen: connect: %s\n", uv_strerror(status));
        conn_finish(c, true);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    conn_send(c);
}

static void conn_start(struct run *r, struct conn *c)
{
    /* the control group's connections are spread evenly over the whole ramp:
     * connection i is one when floor((i+1)*nc/n) steps past floor(i*nc/n) */
    long i = c - r->conns, n = r->nconns, nc = r->grp[1].nconns;
    bool ctl = (i + 1) * nc / n > i * nc / n;
    c->run = r;
    c->grp = &r->grp[ctl];
    c->req = (int)(i % c->grp->nreq);
    uv_tcp_init(r->loop, &c->tcp);
    c->tcp.data = c;
    c->connect.data = c;
    llhttp_init(&c->parser, HTTP_RESPONSE, &settings);
    c->parser.data = c;
    int e = uv_tcp_connect(&c->connect, &c->tcp, (struct sockaddr *)&c->grp->addr, on_connect);
    if (e < 0) {
        fprintf(stderr, "loadgen: connect: %s\n", uv_strerror(e));
        conn_finish(c, true);
    }
}

static void on_ramp(uv_timer_t *t)
{
    struct run *r = t->data;
    /* 10 ms ticks: ramp/100 connections per tick, at least one */
    int n = r->ramp / 100;
    if (n < 1) n = 1;
    while (n-- > 0 && r->opened < r->nconns) conn_start(r, &r->conns[r->opened++]);
    if (r->opened >= r->nconns) uv_timer_stop(t);
}

static void on_stop(uv_timer_t *t)
{
    struct run *r = t->data;
    fprintf(stderr, "loadgen: timeout: closing %d connections\n", r->nconns - r->finished);
    for (int i = 0; i < r->opened; i++) conn_finish(&r->conns[i], true);
    r->opened = r->nconns; /* nothing more to start */
    uv_timer_stop(&r->ramp_timer);
}

static bool parse_u(const char *s, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0 || v > max) return false;
    *out = v;
    return true;
}

static int usage(void)
{
    fprintf(stderr, "usage: loadgen --url http://IP:PORT/PATH --body FILE [--conns N] "
                    "[--duration S] [--once] [--ramp N] [--timeout S] [-H 'name: value']... "
                    "[--control-url URL --control-conns N]\n");
    return 2;
}

/* Parses http://IP:PORT/PATH and builds one whole request per body for it. */
static int group_setup(struct group *g, const char *url, int nbodies, char *const *bodies,
                       const size_t *body_lens, int nhdrs, const char *const *hdrs)
{
    if (strncmp(url, "http://", 7)) return usage();
    char host[64];
    const char *hp = url + 7, *colon = strchr(hp, ':'), *slash = strchr(hp, '/');
    long port;
    if (!colon || !slash || colon > slash || (size_t)(colon - hp) >= sizeof(host)) return usage();
    memcpy(host, hp, (size_t)(colon - hp));
    host[colon - hp] = 0;
    char portbuf[8];
    if ((size_t)(slash - colon - 1) >= sizeof(portbuf)) return usage();
    memcpy(portbuf, colon + 1, (size_t)(slash - colon - 1));
    portbuf[slash - colon - 1] = 0;
    if (!parse_u(portbuf, 65535, &port)) return usage();
    if (uv_ip4_addr(host, (int)port, &g->addr)) {
        fprintf(stderr, "loadgen: %s is not an IPv4 address\n", host);
        return 2;
    }
    for (int k = 0; k < nbodies; k++) {
        size_t cap = body_lens[k] + 1024 + (size_t)nhdrs * 512;
        char *req = malloc(cap);
        if (!req) return 1;
        int n = snprintf(req, cap,
                         "POST %s HTTP/1.1\r\nHost: %s:%ld\r\nContent-Type: application/json\r\n"
                         "Authorization: Bearer bench\r\nAccept: text/event-stream\r\n"
                         "Content-Length: %zu\r\n",
                         slash, host, port, body_lens[k]);
        for (int i = 0; i < nhdrs && n > 0; i++) {
            int m = snprintf(req + n, cap - (size_t)n, "%.500s\r\n", hdrs[i]);
            n = m < 0 ? -1 : n + m;
        }
        if (n < 0 || (size_t)n + 2 + body_lens[k] > cap) {
            free(req);
            return 1;
        }
        memcpy(req + n, "\r\n", 2);
        memcpy(req + n + 2, bodies[k], body_lens[k]);
        g->req[k] = req;
        g->req_len[k] = (size_t)n + 2 + body_lens[k];
        g->nreq++;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *url = NULL, *ctl_url = NULL, *body_paths[MAX_BODIES], *hdrs[MAX_HEADERS];
    int nhdrs = 0, nbodies = 0;
    long conns = 16, ctl_conns = 0, duration = 5, ramp = 0, timeout = 120;
    bool once = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--once")) { once = true; continue; }
        if (!v) return usage();
        i++;
        if (!strcmp(a, "--url")) url = v;
        else if (!strcmp(a, "--control-url")) ctl_url = v;
        else if (!strcmp(a, "--body") && nbodies < MAX_BODIES) body_paths[nbodies++] = v;
        else if (!strcmp(a, "--conns")) { if (!parse_u(v, 100000, &conns) || !conns) return usage(); }
        else if (!strcmp(a, "--control-conns")) { if (!parse_u(v, 100000, &ctl_conns)) return usage(); }
        else if (!strcmp(a, "--duration")) { if (!parse_u(v, 3600, &duration)) return usage(); }
        else if (!strcmp(a, "--ramp")) { if (!parse_u(v, 1000000, &ramp)) return usage(); }
        else if (!strcmp(a, "--timeout")) { if (!parse_u(v, 3600, &timeout)) return usage(); }
        else if (!strcmp(a, "-H") && nhdrs < MAX_HEADERS) hdrs[nhdrs++] = v;
        else return usage();
    }
    if (!url || !nbodies || !ctl_url != !ctl_conns) return usage();

    static struct run run; /* large histograms: not on the stack */
    struct run *r = &run;
    char *bodies[MAX_BODIES];
    size_t body_lens[MAX_BODIES];
    for (int k = 0; k < nbodies; k++) {
        bodies[k] = read_file(body_paths[k], &body_lens[k]);
        if (!bodies[k]) {
            fprintf(stderr, "loadgen: cannot read %s\n", body_paths[k]);
            return 2;
        }
    }
    int rc = group_setup(&r->grp[0], url, nbodies, bodies, body_lens, nhdrs, hdrs);
    if (!rc && ctl_url) rc = group_setup(&r->grp[1], ctl_url, nbodies, bodies, body_lens, nhdrs, hdrs);
    for (int k = 0; k < nbodies; k++) free(bodies[k]);
    if (rc) return rc;

    llhttp_settings_init(&settings);
    settings.on_body = on_body;
    settings.on_message_complete = on_complete;

    r->loop = uv_default_loop();
    r->grp[0].nconns = (int)conns;
    r->grp[1].nconns = (int)ctl_conns;
    r->nconns = (int)(conns + ctl_conns);
    r->once = once;
    r->ramp = (int)ramp;
    r->conns = calloc((size_t)r->nconns, sizeof(struct conn));
    if (!r->conns) return 1;
    r->started = uv_hrtime();
    r->deadline = r->started + (uint64_t)duration * 1000000000ull;
    uv_timer_init(r->loop, &r->ramp_timer);
    uv_timer_init(r->loop, &r->stop_timer);
    r->ramp_timer.data = r->stop_timer.data = r;
    uv_unref((uv_handle_t *)&r->stop_timer);
    uv_timer_start(&r->stop_timer, on_stop,
                   once ? (uint64_t)timeout * 1000 : (uint64_t)duration * 1000 + 30000, 0);
    if (ramp) {
        uv_timer_start(&r->ramp_timer, on_ramp, 0, 10);
    } else {
        for (; r->opened < r->nconns; r->opened++) conn_start(r, &r->conns[r->opened]);
    }
    uv_run(r->loop, UV_RUN_DEFAULT);
    double secs = (double)(uv_hrtime() - r->started) / 1e9;
    if (!once && duration) secs = (double)duration; /* requests stop being issued at the deadline */

    const struct group *g = &r->grp[0], *cg = &r->grp[1];
    printf("streams=%" PRIu64 " errors=%" PRIu64 " bad_status=%" PRIu64 " events=%" PRIu64
           " secs=%.2f rps=%.1f max_open=%d"
           " ttfe_p50_us=%.0f ttfe_p99_us=%.0f ttfe_max_us=%" PRIu64
           " gap_mean_us=%.1f gap_p50_us=%.0f gap_p99_us=%.0f gap_p999_us=%.0f gap_max_us=%" PRIu64
           " total_p50_us=%.0f total_p99_us=%.0f"
           " steady_gaps=%" PRIu64 " steady_gap_p50_us=%.0f steady_gap_p99_us=%.0f steady_gap_p999_us=%.0f"
           " trips=%" PRIu64 " trip_p50_us=%.0f trip_p99_us=%.0f trip_p999_us=%.0f"
           " steady_trips=%" PRIu64 " steady_trip_p50_us=%.0f steady_trip_p99_us=%.0f steady_trip_p999_us=%.0f",
           g->streams_ok, r->errors, r->bad_status, g->events, secs,
           (double)g->streams_ok / secs, r->max_open, hist_q(&r->ttfe, 0.5),
           hist_q(&r->ttfe, 0.99), r->ttfe.max_us, hist_mean(&r->gap), hist_q(&r->gap, 0.5),
           hist_q(&r->gap, 0.99), hist_q(&r->gap, 0.999), r->gap.max_us, hist_q(&r->total, 0.5),
           hist_q(&r->total, 0.99), r->steady.n, hist_q(&r->steady, 0.5), hist_q(&r->steady, 0.99),
           hist_q(&r->steady, 0.999), g->trip.n, hist_q(&g->trip, 0.5), hist_q(&g->trip, 0.99),
           hist_q(&g->trip, 0.999), g->steady_trip.n, hist_q(&g->steady_trip, 0.5),
           hist_q(&g->steady_trip, 0.99), hist_q(&g->steady_trip, 0.999));
    if (cg->nconns)
        printf(" ctl_conns=%d ctl_streams=%" PRIu64 " ctl_events=%" PRIu64 " ctl_trips=%" PRIu64 " ctl_trip_p50_us=%.0f ctl_trip_p99_us=%.0f"
               " ctl_steady_trips=%" PRIu64 " ctl_steady_trip_p50_us=%.0f ctl_steady_trip_p99_us=%.0f"
               " ctl_steady_trip_p999_us=%.0f",
               cg->nconns, cg->streams_ok, cg->events, cg->trip.n, hist_q(&cg->trip, 0.5), hist_q(&cg->trip, 0.99),
               cg->steady_trip.n, hist_q(&cg->steady_trip, 0.5), hist_q(&cg->steady_trip, 0.99),
               hist_q(&cg->steady_trip, 0.999));
    printf("\n");
    uv_close((uv_handle_t *)&r->ramp_timer, NULL);
    uv_close((uv_handle_t *)&r->stop_timer, NULL);
    uv_run(r->loop, UV_RUN_DEFAULT);
    uv_loop_close(r->loop);
    free(r->conns);
    for (int k = 0; k < 2; k++)
        for (int j = 0; j < r->grp[k].nreq; j++) free(r->grp[k].req[j]);
    return r->errors || r->bad_status ? 1 : 0;
}
