/*
 * kernel.c - builders, printer and verifier of the kernel IR (ir/kernel.h).
 *
 * kk_expr hash-conses: a node equal to one already in the kernel is reused,
 * and pure I64 index arithmetic on constants is folded (x*1, x+0, x%1, ...),
 * so lowering can build index maps naively and still print clean kernels.
 * kp_print writes the stable text form documented in docs/kernel-ir.md.
 */
#include "ir/kernel.h"

#include <string.h>

/* ---- building ----------------------------------------------------------------- */

static bool grow(void **arr, int *cap, int need, size_t elem)
{
    if (need <= *cap)
        return true;
    int nc = *cap ? *cap * 2 : 16;
    while (nc < need)
        nc *= 2;
    void *p = ir_realloc(*arr, elem * (size_t)nc);
    if (!p)
        return false;
    *arr = p;
    *cap = nc;
    return true;
}

static bool same_node(const kx_node *a, const kx_node *b)
{
    return a->kind == b->kind && a->dtype == b->dtype && a->op == b->op && a->a[0] == b->a[0] &&
           a->a[1] == b->a[1] && a->a[2] == b->a[2] && a->var == b->var && a->buf == b->buf &&
           memcmp(&a->value, &b->value, sizeof(double)) == 0 && a->ivalue == b->ivalue &&
           a->stream == b->stream && a->size == b->size && a->axis == b->axis;
}

static const kx_node *icon(const kernel *k, int i)
{
    const kx_node *n = &k->x[i];
    return n->kind == KX_CONST && n->dtype == KILN_I64 ? n : NULL;
}

static int64_t wadd(int64_t a, int64_t b)
{
    return (int64_t)((uint64_t)a + (uint64_t)b);
}

static int64_t wmul(int64_t a, int64_t b)
{
    return (int64_t)((uint64_t)a * (uint64_t)b);
}

/* Folds n when it is I64 index arithmetic with constant or neutral operands.
 * Returns the index of an existing node, -2 to make a new constant (*cv), or
 * -1 when nothing folds. */
static int fold(kernel *k, const kx_node *n, int64_t *cv, kiln_dtype *cdt)
{
    *cdt = KILN_I64;
    if ((n->kind == KX_IDIV || n->kind == KX_IMOD) && n->a[0] >= 0 && n->a[0] < k->nx &&
        n->a[1] >= 0 && n->a[1] < k->nx) {
        const kx_node *x = icon(k, n->a[0]), *y = icon(k, n->a[1]);
        if (x && y && y->ivalue > 0) {
            *cv = n->kind == KX_IDIV ? x->ivalue / y->ivalue : x->ivalue % y->ivalue;
            return -2;
        }
        if (y && y->ivalue == 1) {
            *cv = 0;
            return n->kind == KX_IDIV ? n->a[0] : -2;
        }
        if (x && x->ivalue == 0)
            return n->a[0];
        return -1;
    }
    if (n->kind == KX_OP && n->op == IR_WHERE && n->a[0] >= 0 && n->a[0] < k->nx) {
        const kx_node *c = &k->x[n->a[0]];
        if (c->kind == KX_CONST)
            return c->value != 0 ? n->a[1] : n->a[2];
        return n->a[1] == n->a[2] ? n->a[1] : -1;
    }
    if (n->kind != KX_OP || n->dtype == KILN_F32 || n->dtype == KILN_F64)
        return -1;
    if (n->dtype != KILN_I64 && !(n->dtype == KILN_BOOL && (n->op == IR_LT || n->op == IR_GE)))
        return -1;
    if (n->op < 0 || n->op >= IR_OP_COUNT || n->a[0] < 0 || n->a[0] >= k->nx ||
        (ir_ops[n->op].arity >= 2 && (n->a[1] < 0 || n->a[1] >= k->nx)))
        return -1;
    const kx_node *x = icon(k, n->a[0]), *y = ir_ops[n->op].arity >= 2 ? icon(k, n->a[1]) : NULL;
    /* Only the ops index arithmetic is made of fold; any other op is left as it is. */
    if (n->op == IR_ADD) {
        if (x && y)
            return *cv = wadd(x->ivalue, y->ivalue), -2;
        if (y && y->ivalue == 0)
            return n->a[0];
        if (x && x->ivalue == 0)
            return n->a[1];
    } else if (n->op == IR_SUB) {
        if (x && y)
            return *cv = (int64_t)((uint64_t)x->ivalue - (uint64_t)y->ivalue), -2;
        if (y && y->ivalue == 0)
            return n->a[0];
    } else if (n->op == IR_MUL) {
        if (x && y)
            return *cv = wmul(x->ivalue, y->ivalue), -2;
        if ((y && y->ivalue == 0) || (x && x->ivalue == 0))
            return *cv = 0, -2;
        if (y && y->ivalue == 1)
            return n->a[0];
        if (x && x->ivalue == 1)
            return n->a[1];
    } else if (n->op == IR_MINIMUM) {
        if (x && y)
            return *cv = x->ivalue < y->ivalue ? x->ivalue : y->ivalue, -2;
        return n->a[0] == n->a[1] ? n->a[0] : -1;
    } else if ((n->op == IR_LT || n->op == IR_GE) && x && y) {
        *cdt = KILN_BOOL;
        *cv = n->op == IR_LT ? x->ivalue < y->ivalue : x->ivalue >= y->ivalue;
        return -2;
    }
    return -1;
}

