/*
 * capsule-spawn: become exactly one user (uid, gid and supplementary groups), then exec a
 * program or perform one file operation with that user's permissions. Static, so it runs in any
 * guest rootfs; the agent uses it because Node's uid/gid spawn options keep no supplementary
 * groups and node-pty keeps root's.
 *
 *   capsule-spawn UID GID GROUPS|- [--] PROG ARGS...
 *   capsule-spawn UID GID GROUPS|- --read PATH OFFSET LENGTH|-   stat line to fd 3, bytes to stdout
 *   capsule-spawn UID GID GROUPS|- --write PATH MODE|- MKDIRS     stdin -> temp file -> rename
 *   capsule-spawn UID GID GROUPS|- --stat PATH FOLLOW             stat line
 *   capsule-spawn UID GID GROUPS|- --list PATH                    KIND NAME NUL, per entry
 *   capsule-spawn UID GID GROUPS|- --mkdir PATH MODE|- RECURSIVE
 *   capsule-spawn UID GID GROUPS|- --remove PATH RECURSIVE
 *   capsule-spawn --sync
 *   capsule-spawn --server FIFO_DIR                             the fork server (zygote.c)
 *   capsule-spawn --notify PATH UID                             a service's sd_notify socket (notify.c)
 *
 * A stat line is "KIND MODE(octal) SIZE UID GID MTIME_SEC MTIME_NSEC\n", KIND one of f d l o.
 * --read puts the stat line on fd 3, closed before the data, so the agent can send it ahead of
 * the data and never mistake file bytes for it. --write commits only if fd 3 yields a byte
 * after stdin's EOF: an agent that dies or a host that hangs up closes both pipes, and a
 * truncated upload must not replace the target.
 * Exit codes below are mirrored in src/helper.ts; a failed exec exits 127 (not found) or 126.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "capsule.h"

enum { X_USAGE = 2, X_PRIV = 3, X_NOENT = 10, X_ACCES, X_ISDIR, X_NOTDIR, X_EXIST, X_NOTEMPTY, X_NOTREG, X_OTHER };

static int fail(const char *what, const char *path) {
  int e = errno;
  fprintf(stderr, "capsule-spawn: %s %s: %s\n", what, path, strerror(e));
  switch (e) {
  case ENOENT: return X_NOENT;
  case EACCES: case EPERM: return X_ACCES;
  case EISDIR: return X_ISDIR;
  case ENOTDIR: return X_NOTDIR;
  case EEXIST: return X_EXIST;
  case ENOTEMPTY: return X_NOTEMPTY;
  default: return X_OTHER;
  }
}

/* These two end the process with _exit, not exit: drop() also runs in the fork server's child,
   which shares the server's memory until it execs (zygote.c), so it must not run exit's
   clean-ups on it. Nothing is buffered on stdout before they can run. */
static unsigned long num(const char *s, int base) {
  char *end;
  errno = 0;
  unsigned long v = strtoul(s, &end, base);
  if (errno || *s == '\0' || *s == '-' || *end) {
    fprintf(stderr, "capsule-spawn: bad number '%s'\n", s);
    _exit(X_USAGE);
  }
  return v;
}

static void priv_fail(const char *what) {
  fprintf(stderr, "capsule-spawn: %s: %s\n", what, strerror(errno));
  _exit(X_PRIV);
}

void drop(const char *uid_s, const char *gid_s, char *groups_s) {
  static gid_t want[NGROUPS_MAX], have[NGROUPS_MAX];
  uid_t uid = num(uid_s, 10), ru, eu, su;
  gid_t gid = num(gid_s, 10), rg, eg, sg;
  size_t n = 0;
  char *save = NULL;
  if (strcmp(groups_s, "-") != 0)
    for (char *t = strtok_r(groups_s, ",", &save); t && n < NGROUPS_MAX; t = strtok_r(NULL, ",", &save))
      want[n++] = num(t, 10);
  if (setgroups(n, want) != 0) priv_fail("setgroups");
  if (setresgid(gid, gid, gid) != 0) priv_fail("setresgid");
  if (setresuid(uid, uid, uid) != 0) priv_fail("setresuid");
  /* Trust nothing: check every id actually stuck, and that root cannot be regained. */
  errno = EPERM;
  if (getresuid(&ru, &eu, &su) || ru != uid || eu != uid || su != uid) priv_fail("uid check");
  if (getresgid(&rg, &eg, &sg) || rg != gid || eg != gid || sg != gid) priv_fail("gid check");
  int m = getgroups(NGROUPS_MAX, have);
  if (m < 0 || (size_t)m != n) priv_fail("groups check");
  for (size_t i = 0; i < n; i++) {
    int found = 0;
    for (int j = 0; j < m; j++) found |= have[j] == want[i];
    if (!found) priv_fail("groups check");
  }
  if (uid != 0 && setuid(0) == 0) priv_fail("root regained after setuid");
}

