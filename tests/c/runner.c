/* runner: forks each test, enforces a timeout, prints a summary line. */
#include "runner.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#define TEST_TIMEOUT_S 20

int main(int argc, char **argv) {
  int passed = 0, failed = 0;
  signal(SIGPIPE, SIG_IGN);   /* as luahost's main: a closed peer gives EPIPE */
  for (const struct test_case *t = test_cases; t->name; t++) {
    if (argc > 1 && strcmp(argv[1], t->name) != 0) continue;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
      alarm(TEST_TIMEOUT_S);
      t->fn();
      exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
      printf("ok   %s\n", t->name);
      passed++;
    } else {
      printf("FAIL %s (%s %d)\n", t->name, WIFSIGNALED(st) ? "signal" : "exit",
             WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
      failed++;
    }
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
