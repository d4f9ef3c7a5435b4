/*
 * capsule-spawn --server DIR: a fork server. Inside gVisor, fork() costs in proportion to the
 * caller's address space; a Node process pays 60-110 ms per spawn, this small static process a
 * few. The agent starts one zygote and asks it for every exec.
 *
 * Requests arrive on stdin as [u32 little-endian length][payload], payload = NUL-terminated
 * strings:
 *   "P" ID                                   make DIR/ID.0 .1 .2 (FIFOs, 0600) -> "P ID\n"
 *   "S" ID UID GID GROUPS|- CWD ENVC ENV... ARGV...
 *                                            start a child; it opens DIR/ID.0 (stdin), .1, .2,
 *                                            starts a new session, becomes the user, chdirs
 *                                            and execs -> "S ID PID\n" or "F ID ERRNO STAGE\n"
 * and, whenever a child ends, "X PID CODE SIGNAL\n" (CODE -1 when killed by SIGNAL).
 * The agent opens its FIFO ends between P and S: stdout/stderr for reading (non-blocking) and
 * stdin read-write, so none of the child's opens block. The FIFO names are unlinked once the
 * child has them open. EOF on stdin (the agent died) ends the zygote; its children live on
 * under tini.
 *
 * The child is started with clone(CLONE_VM | CLONE_VFORK) on a stack of its own, as posix_spawn
 * does: it shares the zygote's memory until it execs, so no address space is copied. Inside
 * gVisor that takes a fork + exec of /bin/sh from about 10 ms to about 4. The zygote stays
 * suspended until the child has exec'd or died, so one stack serves every child; the child
 * writes nothing the zygote reads later, and ends with _exit, never exit.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "capsule.h"

#define MAX_REQ (4 * 1024 * 1024)
#define MAX_FIELDS 65536
/* The child's stack until it execs: execvpe may put a copy of ARGV on it (a script without #!). */
#define CHILD_STACK (MAX_FIELDS * sizeof(char *) + 256 * 1024)

static const char *dir;
static int sigpipe_w = -1;

static void on_sigchld(int sig) {
  (void)sig;
  int saved = errno;
  ssize_t r = write(sigpipe_w, "c", 1);
  (void)r;
  errno = saved;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
  char line[128];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  for (int off = 0; off < n;) {
    ssize_t w = write(1, line + off, n - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) exit(1); /* the agent is gone */
    off += w;
  }
}

static void fifo_path(char *out, size_t len, const char *id, int fd) {
  snprintf(out, len, "%s/%s.%d", dir, id, fd);
}

static void prepare(char **f, int n) {
  if (n != 2) { say("F ? %d bad-request\n", EINVAL); return; }
  char p[PATH_MAX];
  for (int fd = 0; fd < 3; fd++) {
    fifo_path(p, sizeof p, f[1], fd);
    unlink(p);
    if (mkfifo(p, 0600) != 0) { say("F %s %d mkfifo\n", f[1], errno); return; }
  }
  say("P %s\n", f[1]);
}

static const char *STAGES[] = {"open", "priv", "chdir", "exec"};

/* What the child needs, on the zygote's memory (shared until the child execs). */
struct child_args {
  char **f;
  char **argv;
  char **envp;
  /* Set by a child that fails before its exec: the stage (index into STAGES) and errno. */
  int failed, stage, err;
};

/* In the child: report (stage, errno) in the memory the zygote reads once it resumes, and die. */
static void child_fail(struct child_args *a, int stage) {
  a->err = errno;
  a->stage = stage;
  a->failed = 1;
  _exit(127);
}

