/*
 * tensor_basics.c - PyTorch's tensor tutorials, spelled in Kiln.
 *
 * Creation, dtypes, indexing and slicing, views, broadcasting arithmetic,
 * comparisons, matmul and reductions, printed exactly as PyTorch prints them.
 * tests/ref/tensor_basics.py is the same program in PyTorch; its output is
 * tests/expected/tensor_basics.txt, which ctest compares with ours byte for byte.
 *
 * Kiln builds a graph first and runs it afterwards, so each section collects
 * what it wants printed (show, value, say), then compiles its graph, runs it
 * once and prints everything in order. `--target c|interp|cuda` (or
 * `--device cpu|cuda`) picks the target (default: the C target); all must
 * print the same text. For cuda
 * without a usable GPU it says why and exits 77 before printing anything.
 * Random tensors print their shape and a property that holds for any stream:
 * Kiln draws from Philox, so the values differ from PyTorch's.
 */
#include "args.h"

#include <kiln.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- printing helpers --------------------------------------------------------- */

enum { MAX_ITEMS = 64 };

typedef enum {
    LINE,   /* a line of text, known when the graph is built */
    TENSOR, /* a label, then the tensor as PyTorch prints it */
    ITEM    /* a label and the value of a one-element tensor, like print(label, t.item()) */
} item_kind;

typedef struct {
    item_kind kind;
    char text[192];
    kiln_tensor *t;
} item;

typedef struct {
    kiln_graph *g;
    int n;
    item items[MAX_ITEMS];
} section;

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "tensor_basics: %s: %s\n", what, msg);
    exit(1);
}

static item *add_item(section *s, item_kind kind, kiln_tensor *t)
{
    if (s->n == MAX_ITEMS)
        die("section", "too many items");
    item *it = &s->items[s->n++];
    it->kind = kind;
    it->t = t;
    return it;
}

static void __attribute__((format(printf, 2, 3))) say(section *s, const char *fmt, ...)
{
    item *it = add_item(s, LINE, NULL);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(it->text, sizeof it->text, fmt, ap);
    va_end(ap);
}

static void show(section *s, const char *label, kiln_tensor *t)
{
    snprintf(add_item(s, TENSOR, t)->text, sizeof s->items[0].text, "%s", label);
}

static void value(section *s, const char *label, kiln_tensor *t)
{
    snprintf(add_item(s, ITEM, t)->text, sizeof s->items[0].text, "%s", label);
}

/* The error a failing builder call left on its own graph, as a line. */
static void say_error(section *s, kiln_graph *eg)
{
    say(s, "%s", kiln_graph_error(eg));
    kiln_graph_free(eg);
}

/* t.shape as PyTorch prints it: "torch.Size([3, 2])". Four rotating buffers,
 * so one printf may show several shapes. */
static const char *size_str(const kiln_tensor *t)
{
    static char bufs[4][128];
    static int next;
    char *b = bufs[next++ % 4];
    if (!t)
        return strcpy(b, "torch.Size(?)");
    int len = snprintf(b, sizeof bufs[0], "torch.Size([");
    for (int i = 0; i < kiln_tensor_rank(t); i++)
        len += snprintf(b + len, sizeof bufs[0] - (size_t)len, "%s%lld", i ? ", " : "",
                        (long long)kiln_tensor_dim(t, i));
    snprintf(b + len, sizeof bufs[0] - (size_t)len, "])");
    return b;
}

static const char *dtype_str(const kiln_tensor *t)
{
    static char buf[32];
    snprintf(buf, sizeof buf, "torch.%s", t ? kiln_dtype_name(kiln_tensor_dtype(t)) : "?");
    return buf;
}

/* Python's repr of a float: the shortest digits that read back exactly,
 * positional for exponents -4..15, else scientific ("1e+16", "1.5e-05"). */
