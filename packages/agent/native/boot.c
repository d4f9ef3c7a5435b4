/*
 * capsule-boot SOCKET FIFO_DIR HELPER -- NODE ARGS...: the agent's first process, tini's child.
 *
 * Node needs ~90-100 ms inside gVisor before it runs a line of the agent (a static binary
 * starts in ~10-25). This small static process prepares two things before Node exists, then
 * becomes Node (exec), so Node keeps tini's child's pid and the fds:
 *
 *   - the agent's listening socket at SOCKET (0600), bound and listening at once, so the host's
 *     first connection and request wait in its backlog until Node accepts them, instead of the
 *     host polling for a socket that is not there yet. Nothing is answered before Node, so
 *     nothing is lost or answered twice; an agent that never comes up leaves the host's request
 *     unanswered, which it reports at its boot deadline as before;
 *   - the fork server, HELPER --server FIFO_DIR on two pipes, forked from this small process
 *     (cheap) rather than from Node (a ~35 ms stop of Node inside gVisor). The child waits for
 *     Node's first request on its stdin before it execs the helper, so that exec does not
 *     compete with Node's start for the VM's one-CPU quota (measured: started at once, it made
 *     the agent ~50 ms later to answer).
 *
 * Node finds them in CAPSULE_LISTEN_FD=N and CAPSULE_ZYGOTE=READ_FD,WRITE_FD,FIFO_DIR. Whatever
 * fails here is left to Node, which then listens or starts the fork server itself as it does
 * without this process (and reports the failure where the host can see it).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* Node's own backlog for server.listen(). */
#define LISTEN_BACKLOG 511

static void warn(const char *what, const char *path) {
  fprintf(stderr, "capsule-boot: %s %s: %s (left to the agent)\n", what, path, strerror(errno));
}

/* The listening socket at PATH, or -1 (warned). Its directory is made root-only if missing. */
static int listen_at(const char *path) {
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof addr.sun_path) {
    errno = ENAMETOOLONG;
    warn("socket path", path);
    return -1;
  }
  strcpy(addr.sun_path, path);
  char dir[sizeof addr.sun_path];
  strcpy(dir, path);
  char *slash = strrchr(dir, '/');
  if (slash && slash != dir) {
    *slash = '\0';
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) warn("mkdir", dir);
  }
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0) {
    warn("socket", path);
    return -1;
  }
  unlink(path); /* a stale socket from an earlier run would make bind fail */
  /* Created 0600 from the start, so no one but root ever reaches it. */
  mode_t old = umask(0177);
  int bound = bind(fd, (struct sockaddr *)&addr, sizeof addr);
  umask(old);
  if (bound != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
    warn("bind/listen", path);
    close(fd);
    return -1;
  }
  return fd;
}

/* Starts HELPER --server DIR on two pipes; sets *to_fd, *from_fd (Node's ends) or returns -1. */
static int start_zygote(const char *helper, const char *dir, int *from_fd, int *to_fd) {
  if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
    warn("mkdir", dir);
    return -1;
  }
  int to[2], from[2];
  if (pipe2(to, O_CLOEXEC) != 0) return warn("pipe", dir), -1;
  if (pipe2(from, O_CLOEXEC) != 0) {
    warn("pipe", dir);
    close(to[0]);
    close(to[1]);
    return -1;
  }
  pid_t pid = fork();
  if (pid == 0) {
    /* dup2 clears O_CLOEXEC on 0 and 1; every other fd (the listener, Node's ends) is closed. */
    if (dup2(to[0], 0) < 0 || dup2(from[1], 1) < 0) _exit(127);
    close_range(3, INT_MAX, 0); /* gVisor rejects a larger upper bound */
    /* Exec'd only once Node sends its first request, so that its start does not compete with
       Node's: the request waits in the pipe for the zygote to read. */
    struct pollfd wait_for_node = {.fd = 0, .events = POLLIN};
    while (poll(&wait_for_node, 1, -1) < 0 && errno == EINTR) {}
    execl(helper, helper, "--server", dir, (char *)NULL);
    fprintf(stderr, "capsule-boot: exec %s: %s\n", helper, strerror(errno));
    _exit(127);
  }
  int fork_errno = errno;
  close(to[0]);
  close(from[1]);
  if (pid < 0) {
    errno = fork_errno;
    warn("fork", helper);
    close(to[1]);
    close(from[0]);
    return -1;
  }
  /* Node's ends must survive its exec. */
  fcntl(from[0], F_SETFD, 0);
  fcntl(to[1], F_SETFD, 0);
  *from_fd = from[0];
  *to_fd = to[1];
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 6 || strcmp(argv[4], "--") != 0) {
    fprintf(stderr, "usage: capsule-boot SOCKET FIFO_DIR HELPER -- PROGRAM ARGS...\n");
    return 2;
  }
  char value[PATH_MAX + 32];
  int listener = listen_at(argv[1]);
  if (listener >= 0) {
    snprintf(value, sizeof value, "%d", listener);
    setenv("CAPSULE_LISTEN_FD", value, 1);
  }
  int from_fd, to_fd;
  if (start_zygote(argv[3], argv[2], &from_fd, &to_fd) == 0) {
    snprintf(value, sizeof value, "%d,%d,%s", from_fd, to_fd, argv[2]);
    setenv("CAPSULE_ZYGOTE", value, 1);
  }
  execv(argv[5], &argv[5]);
  fprintf(stderr, "capsule-boot: exec %s: %s\n", argv[5], strerror(errno));
  return 127;
}