int kx_operands(const kx_node *n, int ops[3])
{
    int ar = 0;
    switch (n->kind) {
    case KX_CONST:
    case KX_VAR:
    case KX_ACC: ar = 0; break;
    case KX_LOAD:
    case KX_RAND:
    case KX_RANDN:
    case KX_CHECK: ar = 1; break;
    case KX_IDIV:
    case KX_IMOD: ar = 2; break;
    case KX_OP:
        ar = n->op >= 0 && n->op < IR_OP_COUNT ? ir_ops[n->op].arity : 0;
        ar = ar < 0 ? 0 : ar > 3 ? 3 : ar;
        break;
    }
    for (int j = 0; j < ar; j++)
        ops[j] = n->a[j];
    return ar;
}

/* Whether node n can fail at run time: a bounds check, an integer division
 * or power. */
static bool node_fails(const kx_node *n)
{
    return n->kind == KX_CHECK || (n->kind == KX_OP && (n->op == IR_DIV || n->op == IR_POW) &&
                                   !ir_dtype_is_float(n->dtype));
}

bool kk_can_fail(const kernel *k)
{
    for (int i = 0; i < k->nx; i++)
        if (node_fails(&k->x[i]))
            return true;
    return false;
}

static uint64_t node_hash(const kx_node *n)
{
    uint64_t h = 1469598103934665603ull, bits;
    memcpy(&bits, &n->value, sizeof bits);
#define MIX(v) (h = (h ^ (uint64_t)(v)) * 1099511628211ull)
    MIX(n->kind);
    MIX(n->dtype);
    MIX(n->op);
    MIX((uint32_t)n->a[0]);
    MIX((uint32_t)n->a[1]);
    MIX((uint32_t)n->a[2]);
    MIX((uint32_t)n->var);
    MIX((uint32_t)n->buf);
    MIX(bits);
    MIX(n->ivalue);
    MIX(n->stream);
    MIX(n->size);
    MIX((uint32_t)n->axis);
#undef MIX
    return h ^ (h >> 29);
}

/* Puts x[i] in the map, replacing an equal node's slot: the map keeps the
 * last of equal nodes, as a scan from the end would find. */
static void xmap_put(kernel *k, int i)
{
    size_t mask = (size_t)k->capxmap - 1, at = (size_t)node_hash(&k->x[i]) & mask;
    while (k->xmap[at] && !same_node(&k->x[k->xmap[at] - 1], &k->x[i]))
        at = (at + 1) & mask;
    k->xmap[at] = i + 1;
}

/* Brings the map up to x[0..nx) (nodes appended without kk_expr, a copied or
 * shrunk kernel); false when out of memory (callers then scan). */
static bool xmap_sync(kernel *k)
{
    if (k->nxmap > k->nx || !k->xmap || (size_t)k->capxmap < 2 * (size_t)(k->nx + 1)) {
        int cap = 64;
        while ((size_t)cap < 4 * (size_t)(k->nx + 1))
            cap *= 2;
        if (cap != k->capxmap || !k->xmap) {
            int *m = ir_alloc(sizeof(int) * (size_t)cap);
            if (!m)
                return false;
            ir_free(k->xmap);
            k->xmap = m;
            k->capxmap = cap;
        }
        memset(k->xmap, 0, sizeof(int) * (size_t)k->capxmap);
        k->nxmap = 0;
    }
    for (; k->nxmap < k->nx; k->nxmap++)
        xmap_put(k, k->nxmap);
    return true;
}

/* The last node of x equal to n, or -1. */
static int find_node(kernel *k, const kx_node *n)
{
    if (xmap_sync(k)) {
        size_t mask = (size_t)k->capxmap - 1, at = (size_t)node_hash(n) & mask;
        for (; k->xmap[at]; at = (at + 1) & mask)
            if (same_node(&k->x[k->xmap[at] - 1], n))
                return k->xmap[at] - 1;
        return -1;
    }
    for (int i = k->nx - 1; i >= 0; i--)
        if (same_node(&k->x[i], n))
            return i;
    return -1;
}

/* Moves a select below the ops its branches share: where(c, f(a1, b1),
 * f(a2, b2)) = f(where(c, a1, a2), where(c, b1, b2)) for the same pure op f,
 * down to where the branches differ. Every node of a kernel is evaluated, so
 * a select otherwise pays for both branches: concat's chain over im2col's 9
 * taps (pads of one tensor at shifted indices) computed 9 indices and 9 loads
 * per element; sunk, it is one index whose per-tap constants are selected by
 * conditions on the tap alone (hoisted out of the inner loops), and one load.
 * A load is such an op (the branches' loads were all evaluated before, so
 * the chosen index is one that was in range); checks, random draws and
 * accumulators are not. -1 when the branches are not the same op. */
static int sink_select(kernel *k, const kx_node *n);

static int select_of(kernel *k, kiln_dtype dt, int c, int a, int b)
{
    return kk_expr(k, (kx_node){.kind = KX_OP, .dtype = dt, .op = IR_WHERE, .a = {c, a, b}});
}

/* where(c, p + q, q) = where(c, p, 0) + q (and the mirrored forms) for I64
 * indices: a tap at offset 0 is the other taps' sum with nothing added. -1
 * when neither branch is the other plus something. */
