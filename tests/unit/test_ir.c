/*
 * test_ir.c - the graph IR core: op table, dtypes, arena, nodes, sticky
 * errors, cloning.
 */
#include "ir/ir.h"
#include "testutil.h"

#include <math.h>
#include <string.h>

static void test_op_table_names_round_trip(void **state)
{
    (void)state;
    for (int op = 0; op < IR_OP_COUNT; op++) {
        const char *name = ir_ops[op].name;
        assert_int_equal(ir_op_from_name(name, strlen(name)), op);
    }
    assert_int_equal(ir_op_from_name("nosuchop", 8), IR_OP_COUNT);
    assert_int_equal(ir_op_from_name("add", 2), IR_OP_COUNT); /* a prefix is no match */
    assert_string_equal(ir_ops[IR_MATMUL].name, "matmul");
    assert_int_equal(ir_ops[IR_CONCAT].arity, -1);
    assert_int_equal(ir_ops[IR_WHERE].arity, 3);
    assert_true(ir_ops[IR_EQ].flags & IR_F_CMP);
    assert_true(ir_ops[IR_RAND].flags & IR_F_RANDOM);
    assert_true(ir_ops[IR_EXP].flags & IR_F_FLOATY);
    assert_false(ir_ops[IR_ABS].flags & IR_F_FLOATY);
}

static void test_dtypes(void **state)
{
    (void)state;
    assert_int_equal(kiln_dtype_size(KILN_F32), 4);
    assert_int_equal(kiln_dtype_size(KILN_F64), 8);
    assert_int_equal(kiln_dtype_size(KILN_I32), 4);
    assert_int_equal(kiln_dtype_size(KILN_I64), 8);
    assert_int_equal(kiln_dtype_size(KILN_BOOL), 1);
    assert_string_equal(kiln_dtype_name(KILN_F64), "float64");
    assert_string_equal(kiln_dtype_name(KILN_BOOL), "bool");
    assert_string_equal(ir_dtype_kir(KILN_I32), "i32");
    assert_string_equal(ir_dtype_torch(KILN_I64), "Long");
    assert_true(ir_dtype_is_float(KILN_F64));
    assert_false(ir_dtype_is_float(KILN_I64));
    assert_true(ir_dtype_is_int(KILN_I32));
    assert_false(ir_dtype_is_int(KILN_BOOL));
    assert_true(ir_dtype_valid(KILN_BOOL));
    assert_false(ir_dtype_valid(KILN_BOOL + 1));
    assert_false(ir_dtype_valid(-1));
}

static void test_load_store_convert(void **state)
{
    (void)state;
    float f[2];
    int32_t i32[2];
    int64_t i64[2];
    bool b[2];
    ir_store_f(KILN_F32, f, 1, 0.1);
    assert_true(f[1] == 0.1f);
    ir_store_f(KILN_I32, i32, 0, -2.7); /* truncates toward zero */
    assert_int_equal(i32[0], -2);
    ir_store_f(KILN_I64, i64, 0, 1e300); /* saturates */
    assert_true(i64[0] == INT64_MAX);
    ir_store_f(KILN_I64, i64, 1, (double)NAN);
    ir_store_f(KILN_I32, i32, 1, 1e20); /* saturates to int32, not wraps */
    assert_int_equal(i32[1], INT32_MAX);
    ir_store_f(KILN_I32, i32, 1, -1e20);
    assert_int_equal(i32[1], INT32_MIN);
    assert_true(i64[1] == 0);
    ir_store_f(KILN_BOOL, b, 0, -0.5);
    assert_true(b[0]);
    ir_store_i(KILN_I64, i64, 0, INT64_MIN);
    assert_true(ir_load_i(KILN_I64, i64, 0) == INT64_MIN);
    ir_store_i(KILN_BOOL, b, 1, 0);
    assert_true(ir_load_f(KILN_BOOL, b, 1) == 0.0);
    assert_true(ir_load_f(KILN_I32, i32, 0) == -2.0);
}

static void test_status_strings(void **state)
{
    (void)state;
    assert_string_equal(kiln_status_str(KILN_OK), "ok");
    assert_string_equal(kiln_status_str(KILN_ERR_SHAPE), "shape mismatch");
    assert_string_equal(kiln_status_str(KILN_ERR_NOT_FOUND), "not found");
    assert_string_equal(kiln_status_str((kiln_status)99), "unknown status");
}

static void test_arena_zeroes_aligns_and_handles_large_blocks(void **state)
{
    (void)state;
    ir_arena a = {0};
    unsigned char *p = ir_arena_alloc(&a, 10);
    assert_non_null(p);
    for (int i = 0; i < 10; i++)
        assert_int_equal(p[i], 0);
    unsigned char *big = ir_arena_alloc(&a, 1 << 20); /* its own block */
    unsigned char *q = ir_arena_alloc(&a, 7);
    assert_non_null(big);
    assert_non_null(q);
    assert_int_equal((uintptr_t)q % 16, 0);
    assert_ptr_equal(q, p + 16); /* small allocations keep packing after a large one */
    memset(big, 0xab, 1 << 20);
    assert_string_equal(ir_arena_strdup(&a, "kiln"), "kiln");
    ir_arena_free(&a);
    assert_null(a.head);
}

