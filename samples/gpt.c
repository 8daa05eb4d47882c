/*
 * gpt.c - a small character-level GPT (nanoGPT's layout: pre-LN blocks of
 * causal multi-head attention and a GELU MLP) trained on a text file with
 * AdamW, no weight decay on biases and norms, and gradient clipping; then it
 * writes a greedy continuation of the text's first characters.
 *
 *   gpt [--steps N] [--data FILE] [--save-init FILE] [--every K] [--generate N]
 *       [--target c|interp|cuda]
 *
 * The data defaults to /usr/share/common-licenses/GPL-3 (Debian's base-files);
 * the vocabulary is the bytes it holds, in byte order. Step s trains on the
 * windows that start at ((s * BATCH + b) * 7919) mod (size - BLOCK - 1): no
 * randomness, so tests/ref/gpt_ref.py repeats the run in PyTorch from the
 * initial weights --save-init writes (tests/data/gpt_losses.txt, checked by
 * ctest sample_gpt). Generation runs a second entry ("next": the logits of
 * one window) over the same params, a window at a time.
 */
#include "args.h"

#include <kiln.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { BLOCK = 32, EMBED = 64, HEADS = 4, LAYERS = 2, BATCH = 16, MAX_VOCAB = 256 };

typedef struct {
    int steps, every, generate;
    const char *data, *save_init;
    kiln_target target;
} options;

static int usage(const char *why)
{
    fprintf(stderr,
            "gpt: %s\nusage: gpt [--steps N] [--data FILE] [--save-init FILE] [--every K]\n"
            "           [--generate N] [--target c|interp|cuda]\n",
            why);
    return 2;
}

static bool parse(int argc, char **argv, options *o)
{
    *o = (options){.steps = 2000,
                   .every = 250,
                   .generate = 120,
                   .data = "/usr/share/common-licenses/GPL-3",
                   .target = KILN_TARGET_C};
    if (argc % 2 == 0)
        return false;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (strcmp(a, "--steps") == 0)
            o->steps = atoi(v);
        else if (strcmp(a, "--every") == 0)
            o->every = atoi(v);
        else if (strcmp(a, "--generate") == 0)
            o->generate = atoi(v);
        else if (strcmp(a, "--data") == 0)
            o->data = v;
        else if (strcmp(a, "--save-init") == 0)
            o->save_init = v;
        else if (strcmp(a, "--target") != 0 || !sample_target(v, &o->target))
            return false;
    }
    return o->steps >= 0 && o->every > 0 && o->generate >= 0;
}

/* The params, made once (nanoGPT's names and init: N(0, 0.02) weights, zero
 * biases, unit norm weights); names of those without weight decay. */
typedef struct {
    kiln_tensor *wte, *wpe, *lnf_w, *lnf_b, *head;
    struct {
        kiln_tensor *ln1_w, *ln1_b, *attn_w, *attn_b, *proj_w, *proj_b;
        kiln_tensor *ln2_w, *ln2_b, *fc_w, *fc_b, *mlp_w, *mlp_b;
    } h[LAYERS];
    char names[LAYERS * 8 + 2][48];
    const char *no_decay[LAYERS * 8 + 3];
} model;

static kiln_tensor *param(kiln_graph *g, model *md, const char *prefix, const char *name,
                          bool decay, int rank, const int64_t *dims, kiln_init init)
{
    char full[48];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    if (!decay) {
        int n = 0;
        while (md->no_decay[n])
            n++;
        snprintf(md->names[n], sizeof md->names[n], "%s", full);
        md->no_decay[n] = md->names[n];
    }
    return kiln_param(g, full, KILN_F32, rank, dims, init);
}