static int sink_offset(kernel *k, int c, int a, int b)
{
    for (int flip = 0; flip < 2; flip++) {
        int sum = flip ? b : a, other = flip ? a : b;
        const kx_node x = k->x[sum]; /* a copy: new nodes may move k->x */
        if (x.kind != KX_OP || x.op != IR_ADD || x.dtype != KILN_I64)
            continue;
        for (int side = 0; side < 2; side++) {
            if (x.a[side] != other)
                continue;
            int zero = kk_const_i(k, KILN_I64, 0), rest = x.a[1 - side];
            int sel = zero < 0 ? -1
                      : flip   ? select_of(k, KILN_I64, c, zero, rest)
                               : select_of(k, KILN_I64, c, rest, zero);
            if (sel < 0)
                return -1;
            kx_node r = x;
            r.a[1 - side] = sel;
            return kk_expr(k, r);
        }
    }
    return -1;
}

static int sink_select(kernel *k, const kx_node *n)
{
    int c = n->a[0], a = n->a[1], b = n->a[2];
    const kx_node *x = &k->x[a], *y = &k->x[b];
    if (n->dtype == KILN_I64 && (x->kind != y->kind || x->op != y->op))
        return sink_offset(k, c, a, b);
    bool pure = x->kind == KX_OP || x->kind == KX_IDIV || x->kind == KX_IMOD || x->kind == KX_LOAD;
    if (!pure || x->kind != y->kind || x->dtype != y->dtype || x->op != y->op ||
        (x->kind == KX_LOAD && x->buf != y->buf))
        return -1;
    /* where(c, where(d, ..), where(d, ..)) would become where(d, where(c, ..),
     * where(c, ..)): the same selects swapped, which sink back (a cycle) */
    if (x->kind == KX_OP && x->op == IR_WHERE && x->a[0] == y->a[0])
        return -1;
    int xa[3], ya[3], ar = kx_operands(x, xa);
    kx_operands(y, ya);
    kx_node r = *x;
    for (int i = 0; i < ar; i++) {
        kiln_dtype dt = k->x[xa[i]].dtype;
        if (k->x[ya[i]].dtype != dt)
            return -1;
        r.a[i] = select_of(k, dt, c, xa[i], ya[i]);
        if (r.a[i] < 0)
            return -1;
    }
    return kk_expr(k, r);
}

int kk_expr(kernel *k, kx_node n)
{
    if (!k)
        return -1;
    int64_t cv = 0;
    kiln_dtype cdt = KILN_I64;
    int f = fold(k, &n, &cv, &cdt);
    if (f >= 0)
        return f;
    if (f == -2)
        return cdt == KILN_BOOL ? kk_const_f(k, KILN_BOOL, (double)cv) : kk_const_i(k, cdt, cv);
    int i = find_node(k, &n);
    if (i >= 0)
        return i;
    if (n.kind == KX_OP && n.op == IR_WHERE && (i = sink_select(k, &n)) >= 0)
        return i;
    if (!grow((void **)&k->x, &k->capx, k->nx + 1, sizeof(kx_node)))
        return -1;
    k->x[k->nx] = n;
    return k->nx++;
}

int kk_const_f(kernel *k, kiln_dtype dt, double v)
{
    kx_node n = {.kind = KX_CONST, .dtype = dt};
    switch (dt) {
    case KILN_F32: n.value = (double)(float)v; break;
    case KILN_F64: n.value = v; break;
    case KILN_BOOL: n.value = v != 0 ? 1.0 : 0.0; break;
    case KILN_I32:
    case KILN_I64: {
        int64_t iv[1];
        int32_t i32[1];
        if (dt == KILN_I32) {
            ir_store_f(dt, i32, 0, v);
            n.ivalue = i32[0];
        } else {
            ir_store_f(dt, iv, 0, v);
            n.ivalue = iv[0];
        }
        break;
    }
    }
    return kk_expr(k, n);
}

int kk_const_i(kernel *k, kiln_dtype dt, int64_t v)
{
    kx_node n = {.kind = KX_CONST, .dtype = dt};
    switch (dt) {
    case KILN_F32: n.value = (double)(float)v; break;
    case KILN_F64: n.value = (double)v; break;
    case KILN_BOOL: n.value = v != 0 ? 1.0 : 0.0; break;
    case KILN_I32: n.ivalue = (int32_t)v; break;
    case KILN_I64: n.ivalue = v; break;
    }
    return kk_expr(k, n);
}

int kk_var(kernel *k, int var)
{
    return kk_expr(k, (kx_node){.kind = KX_VAR, .dtype = KILN_I64, .var = var});
}

int kk_store_add(kernel *k, kk_store s)
{
    if (!k || !grow((void **)&k->stores, &k->capstores, k->nstores + 1, sizeof(kk_store)))
        return -1;
    k->stores[k->nstores] = s;
    return k->nstores++;
}

/* Keeps k->nodes sorted and free of duplicates (a node recomputed twice in
 * one kernel is reported once). */
int kk_note_node(kernel *k, int node_id)
{
    if (!k)
        return -1;
    int i = k->nnodes;
    while (i > 0 && k->nodes[i - 1] > node_id)
        i--;
    if (i > 0 && k->nodes[i - 1] == node_id)
        return i - 1;
    if (!grow((void **)&k->nodes, &k->capnodes, k->nnodes + 1, sizeof(int)))
        return -1;
    memmove(k->nodes + i + 1, k->nodes + i, sizeof(int) * (size_t)(k->nnodes - i));
    k->nodes[i] = node_id;
    k->nnodes++;
    return i;
}

kk_phase kk_phase_at(const kernel *k, int q)
{
    if (q >= 0 && q < k->npre)
        return k->pre[q];
    return (kk_phase){.rop = k->rop, .acc_dtype = k->acc_dtype, .body = k->body};
}

