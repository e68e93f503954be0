/* A minimal SQLite shell for tests/sqlite.rs and bench/sqlite.sh.
 *
 *   sqlite-shell [SCRIPT.sql [DATABASE]]
 *
 * Reads SQL from SCRIPT (or standard input), runs every statement in order on
 * DATABASE (default: a fresh in-memory database) and prints each result row as
 * its columns' text separated by `|` (NULL prints as nothing). Output depends
 * only on the SQL, so two builds of the same sources print the same bytes. The
 * first error is printed to stderr with the failing statement, and the exit
 * status is 1. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sqlite3.h"

static char *read_all(FILE *f) {
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    for (;;) {
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0) break;
        if (cap - len < 2) {
            char *bigger = realloc(buf, cap *= 2);
            if (!bigger) { free(buf); return NULL; }
            buf = bigger;
        }
    }
    buf[len] = '\0';
    return buf;
}

int main(int argc, char **argv) {
    FILE *in = stdin;
    if (argc > 1 && strcmp(argv[1], "-") != 0) {
        in = fopen(argv[1], "rb");
        if (!in) { perror(argv[1]); return 2; }
    }
    char *sql = read_all(in);
    if (!sql) { fprintf(stderr, "cannot read the script\n"); return 2; }
    if (in != stdin) fclose(in);

    sqlite3 *db;
    if (sqlite3_open(argc > 2 ? argv[2] : ":memory:", &db) != SQLITE_OK) {
        fprintf(stderr, "cannot open the database: %s\n", sqlite3_errmsg(db));
        return 2;
    }
    int status = 0;
    const char *next = sql;
    while (*next) {
        sqlite3_stmt *stmt = NULL;
        const char *start = next;
        if (sqlite3_prepare_v2(db, next, -1, &stmt, &next) != SQLITE_OK) {
            fprintf(stderr, "error: %s\nin: %.200s\n", sqlite3_errmsg(db), start);
            status = 1;
            break;
        }
        if (!stmt) continue; /* whitespace or a comment */
        int rc;
        while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
            int n = sqlite3_column_count(stmt);
            for (int i = 0; i < n; i++) {
                const unsigned char *text = sqlite3_column_text(stmt, i);
                if (i) putchar('|');
                if (text) fputs((const char *)text, stdout);
            }
            putchar('\n');
        }
        if (rc != SQLITE_DONE) {
            fprintf(stderr, "error: %s\nin: %.*s\n", sqlite3_errmsg(db),
                    (int)(next - start) > 200 ? 200 : (int)(next - start), start);
            status = 1;
        }
        sqlite3_finalize(stmt);
        if (status) break;
    }
    if (sqlite3_close(db) != SQLITE_OK) {
        fprintf(stderr, "close: %s\n", sqlite3_errmsg(db));
        status = 1;
    }
    free(sql);
    return status;
}
