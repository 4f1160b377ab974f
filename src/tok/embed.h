/* Start and end of the embedded rank files (see embed.c). Internal to src/tok. */
#ifndef BT_TOK_EMBED_H
#define BT_TOK_EMBED_H

extern const char bt_tok_cl100k_data[], bt_tok_cl100k_end[];
extern const char bt_tok_o200k_data[], bt_tok_o200k_end[];

#endif
