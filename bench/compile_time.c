/*
 * compile_time.c - how long kiln_compile takes for an MLP, cold and cached.
 *
 * Cold: a fresh cache directory, so the pass pipeline, C rendering, clang and
 * dlopen all run. Cached: the same graph again, which must start no process;
 * measured in the same process and in a fresh one (a child of this program),
 * where no memory or library is warm yet.
 * Model: 784-1024-1024-10 MLP, batch 256, ReLU, cross-entropy loss; the train
 * step computes the loss, its gradients (kiln_grad) and an SGD update of every
 * param (kiln_assign), plus a predict entry. Prints the best of N.
 */
#include <kiln.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static kiln_graph *mlp(int salt)
{
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(256, 784));
    kiln_tensor *y = kiln_input(g, "y", KILN_I64, KILN_SHAPE(256));
    const int64_t sizes[] = {784, 1024, 1024, 10};
    kiln_tensor *h = x, *ps[6];
    for (int l = 0; l < 3; l++) {
        char wn[16], bn[16];
        snprintf(wn, sizeof wn, "w%d", l);
        snprintf(bn, sizeof bn, "b%d", l);
        ps[2 * l] = kiln_param(g, wn, KILN_F32, KILN_SHAPE(sizes[l + 1], sizes[l]),
                               kiln_init_kaiming_uniform());
        ps[2 * l + 1] =
            kiln_param(g, bn, KILN_F32, KILN_SHAPE(sizes[l + 1]), kiln_init_kaiming_uniform());
        h = kiln_linear(g, h, ps[2 * l], ps[2 * l + 1]);
        if (l < 2)
            h = kiln_relu(g, h);
    }
    kiln_tensor *loss = kiln_cross_entropy(g, h, y);
    kiln_tensor *grads[6];
    kiln_grad(g, loss, 6, ps, NULL, grads);
    /* salt makes each cold compile a distinct cache key */
    kiln_tensor *lr = kiln_scalar(g, 0.01 + 1e-6 * salt);
    kiln_tensor *outs[7] = {loss};
    for (int i = 0; i < 6; i++)
        outs[i + 1] = kiln_assign(g, ps[i], kiln_sub(g, ps[i], kiln_mul(g, lr, grads[i])));
    kiln_entry(g, "step", 7, outs, NULL);
    kiln_entry(g, "predict", 1, &h, (const char *[]){"logits"});
    return g;
}

/* One cached compile of mlp(salt) in this fresh process, in ms (-1: failed). */
static double cached_once(const char *dir, int salt)
{
    kiln_compile_opts opts = {.cache_dir = dir};
    kiln_graph *g = mlp(salt);
    kiln_module *m = NULL;
    double t0 = now_ms();
    kiln_status s = kiln_compile(g, &opts, &m);
    double t = now_ms() - t0;
    kiln_module_free(m);
    kiln_graph_free(g);
    return s == KILN_OK ? t : -1;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--cached-child") == 0) {
        printf("%.3f\n", cached_once(argv[2], atoi(argv[3])));
        return 0;
    }
    int reps = argc > 1 ? atoi(argv[1]) : 3;
    char dir[] = "/tmp/kiln-bench-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    kiln_compile_opts opts = {.cache_dir = dir};
    double cold = 1e30, cached = 1e30, fresh = 1e30;
    for (int r = 0; r < reps; r++) {
        kiln_graph *g = mlp(r);
        kiln_module *m = NULL;
        double t0 = now_ms();
        if (kiln_compile(g, &opts, &m) != KILN_OK) {
            fprintf(stderr, "%s\n", kiln_graph_error(g));
            return 1;
        }
        double t1 = now_ms();
        kiln_module_free(m);
        double t2 = now_ms();
        if (kiln_compile(g, &opts, &m) != KILN_OK)
            return 1;
        double t3 = now_ms();
        kiln_module_free(m);
        kiln_graph_free(g);
        cold = t1 - t0 < cold ? t1 - t0 : cold;
        cached = t3 - t2 < cached ? t3 - t2 : cached;
        /* the same key from a new process: nothing of this one's is warm */
        char cmd[4200];
        snprintf(cmd, sizeof cmd, "'%s' --cached-child '%s' %d", argv[0], dir, r);
        FILE *child = popen(cmd, "r");
        double t = -1;
        if (!child || fscanf(child, "%lf", &t) != 1 || pclose(child) != 0 || t < 0) {
            fprintf(stderr, "the cached compile in a child process failed\n");
            return 1;
        }
        fresh = t < fresh ? t : fresh;
    }
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 1;
    printf("compile time, MLP 784-1024-1024-10 train step (grad + SGD) and predict, best of %d\n",
           reps);
    printf("  cold   (pipeline + C + clang + dlopen)   : %8.1f ms   target < 1000 ms\n", cold);
    printf("  cached (no process started), same process: %8.2f ms   target < 10 ms\n", cached);
    printf("  cached, in a fresh process              : %8.2f ms   target < 10 ms\n", fresh);
    return 0;
}
