// cmake-cpp: builds S shapes into a Scene and prints their total area, with
// probe counts known in closed form (see README.md).
//
//   cmake-cpp [S]        default S = 30

#include <cstdio>
#include <cstdlib>

#include "shapes.h"

int main(int argc, char **argv) {
    long s = 30;
    if (argc > 2) {
        std::fprintf(stderr, "usage: cmake-cpp [S]\n");
        return 2;
    }
    if (argc == 2) {
        char *end = nullptr;
        s = std::strtol(argv[1], &end, 10);
        if (end == argv[1] || *end != '\0' || s < 0 || s > 1000000) {
            std::fprintf(stderr, "usage: cmake-cpp [S]\n");
            return 2;
        }
    }
    const int n = static_cast<int>(s);
    {
        Scene scene(n);
        for (int i = 0; i < n; i++) {
            scene.add(make_shape(i));
        }
        long area2 = scene.total_area2();
        std::printf("shapes %d total area %ld.%d\n", scene.size(), area2 / 2, area2 % 2 == 0 ? 0 : 5);
    }
    DestroyCounts d = destroy_counts();
    std::printf("destroyed shape %ld rect %ld square %ld triangle %ld\n", d.shape, d.rect, d.square, d.triangle);
    return 0;
}
