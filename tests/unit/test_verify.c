/* test_verify.c - the IR verifier: every rule broken once, with its status and
 * message; well-formed graphs (hand-made and from the builders) pass. */
#include "ir/ir.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#define NODE(g, op, dt, shape, ...)                                                                \
    ir_node_new((g), (op), (dt), shape,                                                            \
                (int)(sizeof((kiln_tensor *[]){__VA_ARGS__}) / sizeof(kiln_tensor *)),             \
                (kiln_tensor *[]){__VA_ARGS__})
#define SRC(g, op, dt, shape) ir_node_new((g), (op), (dt), shape, 0, NULL)
#define S(...)                KILN_SHAPE(__VA_ARGS__)

static kiln_tensor *leaf(kiln_graph *g, ir_op op, const char *name, kiln_dtype dt, int rank,
                         const int64_t *dims)
{
    kiln_tensor *t = ir_node_new(g, op, dt, rank, dims, 0, NULL);
    assert_non_null(t);
    t->name = ir_arena_strdup(&g->arena, name);
    return t;
}

static kiln_tensor *cnst(kiln_graph *g, kiln_dtype dt, int rank, const int64_t *dims)
{
    kiln_tensor *t = ir_node_new(g, IR_CONST, dt, rank, dims, 0, NULL);
    assert_non_null(t);
    t->data = ir_arena_alloc(&g->arena, (size_t)ir_numel(t) * kiln_dtype_size(dt));
    return t;
}

static void entry1(kiln_graph *g, const char *name, kiln_tensor *t, const char *out)
{
    ir_entry *e = ir_entry_new(g, name, 1);
    assert_non_null(e);
    e->outputs[0] = t;
    e->output_names[0] = out ? ir_arena_strdup(&g->arena, out) : NULL;
}

/* Runs the verifier, expects exactly msg, and frees g. */
static void expect_invalid(kiln_graph *g, const char *msg)
{
    kiln_status s = ir_verify(g);
    if (s != KILN_ERR_INVALID || strcmp(kiln_graph_error(g), msg) != 0)
        fprintf(stderr, "want: %s\ngot:  %s\n", msg, kiln_graph_error(g));
    assert_int_equal(s, KILN_ERR_INVALID);
    assert_string_equal(kiln_graph_error(g), msg);
    kiln_graph_free(g);
}

/* expect_invalid for a message that contains part */
static void expect_invalid_part(kiln_graph *g, const char *part)
{
    kiln_status s = ir_verify(g);
    if (s != KILN_ERR_INVALID || !strstr(kiln_graph_error(g), part))
        fprintf(stderr, "want: ...%s...\ngot:  %s\n", part, kiln_graph_error(g));
    assert_int_equal(s, KILN_ERR_INVALID);
    assert_non_null(strstr(kiln_graph_error(g), part));
    kiln_graph_free(g);
}

static void expect_ok(kiln_graph *g)
{
    kiln_status s = ir_verify(g);
    if (s != KILN_OK)
        fprintf(stderr, "unexpected: %s\n", kiln_graph_error(g));
    assert_int_equal(s, KILN_OK);
    assert_string_equal(kiln_graph_error(g), "");
    kiln_graph_free(g);
}

/* ---- well-formed graphs pass --------------------------------------------------------- */

static void test_valid_hand_made(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = leaf(g, IR_INPUT, "x", KILN_F32, S(2, 3));
    kiln_tensor *w = leaf(g, IR_PARAM, "w", KILN_F32, S(4, 3));
    kiln_tensor *ids = cnst(g, KILN_I32, S(5));
    kiln_tensor *wt = NODE(g, IR_PERMUTE, KILN_F32, S(3, 4), w);
    wt->perm[0] = 1;
    wt->perm[1] = 0;
    kiln_tensor *y = NODE(g, IR_MATMUL, KILN_F32, S(2, 4), x, wt);
    kiln_tensor *s = NODE(g, IR_SUM, KILN_F32, S(2, 1), y);
    s->axes = 2;
    kiln_tensor *am = NODE(g, IR_ARGMAX, KILN_I64, S(1, 4), y);
    am->axes = 1;
    kiln_tensor *e = NODE(g, IR_EXPAND, KILN_F32, S(2, 4), s);
    kiln_tensor *c = NODE(g, IR_GT, KILN_BOOL, S(2, 4), y, e);
    kiln_tensor *wh = NODE(g, IR_WHERE, KILN_F32, S(2, 4), c, y, e);
    kiln_tensor *cat = NODE(g, IR_CONCAT, KILN_F32, S(2, 11), wh, x, y);
    cat->axis = 1;
    kiln_tensor *sl = NODE(g, IR_SLICE, KILN_F32, S(1, 3), cat);
    sl->begin[0] = 1;
    sl->begin[1] = 2;
    sl->step[0] = 1;
    sl->step[1] = 3; /* reads 2, 5, 8 of 11 */
    kiln_tensor *pd = NODE(g, IR_PAD, KILN_F32, S(4, 4), sl);
    pd->begin[0] = 2;
    pd->after[0] = 1;
    pd->after[1] = 1;
    kiln_tensor *ga = NODE(g, IR_GATHER, KILN_F32, S(5, 3), w, ids);
    kiln_tensor *sc = NODE(g, IR_SCATTER_ADD, KILN_F32, S(4, 3), ga, ids);
    kiln_tensor *as = NODE(g, IR_ASSIGN, KILN_F32, S(4, 3), w, sc);
    kiln_tensor *r = NODE(g, IR_RESHAPE, KILN_F32, S(12), as);
    kiln_tensor *cs = NODE(g, IR_CAST, KILN_I64, S(12), r);
    kiln_tensor *ar = SRC(g, IR_ARANGE, KILN_I64, S(12));
    kiln_tensor *ad = NODE(g, IR_ADD, KILN_I64, S(12), cs, ar);
    kiln_tensor *f = ir_node_new(g, IR_FULL, KILN_F32, 0, NULL, 0, NULL);
    f->weak = true;
    kiln_tensor *rn = SRC(g, IR_RANDN, KILN_F64, S(0, 3));
    entry1(g, "e", ad, "e.0");
    entry1(g, "f", rn, "f.0");
    (void)am;
    (void)pd;
    (void)f;
    expect_ok(g);
}

