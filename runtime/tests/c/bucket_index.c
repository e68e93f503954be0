/* Prints the C runtime's bucket index for seeded values (compiled with the runtime's source). */
#include "panic_runtime.c"
/* Its other unit, which the runtime calls (the fault table setup). */
#include "panic_faults.c"

#include <stdio.h>

int main(void) {
    uint64_t x = 0x5eed;
    for (int i = 0; i < 200000; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        uint64_t y = x * 6364136223846793005ull + 1442695040888963407ull;
        uint64_t v = i < 4096 ? (uint64_t)i : x >> (y >> 58);
        printf("%llu %u\n", (unsigned long long)v, hist_index(v));
    }
    printf("%llu %u\n", (unsigned long long)UINT64_MAX, hist_index(UINT64_MAX));
    return 0;
}
