/*
 * test_comm.c - data-parallel steps (opt.data_parallel, kiln_module_set_comm)
 * in one process, over fake communicators: a data-parallel step without a
 * communicator is the plain step; the mean over ranks divides the sum; the
 * attach check names the param that differs and copies rank 0's values; save
 * writes on rank 0 only; each rank draws its own random stream; and every
 * error path. Real ranks under mpirun: tests/mpi_check.sh.
 */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { BATCH = 8, MAX_CALLS = 64 };
static const int64_t SIZES[] = {6, 5, 3};

/* A fake communicator. As rank 0 it records what it broadcasts; as another
 * rank it replays a recording (what rank 0 sent) and, summing, adds what the
 * other ranks would have sent: `others` times its own values. */
typedef struct {
    kiln_comm base;
    bool record;
    unsigned char *sent[MAX_CALLS];
    size_t bytes[MAX_CALLS];
    int nsent, next;
    double others; /* allreduce_sum: buf *= 1 + others (ranks with the same values) */
    int fail_at;   /* allreduce_sum calls until one fails (-1: never) */
    int calls;
    int sums;      /* allreduce_sum calls that summed */
    bool verdicts; /* the attach's verdict vector: other ranks agree (add nothing) */
    int started, waited, fail_start; /* allreduce_start/_wait calls; fail_start: fail them */
} fake;

static int fake_sum(kiln_comm *c, void *buf, int64_t n, kiln_dtype dt)
{
    fake *f = (fake *)c;
    if (f->fail_at >= 0 && f->calls++ >= f->fail_at)
        return -1;
    if (f->verdicts) { /* the first sum is attach's verdicts: only this rank's slot */
        f->verdicts = false;
        return 0;
    }
    f->sums++;
    for (int64_t i = 0; i < n; i++) {
        if (dt == KILN_F32)
            ((float *)buf)[i] *= (float)(1 + f->others);
        else
            ((double *)buf)[i] *= 1 + f->others;
    }
    return 0;
}

static int fake_broadcast(kiln_comm *c, void *buf, size_t bytes, int root)
{
    fake *f = (fake *)c;
    assert_int_equal(root, 0);
    if (f->record) {
        assert_true(f->nsent < MAX_CALLS);
        f->sent[f->nsent] = malloc(bytes);
        memcpy(f->sent[f->nsent], buf, bytes);
        f->bytes[f->nsent++] = bytes;
        return 0;
    }
    if (f->next >= f->nsent || f->bytes[f->next] != bytes)
        return -1;
    memcpy(buf, f->sent[f->next++], bytes);
    return 0;
}

/* The overlapped sum: done at start (the handle is the buffer), as if the
 * network were instant. */
static int fake_start(kiln_comm *c, void *buf, int64_t n, kiln_dtype dt, void **handle)
{
    fake *f = (fake *)c;
    f->started++;
    *handle = buf;
    if (f->fail_start)
        return -1;
    bool verdicts = f->verdicts;
    f->verdicts = false;
    int rc = fake_sum(c, buf, n, dt);
    f->verdicts = verdicts;
    return rc;
}

static int fake_test(kiln_comm *c, void *handle)
{
    (void)c;
    return handle != NULL;
}

static int fake_wait(kiln_comm *c, void *handle)
{
    fake *f = (fake *)c;
    f->waited++;
    return handle && f->fail_start < 2 ? 0 : -1;
}

static const char *fake_error(kiln_comm *c)
{
    (void)c;
    return "the fake network is down";
}

static fake fake_new(int rank, int size)
{
    fake f = {.base = {rank, size, fake_sum, fake_broadcast, fake_error, NULL, NULL, NULL, -1},
              .record = rank == 0,
              .fail_at = -1,
              .verdicts = true};
    return f;
}

static void fake_free(fake *f)
{
    for (int i = 0; i < f->nsent; i++)
        free(f->sent[i]);
}

static kiln_module *mlp(kiln_optim opt, uint64_t seed)
{
    kiln_graph *g = ku_mlp(BATCH, SIZES, 2, opt);
    kiln_graph_seed(g, seed);
    kiln_module *m = ku_compile_for(g, KILN_TARGET_C);
    kiln_graph_free(g);
    float x[BATCH * 6];
    int64_t y[BATCH];
    for (int i = 0; i < BATCH * 6; i++)
        x[i] = (float)sin(0.7 * i);
    for (int i = 0; i < BATCH; i++)
        y[i] = i % 3;
    assert_int_equal(kiln_module_set(m, "x", x, sizeof x), KILN_OK);
    assert_int_equal(kiln_module_set(m, "y", y, sizeof y), KILN_OK);
    return m;
}