static void test_valid_builders(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(4, 3));
    kiln_tensor *w = kiln_param(g, "w", KILN_F32, KILN_SHAPE(2, 3), kiln_init_kaiming_uniform());
    kiln_tensor *b = kiln_param(g, "b", KILN_F32, KILN_SHAPE(2), kiln_init_kaiming_uniform());
    kiln_tensor *labels = kiln_input(g, "labels", KILN_I64, KILN_SHAPE(4));
    kiln_tensor *logits = kiln_linear(g, kiln_dropout(g, x, 0.1), w, b);
    kiln_tensor *outs[3] = {kiln_cross_entropy(g, logits, labels), kiln_softmax(g, logits, 1),
                            kiln_argmax(g, logits, -1, true)};
    assert_int_equal(kiln_entry(g, "e", 3, outs, NULL), KILN_OK);
    assert_int_equal(kiln_graph_status(g), KILN_OK);
    expect_ok(g);
}

/* ---- well-formedness ------------------------------------------------------------------ */

static void test_operand_order(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = leaf(g, IR_INPUT, "x", KILN_F32, S(2));
    kiln_tensor *n = NODE(g, IR_NEG, KILN_F32, S(2), x);
    kiln_tensor *m = NODE(g, IR_NEG, KILN_F32, S(2), n);
    n->in[0] = m; /* a cycle: %1 reads %2 */
    expect_invalid(g, "verify: %1 (neg): operand 0 is %2, which is not defined before this node");

    g = kiln_graph_new();
    kiln_graph *other = kiln_graph_new();
    kiln_tensor *ox = leaf(other, IR_INPUT, "x", KILN_F32, S(2));
    x = leaf(g, IR_INPUT, "x", KILN_F32, S(2));
    NODE(g, IR_ADD, KILN_F32, S(2), x, ox);
    expect_invalid(g, "verify: %1 (add): operand 1 belongs to another graph");
    kiln_graph_free(other);

    g = kiln_graph_new();
    x = leaf(g, IR_INPUT, "x", KILN_F32, S(2));
    n = NODE(g, IR_NEG, KILN_F32, S(2), x);
    n->in[0] = NULL;
    expect_invalid(g, "verify: %1 (neg): operand 0 is NULL");
}

static void test_arity(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = leaf(g, IR_INPUT, "x", KILN_F32, S(2));
    NODE(g, IR_ADD, KILN_F32, S(2), x);
    expect_invalid(g, "verify: %1 (add): takes 2 operands, has 1");

    g = kiln_graph_new();
    x = leaf(g, IR_INPUT, "x", KILN_F32, S(2));
    NODE(g, IR_EXP, KILN_F32, S(2), x, x);
    expect_invalid(g, "verify: %1 (exp): takes 1 operand, has 2");

    g = kiln_graph_new();
    SRC(g, IR_CONCAT, KILN_F32, S(2));
    expect_invalid(g, "verify: %0 (concat): takes at least 1 operand, has 0");
}

static void test_node_form(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *t = SRC(g, IR_FULL, KILN_F32, S(2));
    t->rank = 9;
    expect_invalid(g, "verify: %0 (full): rank 9 is outside 0..8");

    g = kiln_graph_new();
    t = SRC(g, IR_FULL, KILN_F32, S(2));
    t->rank = -1;
    expect_invalid(g, "verify: %0 (full): rank -1 is outside 0..8");

    g = kiln_graph_new();
    SRC(g, IR_FULL, KILN_F32, S(2, -3));
    expect_invalid(g, "verify: %0 (full): dim 1 is -3; dims must be >= 0");

    g = kiln_graph_new();
    t = SRC(g, IR_FULL, KILN_F32, S(1, 1, 1, 0)); /* ir_node_new refuses such a shape */
    t->dims[0] = t->dims[1] = t->dims[2] = 1 << 30;
    expect_invalid(g, "verify: %0 (full): shape has more than 1152921504606846975 elements");

    g = kiln_graph_new();
    t = SRC(g, IR_FULL, KILN_F32, S(2));
    t->dtype = (kiln_dtype)17;
    expect_invalid(g, "verify: %0 (full): dtype 17 is not a dtype");

    g = kiln_graph_new();
    t = SRC(g, IR_FULL, KILN_F32, S(2));
    t->op = IR_OP_COUNT;
    char want[128];
    snprintf(want, sizeof(want), "verify: %%0 (?): op %d is not in the op table", IR_OP_COUNT);
    expect_invalid(g, want);

    g = kiln_graph_new();
    SRC(g, IR_FULL, KILN_F32, S(2));
    t = SRC(g, IR_FULL, KILN_F32, S(2));
    t->id = 0;
    expect_invalid(g, "verify: %1 (full): node at index 1 has id 0");

    g = kiln_graph_new();
    t = leaf(g, IR_INPUT, "x", KILN_F32, S(2));
    t->weak = true;
    expect_invalid(g, "verify: %0 (input): only a full node can be weak");
}

/* ---- sources ---------------------------------------------------------------------------- */

static void test_sources(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    SRC(g, IR_CONST, KILN_F32, S(2));
    expect_invalid(g, "verify: %0 (const): a constant has no data");

    g = kiln_graph_new();
    kiln_tensor *p = leaf(g, IR_PARAM, "p", KILN_F32, S(2));
    p->init.kind = KILN_INIT_DATA;
    expect_invalid(g, "verify: %0 (param): init=data but the param has no data");

    g = kiln_graph_new();
    p = leaf(g, IR_PARAM, "p", KILN_F32, S(2));
    p->init.kind = (kiln_init_kind)9;
    expect_invalid(g, "verify: %0 (param): init kind 9 is not an init kind");

    g = kiln_graph_new();
    p = leaf(g, IR_PARAM, "p", KILN_F32, S(2));
    p->fan_in = -1;
    expect_invalid(g, "verify: %0 (param): fan_in is -1; it must be >= 0");

    g = kiln_graph_new();
    SRC(g, IR_ARANGE, KILN_F32, S(2, 2));
    expect_invalid(g, "verify: %0 (arange): the result has rank 2 but arange makes rank 1");

    g = kiln_graph_new();
    SRC(g, IR_RAND, KILN_I32, S(2));
    expect_invalid(g, "verify: %0 (rand): the result has dtype i32 but random numbers are f32 or "
                      "f64");
}

static void test_names(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    leaf(g, IR_INPUT, "", KILN_F32, S(2));
    expect_invalid(g, "verify: %0 (input): an input needs a non-empty name");

    g = kiln_graph_new();
    SRC(g, IR_PARAM, KILN_F32, S(2));
    expect_invalid(g, "verify: %0 (param): a param needs a non-empty name");

    g = kiln_graph_new();
    leaf(g, IR_INPUT, "x", KILN_F32, S(2));
    SRC(g, IR_FULL, KILN_F32, S(2));
    leaf(g, IR_PARAM, "x", KILN_F32, S(2));
    expect_invalid(g, "verify: %2 (param): name \"x\" is already used by %0 (input)");
}