static void make_params(kiln_graph *g, model *md, int64_t vocab)
{
    const int64_t d = EMBED;
    kiln_init normal = kiln_init_normal(0, 0.02), zeros = kiln_init_zeros(),
              ones = kiln_init_ones();
    memset(md, 0, sizeof *md);
    md->wte = param(g, md, "", "wte", true, 2, (const int64_t[]){vocab, d}, normal);
    md->wpe = param(g, md, "", "wpe", true, 2, (const int64_t[]){BLOCK, d}, normal);
    for (int l = 0; l < LAYERS; l++) {
        char p[16];
        snprintf(p, sizeof p, "h.%d.", l);
        md->h[l].ln1_w = param(g, md, p, "ln_1.weight", false, 1, &d, ones);
        md->h[l].ln1_b = param(g, md, p, "ln_1.bias", false, 1, &d, zeros);
        md->h[l].attn_w =
            param(g, md, p, "attn.c_attn.weight", true, 2, (const int64_t[]){3 * d, d}, normal);
        md->h[l].attn_b =
            param(g, md, p, "attn.c_attn.bias", false, 1, (const int64_t[]){3 * d}, zeros);
        md->h[l].proj_w =
            param(g, md, p, "attn.c_proj.weight", true, 2, (const int64_t[]){d, d}, normal);
        md->h[l].proj_b = param(g, md, p, "attn.c_proj.bias", false, 1, &d, zeros);
        md->h[l].ln2_w = param(g, md, p, "ln_2.weight", false, 1, &d, ones);
        md->h[l].ln2_b = param(g, md, p, "ln_2.bias", false, 1, &d, zeros);
        md->h[l].fc_w =
            param(g, md, p, "mlp.c_fc.weight", true, 2, (const int64_t[]){4 * d, d}, normal);
        md->h[l].fc_b = param(g, md, p, "mlp.c_fc.bias", false, 1, (const int64_t[]){4 * d}, zeros);
        md->h[l].mlp_w =
            param(g, md, p, "mlp.c_proj.weight", true, 2, (const int64_t[]){d, 4 * d}, normal);
        md->h[l].mlp_b = param(g, md, p, "mlp.c_proj.bias", false, 1, &d, zeros);
    }
    md->lnf_w = param(g, md, "", "ln_f.weight", false, 1, &d, ones);
    md->lnf_b = param(g, md, "", "ln_f.bias", false, 1, &d, zeros);
    md->head = param(g, md, "", "lm_head.weight", true, 2, (const int64_t[]){vocab, d}, normal);
}

/* Logits [n, BLOCK, vocab] of the windows idx [n, BLOCK]. */
static kiln_tensor *forward(kiln_graph *g, const model *md, kiln_tensor *idx, int64_t n)
{
    const int64_t d = EMBED, hd = EMBED / HEADS;
    kiln_tensor *h = kiln_add(g, kiln_embedding(g, md->wte, idx), md->wpe);
    for (int l = 0; l < LAYERS; l++) {
        kiln_tensor *a = kiln_linear(g, kiln_layer_norm(g, h, md->h[l].ln1_w, md->h[l].ln1_b, 1e-5),
                                     md->h[l].attn_w, md->h[l].attn_b);
        kiln_tensor *qkv[3]; /* [n, HEADS, BLOCK, hd] each */
        for (int i = 0; i < 3; i++) {
            kiln_tensor *part = kiln_slice(g, a, 2, i * d, (i + 1) * d, 1);
            part = kiln_reshape(g, part, 4, (const int64_t[]){n, BLOCK, HEADS, hd});
            qkv[i] = kiln_transpose(g, part, 1, 2);
        }
        kiln_tensor *y =
            kiln_scaled_dot_product_attention(g, qkv[0], qkv[1], qkv[2], NULL, true, 0);
        y = kiln_reshape(g, kiln_transpose(g, y, 1, 2), 3, (const int64_t[]){n, BLOCK, d});
        h = kiln_add(g, h, kiln_linear(g, y, md->h[l].proj_w, md->h[l].proj_b));
        kiln_tensor *m = kiln_layer_norm(g, h, md->h[l].ln2_w, md->h[l].ln2_b, 1e-5);
        m = kiln_gelu(g, kiln_linear(g, m, md->h[l].fc_w, md->h[l].fc_b));
        h = kiln_add(g, h, kiln_linear(g, m, md->h[l].mlp_w, md->h[l].mlp_b));
    }
    h = kiln_layer_norm(g, h, md->lnf_w, md->lnf_b, 1e-5);
    return kiln_linear(g, h, md->head, NULL);
}

static kiln_graph *build(model *md, int64_t vocab)
{
    kiln_graph *g = kiln_graph_new();
    kiln_graph_seed(g, 1337);
    make_params(g, md, vocab);
    kiln_tensor *x = kiln_input(g, "x", KILN_I64, KILN_SHAPE(BATCH, BLOCK));
    kiln_tensor *y = kiln_input(g, "y", KILN_I64, KILN_SHAPE(BATCH * BLOCK));
    kiln_tensor *logits = forward(g, md, x, BATCH);
    kiln_tensor *flat = kiln_reshape(g, logits, 2, (const int64_t[]){BATCH * BLOCK, vocab});
    kiln_optim opt = kiln_adamw(1e-3, 0.9, 0.95, 1e-8, 0.1);
    opt.max_grad_norm = 1.0;
    opt.no_decay = md->no_decay;
    kiln_train_step(g, "train", kiln_cross_entropy(g, flat, y), opt);
    /* generation: the logits of one window's last position */
    kiln_tensor *w = kiln_input(g, "window", KILN_I64, KILN_SHAPE(1, BLOCK));
    kiln_tensor *last = kiln_select(g, kiln_select(g, forward(g, md, w, 1), 0, 0), 0, BLOCK - 1);
    kiln_tensor *next = kiln_argmax(g, last, 0, false);
    kiln_entry(g, "next", 1, &next, (const char *[]){"next.token"});
    return g;
}

