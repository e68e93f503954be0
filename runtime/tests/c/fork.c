/* A forked child counts into private memory and writes no dump. */
#include "driver.h"
#include <sys/wait.h>

/* argv[1]: the dump path, which must not exist until the parent exits. */
int main(int argc, char **argv) {
    CHECK(argc == 2);
    uint32_t t = ENTER(0, 0);
    EXIT(t);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        for (int i = 0; i < 100; i++) {
            t = ENTER(1, 1);
            EXIT(t);
        }
        exit(0);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(access(argv[1], F_OK) != 0);
    t = ENTER(2, 2);
    EXIT(t);
    return 0;
}
