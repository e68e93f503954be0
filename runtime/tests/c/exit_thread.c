/* exit(7) called from a second thread inside a region, main blocked in join. */
#include "driver.h"

static void *worker(void *arg) {
    (void)arg;
    ENTER(2, 0);
    printf("worker %u\n", tid());
    fflush(stdout);
    exit(7);
}

int main(void) {
    pthread_t th;
    uint32_t t = ENTER(1, 1);
    CHECK(pthread_create(&th, NULL, worker, NULL) == 0);
    pthread_join(th, NULL);
    EXIT(t);
    return 0;
}