static void py_float(char *out, size_t cap, double v)
{
    if (isnan(v) || isinf(v)) {
        snprintf(out, cap, "%s", isnan(v) ? "nan" : v < 0 ? "-inf" : "inf");
        return;
    }
    char e[40];
    for (int p = 0; p < 17; p++) {
        snprintf(e, sizeof e, "%.*e", p, v);
        if (strtod(e, NULL) == v)
            break;
    }
    char digits[24];
    int nd = 0;
    const char *q = e + (e[0] == '-');
    for (; *q != 'e'; q++)
        if (*q != '.')
            digits[nd++] = *q;
    int exp = atoi(q + 1);
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;

    size_t len = (size_t)snprintf(out, cap, "%s", v < 0 || (v == 0 && signbit(v)) ? "-" : "");
    if (exp < -4 || exp >= 16) {
        len += (size_t)snprintf(out + len, cap - len, "%c", digits[0]);
        if (nd > 1)
            len += (size_t)snprintf(out + len, cap - len, ".%.*s", nd - 1, digits + 1);
        snprintf(out + len, cap - len, "e%c%02d", exp < 0 ? '-' : '+', abs(exp));
    } else if (exp < 0) {
        snprintf(out + len, cap - len, "0.%.*s%.*s", -exp - 1, "0000", nd, digits);
    } else {
        for (int i = 0; i <= exp; i++)
            len += (size_t)snprintf(out + len, cap - len, "%c", i < nd ? digits[i] : '0');
        if (nd > exp + 1)
            snprintf(out + len, cap - len, ".%.*s", nd - exp - 1, digits + exp + 1);
        else
            snprintf(out + len, cap - len, ".0");
    }
}

/* t.item() as print() shows it: int, bool or float by the tensor's dtype. */
static void print_item(kiln_module *m, const char *name, const kiln_tensor *t)
{
    double v;
    if (kiln_module_get_scalar(m, name, &v) != KILN_OK)
        die(name, kiln_module_error(m));
    char buf[64];
    switch (kiln_tensor_dtype(t)) {
    case KILN_F32:
    case KILN_F64: py_float(buf, sizeof buf, v); break;
    case KILN_I32:
    case KILN_I64: snprintf(buf, sizeof buf, "%lld", (long long)v); break;
    case KILN_BOOL: snprintf(buf, sizeof buf, "%s", v != 0 ? "True" : "False"); break;
    }
    puts(buf);
}

/* The target every section is compiled for (--target). */
static kiln_target target = KILN_TARGET_C;

static void begin(section *s, const char *title)
{
    static bool first = true;
    printf("%s== %s ==\n", first ? "" : "\n", title);
    first = false;
    s->g = kiln_graph_new();
    s->n = 0;
    if (!s->g)
        die(title, "out of memory");
    kiln_graph_seed(s->g, 42); /* torch.manual_seed(42) */
}

/* Compiles the section's graph for the chosen target, runs it once and
 * prints every item in the order it was asked for. */
static void finish(section *s)
{
    kiln_tensor *outs[MAX_ITEMS];
    const char *names[MAX_ITEMS];
    char namebuf[MAX_ITEMS][16];
    int nout = 0;
    for (int i = 0; i < s->n; i++) {
        if (s->items[i].kind == LINE)
            continue;
        snprintf(namebuf[i], sizeof namebuf[i], "out%d", nout);
        outs[nout] = s->items[i].t;
        names[nout++] = namebuf[i];
    }
    kiln_module *m = NULL;
    if (nout > 0) {
        kiln_entry(s->g, "show", nout, outs, names);
        if (kiln_graph_status(s->g) != KILN_OK)
            die("building the graph", kiln_graph_error(s->g));
        kiln_compile_opts opts = {.target = target};
        if (kiln_compile(s->g, &opts, &m) != KILN_OK)
            die("kiln_compile", kiln_graph_error(s->g));
        if (kiln_module_run(m, "show") != KILN_OK)
            die("kiln_module_run", kiln_module_error(m));
    }
    for (int i = 0; i < s->n; i++) {
        item *it = &s->items[i];
        switch (it->kind) {
        case LINE: puts(it->text); break;
        case TENSOR:
            puts(it->text);
            if (kiln_module_print(m, namebuf[i], stdout) != KILN_OK)
                die(it->text, kiln_module_error(m));
            break;
        case ITEM:
            printf("%s ", it->text);
            print_item(m, namebuf[i], it->t);
            break;
        }
    }
    fflush(stdout);
    kiln_module_free(m);
    kiln_graph_free(s->g);
}