int kk_acc_phase(const kernel *k, int var)
{
    return var > 0 ? var - 1 : k->npre;
}

bool kk_has_element_stores(const kernel *k)
{
    for (int i = 0; i < k->nstores; i++)
        if (k->stores[i].element)
            return true;
    return false;
}

kernel *kp_kernel_new(kprogram *p, kk_kind kind)
{
    if (!p || !grow((void **)&p->kernels, &p->capkernels, p->nkernels + 1, sizeof(kernel)))
        return NULL;
    kernel *k = &p->kernels[p->nkernels];
    memset(k, 0, sizeof(*k));
    k->kind = kind;
    k->id = p->nkernels++;
    k->body = -1;
    k->acc_dtype = KILN_F64;
    k->rop = IR_SUM;
    return k;
}

int kp_buf_add(kprogram *p, kbuf b)
{
    if (!p || !grow((void **)&p->bufs, &p->capbufs, p->nbufs + 1, sizeof(kbuf)))
        return -1;
    p->bufs[p->nbufs] = b;
    return p->nbufs++;
}

void kp_free(kprogram *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->nkernels; i++) {
        ir_free(p->kernels[i].x);
        ir_free(p->kernels[i].xmap);
        ir_free(p->kernels[i].stores);
        ir_free(p->kernels[i].nodes);
    }
    for (int i = 0; i < p->nentries; i++) {
        ir_free(p->entries[i].kernels);
        ir_free(p->entries[i].copies);
        ir_free(p->entries[i].shares);
    }
    ir_free(p->entries);
    ir_free(p->kernels);
    ir_free(p->bufs);
    ir_free(p);
}

/* ---- printing ------------------------------------------------------------------ */

static const char *role_name(kb_role r)
{
    switch (r) {
    case KB_INPUT: return "input";
    case KB_PARAM: return "param";
    case KB_OUTPUT: return "output";
    case KB_TEMP: return "temp";
    case KB_CONST: return "const";
    }
    return "?";
}

static const char *kind_name(kk_kind k)
{
    switch (k) {
    case KK_POINTWISE: return "pointwise";
    case KK_REDUCE: return "reduce";
    case KK_MATMUL: return "matmul";
    case KK_ATTENTION: return "attention";
    }
    return "?";
}

static void print_dims(FILE *f, int rank, const int64_t *dims)
{
    fputc('[', f);
    for (int i = 0; i < rank; i++)
        fprintf(f, "%s%lld", i ? ", " : "", (long long)dims[i]);
    fputc(']', f);
}

static void print_buf(const kprogram *p, int i, FILE *f)
{
    const kbuf *b = &p->bufs[i];
    const kiln_graph *g = p->g;
    fprintf(f, "buf%d = %s ", i, role_name(b->role));
    const kiln_tensor *t = g && b->node >= 0 && b->node < g->nnodes ? g->nodes[b->node] : NULL;
    if ((b->role == KB_INPUT || b->role == KB_PARAM) && t && t->name)
        fprintf(f, "\"%s\" ", t->name);
    if (b->role == KB_OUTPUT && g && b->entry >= 0 && b->entry < g->nentries && b->index >= 0 &&
        b->index < g->entries[b->entry].n)
        fprintf(f, "\"%s\" ", g->entries[b->entry].output_names[b->index]);
    fprintf(f, "%s", ir_dtype_kir(b->dtype));
    if (t)
        print_dims(f, t->rank, t->dims);
    else
        fprintf(f, "[%lld]", (long long)b->numel);
    if (b->node >= 0)
        fprintf(f, " %%%d", b->node);
    if (b->role == KB_TEMP)
        fprintf(f, " @%lld", (long long)b->offset);
    fputc('\n', f);
}

static void print_x(const kernel *k, int i, FILE *f)
{
    const kx_node *n = &k->x[i];
    fprintf(f, "    x%d = ", i);
    switch (n->kind) {
    case KX_CONST:
        if (n->dtype == KILN_I32 || n->dtype == KILN_I64)
            fprintf(f, "%lld", (long long)n->ivalue);
        else if (n->dtype == KILN_BOOL)
            fprintf(f, "%s", n->value != 0 ? "true" : "false");
        else
            fprintf(f, "%.17g", n->value);
        break;
    case KX_VAR: fprintf(f, "v%d", n->var); break;
    case KX_LOAD: fprintf(f, "load buf%d[x%d]", n->buf, n->a[0]); break;
    case KX_OP: {
        fprintf(f, "%s", ir_ops[n->op].name);
        int ar = ir_ops[n->op].arity;
        for (int j = 0; j < ar && j < 3; j++)
            fprintf(f, "%sx%d", j ? ", " : " ", n->a[j]);
        break;
    }
    case KX_IDIV: fprintf(f, "idiv x%d, x%d", n->a[0], n->a[1]); break;
    case KX_IMOD: fprintf(f, "imod x%d, x%d", n->a[0], n->a[1]); break;
    case KX_RAND: fprintf(f, "rand stream=%u x%d", (unsigned)n->stream, n->a[0]); break;
    case KX_RANDN: fprintf(f, "randn stream=%u x%d", (unsigned)n->stream, n->a[0]); break;
    case KX_CHECK:
        fprintf(f, "check x%d axis=%d size=%lld", n->a[0], n->axis, (long long)n->size);
        break;
    case KX_ACC:
        if (n->var > 0)
            fprintf(f, "acc%d", n->var);
        else
            fprintf(f, "acc");
        break;
    }
    fprintf(f, " : %s\n", ir_dtype_kir(n->dtype));
}

