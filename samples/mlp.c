/*
 * mlp.c - trains an MLP on Fashion-MNIST: the PyTorch training loop
 * (nn.Linear + ReLU + CrossEntropyLoss + Adam) as one compiled Kiln step.
 *
 *   mlp [--epochs N] [--hidden H] [--batch B] [--lr LR] [--gamma G] [--data DIR]
 *       [--checkpoint FILE] [--resume] [--limit N] [--threads T]
 *       [--target c|interp|cuda]
 *
 * The data is Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-
 * mnist, IDX files, gzip'd or not; samples/idx.h reads them). Each epoch
 * visits the training images in a fresh order (a permutation seeded by the
 * epoch number, so --resume continues exactly), in full batches, then counts
 * correct predictions over the test set with a second entry of the same
 * module, prints one line and saves a checkpoint (params, Adam state, step
 * count and RNG position: safetensors, written atomically). --resume loads
 * it and goes on from the epoch after the one it holds. The last line is a
 * checksum of the params, so runs can be compared bit for bit.
 */
#include "idx.h"

#include <kiln.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { PIXELS = 784, CLASSES = 10, EVAL_BATCH = 1000 };

typedef struct {
    int epochs, hidden, batch, limit, threads;
    double lr, gamma;
    const char *data, *checkpoint;
    bool resume;
    kiln_target target;
} options;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int usage(const char *why)
{
    fprintf(stderr,
            "mlp: %s\nusage: mlp [--epochs N] [--hidden H] [--batch B] [--lr LR] [--gamma G]\n"
            "           [--data DIR] [--checkpoint FILE] [--resume] [--limit N] [--threads T]\n"
            "           [--target c|interp|cuda]\n",
            why);
    return 2;
}

static bool parse(int argc, char **argv, options *o)
{
    *o = (options){.epochs = 8,
                   .hidden = 256,
                   .batch = 128,
                   .lr = 2e-3,
                   .gamma = 0.8,
                   .data = "/usr/share/datasets/fashion-mnist",
                   .checkpoint = "mlp.safetensors",
                   .target = KILN_TARGET_C};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--resume") == 0) {
            o->resume = true;
            continue;
        }
        if (!v)
            return false;
        i++;
        if (strcmp(a, "--epochs") == 0)
            o->epochs = atoi(v);
        else if (strcmp(a, "--hidden") == 0)
            o->hidden = atoi(v);
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
        else if (strcmp(a, "--target") == 0 && strcmp(v, "c") == 0)
            o->target = KILN_TARGET_C;
        else if (strcmp(a, "--target") == 0 && strcmp(v, "interp") == 0)
            o->target = KILN_TARGET_INTERP;
        else if (strcmp(a, "--target") == 0 && strcmp(v, "cuda") == 0)
            o->target = KILN_TARGET_CUDA;
        else
            return false;
    }
    return o->epochs > 0 && o->hidden > 0 && o->batch > 0 && o->lr > 0 && o->gamma > 0 &&
           o->limit >= 0;
}

/* The model: two nn.Linear layers with ReLU, cross-entropy, Adam; "train"
 * runs one step on a batch, "eval" counts correct predictions on EVAL_BATCH
 * test images with the same params. */