static int write_all(int fd, const char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -1;
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

static void print_stat(int fd, const struct stat *st) {
  char k = S_ISREG(st->st_mode) ? 'f' : S_ISDIR(st->st_mode) ? 'd' : S_ISLNK(st->st_mode) ? 'l' : 'o';
  dprintf(fd, "%c %o %lld %u %u %lld %ld\n", k, st->st_mode & 07777, (long long)st->st_size, st->st_uid,
          st->st_gid, (long long)st->st_mtim.tv_sec, st->st_mtim.tv_nsec);
}

/* Creates every missing directory on the way to (and including) PATH. */
static int mkdirs(char *path) {
  for (char *s = strchr(path + 1, '/');; s = strchr(s + 1, '/')) {
    if (s) *s = '\0';
    int r = mkdir(path, 0755), e = errno;
    if (s) *s = '/';
    if (r != 0 && e != EEXIST) return errno = e, -1;
    if (!s) return 0;
  }
}

static int do_read(const char *path, const char *off_s, const char *len_s) {
  static char buf[1 << 16];
  struct stat st;
  /* O_NONBLOCK: a FIFO planted at PATH must not hang us waiting for a writer. */
  int fd = open(path, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0 || fstat(fd, &st) != 0) return fail("open", path);
  if (S_ISDIR(st.st_mode)) return errno = EISDIR, fail("read", path);
  if (!S_ISREG(st.st_mode)) return fprintf(stderr, "capsule-spawn: read %s: not a regular file\n", path), X_NOTREG;
  off_t off = (off_t)num(off_s, 10);
  long long left = strcmp(len_s, "-") != 0 ? (long long)num(len_s, 10) : -1;
  print_stat(3, &st);
  close(3);
  while (left != 0) {
    size_t want = left < 0 || left > (long long)sizeof buf ? sizeof buf : (size_t)left;
    ssize_t n = pread(fd, buf, want, off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail("read", path);
    if (n == 0) break;
    if (write_all(1, buf, (size_t)n) != 0) return fail("write", "stdout");
    off += n;
    if (left > 0) left -= n;
  }
  return 0;
}

static int do_write(char *path, const char *mode_s, const char *mkdirs_s) {
  static char buf[1 << 16], tmp[PATH_MAX], dir[PATH_MAX];
  struct stat st;
  mode_t mode = strcmp(mode_s, "-") != 0 ? (mode_t)num(mode_s, 8)
              : lstat(path, &st) == 0 && S_ISREG(st.st_mode) ? st.st_mode & 07777 : 0644;
  int len = (int)(strrchr(path, '/') - path);
  if (snprintf(tmp, sizeof tmp, "%.*s/.capsule-write-XXXXXX", len, path) >= (int)sizeof tmp)
    return errno = ENAMETOOLONG, fail("write", path);
  snprintf(dir, sizeof dir, "%.*s", len, path);
  if (strcmp(mkdirs_s, "1") == 0 && dir[0] && mkdirs(dir) != 0) return fail("mkdir", dir);
  int fd = mkostemp(tmp, O_CLOEXEC), r = 0;
  if (fd < 0) return fail("create a temporary file in", dir[0] ? dir : "/");
  for (ssize_t n; r == 0 && (n = read(0, buf, sizeof buf)) != 0;)
    if (n < 0 ? errno != EINTR : write_all(fd, buf, (size_t)n) != 0) r = fail("write", tmp);
  char commit;
  if (r == 0 && read(3, &commit, 1) != 1) r = (fprintf(stderr, "capsule-spawn: write %s: aborted\n", path), X_OTHER);
  if (r == 0 && (fsync(fd) != 0 || fchmod(fd, mode) != 0)) r = fail("sync", tmp);
  if (close(fd) != 0 && r == 0) r = fail("close", tmp);
  if (r == 0 && rename(tmp, path) != 0) r = fail("rename onto", path);
  if (r != 0) unlink(tmp);
  return r;
}

static int do_list(const char *path) {
  DIR *d = opendir(path);
  if (!d) return fail("list", path);
  for (struct dirent *e; (errno = 0, e = readdir(d));) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    struct stat st;
    unsigned char t = e->d_type;
    if (t == DT_UNKNOWN && fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
      t = S_ISREG(st.st_mode) ? DT_REG : S_ISDIR(st.st_mode) ? DT_DIR : S_ISLNK(st.st_mode) ? DT_LNK : DT_UNKNOWN;
    printf("%c%s%c", t == DT_REG ? 'f' : t == DT_DIR ? 'd' : t == DT_LNK ? 'l' : 'o', e->d_name, '\0');
  }
  return errno != 0 ? fail("list", path) : fflush(stdout) != 0 ? fail("write", "stdout") : 0;
}

static int do_mkdir(char *path, const char *mode_s, const char *recursive_s) {
  struct stat st;
  int with_mode = strcmp(mode_s, "-") != 0;
  mode_t mode = with_mode ? (mode_t)num(mode_s, 8) : 0755;
  if (strcmp(recursive_s, "1") == 0) {
    if (mkdirs(path) != 0) return fail("mkdir", path);
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) return errno = EEXIST, fail("mkdir", path);
  } else if (mkdir(path, mode) != 0) {
    return fail("mkdir", path);
  }
  return with_mode && chmod(path, mode) != 0 ? fail("chmod", path) : 0;
}

static int remove_one(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)ftw;
  if (flag == FTW_DNR || flag == FTW_NS) return errno = EACCES, -1;
  return flag == FTW_DP ? rmdir(p) : unlink(p);
}

