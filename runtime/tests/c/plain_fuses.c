/* A program built without cargo-panic (no runtime, no plugin) that uses
 * panic.h's fuses: it compiles and links, and no fuse ever trips. Prints the
 * answers for "ingest", "batch" and NULL on one line. */
#include <panic.h>
#include <stdio.h>

int main(void) {
    printf("%d %d %d\n", cargo_panic_fuse("ingest"), cargo_panic_fuse("batch"), cargo_panic_fuse(NULL));
    return 0;
}