/* ---- elementwise ----------------------------------------------------------------------- */

static void test_elementwise(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *a = leaf(g, IR_INPUT, "a", KILN_F32, S(2, 3));
    kiln_tensor *b = leaf(g, IR_INPUT, "b", KILN_F32, S(3));
    NODE(g, IR_ADD, KILN_F32, S(2, 3), a, b);
    expect_invalid(g, "verify: %2 (add): operand 1 has shape [3] but the result is [2, 3]");

    g = kiln_graph_new();
    a = leaf(g, IR_INPUT, "a", KILN_F32, S(2));
    b = leaf(g, IR_INPUT, "b", KILN_F64, S(2));
    NODE(g, IR_MUL, KILN_F32, S(2), a, b);
    expect_invalid(g, "verify: %2 (mul): operand 1 has dtype f64 but the result is f32");

    g = kiln_graph_new();
    a = leaf(g, IR_INPUT, "a", KILN_F32, S(2));
    NODE(g, IR_NEG, KILN_F64, S(2), a);
    expect_invalid(g, "verify: %1 (neg): operand 0 has dtype f32 but the result is f64");

    g = kiln_graph_new();
    a = leaf(g, IR_INPUT, "a", KILN_F32, S(2));
    NODE(g, IR_RELU, KILN_F32, S(3), a);
    expect_invalid(g, "verify: %1 (relu): operand 0 has shape [2] but the result is [3]");

    g = kiln_graph_new();
    a = leaf(g, IR_INPUT, "a", KILN_I32, S(2));
    NODE(g, IR_EXP, KILN_I32, S(2), a);
    expect_invalid(g, "verify: %1 (exp): dtype i32 is not a floating point dtype");

    g = kiln_graph_new();
    a = leaf(g, IR_INPUT, "a", KILN_F32, S(2));
    b = leaf(g, IR_INPUT, "b", KILN_F32, S(2));
    NODE(g, IR_LT, KILN_F32, S(2), a, b);
    expect_invalid(g, "verify: %2 (lt): the result has dtype f32 but a comparison makes bool");

    g = kiln_graph_new();
    a = leaf(g, IR_INPUT, "a", KILN_F32, S(2));
    b = leaf(g, IR_INPUT, "b", KILN_I64, S(2));
    NODE(g, IR_EQ, KILN_BOOL, S(2), a, b);
    expect_invalid(g, "verify: %2 (eq): operand 1 has dtype i64 but operand 0 is f32");

    g = kiln_graph_new();
    a = leaf(g, IR_INPUT, "a", KILN_F32, S(2));
    b = leaf(g, IR_INPUT, "b", KILN_F32, S(2));
    NODE(g, IR_WHERE, KILN_F32, S(2), a, a, b);
    expect_invalid(g, "verify: %2 (where): operand 0 has dtype f32 but the condition must be bool");

    g = kiln_graph_new();
    kiln_tensor *c = leaf(g, IR_INPUT, "c", KILN_BOOL, S(2));
    a = leaf(g, IR_INPUT, "a", KILN_F32, S(2));
    b = leaf(g, IR_INPUT, "b", KILN_I32, S(2));
    NODE(g, IR_WHERE, KILN_F32, S(2), c, a, b);
    expect_invalid(g, "verify: %3 (where): operand 2 has dtype i32 but the result is f32");

    g = kiln_graph_new(); /* cast converts between any dtypes, but keeps the shape */
    a = leaf(g, IR_INPUT, "a", KILN_F32, S(2));
    NODE(g, IR_CAST, KILN_BOOL, S(2), a);
    expect_ok(g);
    g = kiln_graph_new();
    a = leaf(g, IR_INPUT, "a", KILN_F32, S(2));
    NODE(g, IR_CAST, KILN_BOOL, S(1, 2), a);
    expect_invalid(g, "verify: %1 (cast): operand 0 has shape [2] but the result is [1, 2]");
}

/* ---- reductions -------------------------------------------------------------------------- */

static void test_reductions(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *a = leaf(g, IR_INPUT, "a", KILN_F32, S(2, 3));
    kiln_tensor *r = NODE(g, IR_SUM, KILN_F32, S(2), a);
    r->axes = 2;
    expect_invalid(g, "verify: %1 (sum): operand 0 has rank 2 but the result has rank 1 (reduced "
                      "axes are kept as size 1)");

    g = kiln_graph_new();
    a = leaf(g, IR_INPUT, "a", KILN_F32, S(2, 3));
    r = NODE(g, IR_MAX, KILN_F32, S(2, 1), a);
    r->axes = 1u << 2 | 1u << 1;
    expect_invalid(g, "verify: %1 (max): axes [1, 2] name an axis outside rank 2");

    g = kiln_graph_new();
    a = leaf(g, IR_INPUT, "a", KILN_F32, S(2, 3));
    r = NODE(g, IR_MIN, KILN_F32, S(2, 3), a);
    r->axes = 2;
    expect_invalid(g, "verify: %1 (min): reducing [2, 3] over axes [1] gives [2, 1], not [2, 3]");

    g = kiln_graph_new();
    a = leaf(g, IR_INPUT, "a", KILN_F32, S(2, 3));
    r = NODE(g, IR_SUM, KILN_F32, S(1, 1), a);
    r->axes = 1;
    expect_invalid(g, "verify: %1 (sum): reducing [2, 3] over axes [0] gives [1, 3], not [1, 1]");

    g = kiln_graph_new();
    a = leaf(g, IR_INPUT, "a", KILN_F32, S(2, 3));
    r = NODE(g, IR_ARGMAX, KILN_I32, S(1, 1), a);
    r->axes = 3;
    expect_invalid(g, "verify: %1 (argmax): the result has dtype i32 but an index reduction makes "
                      "i64");

    g = kiln_graph_new();
    a = leaf(g, IR_INPUT, "a", KILN_I32, S(2, 3));
    r = NODE(g, IR_SUM, KILN_I64, S(1, 1), a);
    r->axes = 3;
    expect_invalid(g, "verify: %1 (sum): operand 0 has dtype i32 but the result is i64");
}

/* ---- movement --------------------------------------------------------------------------- */

