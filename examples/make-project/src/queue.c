#include "queue.h"

#include <stdlib.h>

struct queue_node {
    struct queue_node *next;
    unsigned value;
};

void queue_init(struct queue *q) {
    q->head = NULL;
    q->tail = NULL;
    q->len = 0;
}

int queue_push(struct queue *q, unsigned value) {
    struct queue_node *node = malloc(sizeof *node);
    if (node == NULL) {
        return -1;
    }
    node->next = NULL;
    node->value = value;
    if (q->tail != NULL) {
        q->tail->next = node;
    } else {
        q->head = node;
    }
    q->tail = node;
    q->len++;
    return 0;
}

int queue_pop(struct queue *q, unsigned *out) {
    struct queue_node *node = q->head;
    if (node == NULL) {
        return 0;
    }
    q->head = node->next;
    if (q->head == NULL) {
        q->tail = NULL;
    }
    q->len--;
    *out = node->value;
    free(node);
    return 1;
}

size_t queue_len(const struct queue *q) {
    return q->len;
}

void queue_clear(struct queue *q) {
    struct queue_node *node = q->head;
    while (node != NULL) {
        struct queue_node *next = node->next;
        free(node);
        node = next;
    }
    queue_init(q);
}