static void params(kiln_module *m, float *out)
{
    const char *names[] = {"w0", "b0", "w1", "b1"};
    size_t at = 0;
    for (int i = 0; i < 4; i++) {
        size_t n = i == 0 ? 30 : i == 1 ? 5 : i == 2 ? 15 : 3;
        assert_int_equal(kiln_module_get(m, names[i], out + at, n * sizeof(float)), KILN_OK);
        at += n;
    }
}

enum { NPARAMS = 30 + 5 + 15 + 3 };

/* The data-parallel step is the plain step when the mean is the gradient:
 * without a communicator, and over "2 ranks" with the same gradients. */
static void test_plain_equivalence(void **state)
{
    (void)state;
    kiln_optim opts[2] = {kiln_sgd(0.1, 0.9, 0.01), kiln_adam(0.01, 0.9, 0.999, 1e-8)};
    for (int o = 0; o < 2; o++) {
        kiln_optim dp = opts[o];
        dp.data_parallel = true;
        dp.max_grad_norm = 0.5;
        opts[o].max_grad_norm = 0.5;
        kiln_module *plain = mlp(opts[o], 3), *alone = mlp(dp, 3), *two = mlp(dp, 3);
        fake f = fake_new(0, 2);
        f.others = 1; /* the other rank's gradients equal these */
        assert_int_equal(kiln_module_set_comm(two, &f.base), KILN_OK);
        for (int s = 0; s < 10; s++) {
            assert_int_equal(kiln_module_run(plain, "train"), KILN_OK);
            assert_int_equal(kiln_module_run(alone, "train"), KILN_OK);
            assert_int_equal(kiln_module_run(two, "train"), KILN_OK);
        }
        float a[NPARAMS], b[NPARAMS], c[NPARAMS];
        params(plain, a);
        params(alone, b);
        params(two, c);
        for (int i = 0; i < NPARAMS; i++) {
            assert_true(fabsf(a[i] - b[i]) <= 1e-6f * fabsf(a[i]) + 1e-7f);
            assert_true(fabsf(a[i] - c[i]) <= 1e-6f * fabsf(a[i]) + 1e-7f);
        }
        /* the loss of the last step is the backward entry's output */
        double la, lb;
        assert_int_equal(kiln_module_get_scalar(plain, "train.loss", &la), KILN_OK);
        assert_int_equal(kiln_module_get_scalar(alone, "train.loss", &lb), KILN_OK);
        assert_true(fabs(la - lb) <= 1e-6 * fabs(la));
        kiln_module_free(plain);
        kiln_module_free(alone);
        kiln_module_free(two);
        fake_free(&f);
    }
}

/* Buckets: the gradients b1, w1, b0 (12 + 60 + 20 bytes) share a message of
 * at most 100 bytes and w0 (120) travels alone; 25 MiB (0) takes all four.
 * Blocking or overlapped (a bucket starts when its last gradient is complete),
 * the params are those of one message per gradient, bit for bit; a failed
 * bucket names its gradients and changes no param. */
static void test_buckets(void **state)
{
    (void)state;
    kiln_optim dp = kiln_adam(0.01, 0.9, 0.999, 1e-8);
    dp.data_parallel = true;
    const int64_t caps[3] = {-1, 100, 0};
    const int messages[3] = {4, 2, 1};
    float want[NPARAMS], got[NPARAMS];
    for (int c = 0; c < 3; c++)
        for (int overlap = 0; overlap < 2; overlap++) {
            kiln_module *m = mlp(dp, 4);
            fake f = fake_new(0, 2);
            f.others = 1;
            f.base.bucket_bytes = caps[c];
            if (overlap) {
                f.base.allreduce_start = fake_start;
                f.base.allreduce_test = fake_test;
                f.base.allreduce_wait = fake_wait;
            }
            assert_int_equal(kiln_module_set_comm(m, &f.base), KILN_OK);
            for (int s = 0; s < 3; s++)
                assert_int_equal(kiln_module_run(m, "train"), KILN_OK);
            assert_int_equal(f.sums, 3 * messages[c]);
            assert_int_equal(f.started, overlap ? 3 * messages[c] : 0);
            params(m, c || overlap ? got : want);
            if (c || overlap)
                assert_memory_equal(got, want, sizeof got);
            if (c == 1 && !overlap) {
                f.fail_at = f.calls + 1; /* the first message goes, the second fails */
                float before[NPARAMS];
                params(m, before);
                assert_module_error(m, kiln_module_run(m, "train"), KILN_ERR_DEVICE,
                                    "kiln_module_run: the all-reduce of 'train.grad.w0' failed: "
                                    "the fake network is down");
                f.fail_at = f.calls; /* the first fails */
                assert_module_error(m, kiln_module_run(m, "train"), KILN_ERR_DEVICE,
                                    "kiln_module_run: the all-reduce of 'train.grad.b1' and 2 "
                                    "more gradients failed");
                params(m, got);
                assert_memory_equal(got, before, sizeof got);
            }
            kiln_module_free(m);
            fake_free(&f);
        }
}

