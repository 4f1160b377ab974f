/* HTTP proxy settings: parsing a proxy URL (`proxy:` in the config, or
 * HTTPS_PROXY / HTTP_PROXY from the environment) and deciding whether NO_PROXY
 * exempts a host, with curl's rules. Pure functions, no I/O; the config loader
 * calls them once per provider, and the upstream client only sees the result
 * (struct bt_up_origin's proxy fields). See docs/internals/upstream.md. */
#ifndef BT_UPSTREAM_PROXY_H
#define BT_UPSTREAM_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "core/str.h"

struct bt_proxy_spec {
    char *host;    /* malloc'd; name or address literal, without brackets */
    uint16_t port; /* explicit, else 1080 (curl's default) */
    char *auth;  /* malloc'd secret: "Basic " + base64 of user:password; NULL without credentials */
    char *shown; /* malloc'd URL for messages: scheme, host and port; credentials as "***@" */
};

/* Parses `[http://][user[:password]@]host[:port][/]` (len bytes of url).
 * User and password are percent-decoded, as curl does. On success fills *out
 * (free with bt_proxy_spec_free) and returns BT_OK. BT_EINVAL when the URL is
 * not usable (another scheme, a path, a bad port...), with a reason in `why`
 * that never contains the credentials; BT_ENOMEM when out of memory. */
enum bt_err bt_proxy_parse(const char *url, size_t len, struct bt_proxy_spec *out, char *why,
                           size_t whycap);
/* Frees what bt_proxy_parse allocated (the secret is wiped) and zeroes *s. */
void bt_proxy_spec_free(struct bt_proxy_spec *s);

/* Whether the NO_PROXY list `list` (borrowed; NULL or "" = nothing exempt)
 * exempts host:port. Entries are separated by commas and/or spaces:
 *  `*` exempts everything; a host name matches itself and its subdomains,
 *  with or without a leading dot (`example.com` and `.example.com` both match
 *  `api.example.com`); an IP address matches that address, `10.0.0.0/8` or
 *  `fd00::/8` a range; `[::1]` may be bracketed; `entry:port` limits the entry
 *  to one port. Names compare case-insensitively; a trailing dot is ignored.
 *  Loopback is not special: like curl, only NO_PROXY exempts it. */
bool bt_no_proxy_match(const char *list, const char *host, uint16_t port);

/* Splits a URL authority without userinfo — "host", "host:port", "[v6]" or
 * "[v6]:port" — into slices of `auth`: *port is empty when absent, *v6 says the
 * host was bracketed. False when a bracket is unclosed or followed by anything
 * but ":port". The parts are not validated further. */
bool bt_split_hostport(struct bt_str auth, struct bt_str *host, struct bt_str *port, bool *v6);
/* True for a byte allowed in a host name or IPv4 literal. */
bool bt_host_char(char ch);

#endif
