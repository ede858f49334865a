/*
 * bench: start-up time of a command, wall clock from posix_spawn to reaped.
 *   bench RUNS -- /path/to/command [args...]
 * Prints "median_ms=… p10_ms=… p90_ms=… min_ms=… runs=N"; stdout and stderr
 * of the command go to /dev/null. Runs once untimed first (warm caches).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int run_once(char **argv)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) return -1;
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int main(int argc, char **argv)
{
    if (argc < 4 || strcmp(argv[2], "--") != 0) {
        fprintf(stderr, "usage: bench RUNS -- /path/to/command [args...]\n");
        return 2;
    }
    int runs = atoi(argv[1]);
    char **cmd = &argv[3];
    double *t = calloc((size_t)runs, sizeof *t);
    int status = run_once(cmd);
    if (status != 0) {
        fprintf(stderr, "bench: command exited %d\n", status);
        return 1;
    }
    for (int i = 0; i < runs; i++) {
        double t0 = now_ms();
        run_once(cmd);
        t[i] = now_ms() - t0;
    }
    qsort(t, (size_t)runs, sizeof *t, cmp);
    printf("median_ms=%.2f p10_ms=%.2f p90_ms=%.2f min_ms=%.2f runs=%d\n",
           t[runs / 2], t[runs / 10], t[runs * 9 / 10], t[0], runs);
    return 0;
}