/* opt.accumulate = 3: each rank sums its micro-batches' gradients and the
 * ranks reduce once per update (4 gradients, 3 updates in 9 runs: 12 sums,
 * not 36); the params move on every third run only, as the plain step's do,
 * and end where they do; "train.update" says which run updated. */
static void test_accumulate(void **state)
{
    (void)state;
    kiln_optim opts[2] = {kiln_sgd(0.1, 0.9, 0.01), kiln_adam(0.01, 0.9, 0.999, 1e-8)};
    for (int o = 0; o < 2; o++) {
        opts[o].accumulate = 3;
        opts[o].max_grad_norm = 0.5;
        kiln_optim dp = opts[o];
        dp.data_parallel = true;
        kiln_module *plain = mlp(opts[o], 3), *two = mlp(dp, 3);
        fake f = fake_new(0, 2);
        f.others = 1;
        assert_int_equal(kiln_module_set_comm(two, &f.base), KILN_OK);
        float start[NPARAMS], a[NPARAMS], b[NPARAMS];
        params(two, start);
        for (int s = 0; s < 9; s++) {
            assert_int_equal(kiln_module_run(plain, "train"), KILN_OK);
            assert_int_equal(kiln_module_run(two, "train"), KILN_OK);
            bool updated = false;
            assert_int_equal(kiln_module_get(two, "train.update", &updated, sizeof updated),
                             KILN_OK);
            assert_int_equal(updated, s % 3 == 2);
            params(two, b);
            if (s < 2)
                assert_memory_equal(b, start, sizeof b);
            else if (s == 2)
                assert_memory_not_equal(b, start, sizeof b);
        }
        assert_int_equal(f.sums, 3 * 4);
        params(plain, a);
        params(two, b);
        for (int i = 0; i < NPARAMS; i++)
            assert_true(fabsf(a[i] - b[i]) <= 1e-6f * fabsf(a[i]) + 1e-7f);
        kiln_module_free(plain);
        kiln_module_free(two);
        fake_free(&f);
    }
}

/* With allreduce_start each gradient's sum starts during the backward (once
 * per gradient, then waited for), and the step is the one without it; a
 * failed start or wait fails the step and changes no param. */
static void test_overlap(void **state)
{
    (void)state;
    kiln_optim dp = kiln_adam(0.01, 0.9, 0.999, 1e-8);
    dp.data_parallel = true;
    kiln_module *blocking = mlp(dp, 4), *overlapped = mlp(dp, 4);
    fake fb = fake_new(0, 2), fo = fake_new(0, 2);
    fb.others = fo.others = 1;
    fo.base.allreduce_start = fake_start;
    fo.base.allreduce_test = fake_test;
    fo.base.allreduce_wait = fake_wait;
    assert_int_equal(kiln_module_set_comm(blocking, &fb.base), KILN_OK);
    assert_int_equal(kiln_module_set_comm(overlapped, &fo.base), KILN_OK);
    for (int s = 0; s < 3; s++) {
        assert_int_equal(kiln_module_run(blocking, "train"), KILN_OK);
        assert_int_equal(kiln_module_run(overlapped, "train"), KILN_OK);
    }
    assert_int_equal(fo.started, 3 * 4); /* w0, b0, w1, b1: each step */
    assert_int_equal(fo.waited, 3 * 4);
    float a[NPARAMS], b[NPARAMS];
    params(blocking, a);
    params(overlapped, b);
    assert_memory_equal(a, b, sizeof a);
    fo.fail_start = 1;
    assert_module_error(overlapped, kiln_module_run(overlapped, "train"), KILN_ERR_DEVICE,
                        "kiln_module_run: an all-reduce started during the backward failed: "
                        "the fake network is down");
    fo.fail_start = 2; /* the starts fail, and so do the waits */
    assert_module_error(overlapped, kiln_module_run(overlapped, "train"), KILN_ERR_DEVICE,
                        "failed: the fake network is down");
    params(overlapped, b);
    assert_memory_equal(a, b, sizeof a);
    kiln_module_free(blocking);
    kiln_module_free(overlapped);
    fake_free(&fb);
    fake_free(&fo);
}

