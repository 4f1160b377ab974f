/* `baton keys create|list|get|update|revoke -c FILE`: virtual keys managed on
 * the store the configuration names (store.sqlite), directly, while servers
 * may be running on it (they see a change within a second). See
 * docs/governance.md. */
#ifndef BT_GATE_KEYS_CLI_H
#define BT_GATE_KEYS_CLI_H

/* argv[0] is "keys". Returns the process exit code (0, 1 failure, 2 usage). */
int bt_keys_cli(int argc, char **argv);

#endif
