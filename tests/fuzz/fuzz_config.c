/* libFuzzer target: arbitrary bytes as a config file. Loading must never crash,
 * leak or read out of bounds, whatever the YAML, and every diagnostic must be
 * printable. A successful load is also printed as the `baton check` table and
 * looked up, to cover the snapshot's consumers. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct bt_config *c = NULL;
    struct bt_config_diags d = {0};
    enum bt_err err = bt_config_load_string("fuzz.yaml", (const char *)data, size, &c, &d);
    FILE *sink = fopen("/dev/null", "w");
    if (sink) bt_config_diags_print(&d, sink);
    bt_config_diags_free(&d);
    if (!err) {
        if (!c) abort(); /* success must give a snapshot */
        if (sink) bt_config_print_table(c, sink);
        for (size_t i = 0; i < c->nmodels; i++) {
            const struct bt_model *m = bt_config_model(c, bt_str_c(c->models[i].name));
            if (!m || m->ndeployments == 0) abort();
            for (size_t j = 0; j < m->ndeployments; j++)
                if (!m->deployments[j].provider || !m->deployments[j].model) abort();
        }
        for (size_t i = 0; i < c->nproviders; i++) /* names are unique */
            if (bt_config_provider(c, bt_str_c(c->providers[i].name)) != &c->providers[i]) abort();
        bt_config_unref(bt_config_ref(c));
        bt_config_unref(c);
    } else if (c) {
        abort(); /* failure must not hand out a snapshot */
    }
    if (sink) fclose(sink);
    return 0;
}
