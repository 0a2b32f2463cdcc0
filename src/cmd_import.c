/* placeholder: being written (capture issue: partclone import) */
#include "cli.h"
int cmd_import(int argc, char **argv) { (void)argc; (void)argv; cli_error("import is not built yet"); return 1; }
