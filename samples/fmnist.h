/*
 * fmnist.h - the Fashion-MNIST training loop samples/mlp.c and samples/cnn.c
 * share: options, data, shuffling, the epoch loop with evaluation,
 * checkpoints and --resume, and the params checksum. A sample supplies its
 * model (fm_model): a graph with a train step "train" over inputs x [batch,
 * 784] (or [batch, 1, 28, 28]: the same bytes) and y [batch], and an entry
 * "eval" whose output "eval.correct" counts right predictions over test_x /
 * test_y (FM_EVAL_BATCH images).
 *
 * The data is Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-
 * mnist, IDX files, gzip'd or not; samples/idx.h reads them). Each epoch
 * visits the training images in a fresh order (a permutation seeded by the
 * epoch number, so --resume continues exactly), in full batches, then counts
 * correct predictions over the test set with the second entry of the same
 * module, prints one line and saves a checkpoint (params, Adam state, step
 * count and RNG position: safetensors, written atomically). --resume loads
 * it and goes on from the epoch after the one it holds. The last line is a
 * checksum of the params, so runs can be compared bit for bit.
 *
 * --data-parallel (under mpirun -np N): every rank takes its N-th of each
 * batch (rows rank * B/N ..), the train step averages the gradients over the
 * ranks (opt.data_parallel, kiln_module_set_comm), so the params follow the
 * single-process run with the whole batch; rank 0 prints and writes the
 * checkpoint.
 */
#ifndef KILN_SAMPLES_FMNIST_H
#define KILN_SAMPLES_FMNIST_H

#include "args.h"
#include "idx.h"

#include <kiln.h>
#ifdef KILN_SAMPLE_MPI /* CMake defines it when libkiln_mpi is built */
#include <kiln_mpi.h>
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { FM_PIXELS = 784, FM_CLASSES = 10, FM_EVAL_BATCH = 1000 };

typedef struct {
    int epochs, width, batch, limit, threads;
    double lr, gamma;
    const char *data, *checkpoint;
    bool resume;
    bool data_parallel; /* --data-parallel: the ranks of mpirun share each batch */
    int ranks;          /* with it: the graph's batch is batch / ranks */
    kiln_target target;
} fm_options;

typedef struct {
    const char *prog;       /* "mlp": messages, usage */
    const char *width_flag; /* "--hidden": sets options.width */
    fm_options defaults;
    kiln_graph *(*build)(const fm_options *o);
    /* "MLP 784-256-10, ReLU" for the first line */
    void (*describe)(const fm_options *o, char *out, size_t cap);
    const char *const *params; /* the params the checksum covers, NULL-terminated */
} fm_model;

static inline double fm_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline int fm_usage(const fm_model *md, const char *why)
{
    fprintf(stderr,
            "%s: %s\nusage: %s [--epochs N] [%s N] [--batch B] [--lr LR] [--gamma G]\n"
            "           [--data DIR] [--checkpoint FILE] [--resume] [--limit N] [--threads T]\n"
            "           [--target c|interp|cuda | --device cpu|cuda]\n"
            "           [--data-parallel (under mpirun)]\n",
            md->prog, why, md->prog, md->width_flag);
    return 2;
}

static inline bool fm_parse(const fm_model *md, int argc, char **argv, fm_options *o)
{
    *o = md->defaults;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--resume") == 0 || strcmp(a, "--data-parallel") == 0) {
            *(a[2] == 'r' ? &o->resume : &o->data_parallel) = true;
            continue;
        }
        if (!v)
            return false;
        i++;
        if (strcmp(a, "--epochs") == 0)
            o->epochs = atoi(v);
        else if (strcmp(a, md->width_flag) == 0)
            o->width = atoi(v);
        else if (strcmp(a, "--batch") == 0)
            o->batch = atoi(v);
        else if (strcmp(a, "--lr") == 0)
            o->lr = atof(v);
        else if (strcmp(a, "--gamma") == 0)
            o->gamma = atof(v);
        else if (strcmp(a, "--limit") == 0)
            o->limit = atoi(v);
        else if (strcmp(a, "--threads") == 0)
            o->threads = atoi(v);
        else if (strcmp(a, "--data") == 0)
            o->data = v;
        else if (strcmp(a, "--checkpoint") == 0)
            o->checkpoint = v;
        else if (!sample_target_arg(a, v, &o->target))
            return false;
    }
    return o->epochs > 0 && o->width > 0 && o->batch > 0 && o->lr > 0 && o->gamma > 0 &&
           o->limit >= 0;
}

