#include <stdio.h>
#include "util.h"

int main(void) {
    printf("%s: 7 squared is %d\n", greeting(), square(7));
    return 0;
}