static void test_reshape_permute_expand(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *a = leaf(g, IR_INPUT, "a", KILN_F32, S(2, 3));
    NODE(g, IR_RESHAPE, KILN_F32, S(5), a);
    expect_invalid(g, "verify: %1 (reshape): cannot reshape [2, 3] (6 elements) to [5] (5 "
                      "elements)");

    g = kiln_graph_new();
    a = leaf(g, IR_INPUT, "a", KILN_F32, S(2, 3));
    NODE(g, IR_RESHAPE, KILN_F64, S(6), a);
    expect_invalid(g, "verify: %1 (reshape): operand 0 has dtype f32 but the result is f64");

    g = kiln_graph_new();
    a = leaf(g, IR_INPUT, "a", KILN_F32, S(2, 3));
    kiln_tensor *p = NODE(g, IR_PERMUTE, KILN_F32, S(3, 2), a);
    p->perm[0] = 1;
    p->perm[1] = 1;
    expect_invalid(g, "verify: %1 (permute): perm is not a permutation of 0..1");

    g = kiln_graph_new();
    a = leaf(g, IR_INPUT, "a", KILN_F32, S(2, 3));
    p = NODE(g, IR_PERMUTE, KILN_F32, S(3, 2), a); /* perm left as the identity */
    expect_invalid(g, "verify: %1 (permute): permuting [2, 3] gives dim 2 at axis 0, not 3");

    g = kiln_graph_new();
    a = leaf(g, IR_INPUT, "a", KILN_F32, S(2, 3));
    NODE(g, IR_PERMUTE, KILN_F32, S(2, 3, 1), a);
    expect_invalid(g, "verify: %1 (permute): operand 0 has rank 2 but the result has rank 3");

    g = kiln_graph_new();
    a = leaf(g, IR_INPUT, "a", KILN_F32, S(2, 1));
    NODE(g, IR_EXPAND, KILN_F32, S(3, 4), a);
    expect_invalid(g, "verify: %1 (expand): cannot expand [2, 1] to [3, 4]: axis 0 is neither 1 "
                      "nor equal");

    g = kiln_graph_new();
    a = leaf(g, IR_INPUT, "a", KILN_F32, S(4));
    NODE(g, IR_EXPAND, KILN_F32, S(3, 4), a);
    expect_invalid(g, "verify: %1 (expand): operand 0 has rank 1 but the result has rank 2");
}

static void test_slice_pad(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *a = leaf(g, IR_INPUT, "a", KILN_F32, S(10));
    kiln_tensor *s = NODE(g, IR_SLICE, KILN_F32, S(2), a);
    s->step[0] = 0;
    expect_invalid(g, "verify: %1 (slice): step 0 on axis 0; steps must be > 0");

    g = kiln_graph_new();
    a = leaf(g, IR_INPUT, "a", KILN_F32, S(10));
    s = NODE(g, IR_SLICE, KILN_F32, S(0), a);
    s->begin[0] = 11;
    s->step[0] = 1;
    expect_invalid(g, "verify: %1 (slice): begin 11 on axis 0 is outside 0..10");

    g = kiln_graph_new();
    a = leaf(g, IR_INPUT, "a", KILN_F32, S(10));
    s = NODE(g, IR_SLICE, KILN_F32, S(4), a);
    s->begin[0] = 1;
    s->step[0] = 3; /* reads 1, 4, 7, 10: one past the end */
    expect_invalid(g, "verify: %1 (slice): axis 0: 4 elements from 1 with step 3 read past size "
                      "10");

    g = kiln_graph_new(); /* the same slice one element shorter is fine, and empty ones too */
    a = leaf(g, IR_INPUT, "a", KILN_F32, S(10));
    s = NODE(g, IR_SLICE, KILN_F32, S(3), a);
    s->begin[0] = 1;
    s->step[0] = 3;
    s = NODE(g, IR_SLICE, KILN_F32, S(0), a);
    s->begin[0] = 10;
    s->step[0] = INT64_MAX;
    expect_ok(g);

    g = kiln_graph_new();
    a = leaf(g, IR_INPUT, "a", KILN_F32, S(10));
    s = NODE(g, IR_SLICE, KILN_F32, S(2), a);
    s->begin[0] = 5;
    s->step[0] = INT64_MAX; /* (n-1)*step overflows: must not be UB */
    expect_invalid(g, "verify: %1 (slice): axis 0: 2 elements from 5 with step "
                      "9223372036854775807 read past size 10");

    g = kiln_graph_new();
    a = leaf(g, IR_INPUT, "a", KILN_F32, S(2, 3));
    kiln_tensor *p = NODE(g, IR_PAD, KILN_F32, S(2, 3), a);
    p->begin[1] = -1;
    p->after[1] = 1;
    expect_invalid(g, "verify: %1 (pad): axis 1 pads -1 before and 1 after; pads must be >= 0");

    g = kiln_graph_new();
    a = leaf(g, IR_INPUT, "a", KILN_F32, S(2, 3));
    p = NODE(g, IR_PAD, KILN_F32, S(2, 6), a);
    p->begin[1] = 1;
    p->after[1] = 1;
    expect_invalid(g, "verify: %1 (pad): axis 1: 3 + 1 before + 1 after is not 6");

    g = kiln_graph_new();
    a = leaf(g, IR_INPUT, "a", KILN_F32, S(2, 3));
    p = NODE(g, IR_PAD, KILN_F32, S(2, 3), a);
    p->after[1] = INT64_MAX;
    expect_invalid(g, "verify: %1 (pad): axis 1: 3 + 0 before + 9223372036854775807 after is not "
                      "3");
}

static void test_concat(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *a = leaf(g, IR_INPUT, "a", KILN_F32, S(2, 3));
    kiln_tensor *b = leaf(g, IR_INPUT, "b", KILN_F32, S(2, 4));
    kiln_tensor *c = NODE(g, IR_CONCAT, KILN_F32, S(2, 7), a, b);
    c->axis = 2;
    expect_invalid(g, "verify: %2 (concat): axis 2 is outside the result's rank 2");

    g = kiln_graph_new();
    a = leaf(g, IR_INPUT, "a", KILN_F32, S(2, 3));
    b = leaf(g, IR_INPUT, "b", KILN_F32, S(2, 4));
    NODE(g, IR_CONCAT, KILN_F32, S(2, 7), a, b);
    expect_invalid(g, "verify: %2 (concat): operand 0 has shape [2, 3], which does not fit the "
                      "result [2, 7] on axis 0");

    g = kiln_graph_new();
    a = leaf(g, IR_INPUT, "a", KILN_F32, S(2, 3));
    b = leaf(g, IR_INPUT, "b", KILN_F32, S(2, 4));
    c = NODE(g, IR_CONCAT, KILN_F32, S(2, 8), a, b);
    c->axis = 1;
    expect_invalid(g, "verify: %2 (concat): operands add up to 7 on axis 1 but the result has 8");

    g = kiln_graph_new();
    a = leaf(g, IR_INPUT, "a", KILN_F32, S(2, 3));
    b = leaf(g, IR_INPUT, "b", KILN_I32, S(2, 4));
    c = NODE(g, IR_CONCAT, KILN_F32, S(2, 7), a, b);
    c->axis = 1;
    expect_invalid(g, "verify: %2 (concat): operand 1 has dtype i32 but the result is f32");
}