/* " b cols=(32 x 256, 3 x 16, 3 x 1)": an operand's axes that have parts */
static void print_parts(FILE *f, const char *operand, const kk_parts pp[2])
{
    for (int i = 0; i < 2; i++) {
        if (!pp[i].n)
            continue;
        fprintf(f, " %s %s=(", operand, i ? "cols" : "rows");
        for (int j = 0; j < pp[i].n; j++)
            fprintf(f, "%s%lld x %lld", j ? ", " : "", (long long)pp[i].size[j],
                    (long long)pp[i].stride[j]);
        fprintf(f, ")");
    }
}

static void print_kernel(const kernel *k, FILE *f)
{
    fprintf(f, "%s: %s ", k->name, kind_name(k->kind));
    print_dims(f, k->rank, k->dims);
    switch (k->kind) {
    case KK_POINTWISE: break;
    case KK_REDUCE:
        fprintf(f, " %s over ", ir_ops[k->rop].name);
        print_dims(f, k->rrank, k->rdims);
        for (int q = 0; q < k->npre; q++)
            fprintf(f, "%s acc%d=%s(x%d)", q ? "" : " after", q + 1, ir_ops[k->pre[q].rop].name,
                    k->pre[q].body);
        fprintf(f, " acc=%s body=x%d", ir_dtype_kir(k->acc_dtype), k->body);
        break;
    case KK_MATMUL:
        fprintf(f,
                " k=%lld acc=%s a=buf%d strides [%lld, %lld, %lld] b=buf%d strides [%lld, %lld, "
                "%lld]",
                (long long)k->mm.k, ir_dtype_kir(k->acc_dtype), k->mm.a,
                (long long)k->mm.a_stride[0], (long long)k->mm.a_stride[1],
                (long long)k->mm.a_stride[2], k->mm.b, (long long)k->mm.b_stride[0],
                (long long)k->mm.b_stride[1], (long long)k->mm.b_stride[2]);
        print_parts(f, "a", k->mm.a_parts);
        print_parts(f, "b", k->mm.b_parts);
        break;
    case KK_ATTENTION:
        fprintf(f,
                " keys=%lld dim=%lld scale=%.17g%s q=buf%d strides [%lld, %lld, %lld] k=buf%d "
                "strides [%lld, %lld, %lld] v=buf%d strides [%lld, %lld, %lld]",
                (long long)k->at.s, (long long)k->at.d, k->at.scale, k->at.causal ? " causal" : "",
                k->at.q, (long long)k->at.q_stride[0], (long long)k->at.q_stride[1],
                (long long)k->at.q_stride[2], k->at.k, (long long)k->at.k_stride[0],
                (long long)k->at.k_stride[1], (long long)k->at.k_stride[2], k->at.v,
                (long long)k->at.v_stride[0], (long long)k->at.v_stride[1],
                (long long)k->at.v_stride[2]);
        if (k->at.mode != KA_FORWARD) {
            static const char *const mode[5] = {"", "stats", "dq", "dk", "dv"};
            fprintf(f, " backward=%s g=buf%d strides [%lld, %lld, %lld]", mode[k->at.mode], k->at.g,
                    (long long)k->at.g_stride[0], (long long)k->at.g_stride[1],
                    (long long)k->at.g_stride[2]);
            if (k->at.mode != KA_STATS)
                fprintf(f, " stats=buf%d strides [%lld, %lld, %lld]", k->at.st,
                        (long long)k->at.st_stride[0], (long long)k->at.st_stride[1],
                        (long long)k->at.st_stride[2]);
        }
        if (k->at.mask >= 0)
            fprintf(f, " mask=buf%d strides [%lld, %lld, %lld]", k->at.mask,
                    (long long)k->at.mask_stride[0], (long long)k->at.mask_stride[1],
                    (long long)k->at.mask_stride[2]);
        for (int i = 0; i < KK_MAX_OPERANDS; i++) {
            static const char *const names[KK_MAX_OPERANDS] = {"q", "k", "v", "g", "stats", "mask"};
            const char *name = names[i];
            if (kk_attention_buf(&k->at, i) < 0)
                continue;
            if (k->at.offset[i])
                fprintf(f, " %s offset=%lld", name, (long long)k->at.offset[i]);
            if (k->at.inner[i] > 1)
                fprintf(f, " %s batch=(/%lld, %%%lld * %lld)", name, (long long)k->at.inner[i],
                        (long long)k->at.inner[i], (long long)k->at.istride[i]);
        }
        break;
    }
    if (k->serial)
        fprintf(f, " serial");
    fprintf(f, "\n    covers");
    for (int i = 0; i < k->nnodes; i++)
        fprintf(f, " %%%d", k->nodes[i]);
    fputc('\n', f);
    for (int i = 0; i < k->nx; i++)
        print_x(k, i, f);
    for (int i = 0; i < k->nstores; i++)
        fprintf(f, "    store%s buf%d[x%d] %s x%d\n", k->stores[i].element ? " each" : "",
                k->stores[i].buf, k->stores[i].index, k->stores[i].accumulate ? "+=" : "=",
                k->stores[i].value);
}