/* ---- the tutorials ---------------------------------------------------------- */

static void initialize(section *s)
{
    begin(s, "Initialize tensors");
    kiln_graph *g = s->g;
    show(s, "torch.arange(start=0, end=10, step=1)", kiln_arange(g, KILN_I64, 0, 10, 1));
    show(s, "torch.ones(3, 2)", kiln_ones(g, KILN_F32, KILN_SHAPE(3, 2)));
    show(s, "torch.zeros(3, 2)", kiln_zeros(g, KILN_F32, KILN_SHAPE(3, 2)));

    kiln_tensor *x = kiln_rand(g, KILN_F32, KILN_SHAPE(3, 2));
    say(s, "x = torch.rand(3, 2): shape %s, dtype %s", size_str(x), dtype_str(x));
    show(s, "x.min() >= 0", kiln_ge(g, kiln_min(g, x, KILN_ALL, false), kiln_scalar(g, 0)));
    show(s, "x.max() < 1", kiln_lt(g, kiln_max(g, x, KILN_ALL, false), kiln_scalar(g, 1)));
    show(s, "torch.zeros_like(x)", kiln_zeros_like(g, x));
    show(s, "torch.ones_like(x)", kiln_ones_like(g, x));
    kiln_tensor *r = kiln_rand_like(g, x);
    say(s, "torch.rand_like(x): shape %s, dtype %s", size_str(r), dtype_str(r));

    kiln_tensor *some_tensor = kiln_rand(g, KILN_F32, KILN_SHAPE(3, 4));
    say(s, "Shape of tensor: %s", size_str(some_tensor));
    say(s, "Datatype of tensor: %s", dtype_str(some_tensor));

    kiln_tensor *n = kiln_randn(g, KILN_F32, KILN_SHAPE(5, 3));
    say(s, "n = torch.randn(5, 3): shape %s, dtype %s", size_str(n), dtype_str(n));
    show(s, "n.abs().max() < 10",
         kiln_lt(g, kiln_max(g, kiln_abs(g, n), KILN_ALL, false), kiln_scalar(g, 10)));

    show(s, "torch.linspace(0, 1, steps=5)", kiln_linspace(g, KILN_F32, 0, 1, 5));
    show(s, "torch.full((2, 3), 7.)", kiln_full(g, KILN_F32, KILN_SHAPE(2, 3), 7.0));
    show(s, "torch.tensor([5.5, 3])",
         kiln_tensor_from(g, KILN_F32, KILN_SHAPE(2), (const float[]){5.5f, 3}));
    kiln_tensor *d =
        kiln_tensor_from(g, KILN_I64, KILN_SHAPE(3, 2), (const int64_t[]){1, 2, 3, 4, 5, 6});
    show(s, "x = torch.tensor([[1, 2], [3, 4], [5, 6]])", d);
    say(s, "x.size(): %s", size_str(d));
    finish(s);
}

static void dtypes(section *s)
{
    begin(s, "Data types");
    kiln_graph *g = s->g;
    kiln_tensor *d = kiln_ones(g, KILN_F64, KILN_SHAPE(5, 3));
    show(s, "torch.ones(5, 3, dtype=torch.float64)", d);
    say(s, "dtype: %s", dtype_str(d));
    show(s, "torch.arange(5, dtype=torch.int32)", kiln_arange(g, KILN_I32, 0, 5, 1));

    kiln_tensor *f =
        kiln_tensor_from(g, KILN_F32, KILN_SHAPE(4), (const float[]){1.7f, -1.7f, 2.5f, -0.5f});
    show(s, "f = torch.tensor([1.7, -1.7, 2.5, -0.5])", f);
    show(s, "f.to(torch.int64)", kiln_cast(g, f, KILN_I64));
    show(s, "f.to(torch.int32)", kiln_cast(g, f, KILN_I32));
    show(s, "f.to(torch.float64)", kiln_cast(g, f, KILN_F64));
    show(s, "(f > 0).to(torch.float32)", kiln_cast(g, kiln_gt(g, f, kiln_scalar(g, 0)), KILN_F32));
    kiln_tensor *ar = kiln_arange(g, KILN_I64, 0, 5, 1);
    show(s, "torch.arange(5) / 2", kiln_div(g, ar, kiln_scalar(g, 2)));
    show(s, "torch.arange(5) * 0.5", kiln_mul(g, ar, kiln_scalar(g, 0.5)));
    show(s, "f.to(torch.float64) + f", kiln_add(g, kiln_cast(g, f, KILN_F64), f));
    finish(s);
}

