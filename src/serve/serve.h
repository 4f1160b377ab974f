/* `baton serve`: loads the config, starts the workers, handles signals
 * (SIGHUP reload, SIGTERM/SIGINT drain), and returns the exit code. */
#ifndef BT_SERVE_SERVE_H
#define BT_SERVE_SERVE_H

#include "config/config.h"

/* opts: what the command line adds to the file (--listen, --reuse-port); may be
 * NULL. Borrowed for the life of the call (reloads apply it again). */
int bt_serve_main(const char *config_path, const struct bt_config_load_opts *opts);

#endif
