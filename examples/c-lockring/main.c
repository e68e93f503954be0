/* c-lockring: four request handlers, each holding two of four accounts' locks
 * while it moves money between them, in a ring: transfer_ab takes a and b,
 * transfer_bc takes b and c, transfer_cd c and d, transfer_da d and a.
 *
 *   c-lockring [ROUNDS]      default ROUNDS = 1000
 *
 * Each handler is its own dwell region (build with --time 'transfer_*'), and
 * the four couplings form a cycle a-b-c-d-a with no chord: the program's
 * dependence graph is not chordal. `cargo panic verify --binary c-lockring`
 * names the cycle, the handlers that make each of its edges, and the one
 * coupling (a-c or b-d) that would make it chordal. Locks are always taken in
 * alphabetical order, so the program itself never deadlocks. Each handler
 * checks its own two balances and prints them; main only starts and joins the
 * handlers, so no region other than a handler touches two accounts. */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define NOINLINE __attribute__((noinline))

struct account {
    pthread_mutex_t mu;
    long balance;
};

static struct account acct_a = {PTHREAD_MUTEX_INITIALIZER, 1000};
static struct account acct_b = {PTHREAD_MUTEX_INITIALIZER, 1000};
static struct account acct_c = {PTHREAD_MUTEX_INITIALIZER, 1000};
static struct account acct_d = {PTHREAD_MUTEX_INITIALIZER, 1000};

static long rounds = 1000;

/* Moves 1 from `from` to `to` `rounds` times, holding both locks (`first`
 * before `second`), then reports both balances. */
#define TRANSFER(name, from, to, first, second)                                 \
    NOINLINE void *name(void *arg) {                                            \
        (void)arg;                                                              \
        for (long i = 0; i < rounds; i++) {                                     \
            pthread_mutex_lock(&first.mu);                                      \
            pthread_mutex_lock(&second.mu);                                     \
            from.balance -= 1;                                                  \
            to.balance += 1;                                                    \
            pthread_mutex_unlock(&second.mu);                                   \
            pthread_mutex_unlock(&first.mu);                                    \
        }                                                                       \
        pthread_mutex_lock(&first.mu);                                          \
        pthread_mutex_lock(&second.mu);                                         \
        printf("%s: %s %ld %s %ld\n", #name, #from, from.balance, #to, to.balance); \
        pthread_mutex_unlock(&second.mu);                                       \
        pthread_mutex_unlock(&first.mu);                                        \
        return NULL;                                                            \
    }

TRANSFER(transfer_ab, acct_a, acct_b, acct_a, acct_b)
TRANSFER(transfer_bc, acct_b, acct_c, acct_b, acct_c)
TRANSFER(transfer_cd, acct_c, acct_d, acct_c, acct_d)
TRANSFER(transfer_da, acct_d, acct_a, acct_a, acct_d)

int main(int argc, char **argv) {
    if (argc > 1) {
        char *end = NULL;
        rounds = strtol(argv[1], &end, 10);
        if (end == argv[1] || *end != '\0' || rounds < 0) {
            fprintf(stderr, "usage: c-lockring [ROUNDS]\n");
            return 2;
        }
    }
    void *(*handlers[4])(void *) = {transfer_ab, transfer_bc, transfer_cd, transfer_da};
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        if (pthread_create(&th[i], NULL, handlers[i], NULL) != 0) {
            perror("pthread_create");
            return 1;
        }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    return 0;
}