kiln_status kp_print(const kprogram *p, FILE *f)
{
    if (!p || !f)
        return KILN_ERR_INVALID;
    for (int i = 0; i < p->nbufs; i++)
        print_buf(p, i, f);
    for (int e = 0; e < p->nentries; e++) {
        const kentry *x = &p->entries[e];
        fprintf(f, "entry \"%s\" arena=%lld:", x->name ? x->name : "", (long long)x->arena_bytes);
        for (int i = 0; i < x->nkernels; i++)
            fprintf(f, " k%d", x->kernels[i]);
        for (int i = 0; i < x->ncopies; i++)
            fprintf(f, "%s buf%d -> buf%d", i ? "," : "; copy", x->copies[i].src, x->copies[i].dst);
        for (int i = 0; i < x->nshares; i++)
            fprintf(f, "%s buf%d = buf%d", i ? "," : "; share", x->shares[i].src, x->shares[i].dst);
        fputc('\n', f);
    }
    for (int i = 0; i < p->nkernels; i++)
        print_kernel(&p->kernels[i], f);
    return ferror(f) ? KILN_ERR_IO : KILN_OK;
}

/* ---- verifying ------------------------------------------------------------------ */

static kiln_status bad(char *msg, size_t cap, const char *what, const kernel *k, int i)
{
    if (msg && cap)
        snprintf(msg, cap, "kernel IR: %s: %s x%d", what, k ? k->name : "?", i);
    return KILN_ERR_INVALID;
}

static bool is_index(const kernel *k, int i)
{
    return i >= 0 && i < k->nx && k->x[i].dtype == KILN_I64;
}

/* Depth-first: the latest phase (+1) whose accumulator node i reads, and
 * whether it reads a reduced loop variable; memo[i] caches (bit 0x80: done). */
static int reads_of(const kernel *k, int i, unsigned char *memo)
{
    if (memo[i] & 0x80)
        return memo[i] & 0x7f;
    const kx_node *n = &k->x[i];
    int r = 0; /* bits 0..3: latest phase + 1; bit 4: a reduced variable */
    if (n->kind == KX_ACC)
        r = kk_acc_phase(k, n->var) + 1;
    if (n->kind == KX_VAR && n->var >= k->rank)
        r = 16;
    int ops[3], ar = kx_operands(n, ops);
    for (int j = 0; j < ar; j++) {
        int o = reads_of(k, ops[j], memo);
        r = ((o & 15) > (r & 15) ? (o & 15) : (r & 15)) | ((o | r) & 16);
    }
    memo[i] = (unsigned char)(0x80 | r);
    return r;
}

void kk_node_reads(const kernel *k, unsigned char *f)
{
    memset(f, 0, (size_t)k->nx);
    for (int q = 0; k->kind == KK_REDUCE && q <= k->npre; q++) {
        int at = kk_phase_at(k, q).body;
        if (at >= 0 && at < k->nx)
            f[at] |= KK_READ;
    }
    for (int i = 0; i < k->nstores; i++)
        for (int e = 0; e < 2; e++) {
            int at = e ? k->stores[i].value : k->stores[i].index;
            if (at >= 0 && at < k->nx)
                f[at] |= KK_READ;
        }
    for (int i = k->nx - 1; i >= 0; i--) {
        int ops[3], ar = kx_operands(&k->x[i], ops);
        for (int j = 0; j < ar && (f[i] & KK_READ); j++)
            if (ops[j] >= 0 && ops[j] < i)
                f[ops[j]] |= KK_READ;
    }
    for (int i = 0; i < k->nx; i++) {
        const kx_node *n = &k->x[i];
        int ops[3], ar = kx_operands(n, ops);
        f[i] |= n->kind == KX_ACC                        ? KK_READS_ACC
                : n->kind == KX_VAR && n->var >= k->rank ? KK_READS_ROW
                                                         : 0;
        for (int j = 0; j < ar; j++)
            if (ops[j] >= 0 && ops[j] < i)
                f[i] |= f[ops[j]] & (KK_READS_ACC | KK_READS_ROW);
    }
}

bool kk_row_may_fail(const kernel *k)
{
    if (k->rank != 0 || kk_has_element_stores(k))
        return false;
    unsigned char *f = ir_calloc((size_t)k->nx + 1);
    if (!f)
        return false;
    kk_node_reads(k, f);
    bool ok = true;
    for (int i = 0; i < k->nx && ok; i++)
        ok = k->x[i].kind != KX_CHECK || (f[i] & KK_READ) ||
             (f[i] & (KK_READS_ACC | KK_READS_ROW)) != (KK_READS_ACC | KK_READS_ROW);
    ir_free(f);
    return ok;
}

/* A REDUCE's phases: SUM, MAX or MIN in a float accumulator when it has more
 * than one, each body reading only earlier phases' accumulators; row stores
 * read no reduced variable; element stores only in REDUCE kernels; a row
 * kernel fails only as kk_row_may_fail allows. */