static char *read_text(const char *path, long *n)
{
    FILE *f = fopen(path, "rb");
    char *s = NULL;
    if (f && fseek(f, 0, SEEK_END) == 0 && (*n = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (s = malloc((size_t)*n)) && fread(s, 1, (size_t)*n, f) != (size_t)*n) {
        free(s);
        s = NULL;
    }
    if (f)
        fclose(f);
    return s;
}

static bool check(kiln_module *m, kiln_status s, const char *what)
{
    if (s != KILN_OK)
        fprintf(stderr, "gpt: %s: %s\n", what, kiln_module_error(m));
    return s == KILN_OK;
}

int main(int argc, char **argv)
{
    options o;
    if (!parse(argc, argv, &o))
        return usage("bad arguments");
    long size = 0;
    char *text = read_text(o.data, &size);
    if (!text || size < BLOCK + 2) {
        fprintf(stderr, "gpt: cannot read a text of more than %d bytes from %s\n", BLOCK + 1,
                o.data);
        return 1;
    }
    int code[MAX_VOCAB], vocab = 0; /* byte -> token, in byte order */
    unsigned char bytes[MAX_VOCAB];
    for (int c = 0; c < MAX_VOCAB; c++)
        code[c] = -1;
    for (long i = 0; i < size; i++)
        code[(unsigned char)text[i]] = 0;
    for (int c = 0; c < MAX_VOCAB; c++)
        if (code[c] == 0) {
            bytes[vocab] = (unsigned char)c;
            code[c] = vocab++;
        }
    static model md;
    kiln_graph *g = build(&md, vocab);
    kiln_module *m = NULL;
    if (kiln_graph_status(g) != KILN_OK ||
        kiln_compile(g, &(kiln_compile_opts){.target = o.target}, &m) != KILN_OK) {
        fprintf(stderr, "gpt: %s\n", kiln_graph_error(g));
        return 1;
    }
    if (o.save_init && !check(m, kiln_module_save(m, o.save_init), "--save-init"))
        return 1;
    printf("%s: %ld bytes, vocabulary %d; GPT %d layers, %d heads, embedding %d, block %d; "
           "AdamW, batch %d\n",
           o.data, size, vocab, LAYERS, HEADS, EMBED, BLOCK, BATCH);
    int64_t x[BATCH * BLOCK], y[BATCH * BLOCK];
    for (int s = 0; s < o.steps; s++) {
        for (int b = 0; b < BATCH; b++) {
            long at = (long)((s * BATCH + b) * 7919L % (size - BLOCK - 1));
            for (int t = 0; t < BLOCK; t++) {
                x[b * BLOCK + t] = code[(unsigned char)text[at + t]];
                y[b * BLOCK + t] = code[(unsigned char)text[at + t + 1]];
            }
        }
        double loss;
        if (!check(m, kiln_module_set(m, "x", x, sizeof x), "set x") ||
            !check(m, kiln_module_set(m, "y", y, sizeof y), "set y") ||
            !check(m, kiln_module_run(m, "train"), "train") ||
            !check(m, kiln_module_get_scalar(m, "train.loss", &loss), "train.loss"))
            return 1;
        if (s < 20 || (s + 1) % o.every == 0)
            printf("step %d: loss %.7f\n", s + 1, loss);
    }
    /* greedy continuation of the text's first BLOCK characters */
    int64_t window[BLOCK];
    for (int t = 0; t < BLOCK; t++)
        window[t] = code[(unsigned char)text[t]];
    printf("generated: \"%.*s", BLOCK, text);
    for (int i = 0; i < o.generate; i++) {
        double tok;
        if (!check(m, kiln_module_set(m, "window", window, sizeof window), "set window") ||
            !check(m, kiln_module_run(m, "next"), "next") ||
            !check(m, kiln_module_get_scalar(m, "next.token", &tok), "next.token"))
            return 1;
        memmove(window, window + 1, sizeof(int64_t) * (BLOCK - 1));
        window[BLOCK - 1] = (int64_t)tok;
        putchar(bytes[(int)tok]);
    }
    printf("\"\n");
    kiln_module_free(m);
    kiln_graph_free(g);
    free(text);
    return 0;
}
