/*
 * abi.h - the contract between generated code and the runtime that loads it.
 *
 * Generated C defines, for each entry i of the program (graph entry order):
 *     int kiln_entry_<i>(kiln_ctx *ctx);   // 0 = ok, else a KILN_RUNERR_* code
 * and the string `const char kiln_abi[]` = KILN_ABI_TAG. The renderer prints
 * KILN_CTX_DEF's text into every source (KILN_CTX_TEXT), and the runtime
 * compiles the same macro, so both sides always agree on the layout.
 */
#ifndef KILN_ABI_H
#define KILN_ABI_H

#include <stdint.h>

#define KILN_ABI_TAG "kiln-abi-3"

/* bufs[i] is the storage of program buffer i (kbuf): module buffers for
 * inputs, params and outputs, the entry's arena for temporaries. prof[k]
 * counts the calls of kernel k and the nanoseconds they took: when prof is
 * set, the entry calls tick(ctx, k) after every call of kernel k, and the
 * runtime's clock charges the time since the previous tick (tick_ns, set by
 * the runtime before the entry) to prof[k]. Generated code reads no clock. */
#define KILN_CTX_DEF                                                                               \
    typedef struct kiln_prof {                                                                     \
        uint64_t calls, ns;                                                                        \
    } kiln_prof;                                                                                   \
    typedef struct kiln_ctx {                                                                      \
        void *const *bufs;                                                                         \
        kiln_prof *prof; /* one per kernel of the program, or NULL */                              \
        void (*tick)(struct kiln_ctx * ctx, int32_t kernel);                                       \
        uint64_t tick_ns;   /* the time of the previous tick */                                    \
        uint64_t seed;      /* graph seed: Philox key */                                           \
        uint32_t run;       /* the module's run counter: Philox counter word 3 */                  \
        int32_t threads;    /* OpenMP threads, 0 = default */                                      \
        int32_t err_code;   /* set with a nonzero return: KILN_RUNERR_* */                         \
        int32_t err_kernel; /* the kernel's id */                                                  \
        int32_t err_axis;                                                                          \
        int64_t err_index, err_size;                                                               \
    } kiln_ctx;

/* An exported .so (kiln_export) also defines
 *     const kiln_export_info kiln_export_meta;
 * what kiln_module_open needs besides the entries: the model's name, its
 * graph as .kir text (NUL-terminated), the initial params (each param in
 * module order at the next multiple of 64 bytes) and the XXH3-64 of the
 * renderer's source for that graph, which must match the loading Kiln's. */
#define KILN_EXPORT_VERSION 1
#define KILN_EXPORT_DEF                                                                            \
    typedef struct kiln_export_info {                                                              \
        uint32_t version; /* KILN_EXPORT_VERSION */                                                \
        const char *name;                                                                          \
        const char *kir;                                                                           \
        const unsigned char *params;                                                               \
        uint64_t params_bytes;                                                                     \
        uint64_t source_hash;                                                                      \
    } kiln_export_info;

/* A CUDA export (kiln_export with KILN_TARGET_CUDA) also defines
 *     const kiln_export_cuda kiln_export_cuda_images;
 * the images kiln_module_open loads: a cubin per architecture in archs
 * (major * 10 + minor) and the PTX text. Its kiln_export_meta's source_hash
 * is the hash of the CUDA renderer's source. */
#define KILN_EXPORT_CUDA_DEF                                                                       \
    typedef struct kiln_export_cuda {                                                              \
        int32_t ncubins;                                                                           \
        const int32_t *archs;                                                                      \
        const unsigned char *const *cubins;                                                        \
        const unsigned char *ptx;                                                                  \
    } kiln_export_cuda;

enum {
    KILN_RUNERR_NONE = 0,
    KILN_RUNERR_INDEX = 1,    /* "index %lld is out of bounds for dimension %d with size %lld" */
    KILN_RUNERR_ZERO_DIV = 2, /* "ZeroDivisionError" (integer division or remainder by 0) */
    KILN_RUNERR_NEG_POW = 3   /* "Integers to negative integer powers are not allowed." */
};

#define KILN_ABI_XSTR_(...) #__VA_ARGS__
#define KILN_ABI_XSTR(...)  KILN_ABI_XSTR_(__VA_ARGS__)
/* The C text of KILN_CTX_DEF and KILN_EXPORT_DEF, to print into generated sources. */
#define KILN_CTX_TEXT         KILN_ABI_XSTR(KILN_CTX_DEF)
#define KILN_EXPORT_TEXT      KILN_ABI_XSTR(KILN_EXPORT_DEF)
#define KILN_EXPORT_CUDA_TEXT KILN_ABI_XSTR(KILN_EXPORT_CUDA_DEF)

#endif /* KILN_ABI_H */
