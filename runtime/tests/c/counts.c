/* 8 threads x 1,000,000 enter/exit pairs on one site. */
#include "driver.h"

#define THREADS 8
#define PAIRS 1000000

static void *worker(void *arg) {
    (void)arg;
    for (int i = 0; i < PAIRS; i++) {
        uint32_t t = ENTER(0, 0);
        EXIT(t);
    }
    return NULL;
}

int main(void) {
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        CHECK(pthread_create(&th[i], NULL, worker, NULL) == 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    return 0;
}
