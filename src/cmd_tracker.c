/* placeholder: being written (tracker issue) */
#include "cli.h"
int cmd_tracker(int argc, char **argv) { (void)argc; (void)argv; cli_error("tracker is not built yet"); return 1; }