static void slicing(section *s)
{
    begin(s, "Slicing");
    kiln_graph *g = s->g;
    kiln_tensor *x =
        kiln_tensor_from(g, KILN_I64, KILN_SHAPE(3, 2), (const int64_t[]){1, 2, 3, 4, 5, 6});
    show(s, "x", x);
    show(s, "x[:, 1]", kiln_select(g, x, 1, 1));
    show(s, "x[0, :]", kiln_select(g, x, 0, 0));
    kiln_tensor *x11 = kiln_select(g, kiln_select(g, x, 0, 1), 0, 1);
    show(s, "x[1, 1]", x11);
    value(s, "x[1, 1].item():", x11);
    show(s, "x[1:]", kiln_slice(g, x, 0, 1, INT64_MAX, 1));
    show(s, "x[::2]", kiln_slice(g, x, 0, 0, INT64_MAX, 2));
    show(s, "x[:, -1]", kiln_select(g, x, 1, -1));

    kiln_tensor *x3 = kiln_reshape(g, kiln_arange(g, KILN_I64, 1, 10, 1), KILN_SHAPE(1, 3, 3));
    show(s, "x3 = torch.arange(1, 10).reshape(1, 3, 3)", x3);
    say(s, "x3.shape: %s", size_str(x3));
    kiln_tensor *x3_0 = kiln_select(g, x3, 0, 0);
    show(s, "x3[0]", x3_0);
    show(s, "x3[0][0]", kiln_select(g, x3_0, 0, 0));
    value(s, "x3[0][0][0]:", kiln_select(g, kiln_select(g, x3_0, 0, 0), 0, 0));
    show(s, "x3[:, 0]", kiln_select(g, x3, 1, 0));
    show(s, "x3[:, :, 1]", kiln_select(g, x3, 2, 1));
    show(s, "x3[:, 1, 1]", kiln_select(g, kiln_select(g, x3, 1, 1), 1, 1));
    show(s, "x3[0, 0, :]", kiln_select(g, kiln_select(g, x3, 0, 0), 0, 0));
    value(s, "torch.tensor([-0.0352]).item():",
          kiln_tensor_from(g, KILN_F32, KILN_SHAPE(1), (const float[]){-0.0352f}));
    finish(s);
}

static void reshaping(section *s)
{
    begin(s, "Reshaping");
    kiln_graph *g = s->g;
    kiln_tensor *x =
        kiln_tensor_from(g, KILN_I64, KILN_SHAPE(3, 2), (const int64_t[]){1, 2, 3, 4, 5, 6});
    show(s, "x.view(2, 3)", kiln_view(g, x, KILN_SHAPE(2, 3)));
    show(s, "x.view(6, -1)", kiln_view(g, x, KILN_SHAPE(6, -1)));
    kiln_tensor *r = kiln_randn(g, KILN_F32, KILN_SHAPE(4, 4));
    say(s, "%s %s %s", size_str(r), size_str(kiln_view(g, r, KILN_SHAPE(16))),
        size_str(kiln_view(g, r, KILN_SHAPE(-1, 8))));

    kiln_tensor *v = kiln_tensor_from(g, KILN_I64, KILN_SHAPE(4), (const int64_t[]){1, 2, 3, 4});
    show(s, "v.unsqueeze(dim=0)", kiln_unsqueeze(g, v, 0));
    show(s, "v.unsqueeze(dim=1)", kiln_unsqueeze(g, v, 1));
    kiln_tensor *t = kiln_reshape(g, kiln_arange(g, KILN_I64, 0, 6, 1), KILN_SHAPE(1, 2, 1, 3));
    say(s, "t.shape: %s", size_str(t));
    show(s, "t.squeeze()", kiln_squeeze(g, t, KILN_ALL));
    say(s, "t.squeeze(0).shape: %s", size_str(kiln_squeeze(g, t, 0)));

    kiln_tensor *img = kiln_rand(g, KILN_F32, KILN_SHAPE(224, 224, 3));
    say(s, "Previous shape: %s", size_str(img));
    say(s, "New shape: %s", size_str(kiln_permute(g, img, (const int[]){2, 0, 1})));
    kiln_tensor *p = kiln_reshape(g, kiln_arange(g, KILN_I64, 0, 6, 1), KILN_SHAPE(1, 2, 3));
    show(s, "p.permute(2, 0, 1)", kiln_permute(g, p, (const int[]){2, 0, 1}));
    show(s, "x.T", kiln_transpose(g, x, 0, 1));
    kiln_tensor *const vv[] = {v, v}, *const xx[] = {x, x};
    show(s, "torch.stack([v, v])", kiln_stack(g, 2, vv, 0));
    show(s, "torch.stack([v, v], dim=1)", kiln_stack(g, 2, vv, 1));
    show(s, "torch.cat([x, x], dim=1)", kiln_concat(g, 2, xx, 1));
    kiln_tensor *cube = kiln_reshape(g, kiln_arange(g, KILN_I64, 0, 8, 1), KILN_SHAPE(2, 2, 2));
    show(s, "torch.flatten(torch.arange(8).reshape(2, 2, 2))", kiln_flatten(g, cube, 0, -1));
    finish(s);
}