static kiln_graph *build(const options *o)
{
    kiln_graph *g = kiln_graph_new();
    kiln_graph_seed(g, 42);
    kiln_tensor *w1 = kiln_param(g, "fc1.weight", KILN_F32, KILN_SHAPE(o->hidden, PIXELS),
                                 kiln_init_kaiming_uniform());
    kiln_tensor *b1 =
        kiln_param(g, "fc1.bias", KILN_F32, KILN_SHAPE(o->hidden), kiln_init_kaiming_uniform());
    kiln_tensor *w2 = kiln_param(g, "fc2.weight", KILN_F32, KILN_SHAPE(CLASSES, o->hidden),
                                 kiln_init_kaiming_uniform());
    kiln_tensor *b2 =
        kiln_param(g, "fc2.bias", KILN_F32, KILN_SHAPE(CLASSES), kiln_init_kaiming_uniform());

    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(o->batch, PIXELS));
    kiln_tensor *y = kiln_input(g, "y", KILN_I64, KILN_SHAPE(o->batch));
    kiln_tensor *h = kiln_relu(g, kiln_linear(g, x, w1, b1));
    kiln_tensor *loss = kiln_cross_entropy(g, kiln_linear(g, h, w2, b2), y);
    kiln_train_step(g, "train", loss, kiln_adam(o->lr, 0.9, 0.999, 1e-8));

    kiln_tensor *xt = kiln_input(g, "test_x", KILN_F32, KILN_SHAPE(EVAL_BATCH, PIXELS));
    kiln_tensor *yt = kiln_input(g, "test_y", KILN_I64, KILN_SHAPE(EVAL_BATCH));
    kiln_tensor *ht = kiln_relu(g, kiln_linear(g, xt, w1, b1));
    kiln_tensor *pred = kiln_argmax(g, kiln_linear(g, ht, w2, b2), 1, false);
    kiln_tensor *correct = kiln_sum(g, kiln_eq(g, pred, yt), KILN_ALL, false);
    kiln_entry(g, "eval", 1, &correct, (const char *[]){"eval.correct"});
    return g;
}

/* A permutation of 0..n-1 from the epoch number (xorshift64*, Fisher-Yates). */
static void shuffle(int *idx, int n, int epoch)
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

static bool check(kiln_module *m, kiln_status s, const char *what)
{
    if (s != KILN_OK)
        fprintf(stderr, "mlp: %s: %s\n", what, kiln_module_error(m));
    return s == KILN_OK;
}

/* The fraction of test images classified correctly. */
static double evaluate(kiln_module *m, const idx_images *test, const idx_labels *labels)
{
    int64_t right = 0;
    for (int at = 0; at + EVAL_BATCH <= test->n; at += EVAL_BATCH) {
        if (!check(m,
                   kiln_module_set(m, "test_x", test->pixels + (size_t)at * PIXELS,
                                   sizeof(float) * EVAL_BATCH * PIXELS),
                   "set test_x") ||
            !check(m,
                   kiln_module_set(m, "test_y", labels->labels + at, sizeof(int64_t) * EVAL_BATCH),
                   "set test_y") ||
            !check(m, kiln_module_run(m, "eval"), "eval"))
            return -1;
        double c;
        kiln_module_get_scalar(m, "eval.correct", &c);
        right += (int64_t)c;
    }
    return (double)right / (double)(test->n / EVAL_BATCH * EVAL_BATCH);
}

/* FNV-1a over the bytes of every param: equal checksums, equal params. */
static uint64_t checksum(kiln_module *m, const options *o)
{
    const char *names[] = {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"};
    const size_t n[] = {(size_t)o->hidden * PIXELS, (size_t)o->hidden, (size_t)CLASSES * o->hidden,
                        CLASSES};
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < 4; i++) {
        float *p = malloc(sizeof(float) * n[i]);
        if (!p || kiln_module_get(m, names[i], p, sizeof(float) * n[i]) != KILN_OK) {
            free(p);
            return 0;
        }
        const unsigned char *b = (const unsigned char *)p;
        for (size_t k = 0; k < sizeof(float) * n[i]; k++)
            h = (h ^ b[k]) * 0x100000001b3ull;
        free(p);
    }
    return h;
}

static bool load_split(const options *o, const char *prefix, idx_images *img, idx_labels *lab)
{
    char ip[1024], lp[1024], err[2048];
    snprintf(ip, sizeof ip, "%s/%s-images-idx3-ubyte.gz", o->data, prefix);
    snprintf(lp, sizeof lp, "%s/%s-labels-idx1-ubyte.gz", o->data, prefix);
    if (!idx_read_images(ip, img, err, sizeof err) || !idx_read_labels(lp, lab, err, sizeof err)) {
        fprintf(stderr, "mlp: %s\n(install Debian's dataset-fashion-mnist, or pass --data DIR)\n",
                err);
        return false;
    }
    if (img->n != lab->n || img->rows * img->cols != PIXELS) {
        fprintf(stderr, "mlp: %s: %d images of %dx%d but %d labels\n", ip, img->n, img->rows,
                img->cols, lab->n);
        return false;
    }
    return true;
}

