/*
 * dp_check.c - data-parallel training across MPI ranks (tests/mpi_check.sh
 * runs it under mpirun). Every rank trains a small MLP (cross-entropy, a
 * data-parallel step) on its shard of one fixed batch of 128:
 *
 *   dp_check train sgd|adam STEPS OUT [--resume CKPT] [--save-at K CKPT] [--no-overlap]
 *                  [--buckets BYTES] [--accumulate K]
 *       rank 0 writes the params after STEPS steps to OUT; --no-overlap: the
 *       gradients are summed after the backward (no allreduce_start);
 *       --buckets: the communicator's bucket_bytes; --accumulate: K
 *       micro-batches per step (opt.accumulate), a K-th of the shard each
 *   dp_check compare A B        the params of two checkpoints, within 1e-6
 *                               relative (--exact: bit for bit)
 *   dp_check mismatch           rank 1 builds another hidden size
 *   dp_check die                rank 1 exits in the middle of the run
 */
#include <kiln.h>
#include <kiln_mpi.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { GLOBAL = 128, IN = 12, OUT = 4 };

static int fail(kiln_module *m, const char *what)
{
    fprintf(stderr, "dp_check: %s: %s\n", what, m ? kiln_module_error(m) : "");
    return 1;
}

static kiln_module *model(int64_t batch, int64_t hidden, const char *opt_name, int accumulate)
{
    kiln_graph *g = kiln_graph_new();
    kiln_graph_seed(g, 11);
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(batch, IN));
    kiln_tensor *y = kiln_input(g, "y", KILN_I64, KILN_SHAPE(batch));
    kiln_init k = kiln_init_kaiming_uniform();
    kiln_tensor *w0 = kiln_param(g, "w0", KILN_F32, KILN_SHAPE(hidden, IN), k);
    kiln_tensor *b0 = kiln_param(g, "b0", KILN_F32, KILN_SHAPE(hidden), k);
    kiln_tensor *w1 = kiln_param(g, "w1", KILN_F32, KILN_SHAPE(OUT, hidden), k);
    kiln_tensor *h = kiln_relu(g, kiln_linear(g, x, w0, b0));
    kiln_optim opt = strcmp(opt_name, "adam") == 0 ? kiln_adam(0.01, 0.9, 0.999, 1e-8)
                                                   : kiln_sgd(0.1, 0.9, 0.001);
    opt.data_parallel = true;
    opt.accumulate = accumulate;
    kiln_train_step(g, "train", kiln_cross_entropy(g, kiln_linear(g, h, w1, NULL), y), opt);
    kiln_module *m = NULL;
    if (kiln_graph_status(g) != KILN_OK || kiln_compile(g, NULL, &m) != KILN_OK)
        fprintf(stderr, "dp_check: %s\n", kiln_graph_error(g));
    kiln_graph_free(g);
    return m;
}

/* Rows [first, first + n) of the fixed batch. */
static int set_shard(kiln_module *m, int64_t first, int64_t n)
{
    float *x = malloc(sizeof(float) * (size_t)(n * IN));
    int64_t *y = malloc(sizeof(int64_t) * (size_t)n);
    for (int64_t r = 0; r < n; r++) {
        for (int c = 0; c < IN; c++)
            x[r * IN + c] = (float)sin(0.37 * (double)((first + r) * IN + c));
        y[r] = (first + r) * 7 % OUT;
    }
    int bad = kiln_module_set(m, "x", x, sizeof(float) * (size_t)(n * IN)) != KILN_OK ||
              kiln_module_set(m, "y", y, sizeof(int64_t) * (size_t)n) != KILN_OK;
    free(x);
    free(y);
    return bad;
}