static int do_remove(const char *path, const char *recursive_s) {
  struct stat st;
  if (lstat(path, &st) != 0) return fail("remove", path);
  if (S_ISDIR(st.st_mode) && strcmp(recursive_s, "1") == 0)
    return nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS) != 0 ? fail("remove", path) : 0;
  return (S_ISDIR(st.st_mode) ? rmdir(path) : unlink(path)) != 0 ? fail("remove", path) : 0;
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "--sync") == 0) return sync(), 0;
  if (argc == 3 && strcmp(argv[1], "--server") == 0) return zygote_main(argv[2]);
  if (argc == 4 && strcmp(argv[1], "--notify") == 0) return notify_main(argv[2], argv[3]);
  if (argc < 5) return fprintf(stderr, "usage: capsule-spawn UID GID GROUPS|- [--] PROG ARGS...\n"), X_USAGE;
  drop(argv[1], argv[2], argv[3]);
  char *op = argv[4];
  struct stat st;
  if (strcmp(op, "--read") == 0 && argc == 8) return do_read(argv[5], argv[6], argv[7]);
  if (strcmp(op, "--write") == 0 && argc == 8) return do_write(argv[5], argv[6], argv[7]);
  if (strcmp(op, "--stat") == 0 && argc == 7) {
    int r = strcmp(argv[6], "1") == 0 ? stat(argv[5], &st) : lstat(argv[5], &st);
    return r != 0 ? fail("stat", argv[5]) : (print_stat(1, &st), 0);
  }
  if (strcmp(op, "--list") == 0 && argc == 6) return do_list(argv[5]);
  if (strcmp(op, "--mkdir") == 0 && argc == 8) return do_mkdir(argv[5], argv[6], argv[7]);
  if (strcmp(op, "--remove") == 0 && argc == 7) return do_remove(argv[5], argv[6]);
  if (strncmp(op, "--", 2) == 0 && op[2] != '\0') return fprintf(stderr, "capsule-spawn: bad use of %s\n", op), X_USAGE;
  char **prog = strcmp(op, "--") == 0 ? argv + 5 : argv + 4;
  if (!*prog) return fprintf(stderr, "capsule-spawn: no program given\n"), X_USAGE;
  /* node-pty opens PTY masters without O_CLOEXEC: without this, one session's shell would
     inherit (and could read or type into) every other session's terminal. gVisor refuses a
     last fd above INT_MAX. */
  if (close_range(3, INT_MAX, 0) != 0) priv_fail("close_range");
  execvp(prog[0], prog);
  int e = errno;
  fprintf(stderr, "capsule-spawn: cannot run %s: %s\n", prog[0], strerror(e));
  return e == ENOENT ? 127 : 126;
}
