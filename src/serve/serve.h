/* `baton serve`: loads the config, starts the workers, handles signals
 * (SIGHUP reload, SIGTERM/SIGINT drain), and returns the exit code. */
#ifndef BT_SERVE_SERVE_H
#define BT_SERVE_SERVE_H

/* listen_override: "host:port" from --listen, or NULL. */
int bt_serve_main(const char *config_path, const char *listen_override);

#endif
