/* A program built without cargo-panic (no runtime, no plugin) that uses
 * panic.h: it compiles and links, and every price reads 0. Prints
 * "<price of each resource> <seq>" on one line. */
#include <panic.h>
#include <stdio.h>

int main(void) {
    printf("%.6f %.6f %.6f %.6f %.6f %llu\n", cargo_panic_price(PANIC_CPU), cargo_panic_price(PANIC_MEMORY),
           cargo_panic_price(PANIC_IO), cargo_panic_price(PANIC_NETWORK), cargo_panic_price(PANIC_DWELL),
           cargo_panic_price_seq());
    return 0;
}
