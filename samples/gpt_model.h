/*
 * gpt_model.h - the GPT of samples/gpt.c (nanoGPT's layout: pre-LN blocks of
 * causal multi-head attention and a GELU MLP, learned positions, no bias in
 * the head), its params by nanoGPT's names and its AdamW train step; bench/
 * times the same step (bench/models.h).
 */
#ifndef GPT_MODEL_H
#define GPT_MODEL_H

#include "gpt_decode.h" /* GPT_BLOCK */

#include <kiln.h>
#include <stdio.h>
#include <string.h>

enum { GPT_EMBED = 64, GPT_HEADS = 4, GPT_LAYERS = 2, GPT_BATCH = 16 };

/* The params, made once (nanoGPT's names and init: N(0, 0.02) weights, zero
 * biases, unit norm weights); names of those without weight decay; the
 * sizes (the sample's: GPT_EMBED, GPT_HEADS, GPT_BLOCK, GPT_BATCH; bench/
 * times a larger one too). */
typedef struct {
    int64_t d, heads, block, batch;
    kiln_tensor *wte, *wpe, *lnf_w, *lnf_b, *head;
    struct {
        kiln_tensor *ln1_w, *ln1_b, *attn_w, *attn_b, *proj_w, *proj_b;
        kiln_tensor *ln2_w, *ln2_b, *fc_w, *fc_b, *mlp_w, *mlp_b;
    } h[GPT_LAYERS];
    char names[GPT_LAYERS * 8 + 2][48];
    const char *no_decay[GPT_LAYERS * 8 + 3];
} gpt_model;

static inline kiln_tensor *gpt_param(kiln_graph *g, gpt_model *md, const char *prefix,
                                     const char *name, bool decay, int rank, const int64_t *dims,
                                     kiln_init init)
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

/* The params of a GPT of embedding d, heads heads, context block, trained
 * on batches of batch windows. */
static inline void gpt_params_sized(kiln_graph *g, gpt_model *md, int64_t vocab, int64_t d,
                                    int64_t heads, int64_t block, int64_t batch)
{
    kiln_init normal = kiln_init_normal(0, 0.02), zeros = kiln_init_zeros(),
              ones = kiln_init_ones();
    memset(md, 0, sizeof *md);
    md->d = d;
    md->heads = heads;
    md->block = block;
    md->batch = batch;
    md->wte = gpt_param(g, md, "", "wte", true, 2, (const int64_t[]){vocab, d}, normal);
    md->wpe = gpt_param(g, md, "", "wpe", true, 2, (const int64_t[]){block, d}, normal);
    for (int l = 0; l < GPT_LAYERS; l++) {
        char p[16];
        snprintf(p, sizeof p, "h.%d.", l);
        md->h[l].ln1_w = gpt_param(g, md, p, "ln_1.weight", false, 1, &d, ones);
        md->h[l].ln1_b = gpt_param(g, md, p, "ln_1.bias", false, 1, &d, zeros);
        md->h[l].attn_w =
            gpt_param(g, md, p, "attn.c_attn.weight", true, 2, (const int64_t[]){3 * d, d}, normal);
        md->h[l].attn_b =
            gpt_param(g, md, p, "attn.c_attn.bias", false, 1, (const int64_t[]){3 * d}, zeros);
        md->h[l].proj_w =
            gpt_param(g, md, p, "attn.c_proj.weight", true, 2, (const int64_t[]){d, d}, normal);
        md->h[l].proj_b = gpt_param(g, md, p, "attn.c_proj.bias", false, 1, &d, zeros);
        md->h[l].ln2_w = gpt_param(g, md, p, "ln_2.weight", false, 1, &d, ones);
        md->h[l].ln2_b = gpt_param(g, md, p, "ln_2.bias", false, 1, &d, zeros);
        md->h[l].fc_w =
            gpt_param(g, md, p, "mlp.c_fc.weight", true, 2, (const int64_t[]){4 * d, d}, normal);
        md->h[l].fc_b =
            gpt_param(g, md, p, "mlp.c_fc.bias", false, 1, (const int64_t[]){4 * d}, zeros);
        md->h[l].mlp_w =
            gpt_param(g, md, p, "mlp.c_proj.weight", true, 2, (const int64_t[]){d, 4 * d}, normal);
        md->h[l].mlp_b = gpt_param(g, md, p, "mlp.c_proj.bias", false, 1, &d, zeros);
    }
    md->lnf_w = gpt_param(g, md, "", "ln_f.weight", false, 1, &d, ones);
    md->lnf_b = gpt_param(g, md, "", "ln_f.bias", false, 1, &d, zeros);
    md->head = gpt_param(g, md, "", "lm_head.weight", true, 2, (const int64_t[]){vocab, d}, normal);
}