/* A permutation of 0..n-1 from the epoch number (xorshift64*, Fisher-Yates). */
static inline void fm_shuffle(int *idx, int n, int epoch)
{
    uint64_t s = 0x9E3779B97F4A7C15ull * (uint64_t)(epoch + 1);
    for (int i = 0; i < n; i++)
        idx[i] = i;
    for (int i = n - 1; i > 0; i--) {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        int j = (int)((s * 0x2545F4914F6CDD1Dull >> 33) % (uint64_t)(i + 1));
        int t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}

static inline bool fm_check(const fm_model *md, kiln_module *m, kiln_status s, const char *what)
{
    if (s != KILN_OK)
        fprintf(stderr, "%s: %s: %s\n", md->prog, what, kiln_module_error(m));
    return s == KILN_OK;
}

/* The fraction of test images classified correctly. */
static inline double fm_evaluate(const fm_model *md, kiln_module *m, const idx_images *test,
                                 const idx_labels *labels)
{
    int64_t right = 0;
    for (int at = 0; at + FM_EVAL_BATCH <= test->n; at += FM_EVAL_BATCH) {
        if (!fm_check(md, m,
                      kiln_module_set(m, "test_x", test->pixels + (size_t)at * FM_PIXELS,
                                      sizeof(float) * FM_EVAL_BATCH * FM_PIXELS),
                      "set test_x") ||
            !fm_check(
                md, m,
                kiln_module_set(m, "test_y", labels->labels + at, sizeof(int64_t) * FM_EVAL_BATCH),
                "set test_y") ||
            !fm_check(md, m, kiln_module_run(m, "eval"), "eval"))
            return -1;
        double c;
        kiln_module_get_scalar(m, "eval.correct", &c);
        right += (int64_t)c;
    }
    return (double)right / (double)(test->n / FM_EVAL_BATCH * FM_EVAL_BATCH);
}

/* FNV-1a over the bytes of every param the model names: equal checksums,
 * equal params. */
static inline uint64_t fm_checksum(const fm_model *md, kiln_module *m, kiln_graph *g)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (const char *const *name = md->params; *name; name++) {
        kiln_tensor *t = kiln_graph_find(g, *name);
        size_t n = 1;
        for (int d = 0; t && d < kiln_tensor_rank(t); d++)
            n *= (size_t)kiln_tensor_dim(t, d);
        float *p = t ? malloc(sizeof(float) * n) : NULL;
        if (!p || kiln_module_get(m, *name, p, sizeof(float) * n) != KILN_OK) {
            free(p);
            return 0;
        }
        const unsigned char *b = (const unsigned char *)p;
        for (size_t k = 0; k < sizeof(float) * n; k++)
            h = (h ^ b[k]) * 0x100000001b3ull;
        free(p);
    }
    return h;
}

