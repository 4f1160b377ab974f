#include <stdio.h>
int main(void) { puts("baton"); return 0; }
