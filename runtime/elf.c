/*
 * elf.c - checks a file as a Kiln export without loading it.
 *
 * dlopen runs a shared object's constructors, and maps its segments: a file
 * that is not an export must be refused before, and a truncated one would
 * raise SIGBUS inside the loader. Requires a path; reads the ELF header, the
 * program and section headers and the section names with pread, checking
 * every offset and size against the file before using it. Produces KILN_OK
 * when the file is a 64-bit shared object for this machine whose segments
 * lie inside it and which has a ".kiln_export" section starting with
 * RT_EXPORT_MARK (kiln_export writes it); else a status and the reason (for
 * a file that cannot be opened: KILN_ERR_NOT_FOUND or KILN_ERR_IO and
 * strerror's text).
 */
#include "rt.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__x86_64__)
#define HOST_MACHINE EM_X86_64
#elif defined(__aarch64__)
#define HOST_MACHINE EM_AARCH64
#elif defined(__riscv)
#define HOST_MACHINE EM_RISCV
#elif defined(__powerpc64__)
#define HOST_MACHINE EM_PPC64
#else
#error "elf.c: add this machine's e_machine"
#endif

/* [off, off + n) lies inside a file of size bytes (no overflow). */
static bool inside(uint64_t off, uint64_t n, uint64_t size)
{
    return off <= size && n <= size - off;
}

static bool read_at(int fd, void *buf, size_t n, uint64_t off)
{
    return pread(fd, buf, n, (off_t)off) == (ssize_t)n;
}

static kiln_status fail(char *why, size_t cap, kiln_status s, const char *msg)
{
    snprintf(why, cap, "%s", msg);
    return s;
}

/* Whether section i of the table at sh is named name (within the names
 * section strtab, itself checked). */
static bool named(int fd, const Elf64_Shdr *strtab, uint32_t name_off, const char *name)
{
    size_t n = strlen(name) + 1;
    char buf[64];
    if (n > sizeof buf || name_off >= strtab->sh_size || strtab->sh_size - name_off < n)
        return false;
    return read_at(fd, buf, n, strtab->sh_offset + name_off) && memcmp(buf, name, n) == 0;
}

kiln_status rt_check_export_file(const char *path, char *why, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        snprintf(why, cap, "%s", strerror(errno));
        return errno == ENOENT ? KILN_ERR_NOT_FOUND : KILN_ERR_IO;
    }
    struct stat st;
    kiln_status s = KILN_OK;
    Elf64_Ehdr eh;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        s = fail(why, cap, KILN_ERR_LOAD, "it is not a regular file");
    uint64_t size = (uint64_t)st.st_size;
    if (s == KILN_OK && (size < sizeof eh || !read_at(fd, &eh, sizeof eh, 0) ||
                         memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0))
        s = fail(why, cap, KILN_ERR_LOAD, "it is not a shared object (no ELF header)");
    if (s == KILN_OK && (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB ||
                         eh.e_type != ET_DYN || eh.e_machine != HOST_MACHINE))
        s = fail(why, cap, KILN_ERR_LOAD, "it is not a shared object for this machine");
    if (s == KILN_OK &&
        (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_shentsize != sizeof(Elf64_Shdr) ||
         !inside(eh.e_phoff, (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr), size) ||
         !inside(eh.e_shoff, (uint64_t)eh.e_shnum * sizeof(Elf64_Shdr), size) ||
         eh.e_shstrndx >= eh.e_shnum))
        s = fail(why, cap, KILN_ERR_LOAD,
                 "it is truncated or damaged (its headers lie past its end)");
    for (int i = 0; s == KILN_OK && i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        if (!read_at(fd, &ph, sizeof ph, eh.e_phoff + (uint64_t)i * sizeof ph) ||
            (ph.p_type == PT_LOAD && !inside(ph.p_offset, ph.p_filesz, size)))
            s = fail(why, cap, KILN_ERR_LOAD,
                     "it is truncated or damaged (a segment lies past its end)");
    }
    Elf64_Shdr strtab;
    if (s == KILN_OK && (!read_at(fd, &strtab, sizeof strtab,
                                  eh.e_shoff + (uint64_t)eh.e_shstrndx * sizeof strtab) ||
                         !inside(strtab.sh_offset, strtab.sh_size, size)))
        s = fail(why, cap, KILN_ERR_LOAD, "it is truncated or damaged (its section names)");
    bool found = false;
    for (int i = 0; s == KILN_OK && !found && i < eh.e_shnum; i++) {
        Elf64_Shdr sh;
        if (!read_at(fd, &sh, sizeof sh, eh.e_shoff + (uint64_t)i * sizeof sh))
            s = fail(why, cap, KILN_ERR_LOAD, "it is truncated or damaged (a section header)");
        else if (named(fd, &strtab, sh.sh_name, RT_EXPORT_SECTION)) {
            char mark[sizeof RT_EXPORT_MARK - 1];
            found = sh.sh_type == SHT_PROGBITS && sh.sh_size >= sizeof mark &&
                    inside(sh.sh_offset, sh.sh_size, size) &&
                    read_at(fd, mark, sizeof mark, sh.sh_offset) &&
                    memcmp(mark, RT_EXPORT_MARK, sizeof mark) == 0;
        }
    }
    if (s == KILN_OK && !found)
        s = fail(why, cap, KILN_ERR_LOAD,
                 "it is not a Kiln export (it has no " RT_EXPORT_SECTION " section)");
    close(fd);
    return s;
}