static inline bool fm_load_split(const fm_model *md, const fm_options *o, const char *prefix,
                                 idx_images *img, idx_labels *lab)
{
    char ip[1024], lp[1024], err[2048];
    snprintf(ip, sizeof ip, "%s/%s-images-idx3-ubyte.gz", o->data, prefix);
    snprintf(lp, sizeof lp, "%s/%s-labels-idx1-ubyte.gz", o->data, prefix);
    if (!idx_read_images(ip, img, err, sizeof err) || !idx_read_labels(lp, lab, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n(install Debian's dataset-fashion-mnist, or pass --data DIR)\n",
                md->prog, err);
        return false;
    }
    if (img->n != lab->n || img->rows * img->cols != FM_PIXELS) {
        fprintf(stderr, "%s: %s: %d images of %dx%d but %d labels\n", md->prog, ip, img->n,
                img->rows, img->cols, lab->n);
        return false;
    }
    return true;
}

/* The whole program: parse, load, compile, train (and evaluate), checksum. */
/* --data-parallel: MPI's world as a kiln_comm (MPI_Init'd here), or NULL
 * after a message. */
static inline kiln_comm *fm_comm(const fm_model *md, int *argc, char ***argv)
{
#ifdef KILN_SAMPLE_MPI
    MPI_Init(argc, argv);
    kiln_comm *c = kiln_mpi_comm(MPI_COMM_WORLD);
    if (!c)
        fprintf(stderr, "%s: --data-parallel: no MPI communicator\n", md->prog);
    return c;
#else
    (void)argc;
    (void)argv;
    fprintf(stderr, "%s: --data-parallel: built without MPI (install libopenmpi-dev, rebuild)\n",
            md->prog);
    return NULL;
#endif
}

static inline void fm_comm_end(kiln_comm *c)
{
#ifdef KILN_SAMPLE_MPI
    if (c) {
        kiln_mpi_comm_free(c);
        MPI_Finalize();
    }
#else
    (void)c;
#endif
}

static inline int fm_main(int argc, char **argv, const fm_model *md)
{
    fm_options o;
    if (!fm_parse(md, argc, argv, &o))
        return fm_usage(md, "bad arguments");
    kiln_comm *comm = o.data_parallel ? fm_comm(md, &argc, &argv) : NULL;
    if (o.data_parallel && !comm)
        return 1;
    o.ranks = comm ? comm->size : 1;
    int rank = comm ? comm->rank : 0;
    if (o.batch % o.ranks)
        return fm_usage(md, "--batch must be a multiple of the number of ranks");
    idx_images train = {0}, test = {0};
    idx_labels train_y = {0}, test_y = {0};
    if (!fm_load_split(md, &o, "train", &train, &train_y) ||
        !fm_load_split(md, &o, "t10k", &test, &test_y))
        return 1;
    int n = o.limit > 0 && o.limit < train.n ? o.limit : train.n;
    int steps = n / o.batch; /* full batches: the graph's shapes are static */
    if (steps == 0)
        return fm_usage(md, "fewer training images than one batch");

    fm_options shard = o; /* the graph's batch: this rank's rows */
    shard.batch = o.batch / o.ranks;
    kiln_graph *g = md->build(&shard);
    kiln_module *m = NULL;
    kiln_compile_opts copts = {.target = o.target, .threads = o.threads};
    if (kiln_graph_status(g) != KILN_OK || kiln_compile(g, &copts, &m) != KILN_OK) {
        fprintf(stderr, "%s: %s\n", md->prog, kiln_graph_error(g));
        return 1;
    }
    if (comm && !fm_check(md, m, kiln_module_set_comm(m, comm), "--data-parallel"))
        return 1;
    int first = 0;
    if (o.resume) {
        double done;
        if (!fm_check(md, m, kiln_module_load(m, o.checkpoint), "--resume"))
            return 1;
        kiln_module_get_scalar(m, "train.step", &done);
        first = (int)(done / steps);
        printf("resumed from %s after epoch %d (step %.0f)\n", o.checkpoint, first, done);
    }
    char what[256];
    md->describe(&o, what, sizeof what);
    if (rank == 0)
        printf("Fashion-MNIST: %d training images (%d steps of %d%s), %d test images; "
               "%s, cross-entropy, Adam lr %g x %g per epoch\n",
               n, steps, o.batch, comm ? ", shared by the ranks" : "", test.n, what, o.lr, o.gamma);

    const int rows = shard.batch;
    float *xb = malloc(sizeof(float) * (size_t)rows * FM_PIXELS);
    int64_t *yb = malloc(sizeof(int64_t) * (size_t)rows);
    int *order = malloc(sizeof(int) * (size_t)n);
    if (!xb || !yb || !order)
        return 1;
    double start = fm_now();
    int rc = 0;
    for (int epoch = first; epoch < o.epochs && rc == 0; epoch++) {
        double t0 = fm_now(), loss_sum = 0;
        /* torch.optim.lr_scheduler.ExponentialLR: lr * gamma^epoch, through
         * the step's run-time scalar */
        if (!fm_check(md, m, kiln_module_set_scalar(m, "train.lr", o.lr * pow(o.gamma, epoch)),
                      "train.lr"))
            break;
        fm_shuffle(order, n, epoch);
        for (int s = 0; s < steps && rc == 0; s++) {
            for (int i = 0; i < rows; i++) {
                int k = order[s * o.batch + rank * rows + i];
                memcpy(xb + (size_t)i * FM_PIXELS, train.pixels + (size_t)k * FM_PIXELS,
                       sizeof(float) * FM_PIXELS);
                yb[i] = train_y.labels[k];
            }
            double l;
            if (!fm_check(md, m,
                          kiln_module_set(m, "x", xb, sizeof(float) * (size_t)rows * FM_PIXELS),
                          "set x") ||
                !fm_check(md, m, kiln_module_set(m, "y", yb, sizeof(int64_t) * (size_t)rows),
                          "set y") ||
                !fm_check(md, m, kiln_module_run(m, "train"), "train") ||
                !fm_check(md, m, kiln_module_get_scalar(m, "train.loss", &l), "train.loss"))
                rc = 1;
            else
                loss_sum += l;
        }
        if (comm && comm->allreduce_sum(comm, &loss_sum, 1, KILN_F64) == 0)
            loss_sum /= comm->size; /* the mean of the ranks' losses: the whole batch's */
        double t1 = fm_now();
        double acc = rc == 0 ? fm_evaluate(md, m, &test, &test_y) : -1;
        if (acc < 0 || !fm_check(md, m, kiln_module_save(m, o.checkpoint), "checkpoint")) {
            rc = 1;
            break;
        }
        if (rank == 0)
            printf("epoch %d/%d: loss %.4f, test accuracy %.2f%%, %.0f samples/s, %.1f s "
                   "elapsed\n",
                   epoch + 1, o.epochs, loss_sum / steps, 100 * acc,
                   (double)steps * o.batch / (t1 - t0), fm_now() - start);
        fflush(stdout);
    }
    if (rc == 0 && rank == 0)
        printf("params checksum %016llx\n", (unsigned long long)fm_checksum(md, m, g));
    free(xb);
    free(yb);
    free(order);
    idx_free_images(&train);
    idx_free_images(&test);
    idx_free_labels(&train_y);
    idx_free_labels(&test_y);
    kiln_module_free(m);
    kiln_graph_free(g);
    fm_comm_end(comm);
    return rc;
}

#endif