static kiln_status verify_phases(const kernel *k, char *msg, size_t cap)
{
    bool rows = k->kind == KK_REDUCE && (k->npre > 0 || kk_has_element_stores(k));
    if (k->kind != KK_REDUCE) {
        if (k->npre != 0 || kk_has_element_stores(k))
            return bad(msg, cap, "phases or element stores outside a reduce", k, 0);
        return KILN_OK;
    }
    if (k->npre < 0 || k->npre >= KK_MAX_PHASES)
        return bad(msg, cap, "too many phases", k, k->npre);
    unsigned char *memo = ir_alloc((size_t)k->nx + 1);
    if (!memo) {
        if (msg && cap)
            snprintf(msg, cap, "out of memory");
        return KILN_ERR_NOMEM;
    }
    if (rows && kk_can_fail(k) && !kk_row_may_fail(k)) {
        ir_free(memo);
        return bad(msg, cap,
                   "a row kernel can fail (a bounds check or integer division) other than a "
                   "whole tensor's reduction whose unread checks read the row or the sums, "
                   "not both",
                   k, 0);
    }
    memset(memo, 0, (size_t)k->nx + 1);
    kiln_status s = KILN_OK;
    for (int q = 0; q <= k->npre && s == KILN_OK; q++) {
        kk_phase ph = kk_phase_at(k, q);
        if (ph.body < 0 || ph.body >= k->nx)
            s = bad(msg, cap, "phase without a body", k, ph.body);
        else if (rows && (!ir_dtype_is_float(ph.acc_dtype) ||
                          (ph.rop != IR_SUM && ph.rop != IR_MAX && ph.rop != IR_MIN)))
            s = bad(msg, cap, "a row kernel's phase is not a float sum, max or min", k, ph.body);
        else if ((reads_of(k, ph.body, memo) & 15) > q)
            s = bad(msg, cap, "phase body reads a later accumulator", k, ph.body);
    }
    for (int i = 0; i < k->nstores && s == KILN_OK; i++) {
        const kk_store *st = &k->stores[i];
        if (st->index < 0 || st->index >= k->nx || st->value < 0 || st->value >= k->nx)
            continue; /* verify_kernel says so */
        if (!st->element && ((reads_of(k, st->index, memo) | reads_of(k, st->value, memo)) & 16))
            s = bad(msg, cap, "row store reads a reduced variable", k, i);
    }
    ir_free(memo);
    return s;
}

static kiln_status verify_kernel(const kprogram *p, const kernel *k, char *msg, size_t cap)
{
    int nvars = k->kind == KK_MATMUL || k->kind == KK_ATTENTION
                    ? 3
                    : k->rank + (k->kind == KK_REDUCE ? k->rrank : 0);
    for (int i = 0; i < k->nx; i++) {
        const kx_node *n = &k->x[i];
        int ar = 0;
        switch (n->kind) {
        case KX_CONST: break;
        case KX_ACC:
            if (n->var < 0 || n->var > (k->kind == KK_REDUCE ? k->npre : 0))
                return bad(msg, cap, "accumulator of a missing phase", k, i);
            break;
        case KX_VAR:
            if (n->var < 0 || n->var >= nvars)
                return bad(msg, cap, "loop variable out of range", k, i);
            break;
        case KX_LOAD:
            if (n->buf < 0 || n->buf >= p->nbufs || p->bufs[n->buf].dtype != n->dtype)
                return bad(msg, cap, "load of a bad buffer or dtype", k, i);
            ar = 1;
            break;
        case KX_OP:
            if (n->op < 0 || n->op >= IR_OP_COUNT ||
                (ir_ops[n->op].cls != IR_CLASS_UNARY && ir_ops[n->op].cls != IR_CLASS_BINARY &&
                 ir_ops[n->op].cls != IR_CLASS_TERNARY))
                return bad(msg, cap, "op is not elementwise", k, i);
            ar = ir_ops[n->op].arity;
            break;
        case KX_IDIV:
        case KX_IMOD: ar = 2; break;
        case KX_RAND:
        case KX_RANDN:
        case KX_CHECK: ar = 1; break;
        }
        for (int j = 0; j < ar; j++)
            if (n->a[j] < 0 || n->a[j] >= i)
                return bad(msg, cap, "operand does not precede its user", k, i);
        if ((n->kind == KX_LOAD || n->kind == KX_RAND || n->kind == KX_RANDN ||
             n->kind == KX_CHECK || n->kind == KX_IDIV || n->kind == KX_IMOD) &&
            !is_index(k, n->a[0]))
            return bad(msg, cap, "index operand is not i64", k, i);
    }
    for (int i = 0; i < k->nstores; i++) {
        const kk_store *s = &k->stores[i];
        if (s->buf < 0 || s->buf >= p->nbufs || !is_index(k, s->index) || s->value < 0 ||
            s->value >= k->nx || k->x[s->value].dtype != p->bufs[s->buf].dtype)
            return bad(msg, cap, "bad store", k, i);
        if (p->bufs[s->buf].role == KB_INPUT || p->bufs[s->buf].role == KB_CONST)
            return bad(msg, cap, "store into a read-only buffer", k, i);
    }
    if (k->kind == KK_REDUCE && (k->body < 0 || k->body >= k->nx))
        return bad(msg, cap, "reduce without a body", k, k->body);
    kiln_status s = verify_phases(k, msg, cap);
    if (s != KILN_OK)
        return s;
    if (k->kind == KK_MATMUL) { /* parts multiply to their axis' length */
        const int64_t len[2][2] = {{k->mm.m, k->mm.k}, {k->mm.k, k->mm.n}};
        const kk_parts *pp[2] = {k->mm.a_parts, k->mm.b_parts};
        for (int o = 0; o < 2; o++)
            for (int i = 0; i < 2; i++) {
                int64_t n = 1;
                for (int j = 0; j < pp[o][i].n; j++)
                    n *= pp[o][i].size[j];
                if (pp[o][i].n < 0 || pp[o][i].n > KK_MAX_PARTS || (pp[o][i].n && n != len[o][i]))
                    return bad(msg, cap, "matmul operand parts", k, 0);
            }
    }
    int ops[KK_MAX_OPERANDS], nops = kk_operand_bufs(k, ops);
    for (int i = 0; i < nops; i++)
        if (k->rank != 3 || ops[i] < 0 || ops[i] >= p->nbufs)
            return bad(msg, cap, k->kind == KK_MATMUL ? "matmul operands" : "attention operands", k,
                       0);
    return KILN_OK;
}