static void arithmetic(section *s)
{
    begin(s, "Arithmetic and broadcasting");
    kiln_graph *g = s->g;
    kiln_tensor *a = kiln_ones(g, KILN_F32, KILN_SHAPE(3, 2));
    kiln_tensor *b = kiln_ones(g, KILN_F32, KILN_SHAPE(3, 2));
    show(s, "a + b", kiln_add(g, a, b));
    show(s, "a - b", kiln_sub(g, a, b));
    show(s, "a * b", kiln_mul(g, a, b));
    kiln_tensor *m = kiln_tensor_from(g, KILN_F32, KILN_SHAPE(2, 2), (const float[]){1, 2, 3, 4});
    show(s, "m = torch.tensor([[1., 2.], [3., 4.]])", m);
    show(s, "m / 2", kiln_div(g, m, kiln_scalar(g, 2)));
    show(s, "m ** 2", kiln_pow(g, m, kiln_scalar(g, 2)));
    show(s, "m.sqrt()", kiln_sqrt(g, m));
    show(s, "-m", kiln_neg(g, m));
    /* not m.exp(): PyTorch's f32 exp(4) is 1 ulp above the correctly rounded
     * 54.598148 that Kiln computes, and the two print differently (54.5982) */
    show(s, "(-m).exp()", kiln_exp(g, kiln_neg(g, m)));

    /* (3, 1) op (4,) broadcasts to (3, 4) */
    kiln_tensor *col = kiln_reshape(g, kiln_arange(g, KILN_I64, 0, 3, 1), KILN_SHAPE(3, 1));
    kiln_tensor *row = kiln_arange(g, KILN_I64, 0, 4, 1);
    show(s, "col + row", kiln_add(g, col, row));
    show(s, "col * 10 + row", kiln_add(g, kiln_mul(g, col, kiln_scalar(g, 10)), row));
    show(s, "m + torch.tensor([10., 20.])",
         kiln_add(g, m, kiln_tensor_from(g, KILN_F32, KILN_SHAPE(2), (const float[]){10, 20})));
    show(s, "torch.arange(4) + 0.5", kiln_add(g, row, kiln_scalar(g, 0.5)));

    kiln_graph *eg = kiln_graph_new();
    kiln_add(eg, kiln_ones(eg, KILN_F32, KILN_SHAPE(2, 3)),
             kiln_ones(eg, KILN_F32, KILN_SHAPE(2, 4)));
    say_error(s, eg);
    finish(s);
}