static int child_main(void *arg) {
  struct child_args *a = arg;
  char **f = a->f;
  /* The zygote's handlers must not run here (it blocked every signal around the clone). */
  signal(SIGCHLD, SIG_DFL);
  signal(SIGPIPE, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  setsid();
  char p[PATH_MAX];
  int flags[3] = {O_RDONLY, O_WRONLY, O_WRONLY};
  for (int fd = 0; fd < 3; fd++) {
    fifo_path(p, sizeof p, f[1], fd);
    int o = open(p, flags[fd]);
    if (o < 0 || dup2(o, fd) < 0) child_fail(a, 0);
    if (o != fd) close(o);
  }
  /* Nothing of the zygote's (its request pipe, the signal pipe) reaches the command. */
  close_range(3, INT_MAX, 0); /* gVisor rejects a larger upper bound */
  drop(f[2], f[3], f[4]);
  if (chdir(f[5]) != 0) child_fail(a, 2);
  execvpe(a->argv[0], a->argv, a->envp);
  child_fail(a, 3);
  return 0;
}

static void start(char **f, int n) {
  /* S ID UID GID GROUPS CWD ENVC ENV... ARGV... */
  static char stack[CHILD_STACK] __attribute__((aligned(16)));
  if (n < 8) { say("F ? %d bad-request\n", EINVAL); return; }
  const char *id = f[1];
  int envc = atoi(f[6]);
  if (envc < 0 || 7 + envc >= n) { say("F %s %d bad-request\n", id, EINVAL); return; }
  /* The environment array must be NULL-terminated where ARGV starts; copy it. */
  char **envp = calloc(envc + 1, sizeof *envp);
  if (!envp) { say("F %s %d alloc\n", id, ENOMEM); return; }
  memcpy(envp, &f[7], envc * sizeof *envp);
  struct child_args args = {.f = f, .argv = &f[7 + envc], .envp = envp};

  sigset_t all, old;
  sigfillset(&all);
  sigprocmask(SIG_SETMASK, &all, &old);
  /* Returns once the child has exec'd or died (CLONE_VFORK). */
  pid_t pid = clone(child_main, stack + sizeof stack, CLONE_VM | CLONE_VFORK | SIGCHLD, &args);
  int clone_errno = errno;
  sigprocmask(SIG_SETMASK, &old, NULL);
  free(envp);
  char p[PATH_MAX];
  for (int fd = 0; fd < 3; fd++) {
    fifo_path(p, sizeof p, id, fd);
    unlink(p);
  }
  if (pid < 0) say("F %s %d fork\n", id, clone_errno);
  else if (args.failed) say("F %s %d %s\n", id, args.err, STAGES[args.stage & 3]);
  else say("S %s %d\n", id, (int)pid);
}

static void reap(void) {
  int st;
  pid_t pid;
  while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
    if (WIFEXITED(st)) say("X %d %d 0\n", (int)pid, WEXITSTATUS(st));
    else if (WIFSIGNALED(st)) say("X %d -1 %d\n", (int)pid, WTERMSIG(st));
  }
}

static void handle(char *buf, uint32_t len) {
  static char *f[MAX_FIELDS + 1];
  int n = 0;
  for (uint32_t i = 0; i < len && n < MAX_FIELDS; n++) {
    f[n] = buf + i;
    char *z = memchr(buf + i, '\0', len - i);
    if (!z) { say("F ? %d bad-request\n", EINVAL); return; }
    i = (uint32_t)(z - buf) + 1;
  }
  if (n == 0) return;
  if (strcmp(f[0], "P") == 0) prepare(f, n);
  else if (strcmp(f[0], "S") == 0) { f[n] = NULL; start(f, n); }
  else say("F ? %d bad-request\n", EINVAL);
}

int zygote_main(const char *fifo_dir) {
  dir = fifo_dir;
  int sp[2];
  if (pipe2(sp, O_CLOEXEC | O_NONBLOCK) != 0) return 1;
  sigpipe_w = sp[1];
  struct sigaction sa = {0};
  sa.sa_handler = on_sigchld;
  sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
  sigaction(SIGCHLD, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  static char buf[MAX_REQ + 4];
  size_t have = 0;
  struct pollfd pfd[2] = {{.fd = 0, .events = POLLIN}, {.fd = sp[0], .events = POLLIN}};
  for (;;) {
    if (poll(pfd, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    if (pfd[1].revents) {
      char drain[64];
      while (read(sp[0], drain, sizeof drain) > 0) {}
      reap();
    }
    if (pfd[0].revents) {
      ssize_t r = read(0, buf + have, sizeof buf - have);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return 0; /* the agent is gone */
      have += r;
      while (have >= 4) {
        uint32_t len;
        memcpy(&len, buf, 4);
        if (len > MAX_REQ) return 2;
        if (have < 4 + len) break;
        handle(buf + 4, len);
        memmove(buf, buf + 4 + len, have - 4 - len);
        have -= 4 + len;
      }
    }
  }
}
