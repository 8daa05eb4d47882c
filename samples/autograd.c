/*
 * autograd.c - PyTorch's autograd tutorials, spelled in Kiln.
 *
 * Gradients of means and sums, partial derivatives, a non-scalar output
 * differentiated with a seed vector, detach, the equivalent of no_grad and
 * the error for an implicit seed on a non-scalar output, printed exactly as
 * PyTorch prints them. tests/ref/autograd.py is the same program in PyTorch;
 * its output is tests/expected/autograd.txt, which ctest compares with ours
 * byte for byte.
 *
 * Kiln has no requires_grad and no .grad: kiln_grad adds the gradient of an
 * output with respect to the tensors it is given to the graph, as ordinary
 * tensors, and nothing is differentiated unless it is asked. So PyTorch's
 * leaves that require grad are params here, computed values print without
 * grad_fn (the reference prints them detached), and a gradient is printed
 * where PyTorch prints the .grad that backward() left on a leaf.
 * Each section builds a graph, compiles it for the C target, runs it and
 * prints what it collected, in order.
 */
#include <kiln.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- printing helpers --------------------------------------------------------- */

enum { MAX_ITEMS = 32 };

typedef enum {
    LINE,   /* a line of text, known when the graph is built */
    TENSOR, /* a label, then the tensor as PyTorch prints it */
    INLINE  /* print(label, t): the label and the tensor on one line */
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
    fprintf(stderr, "autograd: %s: %s\n", what, msg);
    exit(1);
}

static item *add_item(section *s, item_kind kind, kiln_tensor *t, const char *text)
{
    if (s->n == MAX_ITEMS)
        die("section", "too many items");
    item *it = &s->items[s->n++];
    it->kind = kind;
    it->t = t;
    snprintf(it->text, sizeof it->text, "%s", text);
    return it;
}

static void say(section *s, const char *text)
{
    add_item(s, LINE, NULL, text);
}
static void show(section *s, const char *label, kiln_tensor *t)
{
    add_item(s, TENSOR, t, label);
}
static void inline_(section *s, const char *label, kiln_tensor *t)
{
    add_item(s, INLINE, t, label);
}

/* The error a failing call left on its own graph, as a line. */
static void say_error(section *s, kiln_graph *eg)
{
    say(s, kiln_graph_error(eg));
    kiln_graph_free(eg);
}

/* grads[i] = d(sum(seed * y)) / d(wrt[i]), like y.backward(seed) followed by
 * reading wrt[i].grad; seed NULL for a one-element y, like y.backward(). */
static void grad(section *s, kiln_tensor *y, int n, kiln_tensor *const *wrt, kiln_tensor *seed,
                 kiln_tensor **grads)
{
    if (kiln_grad(s->g, y, n, wrt, seed, grads) != KILN_OK)
        die("kiln_grad", kiln_graph_error(s->g));
}

static kiln_tensor *grad1(section *s, kiln_tensor *y, kiln_tensor *x, kiln_tensor *seed)
{
    kiln_tensor *dx = NULL;
    grad(s, y, 1, &x, seed, &dx);
    return dx;
}

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

/* Compiles the section's graph for the default (C) target, runs it `runs`
 * times and prints every item after each run, in the order it was asked for;
 * with several runs, tensor labels start with "epoch <run>: ". */
static void finish_runs(section *s, int runs)
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
        if (kiln_compile(s->g, NULL, &m) != KILN_OK)
            die("kiln_compile", kiln_graph_error(s->g));
    }
    for (int run = 0; run < runs; run++) {
        if (m && kiln_module_run(m, "show") != KILN_OK)
            die("kiln_module_run", kiln_module_error(m));
        for (int i = 0; i < s->n; i++) {
            item *it = &s->items[i];
            switch (it->kind) {
            case LINE: puts(it->text); break;
            case TENSOR:
                if (runs > 1)
                    printf("epoch %d: ", run);
                puts(it->text);
                if (kiln_module_print(m, namebuf[i], stdout) != KILN_OK)
                    die(it->text, kiln_module_error(m));
                break;
            case INLINE:
                printf("%s ", it->text);
                if (kiln_module_print(m, namebuf[i], stdout) != KILN_OK)
                    die(it->text, kiln_module_error(m));
                break;
            }
        }
    }
    fflush(stdout);
    kiln_module_free(m);
    kiln_graph_free(s->g);
}

