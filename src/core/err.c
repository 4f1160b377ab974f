#include "core/err.h"

const char *bt_strerror(enum bt_err err)
{
    switch (err) {
    case BT_OK: return "ok";
    case BT_ENOMEM: return "out of memory";
    case BT_EINVAL: return "invalid argument";
    case BT_ETOOBIG: return "too large";
    case BT_EPARSE: return "malformed input";
    case BT_EIO: return "i/o error";
    case BT_ETIMEDOUT: return "timed out";
    case BT_ECLOSED: return "connection closed";
    case BT_ECONNRESET: return "connection reset";
    case BT_ECONNREFUSED: return "connection refused";
    case BT_ENOTFOUND: return "not found";
    case BT_ECANCELED: return "cancelled";
    case BT_EPROTO: return "protocol error";
    case BT_ENOKEY: return "missing credential";
    case BT_EDNS: return "name resolution failed";
    case BT_ETLS: return "tls error";
    case BT_EBUSY: return "capacity reached";
    case BT_ECONFIG: return "configuration error";
    }
    return "unknown error";
}
