/* test_entry.c - detach, assign, entries and their output names, optimizer
 * settings, and the planned autodiff entry points. */
#include "frontend/fe.h"
#include "testutil.h"

#include <stdbool.h>
#include <string.h>

/* ---- detach -------------------------------------------------------------------- */

static void test_detach(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_I32, KILN_SHAPE(2, 3));
    kiln_tensor *d = kiln_detach(g, x);
    assert_non_null(d);
    assert_int_equal(d->op, IR_DETACH);
    assert_ptr_equal(d->in[0], x);
    assert_int_equal(d->dtype, KILN_I32);
    assert_int_equal(d->rank, 2);
    assert_int_equal(d->dims[1], 3);
    assert_null(kiln_detach(g, NULL));
    assert_null(kiln_detach(NULL, x));
    assert_int_equal(kiln_graph_status(g), KILN_OK);
    kiln_graph_free(g);
}

/* ---- assign ---------------------------------------------------------------------- */

static void test_assign(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *w = kiln_param(g, "w", KILN_F32, KILN_SHAPE(2, 3), kiln_init_zeros());
    kiln_tensor *v = kiln_input(g, "v", KILN_F32, KILN_SHAPE(2, 3));
    kiln_tensor *a = kiln_assign(g, w, v);
    assert_non_null(a);
    assert_int_equal(a->op, IR_ASSIGN);
    assert_int_equal(a->nin, 2);
    assert_ptr_equal(a->in[0], w);
    assert_ptr_equal(a->in[1], v);
    assert_int_equal(a->dtype, KILN_F32);
    assert_int_equal(a->rank, 2);
    assert_int_equal(a->dims[0], 2);
    assert_int_equal(a->dims[1], 3);

    /* converted to the param's dtype and broadcast to its shape */
    kiln_tensor *row = kiln_input(g, "row", KILN_F64, KILN_SHAPE(3));
    kiln_tensor *b = kiln_assign(g, w, row);
    assert_non_null(b);
    kiln_tensor *bv = b->in[1];
    assert_int_equal(bv->dtype, KILN_F32);
    assert_int_equal(bv->rank, 2);
    assert_int_equal(bv->dims[0], 2);
    assert_int_equal(bv->dims[1], 3);
    assert_int_equal(bv->op, IR_EXPAND);

    /* a weak scalar becomes a constant of the param's dtype */
    kiln_tensor *ci = kiln_param(g, "count", KILN_I64, 0, NULL, kiln_init_zeros());
    kiln_tensor *c = kiln_assign(g, ci, kiln_scalar(g, 2.5));
    assert_non_null(c);
    assert_int_equal(c->in[1]->op, IR_FULL);
    assert_int_equal(c->in[1]->dtype, KILN_I64);
    assert_false(c->in[1]->weak);
    assert_int_equal(c->rank, 0);

    /* the update may read the param itself: w - 0.1 */
    kiln_tensor *upd = kiln_sub(g, w, kiln_scalar(g, 0.1));
    assert_non_null(kiln_assign(g, w, upd));
    assert_int_equal(kiln_graph_status(g), KILN_OK);
    kiln_graph_free(g);
}

static void test_assign_errors(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(3));
    assert_null(kiln_assign(g, x, x));
    assert_graph_error(g, KILN_ERR_INVALID, "kiln_assign: the target must be a param");
    kiln_graph_free(g);

    g = kiln_graph_new();
    kiln_graph *h = kiln_graph_new();
    kiln_tensor *w = kiln_param(h, "w", KILN_F32, KILN_SHAPE(3), kiln_init_zeros());
    x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(3));
    assert_null(kiln_assign(g, w, x));
    assert_graph_error(g, KILN_ERR_INVALID, "kiln_assign: the target must be a param");
    assert_int_equal(kiln_graph_status(h), KILN_OK);
    kiln_graph_free(g);
    kiln_graph_free(h);

    g = kiln_graph_new();
    w = kiln_param(g, "w", KILN_F32, KILN_SHAPE(3), kiln_init_zeros());
    x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(4));
    assert_null(kiln_assign(g, w, x));
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_assign: The size of tensor a (3) must match the "
                       "size of tensor b (4) at non-singleton dimension 0");
    kiln_graph_free(g);

    g = kiln_graph_new();
    w = kiln_param(g, "w", KILN_F32, KILN_SHAPE(3), kiln_init_zeros());
    x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(2, 3));
    assert_null(kiln_assign(g, w, x));
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_assign: output with shape [3] doesn't match the "
                       "broadcast shape [2, 3]");
    kiln_graph_free(g);

    g = kiln_graph_new();
    w = kiln_param(g, "w", KILN_F32, KILN_SHAPE(1), kiln_init_zeros());
    x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(5));
    assert_null(kiln_assign(g, w, x));
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_assign: output with shape [1] doesn't match the "
                       "broadcast shape [5]");
    kiln_graph_free(g);

    g = kiln_graph_new();
    w = kiln_param(g, "w", KILN_F32, KILN_SHAPE(3), kiln_init_zeros());
    assert_null(kiln_assign(g, w, NULL));
    assert_null(kiln_assign(g, NULL, w));
    assert_null(kiln_assign(NULL, w, w));
    assert_int_equal(kiln_graph_status(g), KILN_OK);
    kiln_graph_free(g);
}

