/* Counts site 1 five times, opens region site 2, reports, waits for a line on stdin, closes it. */
#include "driver.h"

int main(void) {
    for (int i = 0; i < 5; i++)
        COUNT(1);
    uint32_t t = ENTER(2, 0);
    printf("ready %u %s %s\n", tid(), getenv(PANIC_ENV_SHM) ? "shm-set" : "shm-unset",
           getenv(PANIC_ENV_DUMP) ? "dump-set" : "dump-unset");
    fflush(stdout);
    char line[16];
    CHECK(fgets(line, sizeof line, stdin) != NULL);
    EXIT(t);
    return 0;
}
