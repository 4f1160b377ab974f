/* One error type for every fallible function in baton. BT_OK is zero, so callers
 * check `if (err)`. bt_strerror() gives a short, stable, human-readable text. */
#ifndef BT_CORE_ERR_H
#define BT_CORE_ERR_H

enum bt_err {
    BT_OK = 0,
    BT_ENOMEM,      /* allocation failed */
    BT_EINVAL,      /* invalid argument or input */
    BT_ETOOBIG,     /* a bounded buffer or limit would be exceeded */
    BT_EPARSE,      /* malformed input (JSON, HTTP, YAML, SSE) */
    BT_EIO,         /* I/O failure (read, write, open) */
    BT_ETIMEDOUT,   /* a timeout expired */
    BT_ECLOSED,     /* peer closed the connection */
    BT_ECONNRESET,  /* connection reset */
    BT_ECONNREFUSED,/* connection refused */
    BT_ENOTFOUND,   /* name or key not found */
    BT_ECANCELED,   /* operation cancelled by its owner */
    BT_EPROTO,      /* protocol violation by a peer */
    BT_ENOKEY,      /* a required credential is missing */
    BT_EDNS,        /* name resolution failed */
    BT_ETLS,        /* TLS failure */
    BT_EBUSY,       /* a capacity limit was reached */
    BT_ECONFIG,     /* configuration error */
};

/* On a function whose failure the caller must act on (a response that could not
 * be sent, a call that did not start): the compiler refuses an ignored result. */
#define BT_MUST_USE __attribute__((warn_unused_result))

/* Returns a static string describing `err`; never NULL. */
const char *bt_strerror(enum bt_err err);

#endif