/* ---- entries ------------------------------------------------------------------------ */

static void test_entry(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(3));
    kiln_tensor *w = kiln_param(g, "w", KILN_F32, KILN_SHAPE(3), kiln_init_ones());
    kiln_tensor *y = kiln_mul(g, x, w);
    kiln_tensor *c = kiln_full(g, KILN_F32, 0, NULL, 2);
    kiln_tensor *v = kiln_reshape(g, x, KILN_SHAPE(3, 1));
    assert_int_equal(kiln_entry(g, "predict", 2, (kiln_tensor *const[]){y, x}, NULL), KILN_OK);
    /* leaves, constants, views, and the same tensor twice under two names */
    assert_int_equal(kiln_entry(g, "misc", 4, (kiln_tensor *const[]){w, c, v, v},
                                (const char *const[]){"w_out", "two", "col", "col2"}),
                     KILN_OK);
    /* a NULL name in the list gets the default */
    assert_int_equal(
        kiln_entry(g, "mixed", 2, (kiln_tensor *const[]){y, y}, (const char *const[]){"yy", NULL}),
        KILN_OK);
    assert_int_equal(g->nentries, 3);
    ir_entry *e = ir_find_entry(g, "predict");
    assert_non_null(e);
    assert_string_equal(e->name, "predict");
    assert_int_equal(e->n, 2);
    assert_ptr_equal(e->outputs[0], y);
    assert_ptr_equal(e->outputs[1], x);
    assert_string_equal(e->output_names[0], "predict.0");
    assert_string_equal(e->output_names[1], "predict.1");
    e = ir_find_entry(g, "misc");
    assert_ptr_equal(e->outputs[2], v);
    assert_ptr_equal(e->outputs[3], v);
    assert_string_equal(e->output_names[3], "col2");
    e = ir_find_entry(g, "mixed");
    assert_string_equal(e->output_names[0], "yy");
    assert_string_equal(e->output_names[1], "mixed.1");
    assert_int_equal(kiln_graph_status(g), KILN_OK);
    kiln_graph_free(g);
}

static void test_entry_names_copied(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, 0, NULL);
    char ename[16] = "run", oname[16] = "out";
    const char *names[1] = {oname};
    assert_int_equal(kiln_entry(g, ename, 1, &x, names), KILN_OK);
    strcpy(ename, "zzz");
    strcpy(oname, "zzz");
    assert_non_null(ir_find_entry(g, "run"));
    assert_string_equal(g->entries[0].output_names[0], "out");
    kiln_graph_free(g);
}

/* Each case builds x (input), w (param) and an entry "train" with output
 * "loss", then makes one bad kiln_entry call. */