static void comparisons(section *s)
{
    begin(s, "Comparisons");
    kiln_graph *g = s->g;
    kiln_tensor *v = kiln_tensor_from(g, KILN_I64, KILN_SHAPE(4), (const int64_t[]){1, 2, 3, 4});
    kiln_tensor *m = kiln_tensor_from(g, KILN_F32, KILN_SHAPE(2, 2), (const float[]){1, 2, 3, 4});
    show(s, "v > 2", kiln_gt(g, v, kiln_scalar(g, 2)));
    show(
        s, "v == torch.tensor([1, 0, 3, 0])",
        kiln_eq(g, v, kiln_tensor_from(g, KILN_I64, KILN_SHAPE(4), (const int64_t[]){1, 0, 3, 0})));
    show(s, "m <= 2", kiln_le(g, m, kiln_scalar(g, 2)));
    show(s, "torch.where(v > 2, v, 0)",
         kiln_where(g, kiln_gt(g, v, kiln_scalar(g, 2)), v, kiln_scalar(g, 0)));
    finish(s);
}

static void matmul(section *s)
{
    begin(s, "Matrix multiplication");
    kiln_graph *g = s->g;
    kiln_tensor *A = kiln_reshape(g, kiln_arange(g, KILN_F32, 0, 6, 1), KILN_SHAPE(2, 3));
    kiln_tensor *B = kiln_reshape(g, kiln_arange(g, KILN_F32, 0, 6, 1), KILN_SHAPE(3, 2));
    show(s, "A @ B", kiln_matmul(g, A, B)); /* (2, 3) @ (3, 2) -> (2, 2) */
    show(s, "B @ A", kiln_matmul(g, B, A)); /* (3, 2) @ (2, 3) -> (3, 3) */

    kiln_tensor *X = kiln_rand(g, KILN_F32, KILN_SHAPE(100, 4)); /* 100 samples, 4 features */
    kiln_tensor *W = kiln_rand(g, KILN_F32, KILN_SHAPE(3, 4));   /* 3 units, 4 inputs */
    kiln_tensor *WT = kiln_transpose(g, W, 0, 1);
    say(s, "W.T.shape: %s", size_str(WT));
    say(s, "X.matmul(W.T).shape: %s", size_str(kiln_matmul(g, X, WT)));

    /* 1-D @ 1-D is a dot product; 1-D operands gain and lose an axis */
    show(s, "torch.tensor([1, 2, 3]) @ torch.tensor([4, 5, 6])",
         kiln_matmul(g, kiln_tensor_from(g, KILN_I64, KILN_SHAPE(3), (const int64_t[]){1, 2, 3}),
                     kiln_tensor_from(g, KILN_I64, KILN_SHAPE(3), (const int64_t[]){4, 5, 6})));
    show(
        s, "A @ torch.tensor([1., 0., -1.])",
        kiln_matmul(g, A, kiln_tensor_from(g, KILN_F32, KILN_SHAPE(3), (const float[]){1, 0, -1})));
    show(s, "torch.tensor([1., -1.]) @ A",
         kiln_matmul(g, kiln_tensor_from(g, KILN_F32, KILN_SHAPE(2), (const float[]){1, -1}), A));

    /* batched: leading axes broadcast */
    kiln_tensor *P = kiln_reshape(g, kiln_arange(g, KILN_F32, 0, 12, 1), KILN_SHAPE(2, 2, 3));
    kiln_tensor *Q = kiln_reshape(g, kiln_arange(g, KILN_F32, 0, 12, 1), KILN_SHAPE(2, 3, 2));
    show(s, "P @ Q", kiln_matmul(g, P, Q));
    show(s, "P @ B", kiln_matmul(g, P, B));
    kiln_tensor *w =
        kiln_tensor_from(g, KILN_F32, KILN_SHAPE(2, 3), (const float[]){1, 0, 1, 0, 1, 0});
    kiln_tensor *bias = kiln_tensor_from(g, KILN_F32, KILN_SHAPE(2), (const float[]){0.5f, -0.5f});
    show(s, "F.linear(A, w, b)", kiln_linear(g, A, w, bias));

    kiln_graph *eg = kiln_graph_new();
    kiln_matmul(eg, kiln_ones(eg, KILN_F32, KILN_SHAPE(3, 2)),
                kiln_ones(eg, KILN_F32, KILN_SHAPE(3, 2)));
    say_error(s, eg);
    finish(s);
}