/* The sample's GPT. */
static inline void gpt_params(kiln_graph *g, gpt_model *md, int64_t vocab)
{
    gpt_params_sized(g, md, vocab, GPT_EMBED, GPT_HEADS, GPT_BLOCK, GPT_BATCH);
}

/* The queries, keys and values of block l's attention, [n, heads, t, hd]
 * each, for h [n, t, d]. */
static inline void gpt_attention_qkv(kiln_graph *g, const gpt_model *md, int l, kiln_tensor *h,
                                     int64_t n, int64_t t, kiln_tensor *qkv[3])
{
    const int64_t d = md->d, hd = md->d / md->heads;
    kiln_tensor *a = kiln_linear(g, kiln_layer_norm(g, h, md->h[l].ln1_w, md->h[l].ln1_b, 1e-5),
                                 md->h[l].attn_w, md->h[l].attn_b);
    for (int i = 0; i < 3; i++) {
        kiln_tensor *part = kiln_slice(g, a, 2, i * d, (i + 1) * d, 1);
        part = kiln_reshape(g, part, 4, (const int64_t[]){n, t, md->heads, hd});
        qkv[i] = kiln_transpose(g, part, 1, 2);
    }
}

/* The rest of block l after attention: y [n, heads, t, hd] projected and
 * added to h [n, t, d], then the GELU MLP. */
static inline kiln_tensor *gpt_block_rest(kiln_graph *g, const gpt_model *md, int l, kiln_tensor *h,
                                          kiln_tensor *y, int64_t n, int64_t t)
{
    y = kiln_reshape(g, kiln_transpose(g, y, 1, 2), 3, (const int64_t[]){n, t, md->d});
    h = kiln_add(g, h, kiln_linear(g, y, md->h[l].proj_w, md->h[l].proj_b));
    kiln_tensor *m = kiln_layer_norm(g, h, md->h[l].ln2_w, md->h[l].ln2_b, 1e-5);
    m = kiln_gelu(g, kiln_linear(g, m, md->h[l].fc_w, md->h[l].fc_b));
    return kiln_add(g, h, kiln_linear(g, m, md->h[l].mlp_w, md->h[l].mlp_b));
}

static inline kiln_tensor *gpt_head(kiln_graph *g, const gpt_model *md, kiln_tensor *h)
{
    return kiln_linear(g, kiln_layer_norm(g, h, md->lnf_w, md->lnf_b, 1e-5), md->head, NULL);
}

/* Logits [n, block, vocab] of the windows idx [n, block]. */
static inline kiln_tensor *gpt_forward(kiln_graph *g, const gpt_model *md, kiln_tensor *idx,
                                       int64_t n)
{
    kiln_tensor *h = kiln_add(g, kiln_embedding(g, md->wte, idx), md->wpe);
    for (int l = 0; l < GPT_LAYERS; l++) {
        kiln_tensor *qkv[3];
        gpt_attention_qkv(g, md, l, h, n, md->block, qkv);
        kiln_tensor *y =
            kiln_scaled_dot_product_attention(g, qkv[0], qkv[1], qkv[2], NULL, true, 0);
        h = gpt_block_rest(g, md, l, h, y, n, md->block);
    }
    return gpt_head(g, md, h);
}

/* The train step "train" of md's sizes (gpt_params_sized made its params):
 * AdamW (no decay on biases and norms), gradients clipped to norm 1,
 * cross-entropy of the windows x [batch, block] against their next characters
 * y [batch * block]. */
static inline void gpt_train_step_of(kiln_graph *g, gpt_model *md, int64_t vocab)
{
    const int64_t b = md->batch, t = md->block;
    kiln_tensor *x = kiln_input(g, "x", KILN_I64, KILN_SHAPE(b, t));
    kiln_tensor *y = kiln_input(g, "y", KILN_I64, KILN_SHAPE(b * t));
    kiln_tensor *logits = gpt_forward(g, md, x, b);
    kiln_tensor *flat = kiln_reshape(g, logits, 2, (const int64_t[]){b * t, vocab});
    kiln_optim opt = kiln_adamw(1e-3, 0.9, 0.95, 1e-8, 0.1);
    opt.max_grad_norm = 1.0;
    opt.no_decay = md->no_decay;
    kiln_train_step(g, "train", kiln_cross_entropy(g, flat, y), opt);
}

/* The sample's train step (GPT_EMBED, GPT_HEADS, GPT_BLOCK, GPT_BATCH). */
static inline void gpt_train_step(kiln_graph *g, gpt_model *md, int64_t vocab)
{
    kiln_graph_seed(g, 1337);
    gpt_params(g, md, vocab);
    gpt_train_step_of(g, md, vocab);
}

#endif /* GPT_MODEL_H */