static void test_entry_errors(void **state)
{
    (void)state;
    struct {
        const char *name;
        int n;
        int out; /* 0: x, 1: NULL, 2: a tensor of another graph */
        const char *oname;
        const char *msg;
    } cases[] = {
        {"train", 1, 0, "y", "kiln_entry: an entry named 'train' already exists"},
        {"", 1, 0, "y", "kiln_entry: the entry name must be a non-empty string"},
        {NULL, 1, 0, "y", "kiln_entry: the entry name must be a non-empty string"},
        {"p", 0, 0, "y", "kiln_entry: entry 'p' needs at least one output"},
        {"p", 1, 1, "y", "kiln_entry: output 0 of entry 'p' is NULL"},
        {"p", 1, 2, "y", "kiln_entry: output 0 of entry 'p' belongs to another graph"},
        {"p", 1, 0, "", "kiln_entry: the name of output 0 of entry 'p' is empty"},
        {"p", 1, 0, "x", "kiln_entry: the output name 'x' is already used by an input"},
        {"p", 1, 0, "w", "kiln_entry: the output name 'w' is already used by a param"},
        {"p", 1, 0, "loss",
         "kiln_entry: the output name 'loss' is already used by output 0 of entry 'train'"},
        {"p", 2, 0, "y",
         "kiln_entry: the output name 'y' is already used by output 0 of this "
         "entry"},
        {"train2", 1, 0, NULL, NULL}, /* default name "train2.0" is free */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        kiln_graph *g = kiln_graph_new(), *h = kiln_graph_new();
        kiln_tensor *x = kiln_input(g, "x", KILN_F32, 0, NULL);
        kiln_param(g, "w", KILN_F32, 0, NULL, kiln_init_zeros());
        assert_int_equal(kiln_entry(g, "train", 1, &x, (const char *const[]){"loss"}), KILN_OK);
        kiln_tensor *foreign = kiln_input(h, "f", KILN_F32, 0, NULL);
        kiln_tensor *o = cases[i].out == 0 ? x : cases[i].out == 1 ? NULL : foreign;
        kiln_tensor *outs[2] = {o, o};
        const char *names[2] = {cases[i].oname, cases[i].oname};
        kiln_status s =
            kiln_entry(g, cases[i].name, cases[i].n, outs, cases[i].oname ? names : NULL);
        if (cases[i].msg) {
            assert_int_equal(s, KILN_ERR_INVALID);
            assert_graph_error(g, KILN_ERR_INVALID, cases[i].msg);
            assert_int_equal(g->nentries, 1); /* a failed call records no entry */
        } else {
            assert_int_equal(s, KILN_OK);
        }
        kiln_graph_free(g);
        kiln_graph_free(h);
    }
}

/* Two assigns to one param in one entry: the last used to win silently. */
static void test_entry_assigns_a_param_once(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(2));
    kiln_tensor *p = kiln_param(g, "p", KILN_F32, KILN_SHAPE(2), kiln_init_zeros());
    kiln_tensor *q = kiln_param(g, "q", KILN_F32, KILN_SHAPE(2), kiln_init_zeros());
    kiln_tensor *a = kiln_assign(g, p, x);
    kiln_tensor *b = kiln_assign(g, q, x);
    kiln_tensor *c = kiln_assign(g, p, kiln_neg(g, x));
    kiln_status s = kiln_entry(g, "f", 4, (kiln_tensor *const[]){a, x, b, c}, NULL);
    assert_int_equal(s, KILN_ERR_INVALID);
    assert_graph_error(g, KILN_ERR_INVALID,
                       "kiln_entry: outputs 0 and 3 of entry 'f' both assign param 'p'; an entry "
                       "may assign a param at most once");
    assert_int_equal(g->nentries, 0);
    kiln_graph_free(g);

    /* one assign listed twice writes one value: allowed, as are separate entries */
    g = kiln_graph_new();
    x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(2));
    p = kiln_param(g, "p", KILN_F32, KILN_SHAPE(2), kiln_init_zeros());
    a = kiln_assign(g, p, x);
    c = kiln_assign(g, p, kiln_neg(g, x));
    assert_int_equal(kiln_entry(g, "f", 2, (kiln_tensor *const[]){a, a}, NULL), KILN_OK);
    assert_int_equal(kiln_entry(g, "g", 1, &c, NULL), KILN_OK);
    kiln_graph_free(g);
}

static void test_entry_default_name_clash(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = kiln_input(g, "f.0", KILN_F32, 0, NULL);
    assert_int_equal(kiln_entry(g, "f", 1, &x, NULL), KILN_ERR_INVALID);
    assert_graph_error(g, KILN_ERR_INVALID,
                       "kiln_entry: the output name 'f.0' is already used by an input");
    kiln_graph_free(g);
}

static void test_entry_after_error(void **state)
{
    (void)state;
    assert_int_equal(kiln_entry(NULL, "f", 0, NULL, NULL), KILN_ERR_INVALID);
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(2));
    assert_null(kiln_reshape(g, x, KILN_SHAPE(3)));
    /* a graph in error returns its status and keeps its message */
    assert_int_equal(kiln_entry(g, "f", 1, &x, NULL), KILN_ERR_SHAPE);
    assert_graph_error(g, KILN_ERR_SHAPE, "kiln_reshape: shape '[3]' is invalid");
    assert_int_equal(g->nentries, 0);
    /* and a failed entry's error sticks too */
    kiln_graph *h = kiln_graph_new();
    assert_int_equal(kiln_entry(h, "", 1, &x, NULL), KILN_ERR_INVALID);
    assert_null(kiln_input(h, "", KILN_F32, 0, NULL));
    assert_graph_error(h, KILN_ERR_INVALID, "kiln_entry: the entry name must be");
    kiln_graph_free(g);
    kiln_graph_free(h);
}

