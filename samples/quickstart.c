/* quickstart.c - the README's first program: build, check, compile, run, print. */
#include <kiln.h>

int main(void)
{
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(2, 3));
    kiln_tensor *w = kiln_arange(g, KILN_F32, 0, 6, 1);
    kiln_tensor *y = kiln_matmul(g, x, kiln_reshape(g, w, KILN_SHAPE(3, 2)));
    kiln_tensor *p = kiln_softmax(g, y, -1);
    kiln_entry(g, "predict", 1, &p, (const char *[]){"probs"});
    if (kiln_graph_status(g) != KILN_OK) /* errors are sticky: check once */
        return puts(kiln_graph_error(g)), 1;

    kiln_module *m;
    if (kiln_compile(g, NULL, &m) != KILN_OK) /* NULL opts: the C target, cached */
        return puts(kiln_graph_error(g)), 1;
    float xs[6] = {1, 0, 0, 0, 0.5f, 0.25f};
    kiln_module_set(m, "x", xs, sizeof xs);
    kiln_module_run(m, "predict");
    kiln_module_print(m, "probs", stdout); /* tensor([[0.2689, 0.7311], ... */
    kiln_module_free(m);
    kiln_graph_free(g);
    return 0;
}