static void finish(section *s)
{
    finish_runs(s, 1);
}

/* A scalar leaf that "requires grad": a rank-0 float32 param. */
static kiln_tensor *scalar_param(kiln_graph *g, const char *name, double v)
{
    return kiln_param(g, name, KILN_F32, 0, NULL, kiln_init_const(v));
}

/* ---- the tutorials ---------------------------------------------------------- */

static void mean_grad(section *s)
{
    begin(s, "Gradient of a mean");
    kiln_graph *g = s->g;
    kiln_tensor *x = kiln_param(g, "x", KILN_F32, KILN_SHAPE(2, 2), kiln_init_ones());
    show(s, "x = torch.ones(2, 2, requires_grad=True)", x);
    kiln_tensor *y = kiln_add(g, x, kiln_scalar(g, 2));
    show(s, "y = x + 2", y);
    kiln_tensor *z = kiln_mul(g, kiln_mul(g, y, y), kiln_scalar(g, 3));
    show(s, "z = y * y * 3", z);
    kiln_tensor *out = kiln_mean(g, z, KILN_ALL, false);
    inline_(s, "out = z.mean():", out);
    show(s, "x.grad", grad1(s, out, x, NULL));
    finish(s);
}

static void sum_grad(section *s)
{
    begin(s, "Gradient of a sum");
    kiln_graph *g = s->g;
    kiln_tensor *x = kiln_param(g, "x", KILN_F32, KILN_SHAPE(3, 2), kiln_init_ones());
    kiln_tensor *sq = kiln_pow(g, kiln_add(g, x, kiln_scalar(g, 5)), kiln_scalar(g, 2));
    kiln_tensor *z = kiln_sum(g, kiln_add(g, sq, kiln_scalar(g, 1)), KILN_ALL, false);
    inline_(s, "z = torch.sum((x + 5) ** 2 + 1):", z);
    show(s, "x.grad", grad1(s, z, x, NULL));
    finish(s);
}

static void partials(section *s)
{
    begin(s, "Partial derivatives");
    kiln_graph *g = s->g;
    kiln_tensor *x = scalar_param(g, "x", 2.0), *y = scalar_param(g, "y", 1.0);
    kiln_tensor *z = kiln_add(g, kiln_mul(g, kiln_scalar(g, 2), kiln_pow(g, x, kiln_scalar(g, 2))),
                              kiln_mul(g, kiln_scalar(g, 3), kiln_pow(g, y, kiln_scalar(g, 3))));
    inline_(s, "z = 2 * x**2 + 3 * y**3:", z);
    kiln_tensor *const wrt[] = {x, y};
    kiln_tensor *d[2];
    grad(s, z, 2, wrt, NULL, d);
    inline_(s, "dz/dx", d[0]);
    inline_(s, "dz/dy", d[1]);
    finish(s);
}

static void basic_grad(section *s)
{
    begin(s, "Basic grad");
    kiln_graph *g = s->g;
    kiln_tensor *a = scalar_param(g, "a", 1.0);
    kiln_tensor *b = kiln_pow(g, a, kiln_scalar(g, 2));
    kiln_tensor *c = kiln_mul(g, kiln_scalar(g, 5), b);
    inline_(s, "c = 5 * a**2:", c);
    inline_(s, "a.grad", grad1(s, c, a, NULL));
    finish(s);
}

static void linear(section *s)
{
    begin(s, "Tensor operations and gradients");
    kiln_graph *g = s->g;
    kiln_tensor *x = kiln_tensor_from(g, KILN_F32, 0, NULL, (const float[]){3});
    kiln_tensor *w = scalar_param(g, "w", 4.0), *b = scalar_param(g, "b", 5.0);
    kiln_tensor *y = kiln_add(g, kiln_mul(g, w, x), b);
    inline_(s, "y = w * x + b:", y);
    kiln_tensor *const wrt[] = {w, b};
    kiln_tensor *d[2];
    grad(s, y, 2, wrt, NULL, d);
    /* x is a constant that does not require grad: PyTorch's x.grad is None,
     * and Kiln is simply not asked for it */
    say(s, "dy/dx None");
    inline_(s, "dy/dw", d[0]);
    inline_(s, "dy/db", d[1]);
    finish(s);
}