/* The mean divides the ranks' sum: "3 ranks" whose gradients are twice ours
 * (others = 5: sum = 6 g, mean = 2 g) move the params as a doubled rate would. */
static void test_mean_divides(void **state)
{
    (void)state;
    kiln_optim sgd = kiln_sgd(0.1, 0, 0), dp = sgd;
    dp.data_parallel = true;
    sgd.lr = 0.2;
    kiln_module *plain = mlp(sgd, 5), *three = mlp(dp, 5);
    fake f = fake_new(0, 3);
    f.others = 5;
    assert_int_equal(kiln_module_set_comm(three, &f.base), KILN_OK);
    assert_int_equal(kiln_module_run(plain, "train"), KILN_OK);
    assert_int_equal(kiln_module_run(three, "train"), KILN_OK);
    float a[NPARAMS], b[NPARAMS];
    params(plain, a);
    params(three, b);
    for (int i = 0; i < NPARAMS; i++)
        assert_true(fabsf(a[i] - b[i]) <= 1e-6f * fabsf(a[i]) + 1e-7f);
    kiln_module_free(plain);
    kiln_module_free(three);
    fake_free(&f);
}

/* Attach: rank 1 takes rank 0's params whatever its seed; a graph that
 * differs fails naming the param; each rank has its own random stream. */
static void test_attach(void **state)
{
    (void)state;
    kiln_optim dp = kiln_sgd(0.1, 0, 0);
    dp.data_parallel = true;
    kiln_module *r0 = mlp(dp, 1), *r1 = mlp(dp, 2);
    fake f0 = fake_new(0, 2), f1 = fake_new(1, 2);
    assert_int_equal(kiln_module_set_comm(r0, &f0.base), KILN_OK);
    float a[NPARAMS], b[NPARAMS];
    params(r0, a);
    params(r1, b);
    assert_memory_not_equal(a, b, sizeof a);
    memcpy(f1.sent, f0.sent, sizeof f0.sent); /* rank 1 receives what rank 0 sent */
    memcpy(f1.bytes, f0.bytes, sizeof f0.bytes);
    f1.nsent = f0.nsent;
    assert_int_equal(kiln_module_set_comm(r1, &f1.base), KILN_OK);
    params(r1, b);
    assert_memory_equal(a, b, sizeof a);
    /* a rank whose graph differs: rank 0's list names the param */
    kiln_graph *g = ku_mlp(BATCH, (const int64_t[]){6, 4, 3}, 2, dp);
    kiln_module *bad = ku_compile_for(g, KILN_TARGET_C);
    kiln_graph_free(g);
    f1.next = 0;
    f1.verdicts = true;
    assert_module_error(
        bad, kiln_module_set_comm(bad, &f1.base), KILN_ERR_SHAPE,
        "the ranks' graphs differ: rank 1's param 0 is not rank 0's 'w0 f32[5, 6]'");
    kiln_module_free(bad);
    /* save on rank 1 writes nothing; rank 0 writes */
    const char *path = ku_scratch("dp.safetensors");
    unlink(path);
    assert_int_equal(kiln_module_save(r1, path), KILN_OK);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(kiln_module_save(r0, path), KILN_OK);
    assert_int_equal(access(path, F_OK), 0);
    assert_int_equal(kiln_module_load(r1, path), KILN_OK); /* every rank loads */
    kiln_module_free(r0);
    kiln_module_free(r1);
    fake_free(&f0);
    /* f1's recordings were f0's, freed above */
    f1.nsent = 0;
}

/* Rank r draws from seed + r * 0x9E3779B97F4A7C15: rank 0 as without a
 * communicator, rank 1 another stream; detaching restores the graph's. */
