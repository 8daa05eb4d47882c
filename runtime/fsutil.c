/*
 * fsutil.c - atomic file replacement and whole-file reads (see fsutil.h).
 *
 * A file is replaced by writing a temporary file unique to the process and
 * call in the target's directory (so the rename cannot cross filesystems),
 * fsyncing it, renaming it over the target and fsyncing the directory so the
 * rename itself survives a power loss. Readers see the old file or the new
 * one, never a mixture. A process killed mid-write leaves the old target and
 * a stray "<path>.tmp.<pid>.XXXXXX"; the pid names its owner, so the next
 * save of that target removes it once that process is gone.
 *
 * Only regular files are replaced or read: the type is checked before the
 * write (lstat: a symlink is refused, not followed or replaced) and before
 * the read (stat, then fstat of what was opened, without blocking).
 */
#include "fsutil.h"

#include "ir/ir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Why a file of this type is not read or replaced; NULL for a regular file. */
static const char *not_regular(mode_t mode)
{
    if (S_ISREG(mode))
        return NULL;
    if (S_ISLNK(mode))
        return "is a symbolic link: save to the file it points to";
    if (S_ISFIFO(mode))
        return "is a FIFO, not a regular file";
    if (S_ISCHR(mode))
        return "is a character device, not a regular file";
    if (S_ISBLK(mode))
        return "is a block device, not a regular file";
    if (S_ISSOCK(mode))
        return "is a socket, not a regular file";
    return "is not a regular file";
}

/* path's directory into dir, and where its last component starts. */
static const char *split_path(const char *path, char *dir, size_t cap)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, cap, ".");
    else if (slash == path)
        snprintf(dir, cap, "/");
    else
        snprintf(dir, cap, "%.*s", (int)(slash - path), path);
    return slash ? slash + 1 : path;
}

static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/* The owner of a temporary name "<stem>.tmp.<pid>.<token>[.c|.so|.err]"
 * (token: letters and digits), or 0 when name is not one. */
static long temp_owner(const char *name)
{
    for (const char *p = strstr(name, ".tmp."); p; p = strstr(p + 1, ".tmp.")) {
        const char *s = p + 5;
        long v = 0;
        int digits = 0;
        for (; *s >= '0' && *s <= '9' && digits < 10; s++, digits++)
            v = v * 10 + (*s - '0');
        if (digits == 0 || *s++ != '.' || strspn(s, alnum) == 0)
            continue;
        s += strspn(s, alnum);
        if (*s == 0 || strcmp(s, ".c") == 0 || strcmp(s, ".so") == 0 || strcmp(s, ".err") == 0)
            return v > 0 && v <= INT32_MAX ? v : 0;
    }
    return 0;
}

void rt_remove_stale(const char *dir, const char *prefix, int min_age)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    size_t plen = strlen(prefix);
    time_t now = time(NULL);
    struct dirent *e;
    while ((e = readdir(d))) {
        long pid = strncmp(e->d_name, prefix, plen) == 0 ? temp_owner(e->d_name) : 0;
        struct stat st;
        if (pid == 0 || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH ||
            fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) ||
            (min_age > 0 && now - st.st_mtime < min_age))
            continue; /* (a fresh file's mtime can read a second past time(NULL)) */
        unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
}

/* Creates f->tmp exclusively (never through a symlink planted there) with
 * mode, to which open applies the umask. */
static bool create_temp(rt_atomic_file *f, mode_t mode)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t x = (uint64_t)ts.tv_nsec ^ (uint64_t)ts.tv_sec << 30 ^ (uint64_t)(uintptr_t)f;
    for (int tries = 0; tries < 100; tries++) {
        char suffix[7];
        for (int i = 0; i < 6; i++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            suffix[i] = alnum[(x >> 33) % (sizeof alnum - 1)];
        }
        suffix[6] = 0;
        snprintf(f->tmp, sizeof f->tmp, "%s.tmp.%ld.%s", f->path, (long)getpid(), suffix);
        f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
        if (f->fd >= 0 || errno != EEXIST)
            return f->fd >= 0;
    }
    return false;
}

bool rt_atomic_begin(rt_atomic_file *f, const char *path)
{
    f->fd = -1;
    f->refused = NULL;
    f->keep_mode = false;
    f->tmp[0] = 0;
    snprintf(f->path, sizeof f->path, "%s", path);
    struct stat st;
    bool exists = lstat(path, &st) == 0;
    if (!exists && errno != ENOENT)
        return false;
    if (exists && S_ISDIR(st.st_mode)) {
        errno = EISDIR;
        return false;
    }
    if (exists && (f->refused = not_regular(st.st_mode))) {
        errno = S_ISLNK(st.st_mode) ? ELOOP : EINVAL;
        return false;
    }
    char dir[4096], prefix[4200];
    snprintf(prefix, sizeof prefix, "%s.", split_path(path, dir, sizeof dir));
    rt_remove_stale(dir, prefix, 0);
    /* a new file gets 0666 & ~umask from open itself; one that replaces a
     * file is private until it has that file's mode */
    f->keep_mode = exists;
    f->mode = exists ? st.st_mode & 0777 : 0;
    return create_temp(f, exists ? 0600 : 0666);
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
    split_path(path, dir, sizeof dir);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

bool rt_atomic_commit(rt_atomic_file *f)
{
    if ((f->keep_mode && fchmod(f->fd, f->mode) != 0) || fsync(f->fd) != 0) {
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

enum { MAX_UNSIZED = 64 << 20 }; /* for /proc files: far more than any of them */

/* fd's contents into an ir_alloc'd, NUL-terminated buffer: size bytes (a file
 * that grows meanwhile is not followed), or for size 0 up to EOF, at most
 * MAX_UNSIZED bytes (EFBIG past that). */
static char *read_fd(int fd, size_t size, size_t *len)
{
    bool sized = size > 0;
    size_t cap = sized ? size + 1 : 4096, n = 0;
    char *buf = ir_alloc(cap);
    int err = buf ? 0 : ENOMEM;
    while (!err && !(sized && n == size)) {
        if (n + 1 == cap) { /* unsized only */
            char *bigger = cap > MAX_UNSIZED ? NULL : ir_realloc(buf, cap * 2);
            if (!bigger) {
                err = cap > MAX_UNSIZED ? EFBIG : ENOMEM;
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
    if (err) {
        ir_free(buf);
        errno = err;
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

/* A regular file; else false with errno set (and *refused unless EISDIR). */
static bool readable(const struct stat *st, const char **refused)
{
    if (S_ISDIR(st->st_mode)) {
        errno = EISDIR;
        return false;
    }
    if ((*refused = not_regular(st->st_mode))) {
        errno = EINVAL;
        return false;
    }
    return true;
}

char *rt_read_regular(const char *path, size_t *len, const char **refused)
{
    *refused = NULL;
    struct stat st;
    if (stat(path, &st) != 0 || !readable(&st, refused))
        return NULL;
    /* O_NONBLOCK: a FIFO swapped in since the stat does not block the open
     * (the fstat then refuses it); reads of a regular file ignore the flag */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    char *buf = NULL;
    if (fstat(fd, &st) == 0 && readable(&st, refused)) {
        if ((uint64_t)st.st_size >= SIZE_MAX)
            errno = ENOMEM;
        else
            buf = read_fd(fd, (size_t)st.st_size, len);
    }
    int saved = errno;
    close(fd);
    errno = saved;
    return buf;
}

char *rt_read_file(const char *path, size_t *len)
{
    const char *refused;
    return rt_read_regular(path, len, &refused);
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