/* ---- values (reference interpreter) -------------------------------------------------- */

static kiln_module *compile_interp(kiln_graph *g)
{
    kiln_compile_opts o = {.target = KILN_TARGET_INTERP};
    kiln_module *m = NULL;
    kiln_status s = kiln_compile(g, &o, &m);
    if (s != KILN_OK)
        fprintf(stderr, "compile: %s\n", kiln_graph_error(g));
    assert_int_equal(s, KILN_OK);
    return m;
}

/* Manual gradient descent's shape: w <- w + x, applied after the outputs. */
static void test_assign_values(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *w = kiln_param(g, "w", KILN_F32, KILN_SHAPE(3), kiln_init_zeros());
    kiln_tensor *x = kiln_input(g, "x", KILN_F64, KILN_SHAPE(3));
    kiln_tensor *before = kiln_mul(g, w, kiln_scalar(g, 1));
    kiln_tensor *upd = kiln_assign(g, w, kiln_add(g, w, x));
    assert_int_equal(kiln_entry(g, "step", 2, (kiln_tensor *const[]){upd, before},
                                (const char *const[]){"new_w", "old_w"}),
                     KILN_OK);
    kiln_tensor *twice = kiln_mul(g, w, kiln_scalar(g, 2));
    assert_int_equal(kiln_entry(g, "predict", 1, &twice, NULL), KILN_OK);
    /* a scalar broadcast into a param */
    kiln_tensor *c = kiln_param(g, "c", KILN_I32, KILN_SHAPE(2), kiln_init_const(5));
    kiln_tensor *reset = kiln_assign(g, c, kiln_scalar(g, 7.9));
    assert_int_equal(kiln_entry(g, "reset", 1, &reset, NULL), KILN_OK);
    kiln_module *m = compile_interp(g);

    double xv[3] = {1, 2, 3};
    assert_int_equal(kiln_module_set(m, "x", xv, sizeof(xv)), KILN_OK);
    assert_int_equal(kiln_module_run(m, "step"), KILN_OK);
    assert_int_equal(kiln_module_run(m, "step"), KILN_OK);
    float wv[3], nw[3], ow[3], pv[3];
    assert_int_equal(kiln_module_get(m, "w", wv, sizeof(wv)), KILN_OK);
    assert_int_equal(kiln_module_get(m, "new_w", nw, sizeof(nw)), KILN_OK);
    assert_int_equal(kiln_module_get(m, "old_w", ow, sizeof(ow)), KILN_OK);
    for (int i = 0; i < 3; i++) {
        assert_true(wv[i] == 2 * (float)xv[i]);
        assert_true(nw[i] == wv[i]);
        assert_true(ow[i] == (float)xv[i]); /* read before the second update */
    }
    assert_int_equal(kiln_module_run(m, "predict"), KILN_OK);
    assert_int_equal(kiln_module_get(m, "predict.0", pv, sizeof(pv)), KILN_OK);
    assert_int_equal(kiln_module_get(m, "w", wv, sizeof(wv)), KILN_OK);
    for (int i = 0; i < 3; i++) {
        assert_true(pv[i] == 4 * (float)xv[i]);
        assert_true(wv[i] == 2 * (float)xv[i]); /* predict assigns nothing */
    }

    int32_t cv[2];
    assert_int_equal(kiln_module_get(m, "c", cv, sizeof(cv)), KILN_OK);
    assert_true(cv[0] == 5 && cv[1] == 5);
    assert_int_equal(kiln_module_run(m, "reset"), KILN_OK);
    assert_int_equal(kiln_module_get(m, "c", cv, sizeof(cv)), KILN_OK);
    assert_true(cv[0] == 7 && cv[1] == 7); /* converted to int32 like copy_ */
    kiln_module_free(m);
    kiln_graph_free(g);
}

