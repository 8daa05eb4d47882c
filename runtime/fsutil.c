/*
 * fsutil.c - atomic file replacement and whole-file reads (see fsutil.h).
 *
 * A file is replaced by writing a temporary file unique to the process and
 * call in the target's directory (so the rename cannot cross filesystems),
 * fsyncing it, renaming it over the target and fsyncing the directory so the
 * rename itself survives a power loss. Readers see the old file or the new
 * one, never a mixture; a process killed mid-write leaves the old target and
 * a stray "<path>.tmp.*" file.
 */
#include "fsutil.h"

#include "ir/ir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

bool rt_atomic_begin(rt_atomic_file *f, const char *path)
{
    snprintf(f->path, sizeof f->path, "%s", path);
    snprintf(f->tmp, sizeof f->tmp, "%s.tmp.%ld.XXXXXX", path, (long)getpid());
    f->fd = mkstemp(f->tmp);
    return f->fd >= 0;
}

bool rt_atomic_write(rt_atomic_file *f, const void *data, size_t n)
{
    const char *p = data;
    while (n > 0) {
        ssize_t w = write(f->fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return false;
        if (w == 0) {
            errno = EIO;
            return false;
        }
        p += w;
        n -= (size_t)w;
    }
    return true;
}

void rt_atomic_abort(rt_atomic_file *f)
{
    int saved = errno;
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    unlink(f->tmp);
    errno = saved;
}

/* Makes a rename in path's directory durable. Best effort: the new file is
 * already in place, and some filesystems cannot fsync a directory. */
static void sync_dir(const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if (slash == dir)
        dir[1] = 0;
    else
        *slash = 0;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

bool rt_atomic_commit(rt_atomic_file *f)
{
    fchmod(f->fd, 0644); /* mkstemp makes it 0600 */
    if (fsync(f->fd) != 0) {
        rt_atomic_abort(f);
        return false;
    }
    int fd = f->fd;
    f->fd = -1;
    if (close(fd) != 0 || rename(f->tmp, f->path) != 0) {
        rt_atomic_abort(f);
        return false;
    }
    sync_dir(f->path);
    return true;
}

bool rt_write_atomic(const char *path, const void *data, size_t n)
{
    rt_atomic_file f;
    if (!rt_atomic_begin(&f, path))
        return false;
    if (!rt_atomic_write(&f, data, n)) {
        rt_atomic_abort(&f);
        return false;
    }
    return rt_atomic_commit(&f);
}

char *rt_read_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    /* one spare byte past the stat size for the NUL, one to read EOF into */
    struct stat st;
    size_t cap = fstat(fd, &st) == 0 && st.st_size > 0 ? (size_t)st.st_size + 2 : 4096;
    size_t n = 0;
    char *buf = ir_alloc(cap);
    int err = buf ? 0 : ENOMEM;
    while (!err) {
        if (n + 1 == cap) {
            char *bigger = ir_realloc(buf, cap * 2);
            if (!bigger) {
                err = ENOMEM;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r < 0 && errno != EINTR)
            err = errno;
        else if (r == 0)
            break;
        else if (r > 0)
            n += (size_t)r;
    }
    close(fd);
    if (err) {
        ir_free(buf);
        errno = err;
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

bool rt_mkdir_p(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s", dir);
    for (char *p = path + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(path, 0755) != 0 && errno != EEXIST)
                return false;
            *p = '/';
        }
    return mkdir(path, 0755) == 0 || errno == EEXIST;
}
