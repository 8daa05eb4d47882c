/*
 * gpt.c - a small character-level GPT (nanoGPT's layout: pre-LN blocks of
 * causal multi-head attention and a GELU MLP) trained on a text file with
 * AdamW, no weight decay on biases and norms, and gradient clipping; then it
 * writes a greedy continuation of the text's first characters.
 *
 *   gpt [--steps N] [--data FILE] [--save-init FILE] [--every K] [--generate N]
 *       [--export DIR] [--target c|interp|cuda | --device cpu|cuda]
 *
 * The data defaults to /usr/share/common-licenses/GPL-3 (Debian's base-files);
 * the vocabulary is the bytes it holds, in byte order. Step s trains on the
 * windows that start at ((s * GPT_BATCH + b) * 7919) mod (size - GPT_BLOCK - 1): no
 * randomness, so tests/ref/gpt_ref.py repeats the run in PyTorch from the
 * initial weights --save-init writes (tests/data/gpt_losses.txt, checked by
 * ctest sample_gpt).
 *
 * Generation: the trained params go through a checkpoint into an inference
 * graph whose "decode" entry keeps a KV cache in params (gpt_decode.h), loaded
 * non-strictly (the optimizer state is skipped, the caches are missing); it
 * prints "generated:". For comparison, "windows:" is the same greedy
 * continuation from the training graph's "next" entry, which runs a whole
 * window per token: while the text fits in a window (the first
 * GPT_BLOCK - GPT_PROMPT + 1 tokens) both see the same context. --export DIR
 * writes the decoder as DIR/gpt.so + gpt.h (kiln_export) and its params as
 * DIR/gpt.safetensors, for samples/gpt_generate.c.
 */
#include "args.h"
#include "gpt_decode.h"
#include "gpt_model.h"

#include <errno.h>
#include <kiln.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    int steps, every, generate;
    const char *data, *save_init, *export_dir;
    kiln_target target;
} options;

static int usage(const char *why)
{
    fprintf(
        stderr,
        "gpt: %s\nusage: gpt [--steps N] [--data FILE] [--save-init FILE] [--every K]\n"
        "           [--generate N] [--export DIR] [--target c|interp|cuda | --device cpu|cuda]\n",
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
        else if (strcmp(a, "--export") == 0)
            o->export_dir = v;
        else if (!sample_target_arg(a, v, &o->target))
            return false;
    }
    return o->steps >= 0 && o->every > 0 && o->generate >= 0;
}

static kiln_graph *build(gpt_model *md, int64_t vocab)
{
    kiln_graph *g = kiln_graph_new();
    gpt_train_step(g, md, vocab);
    /* the most likely next token at every position of one window */
    kiln_tensor *w = kiln_input(g, "window", KILN_I64, KILN_SHAPE(1, GPT_BLOCK));
    kiln_tensor *next = kiln_argmax(g, kiln_select(g, gpt_forward(g, md, w, 1), 0, 0), 1, false);
    kiln_entry(g, "next", 1, &next, (const char *[]){"next.tokens"});
    return g;
}

/* The inference graph: the same params (a training checkpoint loads into it
 * non-strictly), a KV cache per block as params [1, GPT_HEADS, GPT_BLOCK, hd], and
 * the entry "decode" (token, pos -> decode.token) of gpt_decode.h. */
