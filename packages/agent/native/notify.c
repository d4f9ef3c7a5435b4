/*
 * capsule-spawn --notify PATH UID: one service's sd_notify socket. Node has no unix datagram
 * sockets, so this small process holds the socket and hands each datagram to the agent.
 *
 * It binds a SOCK_DGRAM unix socket at PATH, mode 0600 and owned by UID (the service's user), so
 * only that user and root can send to it, and turns on SO_PASSCRED so each datagram carries its
 * sender's pid. Each datagram goes to stdout as a record: [u32 LE length][i32 LE sender pid, 0
 * when the kernel gave none][length bytes]. The first record, empty with pid 0, says the socket
 * is bound; empty datagrams are dropped, so no later record looks like it.
 *
 * The service is tenant code: a datagram longer than MAX_DATAGRAM is dropped (systemd's limit
 * is larger, but nothing sd_notify documents needs more), and file descriptors passed along
 * (FDSTORE=) are closed at once. While the agent does not read stdout this process blocks on it
 * and the kernel's socket queue fills, so senders wait: nothing piles up here. (gVisor 2024-07
 * wedges a unix datagram socket that carries many datagrams of a few KiB, whatever its reader
 * does: the sender's sends then block for good. That stalls only the sending service's own
 * notifications; the agent, its supervisor and other services go on.)
 * It ends when stdout is closed (the agent is gone) or on any signal; the agent unlinks PATH.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "capsule.h"

#define MAX_DATAGRAM 4096
/* Room for one SCM_CREDENTIALS and a few SCM_RIGHTS descriptors; the kernel closes any more. */
#define CONTROL_BYTES (CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(16 * sizeof(int)))

static int write_all(const void *buf, size_t len) {
  const char *p = buf;
  while (len > 0) {
    ssize_t n = write(1, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static int record(const char *data, uint32_t len, int32_t pid) {
  unsigned char head[8];
  memcpy(head, &len, 4); /* little-endian: the only byte order this runs on (x86-64, arm64) */
  memcpy(head + 4, &pid, 4);
  return write_all(head, sizeof head) != 0 || write_all(data, len) != 0 ? -1 : 0;
}

/* The sender's pid from SO_PASSCRED's SCM_CREDENTIALS; closes every passed descriptor. */
static int32_t sender(struct msghdr *msg) {
  int32_t pid = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
    if (c->cmsg_level != SOL_SOCKET) continue;
    if (c->cmsg_type == SCM_CREDENTIALS && c->cmsg_len >= CMSG_LEN(sizeof(struct ucred))) {
      struct ucred cred;
      memcpy(&cred, CMSG_DATA(c), sizeof cred);
      pid = cred.pid;
    } else if (c->cmsg_type == SCM_RIGHTS) {
      size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < n; i++) {
        int fd;
        memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        close(fd);
      }
    }
  }
  return pid;
}

int notify_main(const char *path, const char *uid_s) {
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof addr.sun_path) return fprintf(stderr, "capsule-spawn: notify path too long\n"), 2;
  strcpy(addr.sun_path, path);
  char *end;
  errno = 0;
  unsigned long uid = strtoul(uid_s, &end, 10);
  if (errno || *uid_s == '\0' || *end) return fprintf(stderr, "capsule-spawn: bad uid '%s'\n", uid_s), 2;

  int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0), on = 1;
  if (s < 0) return perror("capsule-spawn: socket"), 1;
  unlink(path);
  /* Created 0600 (no moment where anyone else may connect), then given to the service's user. */
  mode_t old = umask(0177);
  int bound = bind(s, (struct sockaddr *)&addr, sizeof addr);
  umask(old);
  if (bound != 0) return perror("capsule-spawn: bind"), 1;
  /* lchown: if the path was swapped for a symlink since the bind, root gives away only that link. */
  if (lchown(path, (uid_t)uid, (gid_t)-1) != 0) return perror("capsule-spawn: lchown"), 1;
  if (setsockopt(s, SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0) return perror("capsule-spawn: SO_PASSCRED"), 1;
  if (record("", 0, 0) != 0) return 1;

  static char buf[MAX_DATAGRAM];
  static char control[CONTROL_BYTES];
  for (;;) {
    struct iovec iov = {.iov_base = buf, .iov_len = sizeof buf};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof control};
    /* MSG_TRUNC: the datagram's real length, so an oversized one is seen and dropped whole. */
    ssize_t n = recvmsg(s, &msg, MSG_TRUNC | MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return perror("capsule-spawn: recvmsg"), 1;
    int32_t pid = sender(&msg);
    if (n == 0 || n > MAX_DATAGRAM || (msg.msg_flags & MSG_TRUNC)) continue;
    if (record(buf, (uint32_t)n, pid) != 0) return 0; /* the agent is gone */
  }
}
