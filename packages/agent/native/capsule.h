/* Shared between capsule-spawn's modes. */
#ifndef CAPSULE_H
#define CAPSULE_H

/* Become exactly UID, GID and the comma-separated GROUPS ("-" for none); exits on failure. */
void drop(const char *uid_s, const char *gid_s, char *groups_s);

/* capsule-spawn --server DIR: the fork server (zygote.c). */
int zygote_main(const char *fifo_dir);

/* capsule-spawn --notify PATH UID: a service's sd_notify socket (notify.c). */
int notify_main(const char *path, const char *uid);

#endif