/* ---- matmul, indexing, assign ------------------------------------------------------------- */

static void test_matmul(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *a = leaf(g, IR_INPUT, "a", KILN_F32, S(4, 3));
    kiln_tensor *b = leaf(g, IR_INPUT, "b", KILN_F32, S(4, 2));
    NODE(g, IR_MATMUL, KILN_F32, S(4, 2), a, b);
    expect_invalid(g, "verify: %2 (matmul): [4, 3] @ [4, 2] does not give [4, 2] (expected (..., "
                      "M, K) @ (..., K, N))");

    g = kiln_graph_new();
    a = leaf(g, IR_INPUT, "a", KILN_F32, S(5, 4, 3));
    b = leaf(g, IR_INPUT, "b", KILN_F32, S(6, 3, 2));
    NODE(g, IR_MATMUL, KILN_F32, S(5, 4, 2), a, b);
    expect_invalid(g, "verify: %2 (matmul): [5, 4, 3] @ [6, 3, 2] does not give [5, 4, 2] "
                      "(expected (..., M, K) @ (..., K, N))");

    g = kiln_graph_new();
    a = leaf(g, IR_INPUT, "a", KILN_F32, S(3));
    b = leaf(g, IR_INPUT, "b", KILN_F32, S(3));
    ir_node_new(g, IR_MATMUL, KILN_F32, 0, NULL, 2, (kiln_tensor *[]){a, b});
    expect_invalid(g, "verify: %2 (matmul): [3] @ [3] does not give [] (expected (..., M, K) @ "
                      "(..., K, N))");

    g = kiln_graph_new();
    a = leaf(g, IR_INPUT, "a", KILN_F32, S(4, 3));
    b = leaf(g, IR_INPUT, "b", KILN_F64, S(3, 2));
    NODE(g, IR_MATMUL, KILN_F32, S(4, 2), a, b);
    expect_invalid(g, "verify: %2 (matmul): operand 1 has dtype f64 but the result is f32");
}

static void test_attention(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *q = leaf(g, IR_INPUT, "q", KILN_F32, S(2, 3, 4));
    kiln_tensor *k = leaf(g, IR_INPUT, "k", KILN_F32, S(2, 5, 4));
    kiln_tensor *v = leaf(g, IR_INPUT, "v", KILN_F32, S(2, 5, 6));
    NODE(g, IR_SDPA, KILN_F32, S(2, 3, 6), q, k, v)->value = 0.5;
    ku_assert_ok(g);
    kiln_graph_free(g);

    g = kiln_graph_new();
    q = leaf(g, IR_INPUT, "q", KILN_F32, S(2, 3, 4));
    k = leaf(g, IR_INPUT, "k", KILN_F32, S(2, 5, 3));
    v = leaf(g, IR_INPUT, "v", KILN_F32, S(2, 5, 6));
    NODE(g, IR_SDPA, KILN_F32, S(2, 3, 6), q, k, v)->value = 0.5;
    expect_invalid(g, "verify: %3 (sdpa): attention of q [2, 3, 4], k [2, 5, 3], v [2, 5, 6] does "
                      "not give [2, 3, 6] (expected (..., T, D), (..., S, D), (..., S, Dv) -> "
                      "(..., T, Dv))");

    g = kiln_graph_new();
    q = leaf(g, IR_INPUT, "q", KILN_I64, S(3, 4));
    NODE(g, IR_SDPA, KILN_I64, S(3, 4), q, q, q)->value = 1;
    expect_invalid(g, "verify: %1 (sdpa): attention needs a float dtype, not i64");

    g = kiln_graph_new();
    q = leaf(g, IR_INPUT, "q", KILN_F32, S(3, 4));
    NODE(g, IR_SDPA, KILN_F32, S(3, 4), q, q, q)->value = 0;
    expect_invalid(g, "verify: %1 (sdpa): the scale 0 is not positive");
}

/* An attention op's optional last operand: a bool mask (..., T, S). */
static void test_attention_mask(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *q = leaf(g, IR_INPUT, "q", KILN_F32, S(2, 3, 4));
    kiln_tensor *k = leaf(g, IR_INPUT, "k", KILN_F32, S(2, 5, 4));
    kiln_tensor *gr = leaf(g, IR_INPUT, "g", KILN_F32, S(2, 3, 4));
    kiln_tensor *m = leaf(g, IR_INPUT, "m", KILN_BOOL, S(2, 3, 5));
    NODE(g, IR_SDPA, KILN_F32, S(2, 3, 4), q, k, k, m)->value = 0.5;
    kiln_tensor *st = NODE(g, IR_SDPA_STATS, KILN_F64, S(2, 3, 2), q, k, k, gr, m);
    st->value = 0.5;
    NODE(g, IR_SDPA_GRAD, KILN_F32, S(2, 3, 4), q, k, k, gr, st, m)->value = 0.5;
    ku_assert_ok(g);
    assert_ptr_equal(ir_attention_mask(g->nodes[5]), m);
    assert_null(ir_attention_mask(NODE(g, IR_SDPA, KILN_F32, S(2, 3, 4), q, k, k)));
    kiln_graph_free(g);

    g = kiln_graph_new();
    q = leaf(g, IR_INPUT, "q", KILN_F32, S(3, 4));
    m = leaf(g, IR_INPUT, "m", KILN_I32, S(3, 3));
    NODE(g, IR_SDPA, KILN_F32, S(3, 4), q, q, q, m)->value = 0.5;
    expect_invalid(g, "verify: %2 (sdpa): the mask has dtype i32, not bool");

    g = kiln_graph_new();
    q = leaf(g, IR_INPUT, "q", KILN_F32, S(2, 3, 4));
    m = leaf(g, IR_INPUT, "m", KILN_BOOL, S(3, 3));
    NODE(g, IR_SDPA, KILN_F32, S(2, 3, 4), q, q, q, m)->value = 0.5;
    expect_invalid(g, "verify: %2 (sdpa): the mask [3, 3] is not (..., T, S) = [2, 3, 4] batch "
                      "axes, 3, 3");

    g = kiln_graph_new();
    q = leaf(g, IR_INPUT, "q", KILN_F32, S(3, 4));
    NODE(g, IR_SDPA, KILN_F32, S(3, 4), q, q);
    expect_invalid(g, "verify: %1 (sdpa): takes 3 operands and an optional mask, has 2");

    g = kiln_graph_new();
    q = leaf(g, IR_INPUT, "q", KILN_F32, S(3, 4));
    NODE(g, IR_SDPA_STATS, KILN_F64, S(3, 2), q, q, q, q, q, q);
    expect_invalid(g, "verify: %1 (sdpa_stats): takes 4 operands and an optional mask, has 6");
}