kiln_status kp_verify(const kprogram *p, char *msg, size_t cap)
{
    if (!p)
        return KILN_ERR_INVALID;
    for (int i = 0; i < p->nkernels; i++) {
        kiln_status s = verify_kernel(p, &p->kernels[i], msg, cap);
        if (s != KILN_OK)
            return s;
    }
    for (int e = 0; e < p->nentries; e++)
        for (int i = 0; i < p->entries[e].nkernels; i++)
            if (p->entries[e].kernels[i] < 0 || p->entries[e].kernels[i] >= p->nkernels)
                return bad(msg, cap, "entry names a missing kernel", NULL, i);
    return KILN_OK;
}

int kk_operand_refs(kernel *k, int *refs[KK_MAX_OPERANDS])
{
    if (k->kind == KK_MATMUL) {
        refs[0] = &k->mm.a;
        refs[1] = &k->mm.b;
        return 2;
    }
    if (k->kind == KK_ATTENTION) {
        int *all[KK_MAX_OPERANDS] = {&k->at.q, &k->at.k,  &k->at.v,
                                     &k->at.g, &k->at.st, &k->at.mask};
        int n = 0;
        for (int i = 0; i < KK_MAX_OPERANDS; i++)
            if (*all[i] >= 0)
                refs[n++] = all[i];
        return n;
    }
    return 0;
}

bool kk_reads(const kernel *k, int buf)
{
    for (int i = 0; i < k->nx; i++)
        if (k->x[i].kind == KX_LOAD && k->x[i].buf == buf)
            return true;
    int ops[KK_MAX_OPERANDS], n = kk_operand_bufs(k, ops);
    for (int i = 0; i < n; i++)
        if (ops[i] == buf)
            return true;
    return false;
}

bool kk_writes(const kernel *k, int buf)
{
    for (int i = 0; i < k->nstores; i++)
        if (k->stores[i].buf == buf)
            return true;
    return false;
}

bool kk_matmul_has_parts(const kk_matmul *mm)
{
    return mm->a_parts[0].n || mm->a_parts[1].n || mm->b_parts[0].n || mm->b_parts[1].n;
}

int64_t kk_parts_at(const kk_parts *pp, int64_t stride, int64_t e)
{
    if (!pp->n)
        return e * stride;
    int64_t at = 0;
    for (int j = pp->n - 1; j >= 0; j--) {
        at += e % pp->size[j] * pp->stride[j];
        e /= pp->size[j];
    }
    return at;
}

const int64_t *kk_attention_strides(const kk_attention *at, int which)
{
    const int64_t *const st[KK_MAX_OPERANDS] = {at->q_stride, at->k_stride,  at->v_stride,
                                                at->g_stride, at->st_stride, at->mask_stride};
    return st[which];
}

int kk_attention_buf(const kk_attention *at, int which)
{
    const int buf[KK_MAX_OPERANDS] = {at->q, at->k, at->v, at->g, at->st, at->mask};
    return buf[which];
}

int64_t kk_attention_batch(const kk_attention *at, int which, int64_t b)
{
    const int64_t *st = kk_attention_strides(at, which);
    int64_t inner = at->inner[which];
    return at->offset[which] +
           (inner > 1 ? b / inner * st[0] + b % inner * at->istride[which] : b * st[0]);
}

int kk_operand_bufs(const kernel *k, int bufs[KK_MAX_OPERANDS])
{
    kernel copy = *k; /* the same fields, read through kk_operand_refs */
    int *refs[KK_MAX_OPERANDS], n = kk_operand_refs(&copy, refs);
    for (int i = 0; i < n; i++)
        bufs[i] = *refs[i];
    return n;
}

double kk_flops(const kernel *k)
{
    double ops = 0;
    for (int i = 0; i < k->nx; i++)
        ops += k->x[i].kind == KX_OP;
    switch (k->kind) {
    case KK_POINTWISE: return ops * (double)ir_shape_numel(k->rank, k->dims);
    case KK_REDUCE:
        return (ops + 1 + k->npre) * (double)ir_shape_numel(k->rank, k->dims) *
               (double)ir_shape_numel(k->rrank, k->rdims);
    case KK_MATMUL:
        return 2.0 * (double)k->mm.batch * (double)k->mm.m * (double)k->mm.n * (double)k->mm.k +
               ops * (double)k->mm.batch * (double)k->mm.m * (double)k->mm.n;
    case KK_ATTENTION: { /* two products per (row, key) (all of them: causal rows skip about
                          * half), computed once forward, twice for the stats, once or twice
                          * for a gradient, which also adds its own */
        static const double passes[5] = {1, 2, 1.5, 1.5, 1};
        return 2.0 * passes[k->at.mode] * (double)k->at.batch * (double)k->at.t * (double)k->at.s *
                   (double)(k->at.d + k->at.dv) +
               ops * (double)ir_shape_numel(3, k->dims);
    }
    }
    return 0;
}

void kp_stats_of(const kprogram *p, kp_stats *st)
{
    *st = (kp_stats){p->nkernels, 0, 0, 0, 0};
    for (int k = 0; k < p->nkernels; k++) {
        st->groups += p->kernels[k].nnodes > 1;
        st->flops += kk_flops(&p->kernels[k]);
    }
    for (int e = 0; e < p->nentries; e++) {
        st->arena_bytes += p->entries[e].arena_bytes;
        st->live_bytes += p->entries[e].live_bytes;
    }
}