static void test_rank_streams(void **state)
{
    (void)state;
    float draws[3][16];
    for (int r = 0; r < 3; r++) {
        kiln_graph *g = ku_graph_new();
        kiln_graph_seed(g, 9);
        kiln_tensor *u = kiln_rand(g, KILN_F32, KILN_SHAPE(16));
        assert_int_equal(kiln_entry(g, "f", 1, &u, NULL), KILN_OK);
        kiln_module *m = ku_compile_for(g, KILN_TARGET_C);
        kiln_graph_free(g);
        fake f = fake_new(r == 2 ? 1 : 0, 2);
        if (r == 2) { /* rank 1 receives rank 0's (empty) param list */
            f.record = false;
            uint64_t zero = 0;
            f.sent[0] = malloc(sizeof zero);
            memcpy(f.sent[0], &zero, sizeof zero);
            f.bytes[0] = sizeof zero;
            f.sent[1] = malloc(1);
            f.bytes[1] = 0;
            f.nsent = 2;
        }
        if (r > 0)
            assert_int_equal(kiln_module_set_comm(m, &f.base), KILN_OK);
        assert_int_equal(kiln_module_run(m, "f"), KILN_OK);
        assert_int_equal(kiln_module_get(m, "f.0", draws[r], sizeof draws[r]), KILN_OK);
        kiln_module_free(m);
        fake_free(&f);
    }
    assert_memory_equal(draws[0], draws[1], sizeof draws[0]);
    assert_memory_not_equal(draws[0], draws[2], sizeof draws[0]);
}

static void test_errors(void **state)
{
    (void)state;
    kiln_optim dp = kiln_sgd(0.1, 0, 0);
    dp.data_parallel = true;
    kiln_module *m = mlp(dp, 1);
    assert_int_equal(kiln_module_set_comm(NULL, NULL), KILN_ERR_INVALID);
    fake f = fake_new(2, 2);
    assert_module_error(m, kiln_module_set_comm(m, &f.base), KILN_ERR_INVALID,
                        "kiln_module_set_comm: the communicator is not valid (rank 2 of 2");
    f = fake_new(0, 2);
    f.base.broadcast = NULL;
    assert_module_error(m, kiln_module_set_comm(m, &f.base), KILN_ERR_INVALID, "a NULL function");
    /* a failing collective fails the call with the communicator's reason */
    f = fake_new(0, 2);
    f.fail_at = 0;
    assert_module_error(
        m, kiln_module_set_comm(m, &f.base), KILN_ERR_DEVICE,
        "summing the ranks' verdicts on the params failed: the fake network is down");
    fake_free(&f);
    f = fake_new(1, 2);
    f.record = false; /* nothing to replay: the first broadcast fails */
    assert_module_error(m, kiln_module_set_comm(m, &f.base), KILN_ERR_DEVICE,
                        "broadcasting the param list's size failed: the fake network is down");
    /* an all-reduce that fails mid-step changes no param */
    f = fake_new(0, 2);
    assert_int_equal(kiln_module_set_comm(m, &f.base), KILN_OK);
    float before[NPARAMS], after[NPARAMS];
    params(m, before);
    f.fail_at = f.calls + 1;
    assert_module_error(m, kiln_module_run(m, "train"), KILN_ERR_DEVICE,
                        "kiln_module_run: the all-reduce of 'train.grad.");
    params(m, after);
    assert_memory_equal(before, after, sizeof before);
    /* detached, the step runs again */
    assert_int_equal(kiln_module_set_comm(m, NULL), KILN_OK);
    assert_int_equal(kiln_module_run(m, "train"), KILN_OK);
    fake_free(&f);
    kiln_module_free(m);
    /* entries named like a data-parallel step whose update lacks the mean input */
    kiln_graph *g = ku_graph_new();
    kiln_tensor *w = kiln_param(g, "w", KILN_F32, KILN_SHAPE(2), kiln_init_ones());
    kiln_tensor *twice = kiln_mul(g, w, kiln_scalar(g, 2));
    assert_int_equal(kiln_entry(g, "f.backward", 1, &twice, (const char *[]){"f.grad.w"}), KILN_OK);
    assert_int_equal(kiln_entry(g, "f", 1, &w, NULL), KILN_OK);
    m = ku_compile_for(g, KILN_TARGET_C);
    kiln_graph_free(g);
    assert_module_error(m, kiln_module_run(m, "f"), KILN_ERR_INVALID,
                        "kiln_module_run: 'f.grad.w' has no input 'f.mean_grad.w'");
    kiln_module_free(m);
}

static int setup(void **state)
{
    (void)state;
    return ku_scratch_make("comm");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_equivalence), cmocka_unit_test(test_overlap),
        cmocka_unit_test(test_accumulate),        cmocka_unit_test(test_buckets),
        cmocka_unit_test(test_mean_divides),      cmocka_unit_test(test_attach),
        cmocka_unit_test(test_rank_streams),      cmocka_unit_test(test_errors),
    };
    int failed = cmocka_run_group_tests(tests, setup, ku_scratch_teardown);
    return ku_exit(failed);
}
