/* `baton route explain`: the routing decision for a request, no call made. */
#ifndef BT_API_EXPLAIN_H
#define BT_API_EXPLAIN_H

/* argv[0] is "explain". Returns the exit code. */
int bt_explain_cli(int argc, char **argv);

#endif