/* A conv node with stride (sh, sw), dilation (dh, dw) and groups. */
static kiln_tensor *conv_node(kiln_graph *g, kiln_dtype dt, int rank, const int64_t *dims,
                              kiln_tensor *x, kiln_tensor *w, int64_t sh, int64_t sw, int64_t dh,
                              int64_t dw, int64_t groups)
{
    kiln_tensor *in[2] = {x, w};
    kiln_tensor *t = ir_node_new(g, IR_CONV, dt, rank, dims, 2, in);
    const int64_t step[4] = {1, 1, sh, sw}, dil[4] = {1, 1, dh, dw};
    memcpy(t->step, step, sizeof step);
    memcpy(t->dilation, dil, sizeof dil);
    t->groups = groups;
    return t;
}

/* conv: x [N, C, H, W], w [O, C/g, kh, kw] of the result's float dtype, its
 * shape from stride and dilation, 1 on the batch and channel axes. */
static void test_conv(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = leaf(g, IR_INPUT, "x", KILN_F32, S(2, 4, 9, 8));
    kiln_tensor *w = leaf(g, IR_INPUT, "w", KILN_F32, S(6, 2, 3, 2));
    conv_node(g, KILN_F32, S(2, 6, 3, 4), x, w, 2, 2, 2, 1, 2); /* (9-5)/2+1, (8-2)/2+1 */
    ku_assert_ok(g);
    kiln_graph_free(g);

    static const struct {
        int64_t o[4], sh, dh, groups;
        int64_t wdims[4];
        const char *msg;
    } bad[] = {
        {{2, 6, 3, 4}, 2, 2, 3, {6, 2, 3, 2}, "weight [6, 2, 3, 2] over 3 groups does not fit"},
        {{2, 6, 3, 4}, 0, 2, 2, {6, 2, 3, 2}, "stride (0, 2), dilation (2, 1) and groups 2"},
        {{2, 6, 3, 4}, 2, 5, 2, {6, 2, 3, 2}, "weight [6, 2, 3, 2] with dilation 5 does not fit"},
        {{2, 6, 4, 4},
         2,
         2,
         2,
         {6, 2, 3, 2},
         "the result is [2, 6, 4, 4] but the conv gives "
         "[2, 6, 3, 4]"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        g = kiln_graph_new();
        x = leaf(g, IR_INPUT, "x", KILN_F32, S(2, 4, 9, 8));
        w = leaf(g, IR_INPUT, "w", KILN_F32, 4, bad[i].wdims);
        conv_node(g, KILN_F32, 4, bad[i].o, x, w, bad[i].sh, 2, bad[i].dh, 1, bad[i].groups);
        expect_invalid_part(g, bad[i].msg);
    }

    g = kiln_graph_new();
    x = leaf(g, IR_INPUT, "x", KILN_F32, S(2, 4, 9));
    w = leaf(g, IR_INPUT, "w", KILN_F32, S(6, 4, 3));
    conv_node(g, KILN_F32, S(2, 6, 7), x, w, 1, 1, 1, 1, 1);
    expect_invalid(g, "verify: %2 (conv): input [2, 4, 9] and weight [6, 4, 3] are not both 4-D "
                      "(NCHW, OIHW)");

    g = kiln_graph_new();
    x = leaf(g, IR_INPUT, "x", KILN_F32, S(2, 4, 9, 8));
    w = leaf(g, IR_INPUT, "w", KILN_F32, S(6, 4, 3, 3));
    conv_node(g, KILN_F32, S(2, 6, 7, 6), x, w, 1, 1, 1, 1, 1)->step[1] = 2;
    expect_invalid(g, "verify: %2 (conv): stride and dilation must be 1 on the batch and channel "
                      "axes");

    g = kiln_graph_new();
    x = leaf(g, IR_INPUT, "x", KILN_I32, S(2, 4, 9, 8));
    w = leaf(g, IR_INPUT, "w", KILN_I32, S(6, 4, 3, 3));
    conv_node(g, KILN_I32, S(2, 6, 7, 6), x, w, 1, 1, 1, 1, 1);
    expect_invalid(g, "verify: %2 (conv): a conv of dtype i32 (float only)");

    g = kiln_graph_new();
    x = leaf(g, IR_INPUT, "x", KILN_F32, S(2, 4, 9, 8));
    w = leaf(g, IR_INPUT, "w", KILN_F64, S(6, 4, 3, 3));
    conv_node(g, KILN_F32, S(2, 6, 7, 6), x, w, 1, 1, 1, 1, 1);
    expect_invalid(g, "verify: %2 (conv): operand 1 has dtype f64 but the result is f32");
}

/* sdpa's backward: stats in f64 (T x 2), g (T x Dv), a gradient of q, k or v. */
static void test_attention_backward(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *q = leaf(g, IR_INPUT, "q", KILN_F32, S(2, 3, 4));
    kiln_tensor *k = leaf(g, IR_INPUT, "k", KILN_F32, S(2, 5, 4));
    kiln_tensor *v = leaf(g, IR_INPUT, "v", KILN_F32, S(2, 5, 6));
    kiln_tensor *gr = leaf(g, IR_INPUT, "g", KILN_F32, S(2, 3, 6));
    kiln_tensor *st = NODE(g, IR_SDPA_STATS, KILN_F64, S(2, 3, 2), q, k, v, gr);
    st->value = 0.5;
    const int64_t rows[3] = {3, 5, 5}, cols[3] = {4, 4, 6};
    for (int a = 0; a < 3; a++) {
        kiln_tensor *d = NODE(g, IR_SDPA_GRAD, KILN_F32, S(2, rows[a], cols[a]), q, k, v, gr, st);
        d->value = 0.5;
        d->axis = a;
    }
    ku_assert_ok(g);
    kiln_graph_free(g);

    g = kiln_graph_new();
    q = leaf(g, IR_INPUT, "q", KILN_F32, S(3, 4));
    NODE(g, IR_SDPA_STATS, KILN_F32, S(3, 2), q, q, q, q)->value = 0.5;
    expect_invalid(g, "verify: %1 (sdpa_stats): sdpa_stats gives f64, not f32");

    g = kiln_graph_new();
    q = leaf(g, IR_INPUT, "q", KILN_F32, S(3, 4));
    gr = leaf(g, IR_INPUT, "g", KILN_F32, S(3, 5));
    NODE(g, IR_SDPA_STATS, KILN_F64, S(3, 2), q, q, q, gr)->value = 0.5;
    expect_invalid(g, "verify: %2 (sdpa_stats): sdpa_stats of q [3, 4], k [3, 4], v [3, 4], g "
                      "[3, 5] does not give [3, 2] (expected (..., T, D), (..., S, D), (..., S, "
                      "Dv), g (..., T, Dv) -> (..., T, 2))");

    g = kiln_graph_new();
    q = leaf(g, IR_INPUT, "q", KILN_F32, S(3, 4));
    st = NODE(g, IR_SDPA_STATS, KILN_F64, S(3, 2), q, q, q, q);
    st->value = 0.5;
    kiln_tensor *d = NODE(g, IR_SDPA_GRAD, KILN_F32, S(3, 4), q, q, q, q, st);
    d->value = 0.5;
    d->axis = 3;
    expect_invalid(g, "verify: %2 (sdpa_grad): sdpa_grad axis 3 is not 0 (q), 1 (k) or 2 (v)");

    g = kiln_graph_new();
    q = leaf(g, IR_INPUT, "q", KILN_F32, S(3, 4));
    kiln_tensor *bad = leaf(g, IR_INPUT, "s", KILN_F32, S(3, 2));
    d = NODE(g, IR_SDPA_GRAD, KILN_F32, S(3, 4), q, q, q, q, bad);
    d->value = 0.5;
    expect_invalid(g, "verify: %2 (sdpa_grad): operand 4 (the stats) has dtype f32, not f64");

    g = kiln_graph_new();
    q = leaf(g, IR_INPUT, "q", KILN_F32, S(3, 4));
    st = NODE(g, IR_SDPA_STATS, KILN_F64, S(3, 2), q, q, q, q);
    st->value = 0.5;
    d = NODE(g, IR_SDPA_GRAD, KILN_F32, S(3, 3), q, q, q, q, st);
    d->value = 0.5;
    expect_invalid(g, "verify: %2 (sdpa_grad): sdpa_grad of q [3, 4], k [3, 4], v [3, 4], g "
                      "[3, 4] does not give [3, 3] (expected (..., T, D), (..., S, D), (..., S, "
                      "Dv), g (..., T, Dv), stats (..., T, 2) -> q's, k's or v's shape)");
}

static void test_gather_scatter(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *t = leaf(g, IR_INPUT, "t", KILN_F32, S(10, 4));
    kiln_tensor *ids = leaf(g, IR_INPUT, "ids", KILN_F32, S(3));
    NODE(g, IR_GATHER, KILN_F32, S(3, 4), t, ids);
    expect_invalid(g, "verify: %2 (gather): operand 1 (ids) has dtype f32 but ids must be i32 or "
                      "i64");

    g = kiln_graph_new();
    t = leaf(g, IR_INPUT, "t", KILN_F32, S(10, 4));
    ids = leaf(g, IR_INPUT, "ids", KILN_I64, S(2, 3));
    NODE(g, IR_GATHER, KILN_F32, S(3, 4), t, ids);
    expect_invalid(g, "verify: %2 (gather): the result is [3, 4] but indexing [10, 4] along axis "
                      "0 with ids [2, 3] gives [2, 3, 4]");

    g = kiln_graph_new();
    t = leaf(g, IR_INPUT, "t", KILN_F32, S(10, 4));
    ids = leaf(g, IR_INPUT, "ids", KILN_I64, S(3));
    kiln_tensor *x = NODE(g, IR_GATHER, KILN_F32, S(3, 4), t, ids);
    x->axis = 2;
    expect_invalid(g, "verify: %2 (gather): axis 2 is outside rank 2");

    g = kiln_graph_new();
    t = leaf(g, IR_INPUT, "t", KILN_F32, S(10, 4));
    ids = leaf(g, IR_INPUT, "ids", KILN_I64, S(3));
    NODE(g, IR_GATHER, KILN_F64, S(3, 4), t, ids);
    expect_invalid(g, "verify: %2 (gather): operand 0 has dtype f32 but the result is f64");

    g = kiln_graph_new();
    kiln_tensor *src = leaf(g, IR_INPUT, "src", KILN_F32, S(2, 3));
    ids = leaf(g, IR_INPUT, "ids", KILN_I32, S(3));
    x = NODE(g, IR_SCATTER_ADD, KILN_F32, S(2, 5), src, ids);
    x->axis = 1;
    expect_ok(g);

    g = kiln_graph_new();
    src = leaf(g, IR_INPUT, "src", KILN_F32, S(2, 3));
    ids = leaf(g, IR_INPUT, "ids", KILN_I32, S(4));
    x = NODE(g, IR_SCATTER_ADD, KILN_F32, S(2, 5), src, ids);
    x->axis = 1;
    expect_invalid(g, "verify: %2 (scatter_add): operand 0 (src) is [2, 3] but indexing [2, 5] "
                      "along axis 1 with ids [4] gives [2, 4]");

    g = kiln_graph_new(); /* a rank that would exceed 8 is reported, not overrun */
    t = leaf(g, IR_INPUT, "t", KILN_F32, S(1, 1, 1, 1, 1, 1, 1, 1));
    ids = leaf(g, IR_INPUT, "ids", KILN_I32, S(1, 1, 1, 1, 1, 1, 1, 1));
    NODE(g, IR_GATHER, KILN_F32, S(1, 1), t, ids);
    expect_invalid(g, "verify: %2 (gather): the result is [1, 1] but indexing [1, 1, 1, 1, 1, 1, "
                      "1, 1] along axis 0 with ids [1, 1, 1, 1, 1, 1, 1, 1] gives a rank above 8");
}

static void test_assign(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = leaf(g, IR_INPUT, "x", KILN_F32, S(2));
    kiln_tensor *v = SRC(g, IR_FULL, KILN_F32, S(2));
    NODE(g, IR_ASSIGN, KILN_F32, S(2), x, v);
    expect_invalid(g, "verify: %2 (assign): operand 0 is %0 (input), not a param");

    g = kiln_graph_new();
    kiln_tensor *p = leaf(g, IR_PARAM, "p", KILN_F32, S(2));
    v = SRC(g, IR_FULL, KILN_F64, S(2));
    NODE(g, IR_ASSIGN, KILN_F32, S(2), p, v);
    expect_invalid(g, "verify: %2 (assign): operand 1 has dtype f64 but the param is f32");

    g = kiln_graph_new();
    p = leaf(g, IR_PARAM, "p", KILN_F32, S(2));
    v = SRC(g, IR_FULL, KILN_F32, S(2));
    NODE(g, IR_ASSIGN, KILN_F64, S(2), p, v);
    expect_invalid(g, "verify: %2 (assign): the result has dtype f64 but the param is f32");

    g = kiln_graph_new();
    p = leaf(g, IR_PARAM, "p", KILN_F32, S(2));
    v = SRC(g, IR_FULL, KILN_F32, S(1));
    NODE(g, IR_ASSIGN, KILN_F32, S(2), p, v);
    expect_invalid(g, "verify: %2 (assign): operand 1 has shape [1] but the result is [2]");
}

/* ---- entries --------------------------------------------------------------------------- */

static void test_entries(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = leaf(g, IR_INPUT, "x", KILN_F32, S(2));
    entry1(g, "", x, "o");
    expect_invalid(g, "verify: entry \"\": an entry needs a non-empty name");

    g = kiln_graph_new();
    x = leaf(g, IR_INPUT, "x", KILN_F32, S(2));
    entry1(g, "e", x, "o1");
    entry1(g, "e", x, "o2");
    expect_invalid(g, "verify: entry \"e\": another entry has the same name");

    g = kiln_graph_new();
    x = leaf(g, IR_INPUT, "x", KILN_F32, S(2));
    entry1(g, "e", x, "");
    expect_invalid(g, "verify: entry \"e\": output 0 needs a non-empty name");

    g = kiln_graph_new();
    x = leaf(g, IR_INPUT, "x", KILN_F32, S(2));
    entry1(g, "e", x, NULL);
    expect_invalid(g, "verify: entry \"e\": output 0 needs a non-empty name");

    g = kiln_graph_new();
    x = leaf(g, IR_INPUT, "x", KILN_F32, S(2));
    entry1(g, "e", NULL, "o");
    expect_invalid(g, "verify: entry \"e\": output 0 is not a node of this graph");

    g = kiln_graph_new();
    kiln_graph *other = kiln_graph_new();
    kiln_tensor *ox = leaf(other, IR_INPUT, "x", KILN_F32, S(2));
    leaf(g, IR_INPUT, "x", KILN_F32, S(2));
    entry1(g, "e", ox, "o");
    expect_invalid(g, "verify: entry \"e\": output 0 is not a node of this graph");
    kiln_graph_free(other);

    g = kiln_graph_new(); /* output names are one namespace across entries */
    x = leaf(g, IR_INPUT, "x", KILN_F32, S(2));
    entry1(g, "e", x, "o");
    entry1(g, "f", x, "o");
    expect_invalid(g, "verify: entry \"f\": output name \"o\" is used twice");

    g = kiln_graph_new();
    x = leaf(g, IR_INPUT, "x", KILN_F32, S(2));
    leaf(g, IR_PARAM, "w", KILN_F32, S(2));
    entry1(g, "e", x, "w");
    expect_invalid(g, "verify: entry \"e\": output name \"w\" is already the name of %1 (param)");
}

/* ---- status and location ------------------------------------------------------------- */

static void test_where_and_status(void **state)
{
    (void)state;
    int node = 7, entry = 7;
    assert_int_equal(ir_verify_where(NULL, &node, &entry), KILN_ERR_INVALID);

    kiln_graph *g = kiln_graph_new();
    leaf(g, IR_INPUT, "x", KILN_F32, S(2));
    leaf(g, IR_INPUT, "x", KILN_F32, S(2));
    assert_int_equal(ir_verify_where(g, &node, &entry), KILN_ERR_INVALID);
    assert_int_equal(node, 1);
    assert_int_equal(entry, -1);
    kiln_graph_free(g);

    g = kiln_graph_new();
    kiln_tensor *x = leaf(g, IR_INPUT, "x", KILN_F32, S(2));
    entry1(g, "e", x, "o");
    entry1(g, "f", x, "x");
    assert_int_equal(ir_verify_where(g, &node, &entry), KILN_ERR_INVALID);
    assert_int_equal(node, -1);
    assert_int_equal(entry, 1);
    kiln_graph_free(g);

    /* a graph already in error keeps its first message and status */
    g = kiln_graph_new();
    SRC(g, IR_CONST, KILN_F32, S(2));
    ir_fail(g, KILN_ERR_SHAPE, "kiln_add: earlier problem");
    assert_int_equal(ir_verify_where(g, &node, &entry), KILN_ERR_SHAPE);
    assert_int_equal(node, -1);
    assert_graph_error(g, KILN_ERR_SHAPE, "kiln_add: earlier problem");
    kiln_graph_free(g);

    /* verifying twice gives the same answer and leaves a good graph untouched */
    g = kiln_graph_new();
    leaf(g, IR_INPUT, "x", KILN_F32, S(2));
    assert_int_equal(ir_verify(g), KILN_OK);
    assert_int_equal(ir_verify(g), KILN_OK);
    assert_int_equal(kiln_graph_status(g), KILN_OK);
    kiln_graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_hand_made),
        cmocka_unit_test(test_valid_builders),
        cmocka_unit_test(test_operand_order),
        cmocka_unit_test(test_arity),
        cmocka_unit_test(test_node_form),
        cmocka_unit_test(test_sources),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_elementwise),
        cmocka_unit_test(test_reductions),
        cmocka_unit_test(test_reshape_permute_expand),
        cmocka_unit_test(test_slice_pad),
        cmocka_unit_test(test_concat),
        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_conv),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_attention_backward),
        cmocka_unit_test(test_attention_mask),
        cmocka_unit_test(test_gather_scatter),
        cmocka_unit_test(test_assign),
        cmocka_unit_test(test_entries),
        cmocka_unit_test(test_where_and_status),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
