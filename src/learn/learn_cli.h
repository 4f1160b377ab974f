/* `baton route train|eval` (docs/routing.md). */
#ifndef BT_LEARN_LEARN_CLI_H
#define BT_LEARN_LEARN_CLI_H

/* Runs `baton route ...`: argv[0] is "route". Returns the exit code; prints
 * results on stdout, progress and errors on stderr. */
int bt_learn_cli(int argc, char **argv);

#endif