/* Leaves, constants, detached values and one tensor under two names. */
static void test_entry_values(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_I64, KILN_SHAPE(2));
    kiln_tensor *k = kiln_full(g, KILN_I64, KILN_SHAPE(2), 4);
    kiln_tensor *d = kiln_detach(g, kiln_add(g, x, k));
    assert_int_equal(kiln_entry(g, "f", 4, (kiln_tensor *const[]){x, k, d, d},
                                (const char *const[]){"x_out", "k", "d1", "d2"}),
                     KILN_OK);
    kiln_module *m = compile_interp(g);
    int64_t xv[2] = {10, -3}, got[2];
    assert_int_equal(kiln_module_set(m, "x", xv, sizeof(xv)), KILN_OK);
    assert_int_equal(kiln_module_run(m, "f"), KILN_OK);
    assert_int_equal(kiln_module_get(m, "x_out", got, sizeof(got)), KILN_OK);
    assert_true(got[0] == 10 && got[1] == -3);
    assert_int_equal(kiln_module_get(m, "k", got, sizeof(got)), KILN_OK);
    assert_true(got[0] == 4 && got[1] == 4);
    assert_int_equal(kiln_module_get(m, "d1", got, sizeof(got)), KILN_OK);
    assert_true(got[0] == 14 && got[1] == 1);
    assert_int_equal(kiln_module_get(m, "d2", got, sizeof(got)), KILN_OK);
    assert_true(got[0] == 14 && got[1] == 1);
    kiln_module_free(m);
    kiln_graph_free(g);
}

/* ---- optimizers -------------------------------------------------------------------- */

static void test_optimizers(void **state)
{
    (void)state;
    kiln_optim s = kiln_sgd(0.1, 0.9, 1e-4);
    assert_int_equal(s.kind, KILN_SGD);
    assert_true(s.lr == 0.1 && s.momentum == 0.9 && s.weight_decay == 1e-4);
    assert_true(s.dampening == 0);
    assert_false(s.nesterov);
    assert_int_equal(s.accumulate, 0);

    kiln_optim a = kiln_adam(1e-3, 0.9, 0.999, 1e-8);
    assert_int_equal(a.kind, KILN_ADAM);
    assert_true(a.lr == 1e-3 && a.beta1 == 0.9 && a.beta2 == 0.999 && a.eps == 1e-8);
    assert_true(a.weight_decay == 0 && a.momentum == 0);
    assert_false(a.nesterov);
    assert_int_equal(a.accumulate, 0);

    kiln_optim w = kiln_adamw(1e-3, 0.8, 0.99, 1e-6, 0.01);
    assert_int_equal(w.kind, KILN_ADAMW);
    assert_true(w.lr == 1e-3 && w.beta1 == 0.8 && w.beta2 == 0.99 && w.eps == 1e-6);
    assert_true(w.weight_decay == 0.01);
    assert_int_equal(w.accumulate, 0);
}

/* ---- grad and train_step (test_grad.c and test_optim.c have the rest) ---------------------- */

static void test_grad_and_train_step(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *w = kiln_param(g, "w", KILN_F32, KILN_SHAPE(3), kiln_init_ones());
    kiln_tensor *y = kiln_sum(g, w, KILN_ALL, false);
    kiln_tensor *grads[1] = {NULL};
    assert_int_equal(kiln_grad(g, y, 1, &w, NULL, grads), KILN_OK); /* test_grad.c has the rest */
    assert_non_null(grads[0]);
    assert_int_equal(kiln_tensor_rank(grads[0]), 1);
    kiln_graph_free(g);

    /* a graph in error: kiln_grad and kiln_train_step return its first error */
    g = kiln_graph_new();
    w = kiln_param(g, "w", KILN_F32, KILN_SHAPE(3), kiln_init_ones());
    y = kiln_sum(g, w, KILN_ALL, false);
    assert_null(kiln_reshape(g, w, KILN_SHAPE(2)));
    assert_int_equal(kiln_train_step(g, "train", y, kiln_sgd(0.1, 0, 0)), KILN_ERR_SHAPE);
    assert_int_equal(kiln_grad(g, y, 1, &w, NULL, grads), KILN_ERR_SHAPE);
    assert_null(grads[0]);
    assert_graph_error(g, KILN_ERR_SHAPE, "kiln_reshape:");
    kiln_graph_free(g);

    assert_int_equal(kiln_grad(NULL, NULL, 0, NULL, NULL, NULL), KILN_ERR_INVALID);
    assert_int_equal(kiln_train_step(NULL, "t", NULL, kiln_sgd(0.1, 0, 0)), KILN_ERR_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detach),
        cmocka_unit_test(test_assign),
        cmocka_unit_test(test_assign_errors),
        cmocka_unit_test(test_entry),
        cmocka_unit_test(test_entry_names_copied),
        cmocka_unit_test(test_entry_errors),
        cmocka_unit_test(test_entry_assigns_a_param_once),
        cmocka_unit_test(test_entry_default_name_clash),
        cmocka_unit_test(test_entry_after_error),
        cmocka_unit_test(test_assign_values),
        cmocka_unit_test(test_entry_values),
        cmocka_unit_test(test_optimizers),
        cmocka_unit_test(test_grad_and_train_step),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