static void non_scalar(section *s)
{
    begin(s, "Non-scalar backward");
    kiln_graph *g = s->g;
    kiln_tensor *x =
        kiln_param(g, "x", KILN_F32, KILN_SHAPE(3), kiln_init_data((const float[]){1, 2, 3}));
    kiln_tensor *y = kiln_mul(g, x, kiln_scalar(g, 2));
    show(s, "y = x * 2", y);
    kiln_tensor *v =
        kiln_tensor_from(g, KILN_F32, KILN_SHAPE(3), (const float[]){0.1f, 1.0f, 0.0001f});
    show(s, "x.grad after y.backward(torch.tensor([0.1, 1.0, 0.0001]))", grad1(s, y, x, v));

    /* the gradient of x + 2 is the seed, whatever x holds */
    kiln_tensor *r = kiln_param(g, "r", KILN_F32, KILN_SHAPE(3), kiln_init_uniform(0, 1));
    kiln_tensor *v2 =
        kiln_tensor_from(g, KILN_F32, KILN_SHAPE(3), (const float[]){0.1f, 0.1f, 0.001f});
    show(s, "x.grad after (torch.rand(3) + 2).backward(torch.tensor([0.1, 0.1, 0.001]))",
         grad1(s, kiln_add(g, r, kiln_scalar(g, 2)), r, v2));
    finish(s);
}

static void prevent_history(section *s)
{
    begin(s, "Prevent gradient history");
    kiln_graph *g = s->g;
    kiln_tensor *x =
        kiln_param(g, "x", KILN_F32, KILN_SHAPE(3), kiln_init_data((const float[]){1, 2, 3}));
    show(s, "x.detach()", kiln_detach(g, x));
    kiln_tensor *xx = kiln_mul(g, x, x);
    show(s, "x.grad of (x * x).sum()", grad1(s, kiln_sum(g, xx, KILN_ALL, false), x, NULL));
    /* a detached operand is a constant to kiln_grad: d(x * c)/dx = c */
    kiln_tensor *xd = kiln_mul(g, x, kiln_detach(g, x));
    show(s, "x.grad of (x * x.detach()).sum()",
         grad1(s, kiln_sum(g, xd, KILN_ALL, false), x, NULL));
    kiln_tensor *xxd = kiln_mul(g, kiln_detach(g, xx), x);
    show(s, "x.grad of ((x * x).detach() * x).sum()",
         grad1(s, kiln_sum(g, xxd, KILN_ALL, false), x, NULL));
    /* torch.no_grad(): Kiln differentiates only when kiln_grad is asked, so a
     * value computed without asking is just a value */
    show(s, "with torch.no_grad(): y = x + 2", kiln_add(g, x, kiln_scalar(g, 2)));
    finish(s);
}

static void reset_grad(section *s)
{
    begin(s, "Reset grad");
    kiln_graph *g = s->g;
    kiln_tensor *weights = kiln_param(g, "weights", KILN_F32, KILN_SHAPE(4), kiln_init_ones());
    kiln_tensor *model_output =
        kiln_sum(g, kiln_mul(g, weights, kiln_scalar(g, 3)), KILN_ALL, false);
    /* each run computes the gradient afresh: there is no .grad to accumulate
     * into, so nothing to zero between epochs */
    show(s, "weights.grad", grad1(s, model_output, weights, NULL));
    finish_runs(s, 3);
}

static void errors(section *s)
{
    begin(s, "Errors");
    kiln_graph *eg = kiln_graph_new();
    kiln_tensor *a = kiln_param(eg, "a", KILN_F32, KILN_SHAPE(2), kiln_init_ones());
    kiln_tensor *b = kiln_pow(eg, a, kiln_scalar(eg, 2));
    kiln_tensor *da = NULL;
    if (kiln_grad(eg, b, 1, &a, NULL, &da) == KILN_OK)
        die("kiln_grad", "no error for a non-scalar output without a seed");
    say_error(s, eg);
    finish(s);
}

int main(void)
{
    static section s;
    mean_grad(&s);
    sum_grad(&s);
    partials(&s);
    basic_grad(&s);
    linear(&s);
    non_scalar(&s);
    prevent_history(&s);
    reset_grad(&s);
    errors(&s);
    return 0;
}