static kiln_graph *build_decoder(gpt_model *md, int64_t vocab)
{
    const int64_t hd = GPT_EMBED / GPT_HEADS, cache[4] = {1, GPT_HEADS, GPT_BLOCK, hd};
    kiln_graph *g = kiln_graph_new();
    gpt_params(g, md, vocab);
    kiln_tensor *token = kiln_input(g, "token", KILN_I64, KILN_SHAPE(1));
    kiln_tensor *pos = kiln_input(g, "pos", KILN_I64, KILN_SHAPE(1));
    kiln_tensor *h =
        kiln_add(g, kiln_embedding(g, md->wte, token), kiln_embedding(g, md->wpe, pos));
    h = kiln_reshape(g, h, 3, (const int64_t[]){1, 1, GPT_EMBED});
    kiln_tensor *slots = kiln_arange(g, KILN_I64, 0, GPT_BLOCK, 1);
    kiln_tensor *here =
        kiln_reshape(g, kiln_eq(g, slots, pos), 4, (const int64_t[]){1, 1, GPT_BLOCK, 1});
    kiln_tensor *seen = kiln_le(g, slots, pos); /* attend to positions 0..pos */
    kiln_tensor *outs[1 + 2 * GPT_LAYERS];
    const char *names[1 + 2 * GPT_LAYERS];
    char buf[2 * GPT_LAYERS][48];
    for (int l = 0; l < GPT_LAYERS; l++) {
        kiln_tensor *qkv[3];
        gpt_attention_qkv(g, md, l, h, 1, 1, qkv);
        for (int i = 0; i < 2; i++) { /* the cache gets this position's key and value */
            snprintf(buf[2 * l + i], sizeof buf[0], "h.%d.attn.%s_cache", l, i ? "v" : "k");
            kiln_tensor *c = kiln_param(g, buf[2 * l + i], KILN_F32, 4, cache, kiln_init_zeros());
            qkv[1 + i] = kiln_where(g, here, qkv[1 + i], c);
            outs[1 + 2 * l + i] = kiln_assign(g, c, qkv[1 + i]);
        }
        kiln_tensor *y =
            kiln_scaled_dot_product_attention(g, qkv[0], qkv[1], qkv[2], seen, false, 0);
        h = gpt_block_rest(g, md, l, h, y, 1, 1);
    }
    kiln_tensor *logits = kiln_reshape(g, gpt_head(g, md, h), 1, &vocab);
    outs[0] = kiln_argmax(g, logits, 0, false);
    names[0] = "decode.token";
    char out_names[2 * GPT_LAYERS][sizeof buf + 16]; /* "decode.new." + a cache name */
    for (int i = 0; i < 2 * GPT_LAYERS; i++) {
        snprintf(out_names[i], sizeof out_names[i], "decode.new.%s", buf[i]);
        names[1 + i] = out_names[i];
    }
    kiln_entry(g, "decode", 1 + 2 * GPT_LAYERS, outs, names);
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

static bool decode(void *model, int64_t token, int64_t pos, int64_t *next)
{
    kiln_module *m = model;
    return check(m, kiln_module_set(m, "token", &token, sizeof token), "set token") &&
           check(m, kiln_module_set(m, "pos", &pos, sizeof pos), "set pos") &&
           check(m, kiln_module_run(m, "decode"), "decode") &&
           check(m, kiln_module_get(m, "decode.token", next, sizeof *next), "decode.token");
}

/* "windows:": the continuation through the training graph's "next" entry,
 * the last GPT_BLOCK tokens (all of them while fewer) run as one window. */
static bool generate_windows(kiln_module *m, const char *prompt, const int *code,
                             const unsigned char *bytes, int n)
{
    int64_t window[GPT_BLOCK], tokens[GPT_BLOCK];
    int len = GPT_PROMPT;
    for (int t = 0; t < GPT_BLOCK; t++)
        window[t] = t < len ? code[(unsigned char)prompt[t]] : 0;
    printf("windows:   \"%.*s", GPT_PROMPT, prompt);
    for (int i = 0; i < n; i++) {
        if (!check(m, kiln_module_set(m, "window", window, sizeof window), "set window") ||
            !check(m, kiln_module_run(m, "next"), "next") ||
            !check(m, kiln_module_get(m, "next.tokens", tokens, sizeof tokens), "next.tokens"))
            return false;
        int64_t tok = tokens[len - 1];
        putchar(bytes[tok]);
        if (len < GPT_BLOCK)
            window[len++] = tok;
        else {
            memmove(window, window + 1, sizeof(int64_t) * (GPT_BLOCK - 1));
            window[GPT_BLOCK - 1] = tok;
        }
    }
    printf("\"\n");
    return true;
}

/* Loads the training checkpoint into the decoder (strict=False) and prints
 * the report's lines, each cut at 100 characters. */
static bool load_trained(kiln_module *dm, const char *ckpt)
{
    char *report = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&report, &len);
    bool ok = f && check(dm, kiln_module_load_nonstrict(dm, ckpt, f), "load");
    if (f)
        fclose(f);
    printf("decoder: %s loaded without what is not the decoder's\n", ckpt);
    char *save = NULL;
    for (char *line = ok ? strtok_r(report, "\n", &save) : NULL; line;
         line = strtok_r(NULL, "\n", &save))
        printf("  %.100s%s\n", line, strlen(line) > 100 ? "..." : "");
    free(report);
    return ok;
}

