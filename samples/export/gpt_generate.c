/*
 * gpt_generate.c - greedy text generation with the GPT that samples/gpt.c
 * trained and exported, in a program that knows nothing of Kiln: it is built
 * with the exported header and library alone,
 *
 *     cc gpt_generate.c -I DIR DIR/gpt.so -Wl,-rpath,DIR -o gpt_generate
 *
 * and prints the "generated:" line gpt.c printed (gpt_decode.h: one decode
 * run per token, the keys and values of earlier tokens kept in the model's
 * cache params).
 *
 *   gpt_generate DIR [TEXT [N]]
 *
 * TEXT (default /usr/share/common-licenses/GPL-3) gives the vocabulary and the
 * prompt, as in gpt.c; N characters are generated (default 120).
 */
#include "gpt.h"
#include "gpt_decode.h"

#include <stdlib.h>

static bool decode(void *model, int64_t token, int64_t pos, int64_t *next)
{
    return gpt_decode(model, &token, &pos, next) == 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: gpt_generate DIR [TEXT [N]]\n");
        return 2;
    }
    const char *path = argc > 2 ? argv[2] : "/usr/share/common-licenses/GPL-3";
    int n = argc > 3 ? atoi(argv[3]) : 120;
    FILE *f = fopen(path, "rb");
    long size = f && fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    char *text = size > 0 && fseek(f, 0, SEEK_SET) == 0 ? malloc((size_t)size) : NULL;
    if (text && fread(text, 1, (size_t)size, f) != (size_t)size)
        size = 0;
    if (f)
        fclose(f);
    if (!text || size < GPT_PROMPT) {
        free(text);
        fprintf(stderr, "gpt_generate: cannot read a text from %s\n", path);
        return 1;
    }
    int code[GPT_MAX_VOCAB];
    unsigned char bytes[GPT_MAX_VOCAB];
    gpt_vocab(text, size, code, bytes);
    gpt_state *s = gpt_create();
    if (!s) {
        fprintf(stderr, "gpt_generate: out of memory\n");
        free(text);
        return 1;
    }
    char params[4096];
    snprintf(params, sizeof params, "%s/gpt.safetensors", argv[1]);
    bool ok = gpt_load(s, params) == 0 &&
              gpt_generate(decode, s, text + gpt_prompt_at(text, size), code, bytes, n, stdout);
    if (!ok)
        fprintf(stderr, "gpt_generate: %s\n", gpt_error(s));
    gpt_free(s);
    free(text);
    return ok ? 0 : 1;
}