static void aggregation(section *s)
{
    begin(s, "Aggregation");
    kiln_graph *g = s->g;
    kiln_tensor *x = kiln_arange(g, KILN_I64, 0, 100, 10);
    kiln_tensor *xf = kiln_cast(g, x, KILN_F32);
    value(s, "Minimum:", kiln_min(g, x, KILN_ALL, false));
    value(s, "Maximum:", kiln_max(g, x, KILN_ALL, false));
    value(s, "Mean:", kiln_mean(g, xf, KILN_ALL, false));
    value(s, "Sum:", kiln_sum(g, x, KILN_ALL, false));
    show(s, "torch.max(x)", kiln_max(g, x, KILN_ALL, false));
    show(s, "torch.min(x)", kiln_min(g, x, KILN_ALL, false));
    show(s, "torch.mean(x.type(torch.float32))", kiln_mean(g, xf, KILN_ALL, false));
    show(s, "torch.sum(x)", kiln_sum(g, x, KILN_ALL, false));

    kiln_graph *eg = kiln_graph_new();
    kiln_mean(eg, kiln_arange(eg, KILN_I64, 0, 100, 10), KILN_ALL, false);
    say_error(s, eg);

    kiln_tensor *t = kiln_arange(g, KILN_I64, 10, 100, 10);
    show(s, "Tensor:", t);
    value(s, "Index where max value occurs:", kiln_argmax(g, t, KILN_ALL, false));
    value(s, "Index where min value occurs:", kiln_argmin(g, t, KILN_ALL, false));

    kiln_tensor *m =
        kiln_tensor_from(g, KILN_F32, KILN_SHAPE(2, 3), (const float[]){1, 5, 3, 4, 2, 6});
    show(s, "m = torch.tensor([[1., 5., 3.], [4., 2., 6.]])", m);
    show(s, "m.sum(dim=0)", kiln_sum(g, m, 0, false));
    show(s, "m.sum(dim=1)", kiln_sum(g, m, 1, false));
    show(s, "m.sum(dim=1, keepdim=True)", kiln_sum(g, m, 1, true));
    show(s, "m.sum(dim=(0, 1))", kiln_sum_axes(g, m, 2, (const int[]){0, 1}, false));
    show(s, "m.mean(dim=0)", kiln_mean(g, m, 0, false));
    show(s, "m.mean()", kiln_mean(g, m, KILN_ALL, false));
    show(s, "m.max(dim=1).values", kiln_max(g, m, 1, false));
    show(s, "m.min(dim=0).values", kiln_min(g, m, 0, false));
    show(s, "m.argmax(dim=1)", kiln_argmax(g, m, 1, false));
    show(s, "m.argmin(dim=0)", kiln_argmin(g, m, 0, false));
    show(s, "m.argmax()", kiln_argmax(g, m, KILN_ALL, false));
    value(s, "m.max().item():", kiln_max(g, m, KILN_ALL, false));
    finish(s);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i += 2) {
        const char *v = i + 1 < argc ? argv[i + 1] : "";
        if (!sample_target_arg(argv[i], v, &target)) {
            fprintf(stderr, "usage: tensor_basics [--target c|interp|cuda | --device cpu|cuda]\n");
            return 2;
        }
    }
    if (target == KILN_TARGET_CUDA) { /* is there a GPU? (torch.cuda.is_available()) */
        kiln_graph *g = kiln_graph_new();
        kiln_tensor *x = kiln_ones(g, KILN_F32, KILN_SHAPE(1));
        kiln_entry(g, "f", 1, &x, NULL);
        kiln_module *m = NULL;
        kiln_status st = kiln_compile(g, &(kiln_compile_opts){.target = target}, &m);
        if (st != KILN_OK)
            fprintf(stderr, "tensor_basics: %s\n", kiln_graph_error(g));
        kiln_module_free(m);
        kiln_graph_free(g);
        if (st != KILN_OK)
            return st == KILN_ERR_DEVICE ? 77 : 1;
    }
    static section s;
    initialize(&s);
    dtypes(&s);
    slicing(&s);
    reshaping(&s);
    arithmetic(&s);
    comparisons(&s);
    matmul(&s);
    aggregation(&s);
    return 0;
}