/* The trained params into the decoder (a checkpoint, loaded non-strictly),
 * the KV-cache continuation, and the export. */
static bool generate(const options *o, kiln_module *m, const char *prompt, const int *code,
                     const unsigned char *bytes, int64_t vocab)
{
    char dir[4096], ckpt[4200];
    if (o->export_dir) {
        snprintf(dir, sizeof dir, "%s", o->export_dir);
        if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
            fprintf(stderr, "gpt: cannot create %s: %s\n", dir, strerror(errno));
            return false;
        }
    } else if (!mkdtemp(strcpy(dir, "/tmp/kiln-gpt-XXXXXX"))) {
        perror("gpt: a temporary directory");
        return false;
    }
    snprintf(ckpt, sizeof ckpt, "%s/train.safetensors", dir);
    static gpt_model md;
    kiln_graph *dg = build_decoder(&md, vocab);
    kiln_module *dm = NULL;
    bool ok = check(m, kiln_module_save(m, ckpt), "save");
    if (ok && (kiln_graph_status(dg) != KILN_OK ||
               kiln_compile(dg, &(kiln_compile_opts){.target = o->target}, &dm) != KILN_OK)) {
        fprintf(stderr, "gpt: decoder: %s\n", kiln_graph_error(dg));
        ok = false;
    }
    ok = ok && load_trained(dm, ckpt);
    ok = ok && generate_windows(m, prompt, code, bytes, o->generate);
    ok = ok && gpt_generate(decode, dm, prompt, code, bytes, o->generate, stdout);
    if (ok && o->export_dir) {
        snprintf(ckpt, sizeof ckpt, "%s/gpt.safetensors", dir);
        ok = check(dm, kiln_module_save(dm, ckpt), "save the decoder");
        if (ok && kiln_export(dg, &(kiln_compile_opts){.name = "gpt"}, dir) != KILN_OK) {
            fprintf(stderr, "gpt: export: %s\n", kiln_graph_error(dg));
            ok = false;
        }
        if (ok)
            printf("exported: %s/gpt.so, gpt.h and gpt.safetensors\n", dir);
    } else {
        remove(ckpt);
        rmdir(dir);
    }
    kiln_module_free(dm);
    kiln_graph_free(dg);
    return ok;
}

int main(int argc, char **argv)
{
    options o;
    if (!parse(argc, argv, &o))
        return usage("bad arguments");
    long size = 0;
    char *text = read_text(o.data, &size);
    if (!text || size < GPT_BLOCK + 2) {
        fprintf(stderr, "gpt: cannot read a text of more than %d bytes from %s\n", GPT_BLOCK + 1,
                o.data);
        return 1;
    }
    int code[GPT_MAX_VOCAB];
    unsigned char bytes[GPT_MAX_VOCAB];
    int vocab = gpt_vocab(text, size, code, bytes);
    static gpt_model md;
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
           o.data, size, vocab, GPT_LAYERS, GPT_HEADS, GPT_EMBED, GPT_BLOCK, GPT_BATCH);
    int64_t x[GPT_BATCH * GPT_BLOCK], y[GPT_BATCH * GPT_BLOCK];
    for (int s = 0; s < o.steps; s++) {
        for (int b = 0; b < GPT_BATCH; b++) {
            long at = (long)((s * GPT_BATCH + b) * 7919L % (size - GPT_BLOCK - 1));
            for (int t = 0; t < GPT_BLOCK; t++) {
                x[b * GPT_BLOCK + t] = code[(unsigned char)text[at + t]];
                y[b * GPT_BLOCK + t] = code[(unsigned char)text[at + t + 1]];
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
    bool ok = generate(&o, m, text + gpt_prompt_at(text, size), code, bytes, vocab);
    kiln_module_free(m);
    kiln_graph_free(g);
    free(text);
    return ok ? 0 : 1;
}
