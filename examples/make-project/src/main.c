/* make-project: pushes Q hashed values through a heap-allocated queue from
 * libutil.a, with probe counts known in closed form (see README.md).
 *
 *   app [Q]        default Q = 1000
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "queue.h"

static const char tag[] = "make-project";

int main(int argc, char **argv) {
    unsigned long q_count = 1000;
    if (argc > 2) {
        fprintf(stderr, "usage: app [Q]\n");
        return 2;
    }
    if (argc == 2) {
        char *end = NULL;
        q_count = strtoul(argv[1], &end, 10);
        if (end == argv[1] || *end != '\0' || argv[1][0] == '-' || q_count > 100000000ul) {
            fprintf(stderr, "usage: app [Q]\n");
            return 2;
        }
    }

    struct queue q;
    queue_init(&q);
    for (unsigned long i = 0; i < q_count; i++) {
        if (queue_push(&q, hash_u32((uint32_t)i)) != 0) {
            fprintf(stderr, "app: out of memory\n");
            return 1;
        }
    }
    printf("pushed %lu len %zu\n", q_count, queue_len(&q));

    unsigned long half = q_count / 2;
    uint32_t digest = hash_bytes(tag, strlen(tag));
    for (unsigned long i = 0; i < half; i++) {
        unsigned v = 0;
        queue_pop(&q, &v);
        unsigned char bytes[4] = {
            (unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16), (unsigned char)(v >> 24),
        };
        digest ^= hash_bytes(bytes, sizeof bytes) + (uint32_t)i;
    }
    printf("popped %lu len %zu digest %08x\n", half, queue_len(&q), (unsigned)digest);

    queue_clear(&q);
    unsigned v = 0;
    int got = queue_pop(&q, &v);
    printf("cleared len %zu pop-empty %d\n", queue_len(&q), got);
    return 0;
}
