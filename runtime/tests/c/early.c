/* Instrumented code that runs before the runtime's constructor (.preinit_array
 * runs before every .init_array constructor). */
#include "driver.h"

static void early(void) {
    for (int i = 0; i < 3; i++) {
        uint32_t t = ENTER(0, 0);
        EXIT(t);
    }
    COUNT(1);
}

__attribute__((section(".preinit_array"), used)) static void (*const early_entry)(void) = early;

int main(void) {
    uint32_t t = ENTER(0, 0);
    EXIT(t);
    COUNT(1);
    return 0;
}
