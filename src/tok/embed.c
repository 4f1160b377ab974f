/* The tiktoken rank files, embedded into the binary so ./baton is self-contained.
 * .incbin paths are relative to the directory the compiler runs in: the Makefile
 * (and every build script) compiles from the repository root, and lists the data
 * files as prerequisites of this object so they are re-embedded when they change.
 * The bytes sit in .rodata: pages are only read in when the encoding is first
 * built (see tok.c), so a process that never tokenizes does not grow its RSS. */
#include "tok/embed.h"

__asm__(".pushsection .rodata\n"
        ".balign 16\n"
        ".global bt_tok_cl100k_data\n"
        ".hidden bt_tok_cl100k_data\n"
        "bt_tok_cl100k_data:\n"
        ".incbin \"data/tokenizers/cl100k_base.tiktoken\"\n"
        ".global bt_tok_cl100k_end\n"
        ".hidden bt_tok_cl100k_end\n"
        "bt_tok_cl100k_end:\n"
        ".byte 0\n"
        ".balign 16\n"
        ".global bt_tok_o200k_data\n"
        ".hidden bt_tok_o200k_data\n"
        "bt_tok_o200k_data:\n"
        ".incbin \"data/tokenizers/o200k_base.tiktoken\"\n"
        ".global bt_tok_o200k_end\n"
        ".hidden bt_tok_o200k_end\n"
        "bt_tok_o200k_end:\n"
        ".byte 0\n"
        ".popsection\n");
