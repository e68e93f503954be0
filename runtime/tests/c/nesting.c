/* Nesting, abandoned regions, stale tokens, depth overflow; exits with regions open. */
#include "driver.h"

int main(void) {
    /* Proper nesting: tokens are the depths. */
    uint32_t a = ENTER(0, 0), b = ENTER(1, 1), c = ENTER(2, 2);
    printf("tokens %u %u %u\n", a, b, c);
    EXIT(c);
    EXIT(b);
    EXIT(a);

    /* Exit with the outer token: the two inner regions are abandoned. */
    a = ENTER(0, 0);
    b = ENTER(1, 1);
    c = ENTER(2, 2);
    EXIT(a);
    /* Stale tokens (already closed) change nothing. */
    EXIT(b);
    EXIT(c);
    EXIT(PANIC_NO_TOKEN);

    /* 70 levels: 6 too deep to time; closing the outermost abandons 69. */
    uint32_t first = ENTER(3, 3);
    for (int i = 1; i < 70; i++)
        ENTER(3, 3);
    EXIT(first);

    /* Exit with two regions open. */
    ENTER(0, 0);
    ENTER(1, 1);
    fflush(stdout);
    exit(3);
}
