/* `baton serve`: loads the config, starts the workers, handles signals
 * (SIGHUP reload, SIGTERM/SIGINT drain), and returns the exit code. */
#ifndef BT_SERVE_SERVE_H
#define BT_SERVE_SERVE_H

/* listen_override: "host:port" from --listen, or NULL. */
int bt_serve_main(const char *config_path, const char *listen_override);

/* Splits "host:port" / "[v6]:port" / ":port" into host (written into `host`,
 * default 127.0.0.1 when empty) and port. False on malformed input. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
bool bt_parse_listen(const char *s, char *host, size_t hostcap, uint16_t *port);
/* True for 127.0.0.0/8, ::1 and "localhost". */
bool bt_is_loopback(const char *host);

#endif
