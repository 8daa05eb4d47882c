/*
 * fsutil.h - file helpers the runtime shares (compile cache, checkpoints):
 * replacing a file atomically and reading a whole file through Kiln's
 * allocator. Failures leave errno set for the caller's message.
 */
#ifndef KILN_FSUTIL_H
#define KILN_FSUTIL_H

#include <stdbool.h>
#include <stddef.h>

/* A file being written under a temporary name next to its target. */
typedef struct {
    int fd;
    char tmp[4200]; /* "<path>.tmp.<pid>.XXXXXX" */
    char path[4096];
} rt_atomic_file;

/* Creates the unique temporary file in path's directory. */
bool rt_atomic_begin(rt_atomic_file *f, const char *path);
/* Appends n bytes (retrying short writes and EINTR). */
bool rt_atomic_write(rt_atomic_file *f, const void *data, size_t n);
/* fsync, close, rename over the target, fsync the directory. Until the rename
 * the target keeps its old contents, whatever happens to this process. On
 * failure the temporary file is removed. */
bool rt_atomic_commit(rt_atomic_file *f);
/* Closes and removes the temporary file; errno is kept. */
void rt_atomic_abort(rt_atomic_file *f);

/* The whole of rt_atomic_begin, _write and _commit for one buffer. */
bool rt_write_atomic(const char *path, const void *data, size_t n);

/* Reads a whole file up to EOF (also /proc files, whose size reads 0) into an
 * ir_alloc'd, NUL-terminated buffer. NULL on failure: errno is ENOMEM when
 * out of memory, else the open or read error. */
char *rt_read_file(const char *path, size_t *len);

/* mkdir -p: creates dir and its missing parents (0755). */
bool rt_mkdir_p(const char *dir);

#endif /* KILN_FSUTIL_H */
