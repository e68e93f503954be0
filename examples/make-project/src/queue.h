/* A FIFO queue of unsigned values, one heap node per element. */
#ifndef QUEUE_H
#define QUEUE_H

#include <stddef.h>

struct queue_node;

struct queue {
    struct queue_node *head;
    struct queue_node *tail;
    size_t len;
};

/* Makes q empty. Allocates nothing. */
void queue_init(struct queue *q);

/* Appends value with exactly one malloc. Returns 0, or -1 when out of memory. */
int queue_push(struct queue *q, unsigned value);

/* Removes the oldest value into *out with exactly one free and returns 1;
 * returns 0 (no free) when q is empty. */
int queue_pop(struct queue *q, unsigned *out);

/* The number of values in q. */
size_t queue_len(const struct queue *q);

/* Frees every remaining node: one free and one loop back-edge per node. */
void queue_clear(struct queue *q);

#endif