int main(int argc, char **argv)
{
    options o;
    if (!parse(argc, argv, &o))
        return usage("bad arguments");
    idx_images train = {0}, test = {0};
    idx_labels train_y = {0}, test_y = {0};
    if (!load_split(&o, "train", &train, &train_y) || !load_split(&o, "t10k", &test, &test_y))
        return 1;
    int n = o.limit > 0 && o.limit < train.n ? o.limit : train.n;
    int steps = n / o.batch; /* full batches: the graph's shapes are static */
    if (steps == 0)
        return usage("fewer training images than one batch");

    kiln_graph *g = build(&o);
    kiln_module *m = NULL;
    kiln_compile_opts copts = {.target = o.target, .threads = o.threads};
    if (kiln_graph_status(g) != KILN_OK || kiln_compile(g, &copts, &m) != KILN_OK) {
        fprintf(stderr, "mlp: %s\n", kiln_graph_error(g));
        return 1;
    }
    int first = 0;
    if (o.resume) {
        double done;
        if (!check(m, kiln_module_load(m, o.checkpoint), "--resume"))
            return 1;
        kiln_module_get_scalar(m, "train.step", &done);
        first = (int)(done / steps);
        printf("resumed from %s after epoch %d (step %.0f)\n", o.checkpoint, first, done);
    }
    printf("Fashion-MNIST: %d training images (%d steps of %d), %d test images; "
           "MLP 784-%d-10, ReLU, cross-entropy, Adam lr %g x %g per epoch\n",
           n, steps, o.batch, test.n, o.hidden, o.lr, o.gamma);

    float *xb = malloc(sizeof(float) * (size_t)o.batch * PIXELS);
    int64_t *yb = malloc(sizeof(int64_t) * (size_t)o.batch);
    int *order = malloc(sizeof(int) * (size_t)n);
    if (!xb || !yb || !order)
        return 1;
    double start = now_s();
    int rc = 0;
    for (int epoch = first; epoch < o.epochs && rc == 0; epoch++) {
        double t0 = now_s(), loss_sum = 0;
        /* torch.optim.lr_scheduler.ExponentialLR: lr * gamma^epoch, through
         * the step's run-time scalar */
        if (!check(m, kiln_module_set_scalar(m, "train.lr", o.lr * pow(o.gamma, epoch)),
                   "train.lr"))
            break;
        shuffle(order, n, epoch);
        for (int s = 0; s < steps && rc == 0; s++) {
            for (int i = 0; i < o.batch; i++) {
                int k = order[s * o.batch + i];
                memcpy(xb + (size_t)i * PIXELS, train.pixels + (size_t)k * PIXELS,
                       sizeof(float) * PIXELS);
                yb[i] = train_y.labels[k];
            }
            double l;
            if (!check(m, kiln_module_set(m, "x", xb, sizeof(float) * (size_t)o.batch * PIXELS),
                       "set x") ||
                !check(m, kiln_module_set(m, "y", yb, sizeof(int64_t) * (size_t)o.batch),
                       "set y") ||
                !check(m, kiln_module_run(m, "train"), "train") ||
                !check(m, kiln_module_get_scalar(m, "train.loss", &l), "train.loss"))
                rc = 1;
            else
                loss_sum += l;
        }
        double t1 = now_s();
        double acc = rc == 0 ? evaluate(m, &test, &test_y) : -1;
        if (acc < 0 || !check(m, kiln_module_save(m, o.checkpoint), "checkpoint")) {
            rc = 1;
            break;
        }
        printf("epoch %d/%d: loss %.4f, test accuracy %.2f%%, %.0f samples/s, %.1f s elapsed\n",
               epoch + 1, o.epochs, loss_sum / steps, 100 * acc,
               (double)steps * o.batch / (t1 - t0), now_s() - start);
        fflush(stdout);
    }
    if (rc == 0)
        printf("params checksum %016llx\n", (unsigned long long)checksum(m, &o));
    free(xb);
    free(yb);
    free(order);
    idx_free_images(&train);
    idx_free_images(&test);
    idx_free_labels(&train_y);
    idx_free_labels(&test_y);
    kiln_module_free(m);
    kiln_graph_free(g);
    return rc;
}
