#ifndef UTIL_H
#define UTIL_H
int square(int x);
const char *greeting(void);
#endif
