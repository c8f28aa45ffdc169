#include "util.h"

int square(int x) { return x * x; }

const char *greeting(void) { return "hello from a cached build"; }