static int train(kiln_comm *c, int argc, char **argv)
{
    if (argc < 5)
        return 2;
    int steps = atoi(argv[3]), save_at = -1, k = 1;
    const char *out = argv[4], *resume = NULL, *ckpt = NULL;
    for (int i = 5; i < argc; i++) {
        if (strcmp(argv[i], "--resume") == 0 && i + 1 < argc)
            resume = argv[++i];
        else if (strcmp(argv[i], "--no-overlap") == 0)
            c->allreduce_start = NULL;
        else if (strcmp(argv[i], "--buckets") == 0 && i + 1 < argc)
            c->bucket_bytes = atoll(argv[++i]);
        else if (strcmp(argv[i], "--accumulate") == 0 && i + 1 < argc)
            k = atoi(argv[++i]);
        else if (strcmp(argv[i], "--save-at") == 0 && i + 2 < argc) {
            save_at = atoi(argv[++i]);
            ckpt = argv[++i];
        }
    }
    int64_t n = GLOBAL / c->size / k; /* micro-batch j of this rank: rows (rank k + j) n */
    kiln_module *m = model(n, 32, argv[2], k);
    if (!m)
        return 1;
    int rc = 0;
    if (kiln_module_set_comm(m, c) != KILN_OK)
        rc = fail(m, "set_comm");
    if (!rc && resume && kiln_module_load(m, resume) != KILN_OK)
        rc = fail(m, "load");
    for (int s = 0; s < steps && !rc; s++) {
        for (int j = 0; j < k && !rc; j++)
            if (set_shard(m, (c->rank * k + j) * n, n) || kiln_module_run(m, "train") != KILN_OK)
                rc = fail(m, "train");
        if (!rc && s + 1 == save_at && kiln_module_save(m, ckpt) != KILN_OK)
            rc = fail(m, "save");
    }
    double loss = 0;
    if (!rc && kiln_module_get_scalar(m, "train.loss", &loss) != KILN_OK)
        rc = fail(m, "loss");
    if (!rc && kiln_module_save(m, out) != KILN_OK)
        rc = fail(m, "save");
    if (!rc)
        printf("rank %d of %d: %d steps, last loss %.6f\n", c->rank, c->size, steps, loss);
    kiln_module_free(m);
    return rc;
}

static int compare(int argc, char **argv)
{
    if (argc < 4)
        return 2;
    bool exact = argc > 4 && strcmp(argv[4], "--exact") == 0;
    kiln_module *a = model(GLOBAL, 32, "adam", 1), *b = model(GLOBAL, 32, "adam", 1);
    if (!a || !b || kiln_module_load_nonstrict(a, argv[2], NULL) != KILN_OK ||
        kiln_module_load_nonstrict(b, argv[3], NULL) != KILN_OK)
        return fail(a, "load");
    const char *names[] = {"w0", "b0", "w1"};
    const size_t sizes[] = {32 * IN, 32, OUT * 32};
    int bad = 0;
    for (int p = 0; p < 3; p++) {
        float u[32 * IN], v[32 * IN];
        kiln_module_get(a, names[p], u, sizes[p] * sizeof(float));
        kiln_module_get(b, names[p], v, sizes[p] * sizeof(float));
        for (size_t i = 0; i < sizes[p] && !bad; i++) {
            double d = fabs((double)u[i] - (double)v[i]);
            if (exact ? u[i] != v[i] : d > 1e-6 * fabs((double)u[i]) + 1e-7) {
                printf("%s[%zu]: %.9g and %.9g\n", names[p], i, (double)u[i], (double)v[i]);
                bad = 1;
            }
        }
    }
    kiln_module_free(a);
    kiln_module_free(b);
    if (!bad)
        printf("the params agree%s\n", exact ? " bit for bit" : " within 1e-6");
    return bad;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: dp_check train|compare|mismatch|die ...\n");
        return 2;
    }
    if (strcmp(argv[1], "compare") == 0)
        return compare(argc, argv);
    MPI_Init(&argc, &argv);
    kiln_comm *c = kiln_mpi_comm(MPI_COMM_WORLD);
    int rc = 2;
    if (!c) {
        fprintf(stderr, "dp_check: no communicator\n");
        rc = 1;
    } else if (strcmp(argv[1], "train") == 0) {
        rc = train(c, argc, argv);
    } else if (strcmp(argv[1], "mismatch") == 0) {
        kiln_module *m = model(GLOBAL / c->size, c->rank == 1 ? 16 : 32, "sgd", 1);
        rc = m && kiln_module_set_comm(m, c) == KILN_OK ? 0 : fail(m, "set_comm");
        kiln_module_free(m);
    } else if (strcmp(argv[1], "die") == 0) {
        int64_t n = GLOBAL / c->size;
        kiln_module *m = model(n, 32, "sgd", 1);
        rc = !m || kiln_module_set_comm(m, c) != KILN_OK || set_shard(m, c->rank * n, n);
        for (int s = 0; s < 50 && !rc; s++) {
            if (c->rank == 1 && s == 2) {
                fprintf(stderr, "dp_check: rank 1 exits at step 3\n");
                exit(3);
            }
            rc = kiln_module_run(m, "train") != KILN_OK ? fail(m, "train") : 0;
        }
        kiln_module_free(m);
    }
    kiln_mpi_comm_free(c);
    MPI_Finalize();
    return rc;
}