static void test_graph_basics_and_sticky_errors(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    assert_non_null(g);
    assert_int_equal(kiln_graph_status(g), KILN_OK);
    assert_string_equal(kiln_graph_error(g), "");
    assert_null(ir_fail(g, KILN_ERR_SHAPE, "first %d", 1));
    assert_int_equal(ir_fail_status(g, KILN_ERR_DTYPE, "second"), KILN_ERR_DTYPE);
    assert_int_equal(kiln_graph_status(g), KILN_ERR_SHAPE);
    assert_string_equal(kiln_graph_error(g), "first 1");
    kiln_graph_free(g);
    kiln_graph_free(NULL);
    assert_int_equal(kiln_graph_status(NULL), KILN_ERR_INVALID);
    assert_non_null(strstr(kiln_graph_error(NULL), "NULL"));
}

static void test_nodes_shapes_and_accessors(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *a = ir_node_new(g, IR_FULL, KILN_F32, 2, (int64_t[]){3, 4}, 0, NULL);
    kiln_tensor *b = ir_node_new(g, IR_NEG, KILN_F32, 2, (int64_t[]){3, 4}, 1, &a);
    assert_int_equal(a->id, 0);
    assert_int_equal(b->id, 1);
    assert_ptr_equal(b->in[0], a);
    assert_int_equal(b->perm[3], 3); /* identity perm by default */
    assert_int_equal(kiln_tensor_rank(b), 2);
    assert_int_equal(kiln_tensor_dim(b, -1), 4);
    assert_int_equal(kiln_tensor_dim(b, 2), -1);
    assert_int_equal(kiln_tensor_dim(NULL, 0), -1);
    assert_int_equal(kiln_tensor_rank(NULL), -1);
    assert_int_equal(kiln_tensor_numel(b), 12);
    assert_int_equal(kiln_tensor_dtype(b), KILN_F32);
    assert_true(ir_same_shape(a, b));
    int64_t st[2];
    ir_strides(2, b->dims, st);
    assert_int_equal(st[0], 4);
    assert_int_equal(st[1], 1);
    char buf[32];
    assert_string_equal(ir_shape_str(buf, sizeof buf, 2, b->dims), "[3, 4]");
    assert_string_equal(ir_shape_str(buf, sizeof buf, 0, NULL), "[]");
    assert_int_equal(ir_shape_numel(2, (int64_t[]){0, 5}), 0);
    /* counts past int64 saturate instead of wrapping (2^64 wrapped to 0) */
    const int64_t big = INT64_C(1) << 32;
    assert_int_equal(ir_shape_numel(2, (int64_t[]){big, big}), INT64_MAX);
    assert_int_equal(ir_shape_numel(3, (int64_t[]){big, big, 0}), 0);
    /* growth past the first node-array capacity keeps earlier nodes intact */
    for (int i = 0; i < 1000; i++)
        assert_non_null(ir_node_new(g, IR_NEG, KILN_F32, 2, a->dims, 1, &b));
    assert_ptr_equal(g->nodes[1], b);
    /* the node constructor refuses what a builder let through */
    assert_null(ir_node_new(g, IR_EXPAND, KILN_F32, 2, (int64_t[]){big, big}, 1, &b));
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "expand node: the shape [4294967296, 4294967296] has more elements than "
                       "int64 can count");
    kiln_graph_free(g);
}

static void test_clone_is_deep_and_equal(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_graph_seed(g, 1234);
    float data[2] = {1.5f, -2};
    kiln_tensor *c = ir_node_new(g, IR_CONST, KILN_F32, 1, (int64_t[]){2}, 0, NULL);
    c->data = ir_arena_alloc(&g->arena, sizeof data);
    memcpy(c->data, data, sizeof data);
    kiln_tensor *x = ir_node_new(g, IR_INPUT, KILN_F32, 1, (int64_t[]){2}, 0, NULL);
    x->name = ir_arena_strdup(&g->arena, "x");
    kiln_tensor *ins[2] = {c, x};
    kiln_tensor *s = ir_node_new(g, IR_ADD, KILN_F32, 1, (int64_t[]){2}, 2, ins);
    ir_entry *e = ir_entry_new(g, "f", 1);
    e->outputs[0] = s;
    e->output_names[0] = ir_arena_strdup(&g->arena, "f.0");

    kiln_graph *k = ir_graph_clone(g);
    assert_non_null(k);
    assert_int_equal(k->seed, 1234);
    assert_int_equal(k->nnodes, 3);
    assert_ptr_not_equal(k->nodes[0]->data, c->data);
    assert_memory_equal(k->nodes[0]->data, data, sizeof data);
    assert_ptr_equal(k->nodes[2]->in[1], k->nodes[1]);
    assert_ptr_equal(k->nodes[2]->graph, k);
    assert_string_equal(k->nodes[1]->name, "x");
    assert_ptr_equal(ir_find_leaf(k, "x"), k->nodes[1]);
    assert_null(ir_find_leaf(k, "y"));
    ir_entry *ke = ir_find_entry(k, "f");
    assert_non_null(ke);
    assert_ptr_equal(ke->outputs[0], k->nodes[2]);
    assert_string_equal(ke->output_names[0], "f.0");
    assert_null(ir_find_entry(k, "g"));
    kiln_graph_free(g); /* the clone owns its own memory */
    assert_float_equal(((float *)k->nodes[0]->data)[0], 1.5f, 0);
    kiln_graph_free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_op_table_names_round_trip),
        cmocka_unit_test(test_dtypes),
        cmocka_unit_test(test_load_store_convert),
        cmocka_unit_test(test_status_strings),
        cmocka_unit_test(test_arena_zeroes_aligns_and_handles_large_blocks),
        cmocka_unit_test(test_graph_basics_and_sticky_errors),
        cmocka_unit_test(test_nodes_shapes_and_accessors),
        cmocka_unit_test(test_clone_is_deep_and_equal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
