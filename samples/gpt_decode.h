/*
 * gpt_decode.h - what samples/gpt.c (through Kiln) and samples/gpt_generate.c
 * (through the exported gpt.so alone) share: the character vocabulary of a
 * text and greedy generation with a KV cache.
 *
 * The model's "decode" entry takes one token and its position, writes the
 * token's keys and values into the cache at that position and attends to
 * positions 0..pos only: a token costs one position's work, not a window's.
 * Positions are learned (wpe has GPT_BLOCK rows), so when the cache is full
 * the last GPT_BLOCK / 2 tokens are fed again from position 0 (once per
 * GPT_BLOCK / 2 tokens; until then every token sees the whole text so far).
 */
#ifndef GPT_DECODE_H
#define GPT_DECODE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

enum { GPT_BLOCK = 32, GPT_PROMPT = 8, GPT_MAX_VOCAB = 256 };

/* The vocabulary is the bytes the text holds, in byte order: code[byte] is a
 * byte's token (-1 when absent), bytes[token] the token's byte. */
static inline int gpt_vocab(const char *text, long size, int code[GPT_MAX_VOCAB],
                            unsigned char bytes[GPT_MAX_VOCAB])
{
    int vocab = 0;
    for (int c = 0; c < GPT_MAX_VOCAB; c++)
        code[c] = -1;
    for (long i = 0; i < size; i++)
        code[(unsigned char)text[i]] = 0;
    for (int c = 0; c < GPT_MAX_VOCAB; c++)
        if (code[c] == 0) {
            bytes[vocab] = (unsigned char)c;
            code[c] = vocab++;
        }
    return vocab;
}

/* Where the prompt starts: the text's first character that is no space or
 * newline (0 when there is none in the first size - GPT_PROMPT bytes). */
static inline long gpt_prompt_at(const char *text, long size)
{
    for (long i = 0; i + GPT_PROMPT <= size; i++)
        if (text[i] != ' ' && text[i] != '\n')
            return i;
    return 0;
}

/* One run of the decode entry: the most likely token after `token` at `pos`. */
typedef bool (*gpt_decode_fn)(void *model, int64_t token, int64_t pos, int64_t *next);

/* Prints "generated: \"<prompt><n characters>\"\n" to out: the prompt's
 * GPT_PROMPT characters (prompt: gpt_prompt_at), then n greedy tokens. False
 * when a decode failed. */
static inline bool gpt_generate(gpt_decode_fn decode, void *model, const char *prompt,
                                const int code[GPT_MAX_VOCAB],
                                const unsigned char bytes[GPT_MAX_VOCAB], int n, FILE *out)
{
    int64_t ctx[GPT_BLOCK + 1]; /* the tokens the cache holds, then the newest */
    int len = 0, pos = 0;
    int64_t next = 0;
    fprintf(out, "generated: \"%.*s", GPT_PROMPT, prompt);
    for (; len < GPT_PROMPT; len++) {
        ctx[len] = code[(unsigned char)prompt[len]];
        if (!decode(model, ctx[len], pos++, &next))
            return false;
    }
    for (int i = 0; i < n; i++) {
        fputc(bytes[next], out);
        ctx[len++] = next;
        if (pos < GPT_BLOCK) {
            if (!decode(model, next, pos++, &next))
                return false;
            continue;
        }
        /* the cache is full: keep the last GPT_BLOCK / 2 tokens, from position 0 */
        for (int j = 0; j < GPT_BLOCK / 2; j++)
            ctx[j] = ctx[len - GPT_BLOCK / 2 + j];
        len = pos = 0;
        for (; len < GPT_BLOCK / 2; len++)
            if (!decode(model, ctx[len], pos++, &next))
                return false;
    }
    fputs("\"\n", out);
    return true;
}

#endif /* GPT_DECODE_H */
