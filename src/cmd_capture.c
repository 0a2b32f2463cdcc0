/* placeholder: being written (capture issue) */
#include "cli.h"
int cmd_capture(int argc, char **argv) { (void)argc; (void)argv; cli_error("capture is not built yet"); return 1; }
