/*
 * fsutil.h - file helpers the runtime shares (compile cache, checkpoints,
 * .npy files): replacing a file atomically and reading a whole file through
 * Kiln's allocator. Only regular files are read or replaced. Failures leave
 * errno set for the caller's message.
 */
#ifndef KILN_FSUTIL_H
#define KILN_FSUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* A file being written under a temporary name next to its target. */
typedef struct {
    int fd;
    bool keep_mode; /* the target exists: the new file gets its mode */
    mode_t mode;
    /* When rt_atomic_begin refused the target: why, as the end of a sentence
     * that names it ("is a FIFO, not a regular file"); NULL otherwise. */
    const char *refused;
    char tmp[4200]; /* "<path>.tmp.<pid>.XXXXXX" */
    char path[4096];
} rt_atomic_file;

/* Creates the unique temporary file in path's directory. Refuses a target
 * that is not a regular file (f->refused says why; errno is ELOOP for a
 * symlink, EISDIR for a directory, else EINVAL): replacing a FIFO or a device
 * node with a file would break whoever uses it, and replacing a symlink would
 * cut the link instead of updating the file it points to. First removes the
 * temporary files of target left by processes that no longer exist. */
bool rt_atomic_begin(rt_atomic_file *f, const char *path);
/* Appends n bytes (retrying short writes and EINTR). */
bool rt_atomic_write(rt_atomic_file *f, const void *data, size_t n);
/* fsync, close, rename over the target, fsync the directory. Until the rename
 * the target keeps its old contents, whatever happens to this process. The
 * new file has the mode of the file it replaces, or 0666 & ~umask. On failure
 * the temporary file is removed. */
bool rt_atomic_commit(rt_atomic_file *f);
/* Closes and removes the temporary file; errno is kept. */
void rt_atomic_abort(rt_atomic_file *f);

/* The whole of rt_atomic_begin, _write and _commit for one buffer. */
bool rt_write_atomic(const char *path, const void *data, size_t n);

/* Reads a whole regular file (also /proc files, whose size reads 0: those up
 * to EOF) into an ir_alloc'd, NUL-terminated buffer. NULL on failure: errno
 * is ENOMEM when out of memory, else the open or read error; a path that is
 * not a regular file is refused before it is opened (a FIFO would block, a
 * device could feed bytes without end) and *refused says why, as in
 * rt_atomic_file (else *refused is NULL). */
char *rt_read_regular(const char *path, size_t *len, const char **refused);
/* rt_read_regular for callers that report errno only (EINVAL when refused). */
char *rt_read_file(const char *path, size_t *len);

/* Removes what writers killed midway left in dir: files whose names start
 * with prefix and are temporary names "<stem>.tmp.<pid>.<token>", optionally
 * ending .c, .so or .err (the atomic writer's, the compile cache's and
 * kiln_export's), whose process is gone (kill(pid, 0) says ESRCH: a live
 * process of another user answers EPERM) and that are at least min_age
 * seconds old (a process in another PID namespace sharing the directory may
 * look gone; no build stays unfinished that long without touching its files). */
void rt_remove_stale(const char *dir, const char *prefix, int min_age);

/* mkdir -p: creates dir and its missing parents (0755). */
bool rt_mkdir_p(const char *dir);

#endif /* KILN_FSUTIL_H */
