/* A region that sleeps 20 ms, entered 10 times. */
#include "driver.h"

int main(void) {
    for (int i = 0; i < 10; i++) {
        uint32_t t = ENTER(1, 1);
        sleep_ms(20);
        EXIT(t);
    }
    return 0;
}
