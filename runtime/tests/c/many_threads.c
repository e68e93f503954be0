/* 260 threads inside a region at once (4 find no slot), then 10 more that reuse freed slots. */
#include "driver.h"

#define FIRST 260
#define SECOND 10

static pthread_barrier_t barrier;

static void *worker(void *arg) {
    uint32_t t = ENTER(0, 0);
    if (arg)
        pthread_barrier_wait(&barrier);
    EXIT(t);
    return NULL;
}

static void run(int n, void *arg) {
    pthread_t th[FIRST];
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    for (int i = 0; i < n; i++)
        CHECK(pthread_create(&th[i], &attr, worker, arg) == 0);
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
}

int main(void) {
    pthread_barrier_init(&barrier, NULL, FIRST);
    run(FIRST, &barrier);
    run(SECOND, NULL);
    return 0;
}
