#ifndef CONVOY_CLIBPQ_SHIM_H
#define CONVOY_CLIBPQ_SHIM_H
#include <libpq-fe.h>
#endif
